"""The LiteRT Quantizer as the second export engine: its recipes written, checked in the interpreter, and read back."""

import json
import os

import numpy as np
import pytest
from helpers import trained_tiny_classifier

import keras_transfer as kt
from keras_transfer.cli import EXIT_BAD_INPUT, main
from keras_transfer.deploy import checks, litert
from keras_transfer.deploy import export as ex
from keras_transfer.deploy.quantization import CALIBRATED_MODES, QUANTIZER_RECIPES, Quantization


def recipe_dtypes(recipe):
    """What a recipe's name says it leaves in the file: `wi4` int4 weights, `ai16` int16 activations, ..."""
    weights = "int4" if "_wi4_" in recipe else "int8"
    return weights, {"afp32": "float32", "ai8": "int8", "ai16": "int16"}[recipe.rsplit("_", 1)[1]]


@pytest.fixture(scope="module")
def trained():
    return trained_tiny_classifier()


def test_recipes_are_quantization_modes_with_their_engine():
    assert len(QUANTIZER_RECIPES) == 6 and {recipe_dtypes(recipe)[0] for recipe in QUANTIZER_RECIPES} == {
        "int4",
        "int8",
    }
    assert Quantization.get("dynamic_wi4_afp32").engine == "litert_quantizer"
    assert Quantization.get("dynamic").engine is None
    assert Quantization.calibrated("static_wi8_ai8", ([0], [0]), 5).get_config() == {
        "mode": "static_wi8_ai8",
        "num_samples": 5,
        "seed": 0,
        "io_dtype": "float32",
    }
    assert Quantization.calibrated("weight_only_wi4_afp32", ([0], [0])).representative_data is None
    with pytest.raises(ValueError, match=r"needs representative data: pass Quantization.litert\('static_wi8_ai16'"):
        Quantization.get("static_wi8_ai16")
    with pytest.raises(ValueError, match="Unknown LiteRT Quantizer recipe"):
        Quantization.litert("dynamic_wi2_afp32")


@pytest.mark.parametrize("recipe", QUANTIZER_RECIPES)
def test_each_recipe_exports_checked_in_the_interpreter(trained, tmp_path, recipe):
    model, dataset, images, labels = trained
    path = tmp_path / f"{recipe}.tflite"
    result = model.export_model(
        path, quantization=Quantization.calibrated(recipe, dataset, 12), check_data=(images, labels)
    )
    assert result.problem is None
    assert result.check.top1_agreement >= 0.9 and result.check.max_abs_difference < 0.1
    metadata = ex.read_metadata(path)
    assert metadata["quantization"]["mode"] == recipe
    if recipe in CALIBRATED_MODES:
        assert metadata["quantization"]["calibration_examples"] == 12
    runtime = kt.LiteRTModel(path)
    assert (runtime.quantization["weights"], runtime.quantization["activations"]) == recipe_dtypes(recipe)
    np.testing.assert_allclose(runtime.predict(images[:4]), model.predict(images[:4], verbose=0), atol=0.1)
    assert sorted(os.listdir(tmp_path)) == [f"{recipe}.tflite", f"{recipe}.tflite.json"]  # no float file left


def test_int4_weights_make_smaller_files_than_int8(tmp_path):
    from test_export import dense_model

    model = dense_model()
    sizes = {}
    for recipe in ("none", "weight_only_wi8_afp32", "weight_only_wi4_afp32"):
        sizes[recipe] = ex.export(model, tmp_path / f"{recipe}.tflite", quantization=recipe).size_bytes
    assert sizes["weight_only_wi4_afp32"] < 0.6 * sizes["weight_only_wi8_afp32"] < 0.6 * sizes["none"]


def test_the_engine_refuses_what_it_cannot_write(trained, tmp_path):
    model = trained[0]
    with pytest.raises(ValueError, match="applies LiteRT Quantizer recipes"):
        ex.export(model, tmp_path / "m.tflite", quantization="dynamic", engine="litert_quantizer")
    with pytest.raises(ValueError, match="writes tflite"):
        ex.export(model, tmp_path / "m", format="saved_model", quantization="dynamic_wi8_afp32")
    assert not os.listdir(tmp_path)


def test_a_check_that_shows_a_broken_export_says_so():
    fine = checks.ExportCheck(100, 0.05, top1_agreement=0.97, accuracy_keras=0.94, accuracy_exported=0.93)
    assert fine.problem() is None
    broken = checks.ExportCheck(153, 0.9, top1_agreement=0.46, accuracy_keras=0.941, accuracy_exported=0.458)
    message = broken.problem("The static_wi8_ai16 export")
    assert message.startswith("The static_wi8_ai16 export agrees with the Keras model on only 46.0% of 153 examples")
    assert "accuracy 0.458 against 0.941" in message and "choose another quantization" in message
    # Agreeing rows but a lost tenth of accuracy is broken too; regression heads have no agreement to judge.
    assert checks.ExportCheck(50, 0.2, top1_agreement=0.95, accuracy_keras=0.9, accuracy_exported=0.78).problem()
    assert checks.ExportCheck(50, 0.2).problem() is None


def test_export_warns_when_its_check_shows_a_broken_model(trained, tmp_path, monkeypatch):
    model, _, images, labels = trained
    broken = checks.ExportCheck(8, 0.9, top1_agreement=0.5, accuracy_keras=1.0, accuracy_exported=0.5)
    monkeypatch.setattr(ex, "check_export", lambda *args, **kwargs: broken)
    with pytest.warns(UserWarning, match="The dynamic_wi8_afp32 export agrees with the Keras model on only 50.0%"):
        result = ex.export(model, tmp_path / "m.tflite", quantization="dynamic_wi8_afp32", check_data=(images, labels))
    assert result.problem is not None and os.path.isfile(result.path)


def test_cli_exports_with_a_recipe_and_evaluates_the_file(trained, tmp_path, capsys, make_image_folder):
    model = trained[0]
    model_path = tmp_path / "model.keras"
    model.save(model_path)
    images = make_image_folder(classes=("dark", "bright"), per_class=6)
    output = tmp_path / "int4.tflite"
    argv = ["export", str(model_path), "--quantize", "dynamic_wi4_afp32", "--eval-data", images]
    assert main([*argv, "--output", str(output), "--json"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed.strip().splitlines()[-1])
    assert summary["quantization"]["mode"] == "dynamic_wi4_afp32" and "dynamic_wi4_afp32" in printed
    assert main(["evaluate", str(output), images]) == 0
    assert "dynamic range: int4 weights, float32 activations" in capsys.readouterr().out
    # A static recipe without data to calibrate on stops before any work.
    static = ["export", str(model_path), "--quantize", "static_wi8_ai8", "--output", str(tmp_path / "s.tflite")]
    assert main(static) == EXIT_BAD_INPUT
    assert "--quantize static_wi8_ai8 needs --representative-data" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "s.tflite")
    assert litert.interpreter_class() is not None
