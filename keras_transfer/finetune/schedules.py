"""Learning-rate schedules and the learning-rate range test.

`warmup_cosine` is a linear warmup followed by a cosine decay, built on Keras's
own `CosineDecay`; `OneCycle` is fastai's one-cycle policy as a serializable
Keras schedule. Both go wherever Keras takes a learning rate:

>>> schedule = OneCycle(1e-2, total_steps=1000)
>>> optimizer = keras.optimizers.Adam(learning_rate=schedule)

`find_learning_rate` runs Leslie Smith's range test (fastai's `lr_find`) on a
compiled model and suggests a rate, leaving the model exactly as it was:

>>> result = find_learning_rate(model, (x_train, y_train))   # doctest: +SKIP
>>> result.suggestion, result.plot("lr_find.png")            # doctest: +SKIP
"""

import dataclasses
import math
import numbers
import os
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_transfer import atomic_files as files
# --- warmup + cosine decay ------------------------------------------------------


def warmup_cosine(
    peak_learning_rate,
    total_steps,
    *,
    warmup_steps=None,
    warmup_fraction=None,
    initial_learning_rate=0.0,
    final_learning_rate=0.0,
    name="warmup_cosine",
):
    """A linear warmup to `peak_learning_rate`, then a cosine decay to `final_learning_rate`.

    The schedule is Keras's own `keras.optimizers.schedules.CosineDecay`
    (so it saves and loads with the model like any Keras schedule); this
    function only translates "peak, total steps, warmup" into its arguments,
    whose meaning is easy to get wrong: with a warmup, its
    `initial_learning_rate` is where the warmup *starts*, `warmup_target` is
    the peak, `decay_steps` counts the steps *after* the warmup, and `alpha`
    is the final rate as a fraction of the peak.

    At step `s`, with `w` warmup steps and `T` total steps:

    - `s <= w`: `initial + (peak - initial) * s / w`
    - `w <= s <= T`: `final + (peak - final) * (1 + cos(pi * (s - w) / (T - w))) / 2`
    - `s >= T`: `final_learning_rate`

    Args:
        peak_learning_rate: the rate at the end of the warmup (> 0).
        total_steps: optimizer steps of the whole schedule, warmup included
            (e.g. `epochs * steps_per_epoch`).
        warmup_steps: steps of linear warmup, in `[0, total_steps)`.
        warmup_fraction: the warmup as a fraction of `total_steps`, in
            `[0, 1)`; used when `warmup_steps` is not given (default 0.1).
        initial_learning_rate: the rate at step 0, where the warmup starts
            (default 0.0, as in most transformer recipes).
        final_learning_rate: the rate at `total_steps` and after, in
            `[0, peak_learning_rate]`.
        name: the schedule's name.

    Returns:
        A `keras.optimizers.schedules.CosineDecay`.

    Example:
    >>> schedule = warmup_cosine(1e-3, total_steps=100, warmup_steps=10)
    >>> [round(float(schedule(step)), 6) for step in (0, 5, 10, 55, 100)]
    [0.0, 0.0005, 0.001, 0.0005, 0.0]
    """
    peak = _positive_rate(peak_learning_rate, "peak_learning_rate")
    total_steps = _step_count(total_steps, "total_steps")
    if warmup_steps is not None and warmup_fraction is not None:
        raise ValueError(
            f"Give the warmup one way: warmup_steps={warmup_steps!r} or "
            f"warmup_fraction={warmup_fraction!r}, not both."
        )
    if warmup_steps is None:
        fraction = 0.1 if warmup_fraction is None else float(warmup_fraction)
        if not 0.0 <= fraction < 1.0:
            raise ValueError(
                f"warmup_fraction must be in [0, 1), got {warmup_fraction!r}: "
                "e.g. 0.1 warms up over the first 10% of the steps."
            )
        warmup_steps = int(round(fraction * total_steps))
    if not _is_int(warmup_steps) or not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_steps must be an int in [0, total_steps={total_steps}), got "
            f"{warmup_steps!r}: the cosine decay needs at least one step after the warmup."
        )
    initial = float(initial_learning_rate)
    final = float(final_learning_rate)
    for label, value in (("initial_learning_rate", initial), ("final_learning_rate", final)):
        if not 0.0 <= value <= peak:
            raise ValueError(
                f"{label} must be in [0, peak_learning_rate={peak}], got {value!r}."
            )
    # Python floats throughout: CosineDecay takes its dtype from
    # initial_learning_rate, and an int 0 there makes an int32 schedule that fails.
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=initial,
        decay_steps=total_steps - int(warmup_steps),
        alpha=final / peak,
        name=name,
        warmup_target=peak,
        warmup_steps=int(warmup_steps),
    )


# --- one cycle ------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_transfer")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """fastai's one-cycle policy (Smith 2018): up to `max_learning_rate`, then far below.

    The rate rises from `max_learning_rate / div_factor` to `max_learning_rate`
    over the first `pct_start` of `total_steps`, then falls to
    `max_learning_rate / (div_factor * final_div_factor)` at `total_steps`;
    both phases are cosine annealings, as in fastai's `fit_one_cycle`, and
    steps after `total_steps` stay at the final rate. The rate is fastai's
    learning-rate part only: pair it with `keras.optimizers.SGD(momentum=...)`
    or Adam as usual.

    Args:
        max_learning_rate: the peak rate (> 0), e.g. from `find_learning_rate`.
        total_steps: optimizer steps of the whole cycle (`epochs * steps_per_epoch`).
        pct_start: the fraction of the steps spent rising, in `[0, 1)`.
        div_factor: the starting rate is `max_learning_rate / div_factor`.
        final_div_factor: the final rate is the starting rate / `final_div_factor`.
        name: the schedule's name.

    Example:
    >>> schedule = OneCycle(0.1, total_steps=100)
    >>> [float(schedule(step)) for step in (0, 25, 100)]  # doctest: +ELLIPSIS
    [0.004..., 0.1..., 4.0...e-07]
    """

    def __init__(
        self,
        max_learning_rate,
        total_steps,
        pct_start=0.25,
        div_factor=25.0,
        final_div_factor=1e4,
        name="OneCycle",
    ):
        super().__init__()
        self.max_learning_rate = _positive_rate(max_learning_rate, "max_learning_rate")
        self.total_steps = _step_count(total_steps, "total_steps")
        if not 0.0 <= float(pct_start) < 1.0:
            raise ValueError(
                f"pct_start must be in [0, 1), got {pct_start!r}: it is the fraction "
                "of the steps spent raising the rate (fastai's default is 0.25)."
            )
        self.pct_start = float(pct_start)
        for label, value in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
            if not float(value) > 0.0:
                raise ValueError(f"{label} must be > 0, got {value!r}.")
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        self.name = name

    @property
    def initial_learning_rate(self):
        """The rate at step 0."""
        return self.max_learning_rate / self.div_factor

    @property
    def final_learning_rate(self):
        """The rate at `total_steps` and after."""
        return self.initial_learning_rate / self.final_div_factor

    @property
    def peak_step(self):
        """The step at which the rate reaches `max_learning_rate` (may be fractional)."""
        return self.pct_start * self.total_steps

    def __call__(self, step):
        with keras.name_scope(self.name):
            total = float(self.total_steps)
            peak = self.peak_step
            step = ops.minimum(ops.cast(step, "float32"), total)
            # Both branches are computed and one is picked, so neither may divide by
            # zero (pct_start=0 has no rising phase).
            rising = _cosine_anneal(
                self.initial_learning_rate, self.max_learning_rate, step / max(peak, 1e-12)
            )
            falling = _cosine_anneal(
                self.max_learning_rate, self.final_learning_rate, (step - peak) / (total - peak)
            )
            return ops.where(step < peak, rising, falling)

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "name": self.name,
        }


def _cosine_anneal(start, end, fraction):
    """fastai's `SchedCos`: from `start` (fraction 0) to `end` (fraction 1) along a half cosine."""
    fraction = ops.clip(fraction, 0.0, 1.0)
    return end + (start - end) * 0.5 * (1.0 + ops.cos(math.pi * fraction))


# --- the learning-rate range test --------------------------------------------------


@dataclasses.dataclass
class LearningRateFinderResult:
    """What `find_learning_rate` measured, and the rate it suggests.

    `losses[i]` is the loss of batch `i`, measured before the update made at
    `learning_rates[i]` (fastai's convention), smoothed; `raw_losses[i]` is
    the same loss unsmoothed. The arrays end where the test stopped.

    Attributes:
        learning_rates: the rate of each step, rising exponentially.
        losses: the smoothed loss of each step (EMA with bias correction).
        raw_losses: the loss of each batch as measured.
        suggestion: the suggested learning rate, a tenth of `minimum` (see
            `find_learning_rate`).
        steepest: the rate where the smoothed loss falls fastest per decade of
            learning rate (fastai's "steep" rule, each slope taken over half a
            decade), a second opinion that batch noise can mislead; None when
            too few steps were recorded.
        minimum: the rate at the lowest smoothed loss (after the first 10% of
            the steps).
        diverged_at: the rate at which the smoothed loss exceeded
            `divergence_factor` times its best (or became NaN) and the test
            stopped; None when it ran every step.
    """

    learning_rates: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    suggestion: float
    steepest: float | None = None
    minimum: float | None = None
    diverged_at: float | None = None

    def plot(self, path=None):
        """Draws the smoothed loss against the learning rate on a log axis.

        The raw losses are drawn faintly behind, the suggestion as a red
        point and dashed line, and the point of divergence as a cross. The
        y axis is cut a little above the loss the curve started from, so the
        explosion after divergence does not flatten the useful part.

        Args:
            path: where to save the image (PNG unless the suffix says
                otherwise), atomically; nothing is saved when None.

        Returns:
            The matplotlib `Figure`.

        Example:
        >>> result.plot("lr_find.png")   # doctest: +SKIP
        """
        figure = Figure(figsize=(6.0, 4.0), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.plot(self.learning_rates, self.raw_losses, color="tab:blue", alpha=0.25,
                  linewidth=1, label="loss per batch")
        axes.plot(self.learning_rates, self.losses, color="tab:blue", label="smoothed loss")
        axes.set_xscale("log")
        suggested_loss = np.interp(
            np.log(self.suggestion), np.log(self.learning_rates), self.losses
        )
        axes.axvline(self.suggestion, color="tab:red", linestyle="--", linewidth=1)
        axes.plot([self.suggestion], [suggested_loss], "o", color="tab:red",
                  label=f"suggestion {self.suggestion:.2e}")
        if self.diverged_at is not None and np.isfinite(self.losses[-1]):
            axes.plot([self.diverged_at], [self.losses[-1]], "x", color="black",
                      label=f"diverged at {self.diverged_at:.2e}")
        low, high = _loss_limits(self.losses)
        if low is not None:
            axes.set_ylim(low, high)
        axes.set(xlabel="Learning rate (log scale)", ylabel="Loss",
                 title="Learning-rate range test")
        axes.legend(loc="best")
        if path is not None:
            path = os.fspath(path)
            # Give the format explicitly: for a name without a suffix matplotlib
            # would otherwise append ".png" to the temporary file's name.
            image_format = os.path.splitext(path)[1][1:].lower() or "png"
            with files.atomic_path(path) as temporary:
                figure.savefig(temporary, format=image_format, dpi=100)
        return figure


def _loss_limits(losses):
    """y limits from the lowest loss to a little above where the curve started."""
    finite = losses[np.isfinite(losses)]
    if finite.size == 0:
        return None, None
    best = int(np.argmin(finite))
    low, high = float(finite.min()), float(finite[: best + 1].max())
    margin = 0.1 * (high - low) or 0.1 * abs(high) or 1.0
    return low - margin, high + 3 * margin


def find_learning_rate(
    model,
    data,
    *,
    min_learning_rate=1e-7,
    max_learning_rate=10.0,
    num_steps=100,
    smoothing=0.98,
    divergence_factor=4.0,
    batch_size=32,
    seed=None,
    verbose=1,
):
    """The learning-rate range test (Smith 2015, fastai's `lr_find`) on a compiled model.

    Trains one batch per step while the learning rate grows exponentially
    from `min_learning_rate` to `max_learning_rate`, recording each batch's
    loss. The data is repeated when it has fewer than `num_steps` batches.
    The test stops early when the smoothed loss exceeds `divergence_factor`
    times the best smoothed loss so far, or is NaN (for a loss that can be
    negative only NaN stops it).

    The steps run on a fresh copy of the model's optimizer (same class and
    settings: Adam's betas, momentum, weight decay, clipping...) whose
    learning rate the test sets; the range is therefore measured for the
    optimizer you will train with. Afterwards everything is put back: every
    model variable (trainable and not, e.g. BatchNormalization statistics
    and dropout seeds), the metrics, and the model's own optimizer, which is
    never stepped (its object, iterations, slots and learning rate or
    schedule are untouched).

    The suggestion is a tenth of the rate at the lowest smoothed loss (looked
    for after the first 10% of the steps, where the average has not settled):
    "an order of magnitude before the minimum", as Smith and Sylvain Gugger's
    post that introduced this smoothing advise. The smoothed curve lags the
    raw losses, so its minimum sits at or a little past the rate where
    training starts to diverge; a decade below it the loss still falls fast,
    and the suggestion is never a rate at which it diverged. fastai's other
    rules were tried on least squares, whose stability limit is known, and
    not used: "valley" (halfway along the longest decreasing run) follows
    `min_learning_rate`, because a convex loss decreases slowly from the first
    step (it landed three decades below the limit with the defaults, against
    one for this rule); the steepest descent of the smoothed curve can land
    on the batch noise of the first steps (it is still reported, as
    `steepest`). A warning says when the loss never decreased or was still
    falling at `max_learning_rate`.

    Args:
        model: a compiled `keras.Model` (any, including the keras_transfer
            tasks, which compile with their head's loss).
        data: a `tf.data.Dataset` of `(x, y)` (or `(x, y, sample_weight)`)
            batches, or an `(x, y)` tuple of arrays, batched by `batch_size`
            and shuffled on every pass.
        min_learning_rate: the first rate tried (> 0).
        max_learning_rate: the last rate tried (> `min_learning_rate`).
        num_steps: how many batches (>= 5) to spread the range over.
        smoothing: the exponential moving average's factor in `[0, 1)`; 0
            turns smoothing off.
        divergence_factor: stop when the smoothed loss exceeds this many
            times its best (> 1).
        batch_size: the batch size for array data (datasets keep theirs).
        seed: seeds the shuffling of array data.
        verbose: show a progress bar when truthy.

    Returns:
        A `LearningRateFinderResult`; `.suggestion` is the suggested rate and
        `.plot()` draws the curve.

    Example:
    >>> model.compile(keras.optimizers.SGD(momentum=0.9), "mse")   # doctest: +SKIP
    >>> result = find_learning_rate(model, (x, y), num_steps=100)   # doctest: +SKIP
    >>> model.compile(keras.optimizers.SGD(OneCycle(10 * result.suggestion, total_steps=500),
    ...                                    momentum=0.9), "mse")    # doctest: +SKIP
    """
    _check_finder_arguments(
        model, min_learning_rate, max_learning_rate, num_steps, smoothing,
        divergence_factor, batch_size,
    )
    # Tasks that preprocess outside the graph (a TextClassifier tokenizes raw
    # sentences) turn the data into the inputs their graph takes.
    to_model_inputs = getattr(model, "model_inputs", None)
    if to_model_inputs is not None:
        data = to_model_inputs(data)
    batches = _endless_batches(data, batch_size, seed)
    first = next(batches)  # raises for empty data, before anything is changed
    if not model.built:
        # Creating the weights first lets the snapshot below hold all of them.
        model(first[0], training=False)

    learning_rates = min_learning_rate * (max_learning_rate / min_learning_rate) ** (
        np.arange(num_steps) / (num_steps - 1)
    )
    saved = _ModelState(model)
    with model.distribute_strategy.scope():
        probe = _probe_optimizer(model.optimizer, float(learning_rates[0]))
        probe.build(model.trainable_variables)
    progress = keras.utils.Progbar(
        num_steps, stateful_metrics=["learning_rate", "loss", "smoothed_loss"]
    ) if verbose else None

    raw, smoothed = [], []
    average, best, diverged_at = 0.0, math.inf, None
    model.optimizer, model.train_function = probe, None
    try:
        batch = first
        for step, learning_rate in enumerate(learning_rates):
            if step:
                batch = next(batches)
            probe.learning_rate = float(learning_rate)
            x, y, sample_weight = batch
            # train_on_batch returns the loss *tracker's* result, a running mean
            # over every batch since the metrics were last reset (a callback's
            # logs["loss"] is that mean over the epoch). Resetting first makes it
            # exactly this batch's loss, regularization included, computed by the
            # model's own train_step (custom losses, loss scaling, distribution).
            # Keras 3.15's TF train_on_batch happens to reset too; we don't rely on it.
            model.reset_metrics()
            logs = model.train_on_batch(x, y, sample_weight=sample_weight, return_dict=True)
            loss = float(logs["loss"])
            average = smoothing * average + (1.0 - smoothing) * loss
            smooth = average / (1.0 - smoothing ** (step + 1))  # bias correction
            raw.append(loss)
            smoothed.append(smooth)
            best = min(best, smooth)
            if progress is not None:
                progress.update(step + 1, [("learning_rate", learning_rate), ("loss", loss),
                                           ("smoothed_loss", smooth)])
            if not math.isfinite(smooth) or (best > 0 and smooth > divergence_factor * best):
                diverged_at = float(learning_rate)
                break
    finally:
        model.optimizer, model.train_function = saved.optimizer, saved.train_function
        saved.restore()
    if progress is not None and diverged_at is not None:
        progress.update(len(raw), finalize=True)

    learning_rates = learning_rates[: len(raw)]
    losses = np.asarray(smoothed)
    suggestion, steepest, minimum = _suggest(learning_rates, losses, num_steps)
    return LearningRateFinderResult(
        learning_rates=learning_rates,
        losses=losses,
        raw_losses=np.asarray(raw),
        suggestion=suggestion,
        steepest=steepest,
        minimum=minimum,
        diverged_at=diverged_at,
    )


def _check_finder_arguments(model, min_learning_rate, max_learning_rate, num_steps,
                            smoothing, divergence_factor, batch_size):
    if not isinstance(model, keras.Model):
        raise TypeError(f"find_learning_rate needs a keras.Model, got {type(model).__name__}.")
    if not model.compiled or model.optimizer is None:
        raise ValueError(
            f"{model.name} is not compiled: call model.compile(optimizer, loss) first, "
            "with the optimizer you will train with (the test measures its range)."
        )
    _positive_rate(min_learning_rate, "min_learning_rate")
    _positive_rate(max_learning_rate, "max_learning_rate")
    if not min_learning_rate < max_learning_rate:
        raise ValueError(
            f"min_learning_rate ({min_learning_rate}) must be below max_learning_rate "
            f"({max_learning_rate}): the test sweeps from the first up to the second."
        )
    if not _is_int(num_steps) or num_steps < 5:
        raise ValueError(
            f"num_steps must be an int >= 5, got {num_steps!r}: the curve needs points "
            "to smooth and read (100 is usual)."
        )
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r} (0 turns it off).")
    window = round(1.0 / (1.0 - smoothing), 6)  # 1 / (1 - 0.9) is 10.000000000000002
    if num_steps < 2 * window:
        # The smoothed loss then trails the raw one by most of the sweep, so its
        # minimum (and the suggestion) lands far too low.
        warnings.warn(
            f"num_steps={num_steps} is short for smoothing={smoothing} (an average over about "
            f"{window:.0f} steps): the suggestion will be too low. Use num_steps >= {int(2 * window)} "
            f"or smoothing <= {1 - 2 / num_steps:.2f}.",
            stacklevel=3,
        )
    if not divergence_factor > 1.0:
        raise ValueError(
            f"divergence_factor must be > 1, got {divergence_factor!r}: the test stops "
            "when the smoothed loss exceeds this many times its best."
        )
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")


def _endless_batches(data, batch_size, seed):
    """Yields `(x, y, sample_weight)` batches forever, starting a new pass when one ends."""
    if isinstance(data, tf.data.Dataset):
        while True:
            empty = True
            for batch in data:
                empty = False
                yield keras.utils.unpack_x_y_sample_weight(batch)
            if empty:
                raise ValueError("The dataset yields no batches: the range test needs data.")
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(
            f"data must be a tf.data.Dataset of (x, y) batches or an (x, y) tuple of "
            f"arrays, got {type(data).__name__}."
        )
    x, y = data
    count = len(keras.tree.flatten(x)[0])
    if count == 0:
        raise ValueError("x holds no examples: the range test needs data.")
    # Equal batches keep the losses comparable and the train function traced
    # once; the last partial batch is dropped unless it is the only one.
    size = min(batch_size, count)
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(count)
        for start in range(0, count - size + 1, size):
            indices = order[start : start + size]
            yield _take(x, indices), _take(y, indices), None


def _take(arrays, indices):
    """The rows `indices` of every array in a (possibly nested) structure."""
    if arrays is None:
        return None
    return keras.tree.map_structure(lambda array: np.asarray(array)[indices], arrays)


def _probe_optimizer(optimizer, learning_rate):
    """A fresh copy of `optimizer` with a plain (settable) learning rate."""
    config = optimizer.get_config()
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        inner = _probe_optimizer(optimizer.inner_optimizer, learning_rate)
        config["inner_optimizer"] = keras.saving.serialize_keras_object(inner)
    else:
        # A schedule cannot be overridden step by step, so the copy gets a number.
        config["learning_rate"] = learning_rate
    return type(optimizer).from_config(config)


class _ModelState:
    """A copy of a model's variables and metric states, and its optimizer, to put back."""

    def __init__(self, model):
        self.model = model
        self.optimizer = model.optimizer
        self.train_function = model.train_function  # traced for its own optimizer
        self.variables = [(v, _to_numpy(v)) for v in model.variables]
        self.metrics = [(v, _to_numpy(v)) for v in model.metrics_variables]

    def restore(self):
        for variable, value in self.variables:
            variable.assign(value)
        # Metrics built during the test start from zero, as after compile.
        self.model.reset_metrics()
        for variable, value in self.metrics:
            variable.assign(value)


def _to_numpy(variable):
    # A copy: the values must survive the training steps that follow.
    return np.array(ops.convert_to_numpy(variable), copy=True)


def _suggest(learning_rates, losses, num_steps):
    """`(suggestion, steepest or None, minimum)` rates from the smoothed curve."""
    finite = np.isfinite(losses)
    # Only the finite prefix counts: nothing after a NaN is a usable rate.
    end = len(losses) if finite.all() else int(np.argmin(finite))
    if end == 0:
        return float(learning_rates[0]) / 10, None, float(learning_rates[0])
    # The first steps are skipped as fastai does: a lucky first batch can make
    # the barely-smoothed start look like the minimum.
    begin = min(num_steps // 10, end - 1)
    lowest = begin + int(np.argmin(losses[begin:end]))
    if lowest == begin and end - begin > 1:
        warnings.warn(
            "The loss never decreased during the learning-rate range test: lower "
            "min_learning_rate, or check that the model can learn from this data.",
            stacklevel=3,
        )
    elif lowest == len(losses) - 1 and len(losses) == num_steps:
        warnings.warn(
            "The loss was still falling at max_learning_rate: raise max_learning_rate "
            "so that the test sees where training diverges.",
            stacklevel=3,
        )
    minimum = float(learning_rates[lowest])
    steepest = _steepest_index(learning_rates[begin : lowest + 1], losses[begin : lowest + 1])
    if steepest is not None:
        steepest = float(learning_rates[begin + steepest])
    return minimum / 10, steepest, minimum


def _steepest_index(learning_rates, losses):
    """Where `losses` falls fastest per decade, each slope taken over half a decade."""
    if len(losses) < 2:
        return None
    decades = np.log10(learning_rates)
    per_step = (decades[-1] - decades[0]) / (len(decades) - 1)
    # A slope between neighbours is mostly batch noise; a quarter decade each
    # side is wide enough to average it out and narrow enough to stay local.
    reach = max(1, int(round(0.25 / per_step))) if per_step > 0 else 1
    slopes = []
    for index in range(len(losses)):
        first, last = max(0, index - reach), min(len(losses) - 1, index + reach)
        slopes.append((losses[last] - losses[first]) / (decades[last] - decades[first]))
    return int(np.argmin(slopes))


# --- argument checks ---------------------------------------------------------------


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_rate(value, label):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{label} must be a number > 0, got {value!r}.")
    return float(value)


def _step_count(value, label):
    if not _is_int(value) or value < 1:
        raise ValueError(f"{label} must be an int >= 1, got {value!r}.")
    return int(value)
