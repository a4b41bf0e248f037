"""`StopOnNaN`: a loss that turns NaN stops training and keeps the last good weights."""

import keras
import numpy as np
import pytest
from helpers import WeightSnapshots, image_arrays, tiny_classifier

import keras_transfer as kt
from keras_transfer.finetune.divergence import StopOnNaN


def _regression(seed=0):
    keras.utils.set_random_seed(seed)
    x = np.random.default_rng(seed).normal(0, 100, (64, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(1e-6), "mse")
    return model, x, y


def test_nan_loss_stops_training_and_restores_the_last_good_epoch():
    model, x, y = _regression()
    # A sane first epoch, then a learning rate that blows the weights up.
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch: 1e-6 if epoch == 0 else 1e6)
    snapshots = WeightSnapshots()
    stop = StopOnNaN(phase="head")
    with pytest.warns(UserWarning, match="became (NaN|infinite) in the head phase at epoch 2"):
        history = model.fit(x, y, batch_size=8, epochs=5, callbacks=[schedule, stop, snapshots], verbose=0)
    assert stop.stopped and stop.restored_epoch == 1
    assert len(history.history["loss"]) == 2  # stopped in the second epoch
    assert "restored to the end of epoch 1" in stop.message and "--head-lr" in stop.message
    for restored, good in zip(model.get_weights(), snapshots.weights[0]):
        assert np.all(np.isfinite(restored)) and np.array_equal(restored, good)
    assert np.all(np.isfinite(model.predict(x, verbose=0)))


def test_nan_in_the_first_epoch_restores_the_starting_weights():
    model, x, y = _regression(1)
    start = model.get_weights()
    model.optimizer.learning_rate.assign(1e6)
    stop = StopOnNaN()
    with pytest.warns(UserWarning, match="at epoch 1, batch"):
        model.fit(x, y, batch_size=8, epochs=3, callbacks=[stop], verbose=0)
    assert stop.stopped and stop.restored_epoch == 0 and "the start of training" in stop.message
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), start))


def test_a_finite_run_is_left_alone():
    model, x, y = _regression(2)
    stop = StopOnNaN()
    history = model.fit(x, y, batch_size=8, epochs=2, callbacks=[stop], verbose=0)
    assert not stop.stopped and stop.message is None and len(history.history["loss"]) == 2


def test_fine_tune_stops_a_diverging_head_phase_and_skips_fine_tuning():
    model = tiny_classifier()
    images, labels = image_arrays(32)
    recipe = kt.IMAGE_RECIPE.replace(
        head_epochs=3, finetune_epochs=2, optimizer="sgd", head_learning_rate=1e30, early_stopping=None
    )
    with pytest.warns(UserWarning, match="in the head phase at epoch 1"):
        history = model.fine_tune((images * 1e15, labels), recipe=recipe, batch_size=8, verbose=0)
    assert history.diverged and "head phase" in history.diverged
    assert history.finetune is None  # nothing trains after a divergence
    assert all(np.all(np.isfinite(weight)) for weight in model.get_weights())
    assert np.all(np.isfinite(model.predict(images, verbose=0)))
