"""Tests for keras_transfer.models.heads.Head: layers, activations, losses, metrics, validation."""

import keras
import numpy as np
import pytest

from keras_transfer import Head


def head_model(head, feature_shape=(4, 4, 8)):
    inputs = keras.Input(feature_shape)
    return keras.Model(inputs, head.build(inputs))


FEATURES = np.random.default_rng(0).normal(size=(3, 4, 4, 8)).astype("float32")


@pytest.mark.parametrize(
    "head, outputs, activation, loss_class, from_logits, metric_names",
    [
        (Head.multiclass(3), 3, "softmax", keras.losses.SparseCategoricalCrossentropy, False, ["accuracy"]),
        (
            Head.multiclass(4),
            4,
            "softmax",
            keras.losses.SparseCategoricalCrossentropy,
            False,
            ["accuracy", "top3_accuracy"],
        ),
        (
            Head.multiclass(10),
            10,
            "softmax",
            keras.losses.SparseCategoricalCrossentropy,
            False,
            ["accuracy", "top5_accuracy"],
        ),
        (Head.multiclass(3, logits=True), 3, "linear", keras.losses.SparseCategoricalCrossentropy, True, ["accuracy"]),
        (Head.binary(), 1, "sigmoid", keras.losses.BinaryCrossentropy, False, ["accuracy", "auc"]),
        (Head.binary(logits=True), 1, "linear", keras.losses.BinaryCrossentropy, True, ["accuracy", "auc"]),
        (Head.multilabel(5), 5, "sigmoid", keras.losses.BinaryCrossentropy, False, ["accuracy", "auc"]),
        (Head.regression(2), 2, "linear", keras.losses.MeanSquaredError, None, ["mae", "rmse"]),
    ],
    ids=[
        "multiclass3",
        "multiclass4",
        "multiclass10",
        "multiclass_logits",
        "binary",
        "binary_logits",
        "multilabel",
        "regression",
    ],
)
def test_builders(head, outputs, activation, loss_class, from_logits, metric_names):
    model = head_model(head)
    assert model.output_shape == (None, outputs)
    dense = model.get_layer("predictions")
    assert dense.activation.__name__ == activation
    assert dense.dtype_policy.name == "float32"
    loss = head.loss()
    assert type(loss) is loss_class
    if from_logits is not None:
        assert loss.get_config()["from_logits"] is from_logits
    assert [metric.name for metric in head.metrics()] == metric_names
    assert head.is_classification == (head.task != "regression")

    values = model.predict(FEATURES, verbose=0)
    assert values.shape == (3, outputs)
    if activation == "softmax":
        np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-5)
    if activation == "sigmoid":
        assert np.all((values > 0) & (values < 1))


def test_classification_metrics_follow_logits():
    threshold = {True: 0.0, False: 0.5}
    for logits in (True, False):
        accuracy, auc = Head.multilabel(3, logits=logits).metrics()
        assert accuracy.threshold == threshold[logits]
        assert auc._from_logits is logits and auc.multi_label is True
    assert Head.binary().metrics()[1].multi_label is False


def test_loss_and_metrics_compile_and_train():
    head = Head.multilabel(3, dropout=0.0)
    model = head_model(head)
    model.compile("sgd", loss=head.loss(), metrics=head.metrics())
    targets = (np.random.default_rng(1).uniform(size=(3, 3)) > 0.5).astype("float32")
    logs = model.fit(FEATURES, targets, epochs=1, verbose=0).history
    assert set(logs) == {"loss", "accuracy", "auc"}


@pytest.mark.parametrize(
    "pooling, reduce",
    [
        ("mean", lambda x: x.mean(axis=(1, 2))),
        ("avg", lambda x: x.mean(axis=(1, 2))),  # 0.1.0's spelling of "mean"
        ("max", lambda x: x.max(axis=(1, 2))),
        ("flatten", lambda x: x.reshape(len(x), -1)),
    ],
)
def test_pooling_of_feature_maps(pooling, reduce):
    model = head_model(Head.multiclass(3, pooling=pooling))
    pooled = keras.Model(model.inputs, model.get_layer("head_pooling").output)
    np.testing.assert_allclose(pooled.predict(FEATURES, verbose=0), reduce(FEATURES), atol=1e-5)
    assert model.get_layer("predictions").kernel.shape[0] == reduce(FEATURES).shape[1]


@pytest.mark.parametrize(
    "pooling, layer", [("mean", keras.layers.GlobalAveragePooling1D), ("max", keras.layers.GlobalMaxPooling1D)]
)
def test_pooling_of_token_sequences(pooling, layer):
    model = head_model(Head.regression(1, pooling=pooling), feature_shape=(5, 8))
    assert isinstance(model.get_layer("head_pooling"), layer)


def test_vector_features_are_not_pooled():
    model = head_model(Head.regression(1), feature_shape=(8,))
    assert "head_pooling" not in [layer.name for layer in model.layers]
    assert model.output_shape == (None, 1)


def test_hidden_units_and_dropout():
    head = Head.multiclass(3, hidden_units=[16, 8], dropout=0.3, hidden_activation="tanh")
    model = head_model(head)
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [16, 8, 3]
    assert model.get_layer("head_dense_1").activation.__name__ == "tanh"
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert [layer.name for layer in dropouts] == ["head_dropout_1", "head_dropout_2", "head_dropout"]
    assert all(layer.rate == 0.3 for layer in dropouts)
    # Dropout is active only in training.
    assert not np.allclose(model(FEATURES, training=True), model(FEATURES, training=True))
    np.testing.assert_allclose(model(FEATURES, training=False), model(FEATURES, training=False))


def test_no_dropout_layers_when_rate_is_zero():
    model = head_model(Head.multiclass(3, hidden_units=[4], dropout=0.0))
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)


def test_one_pooling_vocabulary_with_the_old_image_spelling_accepted():
    assert Head.multiclass(3).pooling == "mean"
    assert Head.multiclass(3, pooling="avg") == Head.multiclass(3, pooling="mean")
    # Heads saved by keras_transfer 0.1.0 say "avg".
    old_config = {**Head.multiclass(3).get_config(), "pooling": "avg"}
    assert Head.from_config(old_config).pooling == "mean"


def test_config_round_trip():
    head = Head.multilabel(4, logits=True, pooling="max", dropout=0.1, hidden_units=[32])
    config = head.get_config()
    assert config["hidden_units"] == [32]
    assert Head.from_config(config) == head


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Head("ranking", 2), "Unknown head task 'ranking'"),
        (lambda: Head.multiclass(3, pooling="median"), "Unknown pooling 'median'"),
        (lambda: Head.multiclass(3, dropout=1.0), "dropout must be in"),
        (lambda: Head.multiclass(3, dropout=-0.1), "dropout must be in"),
        (lambda: Head.multiclass(1), "num_classes >= 2"),
        (lambda: Head.multiclass(None), "num_classes >= 2"),
        (lambda: Head("binary", 2), "exactly one output"),
        (lambda: Head.multilabel(0), "num_outputs must be >= 1"),
        (lambda: Head.regression(0), "num_outputs must be >= 1"),
        (lambda: Head("binary", 1, cosine_scale=10.0), "A cosine head is multiclass"),
        (lambda: Head.cosine(3, scale=0.0), "cosine_scale must be > 0"),
    ],
)
def test_invalid_heads_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_cosine_head_logits_are_scaled_cosines_to_the_class_vectors(tmp_path):
    """Head.cosine + set_class_vectors: softmax(scale * cos(features, vector_k)); saved, loaded, exported."""
    from tests.helpers import image_arrays, run_export_test, run_serialization_test, tiny_classifier

    head = Head.cosine(3, scale=12.0, logits=True)
    assert Head.from_config(head.get_config()) == head
    model = tiny_classifier(head=head)
    images, _ = image_arrays(n=6, num_classes=3)
    features = model.feature_extractor().predict(images, verbose=0)
    vectors = features[:3] * np.array([[1.0], [3.0], [0.5]], dtype="float32")  # lengths must not matter
    model.set_class_vectors(vectors)
    unit = lambda rows: rows / np.linalg.norm(rows, axis=1, keepdims=True)  # noqa: E731
    expected = 12.0 * unit(features) @ unit(vectors).T
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, rtol=1e-4, atol=1e-4)
    assert model.predict_classes(images[:3])[0].tolist() == [0, 1, 2]
    run_serialization_test(model, images, tmp_path / "cosine.keras")
    run_export_test(model, images, tmp_path / "cosine.tflite", atol=1e-3)
    with pytest.raises(ValueError, match="Expected 3 class vectors"):
        model.set_class_vectors(vectors[:2])
    with pytest.raises(ValueError, match="features, the head takes"):
        model.set_class_vectors(np.ones((3, 5)))
    with pytest.raises(ValueError, match="need a cosine head"):
        tiny_classifier(3).set_class_vectors(vectors)
