"""Tests of keras_transfer.deploy.tfmot.optimize: QAT, pruning and clustering through the tf_keras bridge."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import image_dataset, tiny_classifier

from keras_transfer.deploy.tfmot import optimize

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
    result = optimize.cluster(model, dataset, clusters=8, epochs=1, init="linear", verbose=0)
    assert set(result.unique_values) == {"conv1", "conv2", "conv3", "predictions"}
    assert all(count <= 8 for count in result.unique_values.values())
    path = result.to_tflite(tmp_path / "clustered.tflite")
    assert json.load(open(path + ".json"))["quantization"]["method"] == "cluster"


@pytest.mark.parametrize(
    "call, message",
    [
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
