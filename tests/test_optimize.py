"""Tests of keras_transfer.deploy.tfmot.optimize: QAT, pruning and clustering through the tf_keras bridge."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import image_dataset, tiny_classifier

from keras_transfer.deploy.tfmot import low_bit, optimize

CLASS_NAMES = ["dark", "mid", "bright"]


def _interpreter(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter


def _data(size=32, n=48):
    dataset, images, labels = image_dataset(n, size=size, num_classes=3, class_names=CLASS_NAMES, batch_size=16)
    return dataset, images, labels


def _decisive_classifier(images, labels):
    """A tiny ImageClassifier with a nearest-class-mean head: clear, varied predictions."""
    model = tiny_classifier(3, class_names=CLASS_NAMES)
    features = model.feature_extractor().predict(images, verbose=0)
    means = np.stack([features[labels == label].mean(0) for label in range(3)])
    logits = features @ means.T - 0.5 * (means**2).sum(1)
    scale = 8.0 / np.ptp(logits)  # a few units between the classes' logits
    model.get_layer("predictions").set_weights([scale * means.T, -0.5 * scale * (means**2).sum(1)])
    return model


def test_quantization_aware_training_exports_int8(tmp_path):
    dataset, images, labels = _data()
    model = _decisive_classifier(images, labels)
    result = optimize.quantization_aware(model, dataset, epochs=1, verbose=0)
    assert result.method == "quantization_aware" and set(result.history) >= {"loss", "accuracy"}
    assert type(result.model).__module__.startswith("tf_keras")
    assert result.bridge.flattened == [model.backbone.name]
    assert result.bridge.folded == {"bn1": "conv1", "bn2": "conv2", "bn3": "conv3"}

    path = result.to_tflite(tmp_path / "qat.tflite")
    dtypes = {np.dtype(detail["dtype"]) for detail in _interpreter(path).get_tensor_details()}
    assert np.dtype("int8") in dtypes
    assert len(set(result.model.predict(images, verbose=0).argmax(-1))) > 1  # not a constant answer
    check = result.check(path, dataset)
    assert check.top1_agreement >= 0.9
    with open(path + ".json") as file:
        metadata = json.load(file)
    assert metadata["class_names"] == CLASS_NAMES
    assert metadata["quantization"]["mode"] == "int8"

    before = open(path, "rb").read()
    with pytest.raises(FileExistsError):
        result.to_tflite(path)
    assert open(path, "rb").read() == before


def test_calibrated_ranges_follow_the_data():
    model = tiny_classifier(3, class_names=CLASS_NAMES)
    dataset, _, _ = _data()
    result = optimize.quantization_aware(model, dataset, epochs=1, learning_rate=1e-6, verbose=0)
    # The preprocessing output ([0, 1] pixels) is quantized on its real range,
    # not on TF-MOT's initial [-6, 6].
    ranges = {
        weight.name.split("/")[-1].split(":")[0]: float(weight.numpy())
        for weight in result.model.get_layer("quant_preprocessing").weights
        if "output" in weight.name
    }
    assert ranges["output_min"] == pytest.approx(0.0, abs=1e-3)
    assert 0.8 < ranges["output_max"] <= 1.01


def test_pruning_reaches_the_sparsity_and_survives_export(tmp_path):
    model = tiny_classifier(3, class_names=CLASS_NAMES)
    dataset, _, _ = _data()
    result = optimize.prune(model, dataset, sparsity=0.5, epochs=2, verbose=0)
    assert result.sparsity == pytest.approx(0.5, abs=0.02)
    assert not any("prune" in layer.name for layer in result.model.layers)  # stripped

    path = result.to_tflite(tmp_path / "pruned.tflite")
    interpreter = _interpreter(path)
    computed = {index for op in interpreter._get_ops_details() for index in op["outputs"]}
    computed |= {detail["index"] for detail in interpreter.get_input_details()}
    kernels = [
        interpreter.get_tensor(detail["index"])
        for detail in interpreter.get_tensor_details()
        if detail["index"] not in computed
        and len(detail["shape"]) in (2, 4)
        and np.dtype(detail["dtype"]) == np.float32
    ]
    zeros = sum(np.sum(kernel == 0) for kernel in kernels) / sum(kernel.size for kernel in kernels)
    assert zeros == pytest.approx(0.5, abs=0.05)
    assert result.check(path, dataset).max_abs_difference < 1e-4


def test_a_backbone_frozen_for_the_head_phase_is_fine_tuned_too():
    model = tiny_classifier(3, class_names=CLASS_NAMES)
    model.freeze_backbone()  # as after fine_tune(finetune_epochs=0)
    dataset, _, _ = _data()
    before = model.backbone.get_layer("conv2").get_weights()[0]
    result = optimize.prune(model, dataset, sparsity=0.5, epochs=2, learning_rate=1e-2, verbose=0)
    after = result.model.get_layer("conv2").get_weights()[0]
    kept = after != 0
    assert 0.4 < 1 - kept.mean() < 0.6
    assert not np.allclose(after[kept], before[kept])  # the surviving weights trained
    clustered = optimize.cluster(model, dataset, clusters=4, epochs=1, init="linear", verbose=0)
    assert clustered.unique_values["conv2"] <= 4


def test_clustering_leaves_at_most_the_clusters(tmp_path):
    model = tiny_classifier(3, class_names=CLASS_NAMES)
    dataset, _, _ = _data()
    result = optimize.cluster(model, dataset, clusters=8, epochs=1, init="linear", layers="all", verbose=0)
    assert set(result.unique_values) == {"conv1", "conv2", "conv3", "predictions"}
    assert all(count <= 8 for count in result.unique_values.values())
    path = result.to_tflite(tmp_path / "clustered.tflite")
    assert json.load(open(path + ".json"))["quantization"]["method"] == "cluster"


@pytest.mark.parametrize("scheme, values_per_channel", [("binary", 2), ("ternary", 3), ("int4", 16)])
def test_low_bit_kernels_train_and_export_in_int4(tmp_path, scheme, values_per_channel):
    dataset, images, labels = _data()
    model = _decisive_classifier(images, labels)
    result = optimize.low_bit_weights(model, dataset, scheme=scheme, epochs=1, verbose=0)
    # The first convolution and the output layer keep their precision.
    assert result.low_bit_layers == {"conv2": 3 * 3 * 8 * 8, "conv3": 3 * 3 * 8 * 16}
    assert all(1 < count <= values_per_channel for count in result.unique_values.values())
    assert result.settings["bits"] == {"binary": 1, "ternary": 2, "int4": 4}[scheme]
    kernel = result.model.get_layer("conv2").get_weights()[0]
    np.testing.assert_allclose(kernel, low_bit.quantize_kernel(kernel, scheme).numpy(), atol=1e-6)

    path = result.to_tflite(tmp_path / f"{scheme}.tflite")
    check = result.check(path, dataset)
    # The int4 file holds exactly the trained values (int4's grid takes them), the rest int8.
    assert check.top1_agreement == 1.0 and check.max_abs_difference < 0.02
    quantization = json.load(open(path + ".json"))["quantization"]
    assert quantization["mode"] == "weight_only_mixed_wi4_wi8" and quantization["scheme"] == scheme
    assert len(quantization["int4_layers"]) == 2
    packed = result.bit_packed_size_bytes(path)
    saved = {"binary": 3 * (576 + 1152) // 8, "ternary": 2 * (576 + 1152) // 8, "int4": 0}[scheme]
    assert os.path.getsize(path) - packed == saved


def test_which_kernels_each_layer_choice_takes():
    model = tiny_classifier(3)
    bridged = optimize._bridge_for_fine_tuning(model, _data(n=16)[0]).model
    sizes = {"conv1": 3 * 3 * 3 * 8, "conv2": 3 * 3 * 8 * 8, "conv3": 3 * 3 * 8 * 16, "predictions": 16 * 3}
    assert optimize.chosen_kernels(bridged, "all") == sizes
    assert optimize.chosen_kernels(bridged, "all", min_size=100) == {"conv1": 216, "conv2": 576, "conv3": 1152}
    assert optimize.chosen_kernels(bridged, "inner") == {"conv2": 576, "conv3": 1152}
    # conv3 alone holds 2/3 of the inner weights, under LARGEST_SHARE (3/4): conv2 joins.
    assert optimize.chosen_kernels(bridged, "largest") == {"conv3": 1152, "conv2": 576}
    assert optimize.chosen_kernels(bridged, ["predictions"]) == {"predictions": 48}
    with pytest.raises(ValueError, match="Valid names: conv1, conv2, conv3, predictions"):
        optimize.chosen_kernels(bridged, "bn1")


def test_low_bit_kernel_values():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype("float32")
    magnitude = np.abs(kernel).reshape(-1, 5)
    binary = low_bit.quantize_kernel(kernel, "binary").numpy().reshape(-1, 5)
    np.testing.assert_allclose(np.abs(binary), np.broadcast_to(magnitude.mean(0), binary.shape), rtol=1e-6)
    assert np.all(np.sign(binary) == np.where(kernel.reshape(-1, 5) >= 0, 1, -1))
    ternary = low_bit.quantize_kernel(kernel, "ternary").numpy().reshape(-1, 5)
    zero = magnitude <= 0.7 * magnitude.mean(0)
    assert np.all((ternary == 0) == zero) and 0.2 < zero.mean() < 0.6
    np.testing.assert_allclose(np.abs(ternary).max(0), [m[~z].mean() for m, z in zip(magnitude.T, zero.T)], rtol=1e-6)
    # int4: LiteRT Quantizer's symmetric per-channel grid, max |w| / 7 per step.
    step = magnitude.max(0) / 7
    int4 = low_bit.quantize_kernel(kernel, "int4").numpy().reshape(-1, 5) / step
    np.testing.assert_allclose(int4, np.round(int4), atol=1e-4)
    assert int4.min() >= -8 and int4.max() <= 7


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda model, data: optimize.low_bit_weights(model, data, scheme="octal"), "Unknown low-bit scheme"),
        (lambda model, data: optimize.low_bit_weights(model, data, layers=["conv9"]), "conv9"),
        (lambda model, data: optimize.prune(model, data, sparsity=1.0), "sparsity"),
        (lambda model, data: optimize.prune(model, data, sparsity=0), "sparsity"),
        (lambda model, data: optimize.cluster(model, data, clusters=1), "clusters"),
        (lambda model, data: optimize.optimize(model, data, "distill"), "Unknown optimization method"),
        (lambda model, data: optimize.quantization_aware(model, data.take(0)), "empty"),
        (lambda model, data: optimize.quantization_aware("model.keras", data), "Keras 3 model"),
    ],
)
def test_bad_input_fails_before_training(call, message):
    model = tiny_classifier(3)
    dataset, _, _ = _data(n=16)
    with pytest.raises(ValueError, match=message):
        call(model, dataset)


def test_one_hot_labels_get_the_categorical_loss():
    model = tiny_classifier(3)
    dataset, images, labels = _data(n=16)
    one_hot = (images, keras.utils.to_categorical(labels, 3))
    result = optimize.cluster(model, one_hot, clusters=4, epochs=1, verbose=0)
    assert "categorical_accuracy" in result.history
