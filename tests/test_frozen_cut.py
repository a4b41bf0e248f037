"""Fine-tuning the top of a backbone on the cached output of its frozen bottom, and the validation gate."""

import keras
import numpy as np
from helpers import image_arrays, image_dataset, tiny_classifier, weights_by_layer

import keras_transfer as kt
from keras_transfer.finetune.best_weights import BestWeights, StopWhenNotBest
from keras_transfer.finetune.frozen_cut import FrozenCut


def twin_classifiers():
    first, second = tiny_classifier(), tiny_classifier()
    second.set_weights(first.get_weights())
    return first, second


def test_the_cut_is_the_highest_single_tensor_below_the_layers_that_train():
    model = tiny_classifier()
    # top=4 opens bn3 (stays frozen: BatchNormalization), relu3, and conv3 is below it: relu2 is the cut.
    cut = FrozenCut.find(model, from_layer="conv3")
    assert cut.layer_name == "relu2"
    images, _ = image_arrays(4)
    np.testing.assert_allclose(cut.top(cut.bottom(images)), model(images), atol=1e-5)
    head_features = keras.Model(model.inputs, model.head_features)(images)
    np.testing.assert_allclose(cut.to_head_features(cut.bottom(images)), head_features, atol=1e-5)
    # The top shares the model's layers: it trains the model.
    assert {id(w) for w in cut.top.weights} <= {id(w) for w in model.weights}


def test_no_cut_when_everything_trains_or_inside_a_residual_block():
    assert FrozenCut.find(tiny_classifier()) is None  # the whole backbone
    assert FrozenCut.find(tiny_classifier(), from_layer="conv1") is None
    inputs = keras.Input((32, 32, 3))
    stem = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    inner = keras.layers.Conv2D(8, 3, padding="same", name="inner")(stem)
    top = keras.layers.Conv2D(8, 3, padding="same", name="top")(inner)
    residual = keras.layers.Add(name="add")([stem, top])
    backbone = keras.Model(inputs, residual, name="residual")
    model = kt.ImageClassifier(backbone, head=kt.Head.multiclass(2), preprocessor="unit")
    # Opening "top": "inner" is no cut ("add" also reads "stem"), "stem" is.
    assert FrozenCut.find(model, names=["top"]).layer_name == "stem"


def test_fine_tuning_above_the_cut_equals_fine_tuning_the_whole_model_for_the_same_order():
    dataset, _, _ = image_dataset(n=24, batch_size=8)
    uncached, cached = twin_classifiers()
    for model in (uncached, cached):
        model.freeze_backbone()
        model.unfreeze_backbone(from_layer="conv3")
        model.compile("sgd", learning_rate=0.05)
    uncached.fit(dataset, epochs=3, verbose=0)

    cut = FrozenCut.find(cached, from_layer="conv3")
    cache = kt.FeatureCache.compute(cut.bottom, dataset, verbose=0)
    cut.top.compile(optimizer=cached.optimizer, loss=cached.loss)
    cut.top.fit(cache.dataset(8, shuffle=False), steps_per_epoch=cache.steps(8), epochs=3, verbose=0)

    trained, expected = weights_by_layer(cached.backbone), weights_by_layer(uncached.backbone)
    assert not np.allclose(expected["conv3"][0], weights_by_layer(tiny_classifier().backbone)["conv3"][0])
    for name in expected:
        for a, b in zip(expected[name], trained[name]):
            np.testing.assert_allclose(a, b, atol=1e-5)
    images, _ = image_arrays(4)
    np.testing.assert_allclose(uncached.predict(images, verbose=0), cached.predict(images, verbose=0), atol=1e-5)


def test_transform_runs_a_model_over_every_cached_copy_in_order(tmp_path):
    dataset, _, labels = image_dataset(n=10, batch_size=4)
    model = tiny_classifier()
    cut = FrozenCut.find(model, from_layer="conv3")
    below = kt.FeatureCache.compute(cut.bottom, dataset, copies=2, directory=str(tmp_path), verbose=0)
    above = below.transform(cut.to_head_features, directory=str(tmp_path), verbose=0)
    direct = kt.FeatureCache.compute(keras.Model(model.inputs, model.head_features), dataset, verbose=0)
    assert above.features.shape == (2, 10, 16)
    np.testing.assert_array_equal(above.labels, labels)
    np.testing.assert_allclose(above.features[1], direct.features[0], atol=1e-5)


def test_cached_fine_tune_trains_the_opened_layers_and_reads_the_data_once():
    train, _, _ = image_dataset(n=16, batch_size=8, shuffle=True)
    validation, _, _ = image_dataset(n=8, batch_size=8, seed=1)
    model = tiny_classifier()
    before = weights_by_layer(model.backbone)
    history = model.fine_tune(
        train,
        validation,
        head_epochs=1,
        finetune_epochs=2,
        unfreeze="conv3",
        cache_features=True,
        finetune_learning_rate=1e-2,
        verbose=0,
    )
    after = weights_by_layer(model.backbone)
    assert np.array_equal(before["conv2"][0], after["conv2"][0])
    assert history.finetune.epoch[0] == 1 and "val_accuracy" in history.finetune.history
    assert history.seconds["below_cut"] > 0 and history.seconds["below_cut_validation"] > 0
    if history.best["phase"] == "finetune":
        assert not np.array_equal(before["conv3"][0], after["conv3"][0])


class _Scripted(keras.callbacks.Callback):
    """Reports the validation accuracies it is given, one per epoch."""

    def __init__(self, accuracies):
        super().__init__()
        self.accuracies = list(accuracies)

    def on_epoch_end(self, epoch, logs=None):
        logs["val_accuracy"] = self.accuracies[epoch]
        logs["val_loss"] = 1.0 - self.accuracies[epoch]


def gated_fit(accuracies, patience, epochs):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    best = BestWeights(model)
    best.phase = "finetune"
    best.on_epoch_end(-1, {"val_accuracy": 0.8, "val_loss": 0.2})  # the head phase's best, epoch 0
    gate = StopWhenNotBest(best, patience)
    x, y = np.zeros((4, 2)), np.zeros((4, 1))
    history = model.fit(x, y, epochs=epochs, verbose=0, callbacks=[_Scripted(accuracies), best, gate])
    return len(history.epoch), gate.message


def test_the_gate_stops_fine_tuning_once_it_no_longer_beats_the_best_epoch():
    assert gated_fit([0.7, 0.9, 0.95], patience=1, epochs=3) == (
        1,
        "fine-tuning stopped after epoch 1 (counted over both phases): epoch 1 did not beat the best "
        "validation epoch so far, the head's starting weights (epoch 0)",
    )
    assert gated_fit([0.85, 0.9, 0.95], patience=1, epochs=3) == (3, None)
    assert gated_fit([0.85, 0.84, 0.95, 0.9], patience=2, epochs=4) == (4, None)
    assert gated_fit([0.85, 0.84, 0.83, 0.99], patience=2, epochs=4) == (
        3,
        "fine-tuning stopped after epoch 3 (counted over both phases): 2 epochs in a row did not beat the best "
        "validation epoch so far, epoch 1 (finetune phase)",
    )


def test_fine_tune_reports_a_stopped_fine_tuning_phase():
    train, _, _ = image_dataset(n=16, batch_size=8, shuffle=True)
    validation, _, _ = image_dataset(n=8, batch_size=8, seed=1)
    model = tiny_classifier()
    # A fine-tuning rate of 0 changes nothing, so no fine-tuning epoch beats the head phase's best.
    history = model.fine_tune(
        train,
        validation,
        head_epochs=2,
        finetune_epochs=4,
        finetune_learning_rate=0.0,
        finetune_patience=1,
        unfreeze="conv3",
        cache_features=True,
        verbose=0,
    )
    assert len(history.finetune.epoch) == 1
    assert history.finetune_stopped.startswith("fine-tuning stopped after epoch 3")
    assert history.best["phase"] == "head"


def test_the_head_starts_from_a_logistic_regression_scored_as_epoch_zero():
    from sklearn.linear_model import LogisticRegression

    from keras_transfer.finetune.linear_probe import fit_linear_probe

    train, _, _ = image_dataset(n=24, batch_size=8, shuffle=True)
    validation, _, _ = image_dataset(n=8, batch_size=8, seed=1)
    model = tiny_classifier()
    extractor = keras.Model(model.inputs, model.head_features)
    cache = kt.FeatureCache.compute(extractor, model.labelled_dataset(train, 8), verbose=0)
    assert fit_linear_probe(model.head_model(), "multiclass", cache)
    # Two softmax units hold scikit-learn's one logit split in halves: the same probabilities.
    expected = LogisticRegression(max_iter=1000).fit(cache.features[0], cache.labels)
    np.testing.assert_allclose(
        model.head_model().predict(cache.features[0], verbose=0)[:, 1],
        expected.predict_proba(cache.features[0])[:, 1],
        atol=1e-4,
    )
    # A head with hidden layers is not a logistic regression: left alone.
    deep = tiny_classifier(head=kt.Head.multiclass(2, hidden_units=(4,)))
    assert not fit_linear_probe(deep.head_model(), "multiclass", cache)

    # In fine_tune: a head rate of 0 keeps the start, and the start is the epoch kept.
    model = tiny_classifier()
    history = model.fine_tune(
        train,
        validation,
        head_epochs=2,
        finetune_epochs=0,
        head_learning_rate=0.0,
        cache_features=True,
        probe_start=True,
        verbose=0,
    )
    assert history.best["epoch"] == 0 and history.best["phase"] == "head"
    assert history.seconds["linear_probe"] > 0
    head_features = keras.Model(model.inputs, model.head_features)
    features = kt.FeatureCache.compute(head_features, model.labelled_dataset(train, 8), verbose=0)
    expected = LogisticRegression(max_iter=1000).fit(features.features[0], features.labels)
    images = image_arrays(8)[0]
    np.testing.assert_allclose(
        model.predict(images, verbose=0)[:, 1],
        expected.predict_proba(head_features.predict(images, verbose=0))[:, 1],
        atol=1e-3,
    )


def test_the_summary_line_names_the_logistic_regression_start():
    from keras_transfer.cli.common import best_epoch_line

    line = best_epoch_line({"phase": "head", "epoch": 0, "val_accuracy": 0.9921, "val_loss": 0.03})
    assert line.startswith("Kept the head's starting weights (a logistic regression") and "0.9921" in line
    assert best_epoch_line({"phase": "finetune", "epoch": 7, "val_accuracy": 0.5}).startswith(
        "Kept the weights of epoch 7 (fine-tuning phase)"
    )


def test_validation_outputs_from_the_caches_equal_running_the_model():
    train, _, _ = image_dataset(n=16, batch_size=8, shuffle=True)
    validation, images, labels = image_dataset(n=8, batch_size=4, seed=1)
    for options in (dict(unfreeze="conv3", finetune_epochs=1), dict(finetune_epochs=0)):
        model = tiny_classifier()
        history = model.fine_tune(train, validation, head_epochs=1, cache_features=True, verbose=0, **options)
        cached_labels, outputs = history.validation_outputs
        np.testing.assert_array_equal(cached_labels, labels)  # the validation data's order
        np.testing.assert_allclose(outputs, model.predict(images, verbose=0), atol=1e-5)
        shortcut = kt.evaluation.evaluate_model(model, validation, predictions=history.validation_outputs)
        assert shortcut.to_dict() == kt.evaluation.evaluate_model(model, validation).to_dict()
    # Fine-tuning the whole network outside the cache: the cached head features no longer hold.
    history = tiny_classifier().fine_tune(
        train, validation, head_epochs=1, finetune_epochs=1, unfreeze="all", cache_features=True, verbose=0
    )
    assert history.validation_outputs is None
