"""Mixed precision within an accuracy budget (`deploy.mixed_precision`): int4 on the layers that can take it."""

import json
import os

import numpy as np
import pytest
from helpers import trained_tiny_classifier

from keras_transfer.deploy import export as ex
from keras_transfer.deploy.litert_quantizer import quantizable_layers
from keras_transfer.deploy.mixed_precision import export_mixed_precision
from keras_transfer.deploy.quantization import MIXED_MODE, Quantization


@pytest.fixture(scope="module")
def trained():
    model, _, images, labels = trained_tiny_classifier()
    return model, images, labels


def test_layers_with_weights_are_listed_with_their_scopes(trained, tmp_path):
    model = trained[0]
    ex.export(model, tmp_path / "float.tflite")
    layers = quantizable_layers(tmp_path / "float.tflite")
    assert [layer.op for layer in layers] == ["CONV_2D", "CONV_2D", "CONV_2D", "FULLY_CONNECTED"]
    assert all(layer.scope.endswith(";") and layer.parameters > 0 and layer.int4_capable for layer in layers)
    # One layer at int4: smaller than all int8, larger than all int4.
    sizes = {}
    for name, quantization in (
        ("int8", "weight_only_wi8_afp32"),
        ("one", Quantization.mixed([max(layers, key=lambda layer: layer.parameters).scope])),
        ("int4", "weight_only_wi4_afp32"),
    ):
        sizes[name] = ex.export(model, tmp_path / f"{name}.tflite", quantization=quantization).size_bytes
    assert sizes["int4"] < sizes["one"] < sizes["int8"]
    assert ex.read_metadata(tmp_path / "one.tflite")["quantization"]["mode"] == MIXED_MODE


@pytest.mark.parametrize("budget", [0.0, 0.5])
def test_the_search_keeps_within_its_budget_and_explains(trained, tmp_path, budget):
    model, images, labels = trained
    choice = export_mixed_precision(
        model,
        tmp_path / "mixed.tflite",
        (images[24:], labels[24:]),
        selection_data=(images[:24], labels[:24]),
        max_accuracy_drop=budget,
        sensitivity_examples=16,
    )
    assert len(choice.sensitivities) == 4
    assert [entry["error"] for entry in choice.sensitivities] == sorted(
        entry["error"] for entry in choice.sensitivities
    )
    assert choice.int4_layers == [entry["scope"] for entry in choice.sensitivities][: len(choice.int4_layers)]
    chosen = [step for step in choice.tried if step["int4_layers"] == len(choice.int4_layers)]
    assert not chosen or chosen[0]["within"]
    assert all(step["within"] for step in choice.tried if step["int4_layers"] < len(choice.int4_layers))
    if budget == 0.5:
        assert len(choice.int4_layers) == 4  # half the accuracy may go: every layer int4
    metadata = ex.read_metadata(tmp_path / "mixed.tflite")["quantization"]
    assert metadata == {"mode": MIXED_MODE, "int4_layers": choice.int4_layers}
    assert choice.result.check.num_examples == 24
    assert "int4-capable layers at int4" in choice.explanation() and "selection accuracy" in choice.explanation()
    assert sorted(os.listdir(tmp_path)) == ["mixed.tflite", "mixed.tflite.json"]
    assert np.isfinite(choice.result.check.max_abs_difference)


def test_the_budget_search_takes_mixed_precision_as_a_candidate(trained, tmp_path):
    model, images, labels = trained
    choice = ex.export_within_budget(
        model, tmp_path / "chosen.tflite", (images, labels), max_accuracy_drop=0.5,
        candidates=("weight_only_wi8_afp32", "mixed"),
    )  # fmt: skip
    assert choice.chosen == "mixed"
    assert "4 of 4 int4-capable layers at int4" in choice.explanation()
    assert ex.read_metadata(tmp_path / "chosen.tflite")["quantization"]["mode"] == MIXED_MODE
    with pytest.raises(ValueError, match="Unknown candidates"):
        ex.export_within_budget(model, tmp_path / "x.tflite", (images, labels), candidates=("int3",))


def test_the_search_can_consider_only_the_largest_layers(trained, tmp_path):
    model, images, labels = trained
    choice = export_mixed_precision(
        model, tmp_path / "largest.tflite", (images, labels), max_accuracy_drop=0.5, max_layers=2,
        sensitivity_examples=8,
    )  # fmt: skip
    ex.export(model, tmp_path / "float.tflite")
    largest = sorted((layer.parameters for layer in quantizable_layers(tmp_path / "float.tflite")), reverse=True)
    assert sorted((entry["parameters"] for entry in choice.sensitivities), reverse=True) == largest[:2]
    assert len(choice.int4_layers) == 2
    with pytest.raises(ValueError, match="max_layers"):
        export_mixed_precision(model, tmp_path / "x.tflite", (images, labels), max_layers=0)


def test_cli_budget_takes_the_candidates_given(trained, tmp_path, capsys, make_image_folder):
    from keras_transfer.cli import main

    model_path = tmp_path / "model.keras"
    trained[0].save(model_path)
    images = make_image_folder(classes=("dark", "bright"), per_class=6)
    budget = ["export", str(model_path), "--eval-data", images, "--max-accuracy-drop", "0.5"]
    output = tmp_path / "chosen.tflite"
    assert main([*budget, "--candidates", "dynamic,mixed", "--output", str(output), "--json"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed.strip().splitlines()[-1])
    assert [candidate["quantization"] for candidate in summary["candidates"]] == ["dynamic", "mixed"]
    assert summary["quantization"]["mode"] == MIXED_MODE and "layers int4" in printed
    for argv, message in [
        ([*budget, "--candidates", "int3,mixed"], "--candidates: unknown int3"),
        (["export", str(model_path), "--candidates", "mixed"], "--candidates needs --max-accuracy-drop"),
    ]:
        assert main([*argv, "--output", str(tmp_path / "x.tflite")]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "x.tflite").exists()
