"""The public surface: every name the README and the tutorials use, and models saved by earlier versions."""

import json
import os
import re

import keras
import numpy as np
import pytest

import keras_transfer as kt

ROOT = os.path.join(os.path.dirname(__file__), "..")
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")

# The names README.md showed before the package was split into subpackages.
DOCUMENTED_NAMES = [
    "ImageClassifier",
    "ImageClassifier.create",
    "TextClassifier",
    "TextClassifier.create",
    "Head",
    "Head.multiclass",
    "Head.binary",
    "Head.multilabel",
    "Head.regression",
    "TransferModel",
    "TokenPooling",
    "data.image_folder",
    "data.from_arrays",
    "data.from_tfds",
    "data.tfds_image_folder",
    "data.text_file",
    "data.from_texts",
    "data.from_pandas",
    "data.from_tfds_text",
    "data.TextCleaner",
    "data.choose_sequence_length",
    "data.DataError",
    "augmentation",
    "export_model",
    "Quantization",
    "Quantization.int8",
    "check_export",
    "export_within_budget",
    "keras_quantize",
    "ExportResult",
    "ExportCheck",
    "BudgetChoice",
    "Quantization.litert",
    "Quantization.mixed",
    "export_mixed_precision",
    "MixedPrecisionChoice",
    "distribute.multi_worker_strategy",
    "distribute.is_chief",
    "distribute.launch_local",
    "export.representative_samples",
    "export.read_metadata",
    "LiteRTModel",
    "litert.compare_latency",
    "measure_export",
    "ModelReport",
    "report.format_table",
    "report.write_reports",
    "quantization_aware",
    "prune",
    "cluster",
    "low_bit_weights",
    "OptimizedModel",
    "to_tf_keras",
    "Bridge",
    "UnsupportedLayerError",
    "ModelFileError",
    "WeightsUnavailableError",
    "freeze",
    "unfreeze",
    "select_layers",
    "parameter_counts",
    "recompile",
    "make_optimizer",
    "FineTuneHistory",
    "ProgressiveUnfreezing",
    "layer_blocks",
    "layerwise_learning_rates",
    "depth_decay",
    "LayerwiseLearningRates",
    "OneCycle",
    "warmup_cosine",
    "find_learning_rate",
    "LearningRateFinderResult",
    "FeatureCache",
    "FeatureCache.compute",
    "transfer_weights",
    "extract_features",
    "TransferReport",
    "evaluation.evaluate_model",
    "evaluation.plot_confusion_matrix",
    "evaluation.plot_training_curves",
    "evaluation.plot_predictions",
    "files.atomic_path",
    "files.write_json",
    "list_backbones",
    "list_text_backbones",
    "get_backbone_spec",
    "build_backbone",
    "build_text_backbone",
    "BackboneSpec",
    "BackbonePreprocessing",
    "UnknownBackboneError",
    "Recipe",
    "IMAGE_RECIPE",
    "TEXT_RECIPE",
    "TEXT_RECIPES",
    "text_recipe",
    "ImageClassifier.evaluate_report",
    "ImageClassifier.export_model",
    "TextClassifier.evaluate_report",
    "FineTuneHistory.plot",
]


def _resolve(dotted):
    value = kt
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize("name", DOCUMENTED_NAMES)
def test_documented_name_resolves(name):
    assert _resolve(name) is not None


def _names_used_in(text):
    return {match.rstrip(".") for match in re.findall(r"\bkt\.([A-Za-z_][A-Za-z0-9_.]*)", text)}


def test_every_kt_name_in_the_readme_and_the_notebooks_resolves():
    texts = [open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()]
    notebooks = os.path.join(ROOT, "notebooks")
    for name in sorted(os.listdir(notebooks)):
        if name.endswith(".ipynb"):
            cells = json.load(open(os.path.join(notebooks, name), encoding="utf-8"))["cells"]
            texts += ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
    used = set().union(*(_names_used_in(text) for text in texts))
    assert len(used) > 40
    missing = []
    for name in sorted(used):
        try:
            _resolve(name)
        except AttributeError:
            # `kt.Head.multiclass(3).build` style chains end in attributes of results.
            if not any(_resolves_prefix(name, cut) for cut in range(1, name.count(".") + 1)):
                missing.append(name)
    assert not missing, f"names used in README.md or notebooks that keras_transfer lacks: {missing}"


def _resolves_prefix(name, cut):
    prefix = name.rsplit(".", cut)[0]
    try:
        value = _resolve(prefix)
    except AttributeError:
        return False
    return not isinstance(value, type(kt))  # a module must hold the whole name


def test_only_the_public_surface_is_exported():
    # Subpackages are rooms, not API: `kt.<name>` is the surface.
    for room in ("models", "finetune", "data", "deploy", "evaluation", "cli"):
        assert __import__(f"keras_transfer.{room}", fromlist=["_"])


@pytest.mark.parametrize("kind", ["image_classifier", "text_classifier"])
def test_models_saved_by_version_0_1_0_still_load_and_predict_the_same(kind):
    # Written by c838fd4 (before the subpackages) with tests/helpers' tiny models.
    model = keras.saving.load_model(os.path.join(FIXTURES, f"{kind}_v0.1.0.keras"))
    expected = np.load(os.path.join(FIXTURES, f"{kind}_v0.1.0_outputs.npy"))
    if kind == "image_classifier":
        inputs = np.load(os.path.join(FIXTURES, "image_inputs.npy"))
        assert isinstance(model, kt.ImageClassifier)
        assert model.class_names == ["cats", "dogs"]
    else:
        inputs = json.load(open(os.path.join(FIXTURES, "text_inputs.json")))
        assert isinstance(model, kt.TextClassifier)
        assert model.class_names == ["negative", "positive"]
    np.testing.assert_allclose(model.predict(inputs, verbose=0), expected, atol=1e-5)
    # Still a working task: the loaded model trains on.
    labels = np.array([0, 1, 0, 1])
    model.fine_tune((inputs, labels), head_epochs=1, finetune_epochs=0, batch_size=4, verbose=0)


def test_evaluation_plots_and_export_are_methods_too(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (12, 32, 32, 3)).astype("float32")
    y = np.arange(12) % 2
    x[y == 1] *= 0.2  # two classes a tiny model can tell apart
    model = kt.ImageClassifier("mobilenet_v2", class_names=["light", "dark"], weights=None, image_size=32)
    history = model.fine_tune((x, y), (x, y), head_epochs=1, finetune_epochs=1, verbose=0)
    report = model.evaluate_report((x, y))
    assert report.to_dict() == kt.evaluation.evaluate_model(model, (x, y)).to_dict()
    report.plot_confusion_matrix(tmp_path / "confusion.png")
    history.plot(tmp_path / "curves.png")
    assert (tmp_path / "confusion.png").stat().st_size > 0 and (tmp_path / "curves.png").stat().st_size > 0
    result = model.export_model(str(tmp_path / "model.tflite"), check_data=(x, y))
    assert result.format == "tflite" and result.check.top1_agreement == 1.0
