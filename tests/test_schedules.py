"""Tests for keras_transfer.finetune.schedules (warmup + cosine, one-cycle) and lr_finder (LR range test)."""

import doctest
import json
import math
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import image_dataset, tiny_classifier
from matplotlib.figure import Figure

from keras_transfer.finetune import lr_finder, schedules
from keras_transfer.finetune.lr_finder import LearningRateFinderResult, find_learning_rate
from keras_transfer.finetune.schedules import OneCycle, warmup_cosine


def values(schedule, steps):
    return np.array([float(schedule(step)) for step in steps])


# --- warmup_cosine -------------------------------------------------------------


def test_warmup_cosine_follows_the_formula():
    peak, initial, final, warmup, total = 0.1, 0.01, 0.001, 10, 100
    schedule = warmup_cosine(peak, total, warmup_steps=warmup, initial_learning_rate=initial, final_learning_rate=final)

    def expected(step):
        if step <= warmup:
            return initial + (peak - initial) * step / warmup
        step = min(step, total)
        return final + (peak - final) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))

    steps = [0, 5, 10, 11, 40, 55, 99, 100, 150]
    np.testing.assert_allclose(values(schedule, steps), [expected(s) for s in steps], rtol=1e-5)
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert float(schedule(0)) == pytest.approx(initial)
    assert float(schedule(warmup)) == pytest.approx(peak)
    assert float(schedule(total)) == pytest.approx(final)


def test_warmup_cosine_takes_the_warmup_as_a_fraction():
    default = warmup_cosine(1e-3, 50)  # 10% warmup from 0 to the peak, decay to 0
    assert default.warmup_steps == 5
    np.testing.assert_allclose(values(default, [0, 5, 50]), [0.0, 1e-3, 0.0], atol=1e-9)
    assert warmup_cosine(1e-3, 50, warmup_fraction=0.4).warmup_steps == 20
    no_warmup = warmup_cosine(1e-3, 50, warmup_steps=0)
    assert float(no_warmup(0)) == pytest.approx(1e-3)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(warmup_steps=100), "warmup_steps must be"),
        (dict(warmup_steps=2.5), "warmup_steps must be"),
        (dict(warmup_fraction=1.0), "warmup_fraction must be"),
        (dict(warmup_steps=5, warmup_fraction=0.1), "not both"),
        (dict(final_learning_rate=0.5), "final_learning_rate must be"),
        (dict(initial_learning_rate=-1.0), "initial_learning_rate must be"),
        (dict(peak_learning_rate=0.0), "peak_learning_rate must be"),
        (dict(total_steps=0), "total_steps must be"),
    ],
)
def test_warmup_cosine_rejects_bad_arguments(arguments, message):
    arguments = {"peak_learning_rate": 0.1, "total_steps": 100, **arguments}
    with pytest.raises(ValueError, match=message):
        warmup_cosine(**arguments)


# --- OneCycle --------------------------------------------------------------------


def fastai_one_cycle(step, max_lr, total, pct_start, div, final_div):
    """fastai's `combined_cos(pct_start, lr_max/div, lr_max, lr_max/(div*final_div))`."""

    def cos(start, end, position):  # fastai's SchedCos
        return start + (1 + math.cos(math.pi * (1 - position))) * (end - start) / 2

    position = min(step, total) / total
    start, final = max_lr / div, max_lr / (div * final_div)
    if position < pct_start:
        return cos(start, max_lr, position / pct_start)
    return cos(max_lr, final, (position - pct_start) / (1 - pct_start))


@pytest.mark.parametrize(
    "max_lr, total, pct_start, div, final_div",
    [
        (0.1, 200, 0.25, 25.0, 1e4),
        (3e-3, 90, 0.3, 10.0, 100.0),
    ],
)
def test_one_cycle_matches_fastai(max_lr, total, pct_start, div, final_div):
    schedule = OneCycle(max_lr, total, pct_start=pct_start, div_factor=div, final_div_factor=final_div)
    steps = np.arange(total + 20)
    rates = values(schedule, steps)
    expected = [fastai_one_cycle(s, max_lr, total, pct_start, div, final_div) for s in steps]
    np.testing.assert_allclose(rates, expected, rtol=1e-4, atol=1e-6 * max_lr)  # float32

    peak = round(pct_start * total)
    assert rates[0] == pytest.approx(max_lr / div, rel=1e-5)
    assert rates[peak] == pytest.approx(max_lr, rel=1e-5) and rates.argmax() == peak
    assert rates[total] == pytest.approx(max_lr / (div * final_div), rel=1e-4)
    assert np.all(rates[total:] == rates[total])  # stays at the final rate
    assert np.all(np.diff(rates[: peak + 1]) > 0)
    assert np.all(np.diff(rates[peak : total + 1]) < 0)


def test_one_cycle_works_on_step_tensors_inside_a_tf_function():
    schedule = OneCycle(0.1, 100)
    compiled = tf.function(lambda step: schedule(step))
    expected = values(schedule, [10, 25, 60])
    for step, value in zip([10, 25, 60], expected):
        assert float(compiled(tf.constant(step, tf.int64))) == pytest.approx(value)
        assert float(compiled(tf.constant(float(step), tf.float32))) == pytest.approx(value)
    counter = tf.Variable(60, dtype=tf.int64)  # what an optimizer's `iterations` is
    assert float(compiled(counter)) == pytest.approx(expected[-1])
    assert compiled(counter).dtype == tf.float32


def test_one_cycle_config_round_trips_and_serializes():
    schedule = OneCycle(0.02, 300, pct_start=0.3, div_factor=10, final_div_factor=1e3, name="cycle")
    config = schedule.get_config()
    assert OneCycle.from_config(config).get_config() == config

    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(schedule)))
    assert serialized["registered_name"] == "keras_transfer>OneCycle"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, OneCycle) and restored.get_config() == config
    np.testing.assert_allclose(values(restored, [0, 90, 300]), values(schedule, [0, 90, 300]))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(max_learning_rate=0.0), "max_learning_rate must be"),
        (dict(total_steps=0), "total_steps must be"),
        (dict(total_steps=10.0), "total_steps must be"),
        (dict(pct_start=1.0), "pct_start must be"),
        (dict(div_factor=0), "div_factor must be"),
        (dict(final_div_factor=-1), "final_div_factor must be"),
    ],
)
def test_one_cycle_rejects_bad_arguments(arguments, message):
    arguments = {"max_learning_rate": 0.1, "total_steps": 100, **arguments}
    with pytest.raises(ValueError, match=message):
        OneCycle(**arguments)


def test_one_cycle_drives_an_optimizer_in_fit_and_is_saved_with_the_model(tmp_path):
    schedule = OneCycle(0.05, total_steps=8)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate=schedule), loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    model.fit(x, x.sum(axis=1), batch_size=32, epochs=2, verbose=0)

    assert int(model.optimizer.iterations) == 4
    assert float(model.optimizer.learning_rate) == pytest.approx(float(schedule(4)))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    saved_rate = loaded.optimizer.get_config()["learning_rate"]
    assert saved_rate["registered_name"] == "keras_transfer>OneCycle"
    assert saved_rate["config"] == schedule.get_config()


# --- find_learning_rate: least squares with a known stability limit ------------------

BATCH = 32
MIN_RATE, MAX_RATE, STEPS = 1e-4, 10.0, 100


def least_squares(seed=0, n=512, d=4, noise=0.5):
    """Standardized inputs, y = x @ w + noise, and the rate above which SGD diverges.

    The MSE loss has Hessian 2 x^T x / n; gradient descent on a quadratic
    diverges above 2 / (its largest eigenvalue), about 1 for unit-variance
    inputs.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    y = x @ rng.normal(size=(d, 1)) + noise * rng.normal(size=(n, 1))
    limit = 2 / np.linalg.eigvalsh(2 * x.T @ x / n).max()
    return x.astype("float32"), y.astype("float32"), float(limit)


def linear_model(optimizer=None):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros"),
        ]
    )
    # Plain SGD without momentum: the stability limit above is exact for it.
    model.compile(optimizer or keras.optimizers.SGD(learning_rate=0.01), loss="mse")
    return model


@pytest.fixture(scope="module")
def least_squares_run():
    """One range test on least squares, in an unshuffled batch order: `(x, y, limit, result)`."""
    x, y, limit = least_squares()
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)  # 16 batches, repeated
    result = find_learning_rate(
        linear_model(), batches, min_learning_rate=MIN_RATE, max_learning_rate=MAX_RATE, num_steps=STEPS, verbose=0
    )
    return x, y, limit, result


def test_finder_records_each_batch_loss_at_exponentially_rising_rates(least_squares_run):
    x, y, limit, result = least_squares_run
    count = len(result.raw_losses)
    np.testing.assert_allclose(result.learning_rates, np.geomspace(MIN_RATE, MAX_RATE, STEPS)[:count], rtol=1e-12)

    # The same SGD in numpy: losses[i] is batch i's loss before the update at rate i.
    weights, expected = np.zeros((4, 1)), []
    for step, rate in enumerate(result.learning_rates):
        start = (step % (len(x) // BATCH)) * BATCH
        batch_x, batch_y = x[start : start + BATCH].astype(float), y[start : start + BATCH]
        error = batch_x @ weights - batch_y
        expected.append(float(np.mean(error**2)))
        weights = weights - rate * 2 * batch_x.T @ error / BATCH
    stable = result.learning_rates < limit  # beyond it float32 rounding grows too
    assert stable.sum() > 70
    np.testing.assert_allclose(result.raw_losses[stable], np.array(expected)[stable], rtol=1e-3)


def test_finder_smooths_with_a_bias_corrected_moving_average(least_squares_run):
    *_, result = least_squares_run
    average, expected = 0.0, []
    for step, loss in enumerate(result.raw_losses):
        average = 0.98 * average + 0.02 * loss
        expected.append(average / (1 - 0.98 ** (step + 1)))
    np.testing.assert_allclose(result.losses, expected, rtol=1e-6)
    assert result.losses[0] == pytest.approx(result.raw_losses[0])


def test_finder_stops_where_sgd_diverges(least_squares_run):
    x, _, limit, result = least_squares_run
    assert result.diverged_at is not None and len(result.raw_losses) < STEPS
    assert result.diverged_at == result.learning_rates[-1]
    # Smoothing lags a few steps behind the raw loss, so it stops a little past the limit.
    assert limit < result.diverged_at < 5 * limit
    assert result.losses[-1] > 4 * result.losses.min()
    # While stable no batch loses more than the batches of the first pass (at w = 0).
    first_pass = result.raw_losses[: len(x) // BATCH].max()
    assert result.raw_losses[result.learning_rates < limit / 2].max() <= first_pass
    above = result.raw_losses[result.learning_rates > limit]
    assert above.max() > 10 * result.raw_losses.min()


def test_finder_suggests_a_stable_rate_close_to_the_limit(least_squares_run):
    x, y, limit, result = least_squares_run
    assert limit / 10**1.5 < result.suggestion < limit
    assert result.suggestion == pytest.approx(result.minimum / 10)
    assert result.suggestion < result.diverged_at / 10
    assert MIN_RATE <= result.steepest <= result.minimum

    # Training at the suggested rate works.
    model = linear_model(keras.optimizers.SGD(learning_rate=result.suggestion))
    history = model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    assert history.history["loss"][-1] < 0.2 * result.raw_losses[0]


def test_finder_leaves_model_and_optimizer_as_they_were():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    hidden = keras.layers.BatchNormalization()(hidden)
    hidden = keras.layers.Dropout(0.2)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    schedule = OneCycle(1e-2, total_steps=50)
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    model.compile(optimizer, loss="mse", metrics=["mae"])
    x, y, _ = least_squares(n=64)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # now Adam has iterations and slots

    variables = [np.array(v) for v in model.variables]  # weights, BN statistics, dropout seed
    optimizer_state = [np.array(v) for v in optimizer.variables]
    metric_state = [np.array(v) for v in model.metrics_variables]
    optimizer_config = optimizer.get_config()
    assert int(optimizer.iterations) == 2 and len(optimizer_state) > 3

    result = find_learning_rate(model, (x, y), num_steps=20, min_learning_rate=1e-4, batch_size=16, verbose=0, seed=0)
    assert len(result.raw_losses) >= 5 and np.ptp(result.raw_losses) > 0  # it did train

    assert model.optimizer is optimizer
    assert optimizer.get_config() == optimizer_config  # the OneCycle schedule included
    for before, variable in zip(optimizer_state, optimizer.variables, strict=True):
        np.testing.assert_array_equal(before, np.array(variable))
    for before, variable in zip(variables, model.variables, strict=True):
        np.testing.assert_array_equal(before, np.array(variable))
    for before, variable in zip(metric_state, model.metrics_variables, strict=True):
        np.testing.assert_array_equal(before, np.array(variable))

    # Training goes on with the model's own optimizer and schedule (a batch
    # shaped like the test's would reuse a train function traced for its copy).
    model.train_on_batch(x[:16], y[:16])
    assert int(optimizer.iterations) == 3
    assert float(optimizer.learning_rate) == pytest.approx(float(schedule(3)))


def test_finder_on_a_transfer_model_repeats_a_short_dataset():
    model = tiny_classifier(2)
    model.compile()  # the head's loss and metrics
    dataset, _, _ = image_dataset(16, batch_size=8)  # two batches for six steps
    variables = [np.array(v) for v in model.variables]
    optimizer = model.optimizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a range this short may end still falling
        result = find_learning_rate(
            model,
            dataset,
            min_learning_rate=1e-5,
            max_learning_rate=1e-3,
            num_steps=6,
            divergence_factor=1e6,
            verbose=0,
        )

    assert len(result.learning_rates) == 6 and np.all(np.isfinite(result.raw_losses))
    assert model.optimizer is optimizer and int(optimizer.iterations) == 0
    for before, variable in zip(variables, model.variables, strict=True):
        np.testing.assert_array_equal(before, np.array(variable))


def test_finder_warns_when_the_loss_was_still_falling():
    x, y, _ = least_squares(n=128)
    with pytest.warns(UserWarning, match="raise max_learning_rate"):
        find_learning_rate(
            linear_model(), (x, y), min_learning_rate=1e-4, max_learning_rate=0.1, num_steps=30, verbose=0
        )


def test_finder_warns_that_few_steps_under_heavy_smoothing_suggest_too_low():
    x, y, _ = least_squares(n=128)
    with pytest.warns(UserWarning, match="num_steps=20 is short for smoothing=0.98"):
        find_learning_rate(linear_model(), (x, y), num_steps=20, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        find_learning_rate(linear_model(), (x, y), num_steps=20, smoothing=0.9, verbose=0)
    assert not [w for w in caught if "is short for smoothing" in str(w.message)]


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(compiled=False), ValueError, "not compiled"),
        (dict(min_learning_rate=1.0, max_learning_rate=1.0), ValueError, "must be below"),
        (dict(min_learning_rate=0.0), ValueError, "min_learning_rate must be"),
        (dict(num_steps=4), ValueError, "num_steps must be"),
        (dict(smoothing=1.0), ValueError, "smoothing must be"),
        (dict(divergence_factor=1.0), ValueError, "divergence_factor must be"),
        (dict(batch_size=0), ValueError, "batch_size must be"),
        (dict(data="x only"), TypeError, "tf.data.Dataset"),
        (dict(data="empty"), ValueError, "no batches"),
    ],
)
def test_finder_rejects_bad_calls_before_doing_anything(arguments, error, message):
    x, y, _ = least_squares(n=64)
    model = linear_model()
    if not arguments.pop("compiled", True):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    data = {"x only": x, "empty": tf.data.Dataset.from_tensor_slices((x, y)).take(0).batch(8)}.get(
        arguments.pop("data", None), (x, y)
    )
    weights = [np.array(v) for v in model.weights]
    with pytest.raises(error, match=message):
        find_learning_rate(model, data, verbose=0, **arguments)
    for before, variable in zip(weights, model.weights, strict=True):
        np.testing.assert_array_equal(before, np.array(variable))
    assert getattr(model, "optimizer", None) is None or not model.optimizer.built


def test_finder_shows_a_progress_bar_when_verbose(capsys):
    x, y, _ = least_squares(n=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # five steps up to 1e-3 end still falling
        find_learning_rate(linear_model(), (x, y), num_steps=5, max_learning_rate=1e-3, verbose=1)
    output = capsys.readouterr().out
    assert "5/5" in output and "learning_rate" in output and "smoothed_loss" in output


# --- the plot ------------------------------------------------------------------------


def test_plot_draws_on_a_log_axis_and_saves_atomically(tmp_path, least_squares_run):
    *_, result = least_squares_run
    figure = result.plot()
    assert isinstance(figure, Figure)
    axes = figure.axes[0]
    assert axes.get_xscale() == "log"
    assert "Learning rate" in axes.get_xlabel() and axes.get_ylabel() == "Loss"
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert any(label.startswith("suggestion") for label in labels)
    assert any(label.startswith("diverged") for label in labels)

    folder = tmp_path / "plots"  # created on the way
    result.plot(folder / "lr_find.png")
    result.plot(str(folder / "curve"))  # no suffix: still a PNG, under that exact name
    assert sorted(os.listdir(folder)) == ["curve", "lr_find.png"]  # no temporary files left
    for name in ("curve", "lr_find.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_works_for_a_short_curve_that_never_diverged():
    result = LearningRateFinderResult(
        learning_rates=np.geomspace(1e-3, 1e-1, 5),
        losses=np.array([2.0, 1.9, 1.5, 1.2, 1.1]),
        raw_losses=np.array([2.0, 1.8, 1.2, 1.0, 1.0]),
        suggestion=1e-2,
    )
    axes = result.plot().axes[0]
    assert axes.get_xscale() == "log"
    assert not any(t.get_text().startswith("diverged") for t in axes.get_legend().get_texts())


def test_docstring_examples():
    results = doctest.testmod(schedules, verbose=False)
    assert results.failed == 0 and results.attempted >= 5
    assert doctest.testmod(lr_finder, verbose=False).failed == 0
