"""`predict` and `evaluate` on every artifact the tool writes (issue 15, item 3).

A model.keras runs in Keras, a .tflite file in the LiteRT interpreter (a text model's with the
tokenizer its export saved beside it); both commands first say which runtime and quantization ran,
and `predict --top-k K` lists the K most probable classes.
"""

import json
import os
import shutil

import numpy as np
import pytest
from helpers import image_arrays, sentiment_texts, tiny_classifier, tiny_text_classifier
from PIL import Image

import keras_transfer as kt
from keras_transfer.cli import EXIT_BAD_INPUT, common, main

IMAGE_CLASSES = ["dark", "grey", "light"]
TEXT_CLASSES = ["negative", "positive"]


def _last_json(out):
    return json.loads(out.strip().splitlines()[-1])


def _one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _export(model_path, output, *extra):
    assert main(["export", str(model_path), "--output", str(output), *extra]) == 0


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """A tiny 3-class image model (32 px, 1 epoch) as model.keras, model.tflite and model_int8.tflite,
    and a folder of labelled images."""
    root = tmp_path_factory.mktemp("artifacts_images")
    model = tiny_classifier(3, class_names=IMAGE_CLASSES)
    images, labels = image_arrays(24, num_classes=3)
    model.compile()
    model.fit(images, labels, epochs=1, batch_size=8, verbose=0)
    model.save(root / "model.keras")
    for index, name in enumerate(IMAGE_CLASSES):
        os.makedirs(root / "val" / name)
        for i, (image, label) in enumerate(zip(images, labels)):
            if label == index:
                Image.fromarray(image.astype("uint8")).save(root / "val" / name / f"{i}.png")
    _export(root / "model.keras", root / "model.tflite")
    _export(
        root / "model.keras",
        root / "model_int8.tflite",
        "--quantize",
        "int8",
        "--representative-data",
        str(root / "val"),
        "--num-samples",
        "8",
    )
    return root


def _images(root):
    return [str(root / "val" / name / sorted(os.listdir(root / "val" / name))[0]) for name in IMAGE_CLASSES]


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    """A tiny text model (random 2-layer BERT, 1 epoch) as model.keras, text.tflite and
    text_dynamic.tflite (each with its tokenizer beside it), and a labelled CSV file."""
    root = tmp_path_factory.mktemp("artifacts_text")
    model = tiny_text_classifier(class_names=TEXT_CLASSES)
    texts, labels = sentiment_texts(1)
    model.fine_tune((texts, labels), head_epochs=1, finetune_epochs=0, batch_size=8, verbose=0)
    model.save(root / "model.keras")
    rows = "".join(f"{text},{TEXT_CLASSES[label]}\n" for text, label in zip(texts, labels))
    (root / "val.csv").write_text("text,label\n" + rows)
    _export(root / "model.keras", root / "text.tflite")
    _export(root / "model.keras", root / "text_dynamic.tflite", "--quantize", "dynamic")
    return root


SENTENCES = ["good film", "the worst plot", "it was fine"]


# --- images ------------------------------------------------------------------------------------


def test_predict_and_evaluate_an_int8_image_tflite_say_what_ran(image_files, capsys):
    path = image_files / "model_int8.tflite"
    ran = "Ran model_int8.tflite in the LiteRT interpreter (int8 weights and activations, float32 input/output)"
    images = _images(image_files)
    assert main(["predict", str(path), *images]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == ran and len(out) == 1 + len(images)
    assert [line.split()[0] for line in out[1:]] == images and all(line.split()[1] in IMAGE_CLASSES for line in out[1:])

    assert main(["predict", str(path), *images, "--json"]) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["runtime"] == "litert" and result["ran"] == ran and result["model"] == str(path)
    assert result["quantization"]["mode"] == "int8" and result["quantization"]["source"] == "metadata"
    assert result["quantization"]["inputs"] == result["quantization"]["outputs"] == ["float32"]
    assert [row["image"] for row in result["predictions"]] == images

    assert main(["evaluate", str(path), str(image_files / "val")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == ran and "accuracy" in out[2]
    assert main(["evaluate", str(path), str(image_files / "val"), "--json"]) == 0
    report = _last_json(capsys.readouterr().out)
    assert report["runtime"] == "litert" and report["ran"] == ran and report["num_examples"] == 24
    assert report["quantization"]["weights"] == report["quantization"]["activations"] == "int8"


def test_a_keras_model_says_it_ran_in_keras(image_files, capsys):
    assert main(["evaluate", str(image_files / "model.keras"), str(image_files / "val")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "Ran model.keras in Keras (float32)"
    assert main(["predict", str(image_files / "model.keras"), _images(image_files)[0], "--json"]) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["runtime"] == "keras" and result["ran"] == "Ran model.keras in Keras (float32)"
    assert result["quantization"] == {
        "mode": "none",
        "dtype_policy": "float32",
        "compute_dtype": "float32",
        "variable_dtype": "float32",
        "quantized_layers": 0,
        "layers_with_weights": 7,
    }


@pytest.mark.parametrize("model", ["model.keras", "model.tflite", "model_int8.tflite"])
def test_predict_top_k_on_images(image_files, capsys, model):
    images = _images(image_files)
    assert main(["predict", str(image_files / model), *images, "--top-k", "3", "--json"]) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["top_k"] == 3
    for row in result["predictions"]:
        top = row["top_k"]
        assert sorted(entry["class"] for entry in top) == sorted(IMAGE_CLASSES)
        probabilities = [entry["probability"] for entry in top]
        # int8 outputs come in steps of 1/256: their sum is 1 within a few steps.
        tolerance = 2e-2 if "int8" in model else 2e-3
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1, abs=tolerance)
        assert (row["class"], row["probability"]) == (top[0]["class"], top[0]["probability"])
    if model == "model.tflite":  # a float32 export: Keras's classes and probabilities
        assert main(["predict", str(image_files / "model.keras"), *images, "--top-k", "3", "--json"]) == 0
        keras_rows = _last_json(capsys.readouterr().out)["predictions"]
        for exported, reference in zip(result["predictions"], keras_rows):
            assert [entry["class"] for entry in exported["top_k"]] == [entry["class"] for entry in reference["top_k"]]
            np.testing.assert_allclose(
                [entry["probability"] for entry in exported["top_k"]],
                [entry["probability"] for entry in reference["top_k"]],
                atol=2e-4,
            )
    # Text: each line names K classes with their probabilities.
    assert main(["predict", str(image_files / model), *images, "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    assert len(lines) == len(images) and all(line.count("(0.") + line.count("(1.") == 2 for line in lines)


@pytest.mark.parametrize(
    "value, message",
    [("0", "--top-k: '0' is not a positive integer"), ("-2", "'-2' is not a positive integer"), ("two", "'two'")],
)
def test_top_k_must_be_a_positive_integer(image_files, capsys, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(image_files / "model.keras"), "x.png", "--top-k", value])
    assert exit_info.value.code == EXIT_BAD_INPUT and message in capsys.readouterr().err


@pytest.mark.parametrize("model", ["model.keras", "model_int8.tflite"])
def test_top_k_above_the_number_of_classes_stops_before_any_input_is_read(image_files, tmp_path, capsys, model):
    missing = str(tmp_path / "missing.png")  # never read: the --top-k error comes first
    assert main(["predict", str(image_files / model), missing, "--top-k", "4"]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert _one_line(captured.err) == (
        "keras-transfer predict: error: --top-k 4 is more than the model's 3 classes (dark, grey, light): "
        "give --top-k 3 or less."
    )
    assert captured.out == "" and "missing.png" not in captured.err


def test_help_shows_the_top_k_default(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--top-k K" in text and "(default: 1)" in text and "--top-k 3" in text  # the option and its example


# --- text --------------------------------------------------------------------------------------


def test_text_model_keras_says_what_ran_and_gives_top_k(text_files, capsys):
    assert main(["predict", str(text_files / "model.keras"), *SENTENCES, "--top-k", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "Ran model.keras in Keras (float32)" and len(out) == 1 + len(SENTENCES)
    for line, sentence in zip(out[1:], SENTENCES):
        assert line.endswith(sentence) and line.split()[0] in TEXT_CLASSES and line.split()[2] in TEXT_CLASSES
    assert main(["predict", str(text_files / "model.keras"), *SENTENCES, "--top-k", "2", "--json"]) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["runtime"] == "keras" and [row["text"] for row in result["predictions"]] == SENTENCES
    for row in result["predictions"]:
        assert sorted(entry["class"] for entry in row["top_k"]) == TEXT_CLASSES
        assert sum(entry["probability"] for entry in row["top_k"]) == pytest.approx(1, abs=2e-4)
    assert main(["predict", str(text_files / "model.keras"), "good", "--top-k", "3"]) == EXIT_BAD_INPUT
    assert "--top-k 3 is more than the model's 2 classes (negative, positive)" in _one_line(capsys.readouterr().err)


def test_text_tflite_runs_in_litert_with_its_tokenizer(text_files, capsys):
    """The export takes token ids; predict and evaluate tokenize the sentences with the saved tokenizer."""
    assert json.loads((text_files / "text.tflite.json").read_text())["preprocessor"] == "text_preprocessor"
    assert main(["predict", str(text_files / "model.keras"), *SENTENCES, "--top-k", "2", "--json"]) == 0
    keras_rows = _last_json(capsys.readouterr().out)["predictions"]
    assert main(["predict", str(text_files / "text.tflite"), *SENTENCES, "--top-k", "2", "--json"]) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["runtime"] == "litert" and result["quantization"]["inputs"] == ["int32"]
    assert result["ran"] == (
        "Ran text.tflite in the LiteRT interpreter (float32 weights and activations, int32 token-id input, "
        "float32 output)"
    )
    for exported, reference in zip(result["predictions"], keras_rows):
        assert exported["text"] == reference["text"] and exported["class"] == reference["class"]
        np.testing.assert_allclose(
            [entry["probability"] for entry in exported["top_k"]],
            [entry["probability"] for entry in reference["top_k"]],
            atol=2e-4,
        )

    dynamic = text_files / "text_dynamic.tflite"
    assert main(["predict", str(dynamic), *SENTENCES, "--clean", "lower"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == (
        "Ran text_dynamic.tflite in the LiteRT interpreter (dynamic range: int8 weights, float32 activations, "
        "int32 token-id input, float32 output)"
    )
    assert [line.split()[0] in TEXT_CLASSES and line.endswith(text) for line, text in zip(out[1:], SENTENCES)] == [
        True
    ] * len(SENTENCES)

    assert main(["evaluate", str(text_files / "model.keras"), str(text_files / "val.csv"), "--json"]) == 0
    keras_report = _last_json(capsys.readouterr().out)
    assert main(["evaluate", str(text_files / "text.tflite"), str(text_files / "val.csv"), "--json"]) == 0
    report = _last_json(capsys.readouterr().out)
    assert report["runtime"] == "litert" and report["num_examples"] == 12
    assert report["accuracy"] == keras_report["accuracy"] and report["class_names"] == TEXT_CLASSES
    assert main(["evaluate", str(dynamic), str(text_files / "val.csv")]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("Ran text_dynamic.tflite in the LiteRT interpreter")


def test_text_tflite_without_its_tokenizer_is_one_line(text_files, tmp_path, capsys):
    for name in ("text.tflite", "text.tflite.json"):
        shutil.copy(text_files / name, tmp_path / name)  # the text_preprocessor folder left behind
    for command in (
        ["predict", str(tmp_path / "text.tflite"), "good film"],
        ["evaluate", str(tmp_path / "text.tflite"), "x.csv"],
    ):
        assert main(command) == EXIT_BAD_INPUT
        line = _one_line(capsys.readouterr().err)
        assert "is a text model's file, but its tokenizer is not beside it" in line and "text_preprocessor" in line


# --- where the quantization is read from -------------------------------------------------------


def test_quantization_is_read_from_the_tensors_without_metadata(image_files, text_files):
    for path, mode in [
        (image_files / "model.tflite", "none"),
        (image_files / "model_int8.tflite", "int8"),
        (text_files / "text_dynamic.tflite", "dynamic"),
    ]:
        metadata = json.loads(path.with_name(path.name + ".json").read_text())
        metadata.pop("quantization")
        quantization = kt.LiteRTModel(str(path), metadata=metadata).quantization
        assert (quantization["mode"], quantization["source"]) == (mode, "tensors")


def test_a_keras_quantized_model_says_which_layers_are_int8(image_files):
    import keras

    model = keras.saving.load_model(image_files / "model.keras", compile=False)
    quantized, info = kt.export.keras_quantize(model, "int8")
    line, fields = common.runtime_summary(quantized, "model_int8.keras")
    assert line == (
        f"Ran model_int8.keras in Keras (int8 weights in {len(info.quantized_layers)} of 7 layers with weights, "
        "quantized by Keras' model.quantize; float32 elsewhere)"
    )
    assert fields["quantization"]["mode"] == "int8" and fields["quantization"]["quantized_layers"] == 1


def test_a_text_model_exports_to_int8_calibrated_on_its_csv(text_files, capsys):
    """The CSV's sentences calibrate as the token ids the export takes; the int8 file runs and says so."""
    exported = text_files / "text_int8.tflite"
    _export(
        text_files / "model.keras", exported, "--quantize", "int8", "--representative-data",
        str(text_files / "val.csv"), "--eval-data", str(text_files / "val.csv"),
    )  # fmt: skip
    assert "int8, calibrated on 12 examples" in capsys.readouterr().out
    assert json.loads((text_files / "text_int8.tflite.json").read_text())["quantization"]["calibration_examples"] == 12
    assert main(["evaluate", str(exported), str(text_files / "val.csv")]) == 0
    assert (
        capsys.readouterr()
        .out.splitlines()[0]
        .startswith("Ran text_int8.tflite in the LiteRT interpreter (int8 weights and activations")
    )
