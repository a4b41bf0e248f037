"""The learning-rate range test (Smith 2015, fastai's `lr_find`).

`find_learning_rate` runs the test on a compiled model and suggests a rate,
leaving the model exactly as it was:

>>> result = find_learning_rate(model, (x_train, y_train))   # doctest: +SKIP
>>> result.suggestion, result.plot("lr_find.png")            # doctest: +SKIP
"""

import dataclasses
import math
import os
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_transfer import atomic_files as files
from keras_transfer.finetune.schedules import _is_int, _positive_rate
from keras_transfer.models import task_io


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
        axes.plot(
            self.learning_rates, self.raw_losses, color="tab:blue", alpha=0.25, linewidth=1, label="loss per batch"
        )
        axes.plot(self.learning_rates, self.losses, color="tab:blue", label="smoothed loss")
        axes.set_xscale("log")
        suggested_loss = np.interp(np.log(self.suggestion), np.log(self.learning_rates), self.losses)
        axes.axvline(self.suggestion, color="tab:red", linestyle="--", linewidth=1)
        axes.plot([self.suggestion], [suggested_loss], "o", color="tab:red", label=f"suggestion {self.suggestion:.2e}")
        if self.diverged_at is not None and np.isfinite(self.losses[-1]):
            axes.plot(
                [self.diverged_at], [self.losses[-1]], "x", color="black", label=f"diverged at {self.diverged_at:.2e}"
            )
        low, high = _loss_limits(self.losses)
        if low is not None:
            axes.set_ylim(low, high)
        axes.set(xlabel="Learning rate (log scale)", ylabel="Loss", title="Learning-rate range test")
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
        model,
        min_learning_rate,
        max_learning_rate,
        num_steps,
        smoothing,
        divergence_factor,
        batch_size,
    )
    # A TextClassifier's graph takes token ids, not the sentences it was given.
    data = task_io.as_model_inputs(model, data)
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
    progress = (
        keras.utils.Progbar(num_steps, stateful_metrics=["learning_rate", "loss", "smoothed_loss"]) if verbose else None
    )

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
                progress.update(step + 1, [("learning_rate", learning_rate), ("loss", loss), ("smoothed_loss", smooth)])
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


def find_head_learning_rate(model, train, recipe, *, max_steps=100, verbose=1):
    """The range test on a task's head, with the backbone frozen and the recipe's head optimizer.

    Runs `find_learning_rate` for at most `max_steps` batches (10 passes over
    a short dataset) and returns `(recipe with the suggested head_learning_rate,
    LearningRateFinderResult)`; `.plot()` on the result draws the curve.
    """
    model.freeze_backbone()
    model.compile(recipe.optimizer, learning_rate=recipe.head_learning_rate)
    num_steps = max_steps if isinstance(train, tuple) else min(max_steps, 10 * len(train))
    finder = find_learning_rate(model, train, num_steps=num_steps, verbose=verbose)
    return recipe.replace(head_learning_rate=finder.suggestion), finder


def _check_finder_arguments(
    model, min_learning_rate, max_learning_rate, num_steps, smoothing, divergence_factor, batch_size
):
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
            f"data must be a tf.data.Dataset of (x, y) batches or an (x, y) tuple of arrays, got {type(data).__name__}."
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
