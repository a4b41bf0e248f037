"""No traceback for a user error anywhere in the command line (issue 13, group 8 and build item 5).

A user error exits 2 with one line in the command's terms; an internal error exits 1 with one line
(the traceback only with --debug); Ctrl-C and SIGTERM exit 130; files the tool cannot read say so.
"""

import json
import os
import shutil
import signal
import time
import zipfile

import keras
import numpy as np
import pytest
from helpers import tiny_classifier
from PIL import Image

import keras_transfer as kt
from keras_transfer.cli import EXIT_BAD_INPUT, EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED, backbones, main
from keras_transfer.errors import ModelFileError, WeightsUnavailableError

CLASSES = ["dark", "light"]


def _image(path, value, size=32):
    Image.fromarray(np.full((size, size, 3), value, "uint8")).save(path)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny image model saved as model.keras and exported as model.tflite, and two images."""
    root = tmp_path_factory.mktemp("cli_errors")
    model = tiny_classifier(class_names=CLASSES)
    model.save(root / "model.keras")
    kt.export_model(model, str(root / "model.tflite"))
    _image(root / "dark.png", 20)
    _image(root / "light.jpg", 230)
    return root


def _one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- models the tool cannot read ---------------------------------------------------------------


def test_truncated_keras_file_says_it_is_truncated_not_missing(files, tmp_path, capsys):
    truncated = tmp_path / "model.keras"
    data = (files / "model.keras").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    assert main(["predict", str(truncated), str(files / "dark.png")]) == EXIT_BAD_INPUT
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("keras-transfer predict: error:")
    assert "not a complete .keras file" in line and "truncated or corrupted" in line and "not found" not in line


def test_corrupt_keras_config_is_one_line(tmp_path, capsys):
    broken = tmp_path / "model.keras"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("config.json", "{not json")
        archive.writestr("metadata.json", "{}")
    assert main(["evaluate", str(broken), str(tmp_path)]) == EXIT_BAD_INPUT
    line = _one_line(capsys.readouterr().err)
    assert f"cannot load {str(broken)!r}" in line and "corrupted" in line


def test_a_plain_keras_model_says_what_it_lacks(tmp_path, capsys):
    path = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(2)]).save(path)
    assert main(["predict", str(path), "x.png"]) == EXIT_BAD_INPUT
    line = _one_line(capsys.readouterr().err)
    assert "plain Keras Sequential, not a keras-transfer model" in line and "image_size" not in line
    assert "keras_transfer.ImageClassifier" in line and "keras-transfer train" in line


def test_a_lambda_layer_is_refused_with_the_reason(tmp_path, capsys):
    inputs = keras.Input((4,))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(path)
    assert main(["predict", str(path), "x.png"]) == EXIT_BAD_INPUT
    line = _one_line(capsys.readouterr().err)
    assert "Lambda layer" in line and "arbitrary code" in line and "without Lambda layers" in line


def test_truncated_tflite_file_is_one_line_and_a_library_error(files, tmp_path, capsys):
    truncated = tmp_path / "model.tflite"
    data = (files / "model.tflite").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    shutil.copy(files / "model.tflite.json", str(truncated) + ".json")
    for command in (["predict", str(truncated), str(files / "dark.png")], ["evaluate", str(truncated), str(tmp_path)]):
        assert main(command) == EXIT_BAD_INPUT
        line = _one_line(capsys.readouterr().err)
        assert "is not a readable .tflite model" in line and "Export it again" in line
    with pytest.raises(ModelFileError, match="truncated, corrupted"):
        kt.LiteRTModel(str(truncated))
    (tmp_path / "model.tflite.json").write_text("{broken")
    with pytest.raises(ModelFileError, match="metadata"):
        kt.LiteRTModel(str(truncated))


# --- predict -----------------------------------------------------------------------------------


def test_predict_runs_an_image_model_tflite(files, capsys):
    images = [str(files / "dark.png"), str(files / "light.jpg")]
    assert main(["predict", str(files / "model.tflite"), *images, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["predictions"]
    assert [row["image"] for row in rows] == images
    assert all(row["class"] in CLASSES and 0.5 <= row["probability"] <= 1 for row in rows)
    # The same predictions as the model.keras it was exported from.
    assert main(["predict", str(files / "model.keras"), *images, "--json"]) == 0
    keras_rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["predictions"]
    assert [row["class"] for row in keras_rows] == [row["class"] for row in rows]


def test_predict_goes_on_past_unreadable_inputs_and_names_them(files, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    missing = str(tmp_path / "missing.png")
    inputs = [str(files / "dark.png"), str(bad), missing, str(files / "light.jpg")]
    assert main(["predict", str(files / "model.keras"), *inputs, "--json"]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    rows = json.loads(captured.out.strip().splitlines()[-1])["predictions"]
    assert [row["image"] for row in rows] == inputs
    assert [row["class"] is not None for row in rows] == [True, False, False, True]
    assert "cannot be decoded" in rows[1]["error"] and rows[2]["error"] == "no such file"
    err = captured.err
    assert "Traceback" not in err and "Skipping 2 unreadable image files:" in err
    assert f"  {bad}: cannot be decoded" in err and f"  {missing}: no such file" in err
    assert err.strip().splitlines()[-1] == (
        "keras-transfer predict: error: 2 of 4 inputs could not be read as images (named above); "
        "the other 2 were predicted."
    )
    # Text output: what ran, then the readable ones.
    assert main(["predict", str(files / "model.keras"), str(bad), str(files / "dark.png")]) == EXIT_BAD_INPUT
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "Ran model.keras in Keras (float32)"
    assert len(out) == 2 and out[1].split()[0] == str(files / "dark.png")


def test_evaluate_names_skipped_images_like_predict(files, tmp_path, capsys):
    for name, value in zip(CLASSES, (20, 230)):
        os.makedirs(tmp_path / name)
        _image(tmp_path / name / "0.png", value)
    (tmp_path / "dark" / "broken.jpg").write_text("nope")
    assert main(["evaluate", str(files / "model.keras"), str(tmp_path), "--json"]) == 0
    err = capsys.readouterr().err
    assert "keras-transfer evaluate: warning: Skipping 1 unreadable image file:" in err
    assert f"  {tmp_path / 'dark' / 'broken.jpg'}" in err and "UserWarning" not in err


# --- weights that cannot be downloaded ---------------------------------------------------------


def _offline(*args, **kwargs):
    try:
        raise OSError(-2, "Name or service not known")
    except OSError as error:
        import urllib.error

        cause = urllib.error.URLError(error)
    raise Exception(
        "URL fetch failure on https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5: "
        "None -- [Errno -2] Name or service not known"
    ) from cause


def test_imagenet_weights_that_cannot_be_downloaded(monkeypatch, tmp_path, capsys):
    from keras.src.utils import file_utils

    monkeypatch.setattr(file_utils, "get_file", _offline)
    with pytest.raises(WeightsUnavailableError, match="weights=PATH"):
        kt.ImageClassifier("efficientnet_b0", class_names=CLASSES, image_size=32)
    for name, value in zip(CLASSES, (20, 230)):
        os.makedirs(tmp_path / "images" / name)
        for i in range(2):
            _image(tmp_path / "images" / name / f"{i}.png", value + i)
    code = main(
        ["train", str(tmp_path / "images"), "--backbone", "efficientnet_b0", "--image-size", "32",
         "--output", str(tmp_path / "run")]
    )  # fmt: skip
    assert code == EXIT_BAD_INPUT
    line = _one_line(capsys.readouterr().err)
    assert "could not download the ImageNet weights of efficientnet_b0" in line and "efficientnetb0_notop.h5" in line
    assert "--weights PATH" in line and "--weights none" in line and "weights=" not in line
    assert not (tmp_path / "run").exists()


def test_keras_hub_preset_that_cannot_be_downloaded(monkeypatch, tmp_path, capsys):
    import keras_hub

    from keras_transfer.models.text_backbones import build_text_backbone

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    with pytest.raises(WeightsUnavailableError, match="local preset folder"):
        build_text_backbone("bert_tiny_en_uncased")
    table = tmp_path / "train.csv"
    table.write_text("text,label\n" + "good film,pos\nbad film,neg\n" * 4)
    code = main(["train-text", str(table), "--backbone", "bert_tiny_en_uncased", "--output", str(tmp_path / "run")])
    assert code == EXIT_BAD_INPUT
    line = _one_line(capsys.readouterr().err)
    assert "could not download the keras-hub preset 'bert_tiny_en_uncased'" in line and "local preset folder" in line


# --- flag names, not Python names --------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message, python_name",
    [
        (["--finetune-lr", "-0.001"], "--finetune-lr must be a number >= 0", "finetune_learning_rate"),
        (["--head-lr", "-1"], "--head-lr must be a number >= 0", "head_learning_rate"),
        (["--head-epochs", "0", "--finetune-epochs", "0"], "--head-epochs and --finetune-epochs are both 0", "_"),
        (["--head-epochs", "-1"], "--head-epochs must be an integer >= 0", "head_epochs"),
        (["--unfreeze", "1.5"], "--unfreeze 1.5: a fraction", "unfreeze="),
    ],
)
def test_errors_name_flags_not_python_arguments(tmp_path, capsys, extra, message, python_name):
    argv = ["train", str(tmp_path / "missing"), "--backbone", "mobilenet_v2", "--output", str(tmp_path / "o")]
    assert main([*argv, *extra]) == EXIT_BAD_INPUT
    line = _one_line(capsys.readouterr().err)
    assert message in line and python_name not in line.split("error:", 1)[1]


def test_cli_words_translates_names_but_not_paths():
    from keras_transfer.cli import build_parser
    from keras_transfer.cli.common import cli_words

    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    text = parser._subparsers._group_actions[0].choices["train-text"]
    assert cli_words("pass image_size>=32 or weights=None", train) == "pass --image-size >= 32 or --weights none"
    assert cli_words("validation_split must be in (0, 1)", train) == "--val-split must be in (0, 1)"
    assert cli_words("finetune_learning_rate must be >= 0", text) == "--lr must be >= 0"
    assert cli_words("sequence_length=500 is out of range", text) == "--sequence-length 500 is out of range"
    kept = "the weights of /data/head_epochs/x and my_batch_size"
    assert cli_words(kept, train) == kept


# --- internal errors, --debug, interrupts, argparse --------------------------------------------


def test_internal_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(backbones, "run", broken)
    assert main(["backbones"]) == EXIT_INTERNAL_ERROR
    line = _one_line(capsys.readouterr().err)
    assert line == (
        "keras-transfer backbones: internal error: RuntimeError: something inside broke "
        "(run with --debug for the traceback; please report it)"
    )
    for argv in (["--debug", "backbones"], ["backbones", "--debug"]):
        with pytest.raises(RuntimeError, match="something inside broke"):
            main(argv)
    monkeypatch.setenv("KERAS_TRANSFER_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["backbones"])


def test_user_error_with_debug_propagates(monkeypatch):
    monkeypatch.setenv("KERAS_TRANSFER_DEBUG", "1")
    with pytest.raises(Exception, match="no backbone family"):
        main(["backbones", "--family", "Nope"])


def test_ctrl_c_and_sigterm_end_with_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    def terminated(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler interrupts this
        raise AssertionError("SIGTERM did not interrupt the command")

    before = signal.getsignal(signal.SIGTERM)
    for run in (interrupted, terminated):
        monkeypatch.setattr(backbones, "run", run)
        start = time.monotonic()
        assert main(["backbones"]) == EXIT_INTERRUPTED
        assert time.monotonic() - start < 5
        assert _one_line(capsys.readouterr().err) == "keras-transfer backbones: interrupted"
    assert signal.getsignal(signal.SIGTERM) is before


def test_argparse_errors_still_exit_2_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--no-such-flag"])
    assert exit_info.value.code == EXIT_BAD_INPUT
    assert "usage: keras-transfer train" in capsys.readouterr().err


def test_no_tensorflow_log_lines_reach_the_user(tmp_path):
    import subprocess
    import sys

    env = {
        key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_TRANSFER_DEBUG")
    }
    command = [
        sys.executable,
        "-m",
        "keras_transfer.cli",
        "train",
        str(tmp_path / "missing"),
        "--backbone",
        "mobilenet_v2",
    ]
    done = subprocess.run([*command, "--output", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert done.returncode == EXIT_BAD_INPUT
    # One line: the error. No absl / oneDNN / cuInit lines, no traceback.
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "error:" in done.stderr
    assert "I0000" not in done.stderr and "absl" not in done.stderr and "Traceback" not in done.stderr
