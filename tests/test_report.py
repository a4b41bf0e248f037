"""Tests for keras_transfer.deploy.reports: measured reports on exported models."""

import json

import numpy as np
from helpers import image_dataset, tiny_classifier

from keras_transfer import version
from keras_transfer.deploy import export as ex
from keras_transfer.deploy import reports as rp


def test_reports_measure_size_accuracy_latency_and_compare(tmp_path):
    model = tiny_classifier(3)
    dataset, images, labels = image_dataset(12, num_classes=3, batch_size=4)
    ex.export(model, tmp_path / "float.tflite")
    ex.export(model, tmp_path / "fp16.tflite", quantization="float16")
    reference = rp.measure_export(tmp_path / "float.tflite", model, dataset, name="float32", repeats=5)
    half = rp.measure_export(tmp_path / "fp16.tflite", model, (images, labels), repeats=5).relative_to(reference)

    assert reference.num_examples == half.num_examples == 12
    assert reference.accuracy == reference.tflite_accuracy and reference.accuracy_drop == 0.0
    assert reference.parameters == model.count_params() and 0.0 <= reference.sparsity < 0.05
    assert reference.latency_ms > 0 and reference.latency_threads == 1
    assert reference.extra["latency_cpu"] == {"cpu": version.cpu_model(), "cpu_flags": version.cpu_flags()}
    assert 0.4 < half.size_ratio < 0.8 and half.latency_ratio > 0 and half.name == "fp16.tflite"

    table = rp.format_table([reference, half])
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["model", "size", "MB"] and lines[2].startswith("float32")
    assert len(lines) == 4 and "fp16.tflite" in lines[3]

    path = rp.write_reports([reference, half], tmp_path / "report.json", dataset="tiny")
    saved = json.loads(path.read_text())
    assert saved["dataset"] == "tiny" and [m["name"] for m in saved["models"]] == ["float32", "fp16.tflite"]
    assert saved["models"][1]["size_ratio"] == half.size_ratio

    untimed = rp.measure_export(tmp_path / "fp16.tflite", model, dataset, repeats=0)
    assert untimed.latency_ms is None and untimed.tflite_accuracy == half.tflite_accuracy


def test_sparsity_counts_zero_kernel_values_only():
    model = tiny_classifier(2)
    kernel_layers = [
        layer for layer in model.backbone.layers + model.layers if any(len(w.shape) >= 2 for w in layer.weights)
    ]
    for layer in kernel_layers:
        layer.set_weights([np.zeros_like(w) if w.ndim >= 2 else w + 1 for w in layer.get_weights()])
    assert rp.weight_sparsity(model) == 1.0
