"""Tests of keras_transfer.deploy.tfmot.bridge: Keras 3 models rebuilt as flat tf_keras models."""

import os

import keras
import numpy as np
import pytest
from helpers import image_arrays, tiny_backbone

import keras_transfer as kt
from keras_transfer.deploy.tfmot import bridge


def _residual_model():
    """Conv/BN/ReLU with a residual Add, a shared Dense and a Concatenate."""
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(6.0, name="relu6")(x)
    shortcut = keras.layers.Conv2D(8, 1, name="shortcut")(inputs)
    x = keras.layers.Add(name="add")([x, shortcut])
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    shared = keras.layers.Dense(4, activation="relu", name="shared")
    joined = keras.layers.Concatenate(name="concat")(
        [shared(pooled), shared(keras.layers.Rescaling(0.5, name="half")(pooled))]
    )
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(joined)
    return keras.Model(inputs, outputs, name="residual")


def _randomize_batch_norm(model, seed=0):
    """Non-trivial gamma, beta and moving statistics, so inference mode is visible."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, channels),
                    rng.normal(0, 0.3, channels),
                    rng.normal(0, 0.5, channels),
                    rng.uniform(0.5, 2.0, channels),
                ]
            )


def test_functional_model_with_shared_and_multi_input_layers():
    model = _residual_model()
    _randomize_batch_norm(model)
    images, _ = image_arrays(8, size=16)
    result = bridge.to_tf_keras(model, check_data=images)
    assert result.max_abs_difference < 1e-5
    tf_model = result.model
    assert type(tf_model).__module__.startswith("tf_keras")
    assert [layer.name for layer in tf_model.layers if layer.weights] == ["conv", "bn", "shortcut", "shared", "out"]
    np.testing.assert_allclose(tf_model.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5)


def test_image_classifier_is_flattened_into_one_tf_keras_model():
    model = kt.ImageClassifier("mobilenet_v2", num_classes=3, weights=None, image_size=32)
    _randomize_batch_norm(model)
    result = bridge.to_tf_keras(model)
    assert result.flattened == [model.backbone.name]
    assert not any(hasattr(layer, "layers") for layer in result.model.layers)  # nothing nested
    assert result.model.input.name.startswith("image")
    assert result.model.get_layer("Conv1").get_weights()[0].shape == (3, 3, 3, 32)
    assert result.max_abs_difference < 1e-4


@pytest.mark.parametrize("fold_batch_norm", [False, True])
def test_nested_backbone_keeps_batch_norm_in_inference_mode(fold_batch_norm):
    model = kt.ImageClassifier(tiny_backbone(), head=kt.Head.multiclass(3, dropout=0.0), preprocessor="unit")
    _randomize_batch_norm(model)
    images, _ = image_arrays(8)
    result = bridge.to_tf_keras(model, check_data=images, fold_batch_norm=fold_batch_norm)
    assert result.max_abs_difference < 1e-5
    # In training mode too, the backbone's BatchNormalization uses its moving
    # statistics, as in Keras 3 where the backbone is called with training=False.
    training_outputs = np.asarray(result.model(images, training=True))
    np.testing.assert_allclose(training_outputs, model.predict(images, verbose=0), atol=1e-5)
    if fold_batch_norm:
        assert result.folded == {"bn1": "conv1", "bn2": "conv2", "bn3": "conv3"}
        assert "bn1" not in [layer.name for layer in result.model.layers]
    else:
        assert not result.model.get_layer("bn1").trainable


def test_top_level_batch_norm_still_trains():
    inputs = keras.Input((4,))
    x = keras.layers.BatchNormalization(name="bn")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(x))
    result = bridge.to_tf_keras(model, fold_batch_norm=True)
    assert result.folded == {}
    assert result.model.get_layer("bn").trainable


def test_unsupported_layers_are_all_named_before_any_work():
    class Doubling(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((4,))
    x = Doubling(name="doubling")(inputs)
    dense = keras.layers.Dense(2, name="adapted")
    outputs = dense(x)
    dense.enable_lora(2)
    model = keras.Model(inputs, outputs)
    with pytest.raises(bridge.UnsupportedLayerError) as error:
        bridge.to_tf_keras(model)
    message = str(error.value)
    assert "doubling" in message and "Doubling" in message
    assert "adapted" in message and "LoRA" in message


def test_refuses_what_is_not_a_built_keras_3_model():
    with pytest.raises(ValueError, match="Keras 3 model"):
        bridge.to_tf_keras("model.keras")


def test_keras_3_still_works_after_importing_tfmot():
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    assert bridge.tfmot().quantization.keras.quantize_model
    assert os.environ.get("TF_USE_LEGACY_KERAS") == before
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(np.ones((8, 3)), np.zeros(8), epochs=1, verbose=0)
    assert type(model).__module__.startswith("keras")
    assert np.isfinite(history.history["loss"][0])
