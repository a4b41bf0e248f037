"""Text classifiers on device (issue 18, item 4): every quantization of a tiny fine-tuned BERT, from Python
and from the command line, checked in the LiteRT interpreter against the Keras model.

The model (a random 2-layer BERT, `helpers.tiny_bert`) learns the toy sentiment of `sentiment_texts`
exactly, so every export must agree with it on every sentence; its sentences are padded, so its
attention masks are exercised.
"""

import json

import numpy as np
import pytest
from helpers import sentiment_texts, tiny_text_classifier

import keras_transfer as kt
from keras_transfer.cli import main
from keras_transfer.deploy.quantization import (
    CALIBRATED_MODES,
    CALIBRATION_MASK_VALUE,
    QUANTIZATION_MODES,
    QUANTIZER_RECIPES,
    bounded_attention_masks,
)

CLASSES = ["negative", "positive"]
CALIBRATION_EXAMPLES = 24


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny text classifier that tells the toy sentiment apart, its sentences and labels, and a folder
    holding it as model.keras beside a labelled CSV of the same sentences."""
    folder = tmp_path_factory.mktemp("text_export")
    model = tiny_text_classifier(class_names=CLASSES)
    texts, labels = sentiment_texts(4)
    model.fine_tune(
        (texts, labels), head_epochs=0, finetune_epochs=6, finetune_learning_rate=3e-3, batch_size=8, verbose=0
    )
    assert np.array_equal(model.predict_classes(texts)[0], labels), "the tiny model must learn the toy sentiment"
    model.save(folder / "model.keras")
    rows = "".join(f"{text},{CLASSES[label]}\n" for text, label in zip(texts[:12], labels[:12]))
    (folder / "val.csv").write_text("text,label\n" + rows)
    return model, texts, labels, folder


@pytest.mark.parametrize("mode", QUANTIZATION_MODES)
def test_every_quantization_of_a_text_classifier_agrees_with_keras(trained, tmp_path, mode):
    model, texts, labels = trained[:3]
    path = tmp_path / f"text_{mode}.tflite"
    quantization = kt.Quantization.calibrated(mode, (texts, labels), CALIBRATION_EXAMPLES)
    result = kt.export_model(model, path, quantization=quantization, check_data=(texts, labels))
    check = result.check
    assert (check.top1_agreement, check.accuracy_exported) == (1.0, 1.0), check

    metadata = kt.export.read_metadata(path)
    assert metadata["quantization"]["mode"] == mode and metadata["class_names"] == CLASSES
    assert metadata["sequence_length"] == model.sequence_length
    if mode in CALIBRATED_MODES:
        assert metadata["quantization"]["calibration_examples"] == CALIBRATION_EXAMPLES
    # Sentences in, through the tokenizer the export saved beside the file: Keras' classes out.
    exported = kt.LiteRTModel(str(path))
    assert (tmp_path / metadata["preprocessor"]).is_dir() and exported.takes_text
    assert exported.quantization["mode"] == mode and exported.quantization["inputs"] == ["int32"]
    np.testing.assert_array_equal(exported.predict(texts).argmax(-1), labels)
    if mode in QUANTIZER_RECIPES:
        # The token embeddings are weights too: the weight-only and dynamic recipes quantize Keras' GATHER
        # tables (they would leave them float, 47 of all-MiniLM-L6-v2's 90 MB).
        assert embedding_table_dtypes(exported) == {"int16" if mode == "static_wi8_ai16" else "int8"}


def embedding_table_dtypes(exported):
    """The dtypes of the constant tables the GATHER ops of a `LiteRTModel` read (its embeddings)."""
    interpreter = exported._interpreter
    tensors = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    computed = {int(index) for op in ops for index in op["outputs"]}
    tables = [int(op["inputs"][0]) for op in ops if op["op_name"] == "GATHER"]
    dtypes = {np.dtype(tensors[table]["dtype"]).name for table in tables if table not in computed}
    return dtypes - {"int32"}  # the gathers of shapes


@pytest.mark.parametrize("mode", CALIBRATED_MODES)
def test_calibrated_text_exports_keep_the_attention_scores_own_range(trained, tmp_path, mode):
    """Masked scores at Keras' -1e9 would share the softmax input's range (a scale of about 4e6 per step,
    every real score rounded to zero); bounded, the step stays a fraction of a unit."""
    model, texts, labels = trained[:3]
    path = tmp_path / "text.tflite"
    kt.export_model(model, path, quantization=kt.Quantization.calibrated(mode, (texts, labels), CALIBRATION_EXAMPLES))
    interpreter = kt.LiteRTModel(str(path))._interpreter
    tensors = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    scales = [
        tensors[op["inputs"][0]]["quantization"][0]
        for op in interpreter._get_ops_details()
        if op["op_name"] == "SOFTMAX"
    ]
    assert len(scales) == 3 and all(0 < scale < 1 for scale in scales), scales  # 2 attention layers, the head


def test_only_calibrated_exports_bound_the_attention_mask(trained):
    from keras.src.layers.activations import softmax

    texts, labels = trained[1:3]
    keras_value = softmax._large_negative_number("float32")
    with bounded_attention_masks(kt.Quantization.int8((texts, labels))):
        assert softmax._large_negative_number("float32") == CALIBRATION_MASK_VALUE
    with bounded_attention_masks(kt.Quantization.dynamic()):
        assert softmax._large_negative_number("float32") == keras_value
    with pytest.raises(RuntimeError), bounded_attention_masks(kt.Quantization.int8((texts, labels))):
        raise RuntimeError("the conversion failed")
    assert softmax._large_negative_number("float32") == keras_value  # Keras' own value is back


def test_export_within_budget_keeps_an_int4_text_export(trained, tmp_path):
    model, texts, labels = trained[:3]
    path = tmp_path / "budget.tflite"
    candidates = ("none", "dynamic", "weight_only_wi4_afp32", "dynamic_wi4_afp32", "static_wi8_ai16")
    choice = kt.export_within_budget(
        model,
        path,
        (texts, labels),
        max_accuracy_drop=0.0,
        num_samples=CALIBRATION_EXAMPLES,
        candidates=candidates,
    )
    assert [candidate.quantization for candidate in choice.candidates] == list(candidates)
    assert all(candidate.within_budget for candidate in choice.candidates)
    sizes = {candidate.quantization: candidate.size_bytes for candidate in choice.candidates}
    assert choice.chosen == min(sizes, key=sizes.get) and choice.chosen.endswith("wi4_afp32")
    exported = kt.LiteRTModel(str(path))
    assert exported.quantization["weights"] == "int4" and exported.takes_text
    np.testing.assert_array_equal(exported.predict(texts).argmax(-1), labels)


@pytest.mark.parametrize(
    "mode,words",
    [
        ("dynamic_wi4_afp32", "dynamic range: int4 weights, float32 activations, int32 token-id input, float32 output"),
        # The static recipes quantize the output too (LiteRTModel dequantizes it).
        ("static_wi8_ai16", "int8 weights, int16 activations, int32 token-id input, int16 output"),
    ],
)
def test_command_line_exports_a_text_model_with_a_recipe_then_runs_the_file(trained, capsys, mode, words):
    """`export --quantize RECIPE` of a text model.keras (calibrated on its CSV where the recipe needs it),
    then `evaluate` and `predict` of the .tflite, which tokenize with the tokenizer saved beside it."""
    folder = trained[3]
    model_path, csv, output = folder / "model.keras", str(folder / "val.csv"), folder / f"text_{mode}.tflite"
    calibration = ["--representative-data", csv] if mode in CALIBRATED_MODES else []
    command = ["export", str(model_path), "--quantize", mode, *calibration, "--eval-data", csv]
    assert main([*command, "--output", str(output), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["quantization"]["mode"] == mode and summary["top1_agreement"] == 1.0
    assert summary["exported_accuracy"] == summary["accuracy"] == 1.0
    assert (folder / json.loads((folder / f"{output.name}.json").read_text())["preprocessor"]).is_dir()

    ran = f"Ran {output.name} in the LiteRT interpreter ({words})"
    assert main(["evaluate", str(output), csv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["ran"] == ran and report["accuracy"] == 1.0 and report["num_examples"] == 12
    sentences = ["great movie", "the worst plot"]
    assert main(["predict", str(output), *sentences, "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["predictions"]
    assert [(row["text"], row["class"]) for row in predictions] == [
        ("great movie", "positive"),
        ("the worst plot", "negative"),
    ]
