"""Learning-rate schedules: warmup + cosine decay, and fastai's one-cycle policy.

`warmup_cosine` is a linear warmup followed by a cosine decay, built on Keras's
own `CosineDecay`; `OneCycle` is fastai's one-cycle policy as a serializable
Keras schedule. Both go wherever Keras takes a learning rate:

>>> schedule = OneCycle(1e-2, total_steps=1000)
>>> optimizer = keras.optimizers.Adam(learning_rate=schedule)

`keras_transfer.finetune.lr_finder.find_learning_rate` suggests the peak rate.
"""

import math
import numbers

import keras
from keras import ops

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
            f"Give the warmup one way: warmup_steps={warmup_steps!r} or warmup_fraction={warmup_fraction!r}, not both."
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
            raise ValueError(f"{label} must be in [0, peak_learning_rate={peak}], got {value!r}.")
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
            rising = _cosine_anneal(self.initial_learning_rate, self.max_learning_rate, step / max(peak, 1e-12))
            falling = _cosine_anneal(self.max_learning_rate, self.final_learning_rate, (step - peak) / (total - peak))
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
