"""The best validation epoch of either phase is the model `fine_tune` leaves (issue "Fast and accurate by default")."""

import numpy as np
from helpers import WeightSnapshots, image_arrays, tiny_classifier

import keras_transfer as kt
from keras_transfer.finetune.best_weights import validation_score


def test_a_fine_tuning_phase_that_hurts_validation_is_undone():
    images, labels = image_arrays(32)
    train, validation = (images[:24], labels[:24]), (images[24:], labels[24:])
    model = tiny_classifier()
    # A learning rate that wrecks the fine-tuning phase.
    recipe = kt.IMAGE_RECIPE.replace(
        head_epochs=3,
        finetune_epochs=2,
        cache_features=False,
        unfreeze="all",
        finetune_optimizer="sgd",
        finetune_learning_rate=50.0,
    )
    snapshots = WeightSnapshots()
    history = model.fine_tune(train, validation, recipe=recipe, batch_size=8, verbose=0, callbacks=[snapshots])
    val_accuracy = history.merged()["val_accuracy"]
    assert history.best["phase"] == "head" and history.best["epoch"] <= 3
    assert history.best["val_accuracy"] == max(val_accuracy[:3]) >= max(val_accuracy[3:])
    # The model is left with the weights of that head-phase epoch, not the wrecked ones.
    best = snapshots.weights[history.best["epoch"] - 1]
    assert not all(np.array_equal(a, b) for a, b in zip(snapshots.weights[-1], best))  # fine-tuning moved them
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), best))
    _, accuracy = model.evaluate(*validation, verbose=0)
    assert np.isclose(accuracy, history.best["val_accuracy"])


def test_without_validation_data_the_last_weights_stay():
    images, labels = image_arrays(16)
    history = tiny_classifier().fine_tune(
        (images, labels), recipe=kt.IMAGE_RECIPE.replace(head_epochs=1, finetune_epochs=1), batch_size=8, verbose=0
    )
    assert history.best is None


def test_validation_score_prefers_accuracy_then_loss():
    assert validation_score({"val_accuracy": 0.9, "val_loss": 0.5}) > validation_score(
        {"val_accuracy": 0.8, "val_loss": 0.1}
    )
    assert validation_score({"val_accuracy": 0.9, "val_loss": 0.2}) > validation_score(
        {"val_accuracy": 0.9, "val_loss": 0.3}
    )
    assert validation_score({"val_loss": 0.2}) > validation_score({"val_loss": 0.3})
    assert validation_score({"loss": 0.2}) is None and validation_score({"val_loss": float("nan")}) is None
