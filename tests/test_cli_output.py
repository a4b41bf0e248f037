"""What a user sees from the command line: fast --help, no TensorFlow/absl/LiteRT lines, readable training.

Each test runs `python -m keras_transfer.cli` in a fresh process with
TensorFlow's own logging left at its defaults (no TF_CPP_MIN_LOG_LEVEL), as
a user's shell has it.
"""

import os
import re
import subprocess
import sys

import pytest
from helpers import TINY_TRAIN_OPTIONS

from keras_transfer.cli import COMMANDS

# Lines written by TensorFlow's C++ logging (absl), its Python logger, the TFLite converter and LiteRT.
LIBRARY_LOG_LINE = re.compile(
    r"^[IWEF]\d{4} |WARNING: All log messages|absl|oneDNN|cuInit|cuda|cpu_feature_guard|"
    r"This TensorFlow binary|retracing|^WARNING:tensorflow|^INFO:tensorflow|tensorflow/|"
    r"XNNPACK|Reading SavedModel|Ignored output_format|Ignored drop_control_dependency|"
    r"fully_quantize|inference_type|Estimated count of arithmetic ops",
)


def _user_environment():
    hidden = ("TF_CPP_MIN_LOG_LEVEL", "KERAS_TRANSFER_DEBUG", "KERAS_TRANSFER_VERBOSE")
    return {key: value for key, value in os.environ.items() if key not in hidden}


def run_command(*arguments, python_options=()):
    return subprocess.run(
        [sys.executable, *python_options, "-m", "keras_transfer.cli", *arguments],
        capture_output=True,
        text=True,
        env=_user_environment(),
        timeout=600,
    )


def library_log_lines(text):
    return [line for line in text.splitlines() if LIBRARY_LOG_LINE.search(line)]


def _subcommand_names():
    import argparse

    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    return [command.add_parser(subparsers).prog.split()[-1] for command in COMMANDS]


@pytest.mark.parametrize("command", [[], *([name] for name in _subcommand_names())], ids=lambda c: c[0] if c else "top")
def test_help_imports_no_tensorflow_and_prints_only_help(command):
    done = run_command(*command, "--help", python_options=("-X", "importtime"))
    assert done.returncode == 0, done.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert imported, "python -X importtime listed no imports"
    heavy = [name for name in imported if name.split(".")[0] in ("tensorflow", "keras", "keras_hub", "numpy")]
    assert heavy == [], f"--help imported {heavy[:5]}"
    others = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert others == []
    assert done.stdout.startswith("usage: keras-transfer")
    if command:
        assert "examples:\n  keras-transfer " in done.stdout


def test_a_short_train_run_prints_phases_epochs_and_a_summary_without_library_lines(make_image_folder, tmp_path):
    images = make_image_folder(per_class=6, size=32)
    output = tmp_path / "run"
    done = run_command(
        "train", images, "--val-split", "0.5", *TINY_TRAIN_OPTIONS, "--head-epochs", "1", "--finetune-epochs", "1",
        "--finetune-patience", "0", "--output", str(output),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert library_log_lines(done.stdout + done.stderr) == []
    # Only the command's own warning: 3 validation images per class say little.
    assert done.stderr.splitlines() == [
        "keras-transfer train: warning: class(es) ['cats', 'dogs'] of image folder "
        f"{images!r} have fewer than 5 validation examples ('cats' (3), 'dogs' (3)): one example moves their "
        "validation accuracy by 33% or more, so it says little; give a larger --val-split or more examples."
    ]
    lines = done.stdout.splitlines()
    # Output to a pipe: one plain line per epoch, no progress-bar escapes.
    assert "\x1b" not in done.stdout and "\b" not in done.stdout and "\r" not in done.stdout
    head = next(line for line in lines if line.startswith("Head phase: trains the new head"))
    assert re.search(
        r"\(\d[\d,]* of \d[\d,]* parameters\), adam, learning rate 1e-3, 1 epoch, on cached features\.$", head
    )
    assert any(re.match(r"Head epoch 1/1 - \d+\.\d s - accuracy: ", line) for line in lines)
    finetune = next(line for line in lines if line.startswith("Fine-tuning: trains the top 30% of the backbone"))
    assert "rmsprop, learning rate 1e-5, 1 epoch" in finetune
    # Numbered within its phase, not across phases.
    assert any(re.match(r"Fine-tuning epoch 1/1 - ", line) for line in lines)
    assert not any(line.startswith("Epoch ") for line in lines)
    summary = next(line for line in lines if "validation accuracy" in line and "training images" in line)
    assert "(head phase 1 epoch, fine-tuning 1 epoch)" in summary and "epochs" not in summary
    assert lines[-1].startswith("Wrote ") and str(output) in lines[-1]


def test_export_and_running_the_tflite_print_no_converter_or_litert_lines(make_image_folder, tmp_path):
    import keras

    import keras_transfer as kt

    images = make_image_folder(per_class=3, size=32)
    model = kt.ImageClassifier("mobilenet_v2", class_names=["cats", "dogs"], weights=None, image_size=32)
    model.save(tmp_path / "model.keras")
    keras.backend.clear_session()
    exported = str(tmp_path / "model.tflite")
    done = run_command(
        "export", str(tmp_path / "model.keras"), "--quantize", "int8", "--representative-data", images,
        "--output", exported,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == "" and library_log_lines(done.stdout) == []
    done = run_command("predict", exported, os.path.join(images, "cats", "0.png"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == "" and library_log_lines(done.stdout) == []


def test_verbose_brings_the_library_lines_back():
    quiet, verbose = run_command("backbones"), run_command("-v", "backbones")
    assert quiet.returncode == verbose.returncode == 0
    assert library_log_lines(quiet.stderr) == []
    # TensorFlow's start-up lines (oneDNN, CPU features, CUDA) are on stderr again.
    assert library_log_lines(verbose.stderr) != []


# Every value the commands read from the library's source (cli/library_source.py) for their --help.
SOURCE_CONSTANTS = [
    ("keras_transfer.data.text_cleaning", "CLEANING_STEPS"),
    ("keras_transfer.data.image_augmentation", "AUGMENTATION_PRESETS"),
    ("keras_transfer.models.text_classifier", "POOLINGS"),
    ("keras_transfer.deploy.export", "FORMATS"),
    ("keras_transfer.deploy.quantization", "QUANTIZATION_MODES"),
    ("keras_transfer.deploy.quantization", "IO_DTYPES"),
    ("keras_transfer.deploy.quantization", "QUANTIZER_RECIPES"),
    ("keras_transfer.deploy.quantization", "CALIBRATED_MODES"),
    ("keras_transfer.deploy.tfmot.optimize", "METHODS"),
    ("keras_transfer.deploy.tfmot.low_bit", "SCHEMES"),
    ("keras_transfer.deploy.budget", "BUDGET_CANDIDATES"),
    ("keras_transfer.deploy.budget", "MIXED_CANDIDATE"),
    ("keras_transfer.deploy.tfmot.optimize", "LAYER_CHOICES"),
    ("keras_transfer.zeroshot.prompts", "DEFAULT_TEMPLATE"),
    ("keras_transfer.adaptation.methods", "METHODS"),
    ("keras_transfer.adaptation.methods", "TEXT_METHODS"),
    ("keras_transfer.adaptation.methods", "DEFAULT_WEIGHTS"),
    ("keras_transfer.multitask.tasks", "TASK_NAME_PATTERN"),
]
SOURCE_DEFAULTS = [
    ("keras_transfer.data.images", "image_folder", "batch_size"),
    ("keras_transfer.data.images", "image_folder", "seed"),
    ("keras_transfer.deploy.export", "export", "format"),
    ("keras_transfer.deploy.export", "export", "quantization"),
    ("keras_transfer.deploy.quantization", "Quantization.int8", "num_samples"),
    ("keras_transfer.deploy.quantization", "Quantization.int8", "io_dtype"),
    *(
        ("keras_transfer.deploy.tfmot.optimize", method, option)
        for method in ("quantization_aware", "prune", "cluster", "low_bit_weights")
        for option in ("epochs", "learning_rate")
    ),
    ("keras_transfer.deploy.tfmot.optimize", "prune", "sparsity"),
    ("keras_transfer.deploy.tfmot.optimize", "cluster", "clusters"),
    ("keras_transfer.deploy.tfmot.optimize", "low_bit_weights", "scheme"),
    ("keras_transfer.deploy.tfmot.optimize", "low_bit_weights", "layers"),
    ("keras_transfer.deploy.tfmot.optimize", "cluster", "layers"),
]


def test_values_read_from_the_source_are_the_imported_ones():
    import functools
    import importlib
    import inspect

    from keras_transfer.cli import library_source

    for module, name in SOURCE_CONSTANTS:
        assert library_source.constant(module, name) == getattr(importlib.import_module(module), name), name
    for module, function, argument in SOURCE_DEFAULTS:
        imported = functools.reduce(getattr, function.split("."), importlib.import_module(module))
        expected = inspect.signature(imported).parameters[argument].default
        assert library_source.default(module, function, argument) == expected, (function, argument)
    with pytest.raises(LookupError):
        library_source.default("keras_transfer.deploy.export", "export", "no_such_argument")


def test_every_library_source_read_in_the_commands_is_checked():
    import ast
    import glob

    checked = {name for _, name in SOURCE_CONSTANTS} | {(f, a) for _, f, a in SOURCE_DEFAULTS}
    cli = os.path.join(os.path.dirname(__file__), "..", "keras_transfer", "cli")
    for path in glob.glob(os.path.join(cli, "*.py")):
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
                "constant",
                "default",
            ):
                literals = [arg.value for arg in node.args[1:] if isinstance(arg, ast.Constant)]
                if len(literals) == 1:
                    assert literals[0] in checked, (path, literals)
                elif len(literals) == 2:
                    assert tuple(literals) in checked, (path, literals)


@pytest.mark.integration
def test_a_short_text_run_on_the_real_backbone_prints_no_library_lines(assets_dir, tmp_path):
    done = run_command(
        "train-text", os.path.join(assets_dir, "text", "sms_spam", "SMSSpamCollection"), "--text-column", "SMS",
        "--label-column", "Label", "--val-split", "0.3", "--max-examples", "120", "--backbone",
        os.path.join(assets_dir, "keras-hub", "all-MiniLM-L6-v2"), "--recipe", "lora", "--epochs", "1",
        "--output", str(tmp_path / "run"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert library_log_lines(done.stdout + done.stderr) == [] and done.stderr == ""
    lines = done.stdout.splitlines()
    assert any(line.startswith("Fine-tuning: trains LoRA adapters (rank 8) and the head (") for line in lines)
    assert any(line.startswith("Fine-tuning epoch 1/1 - ") for line in lines)


def test_every_option_with_a_default_value_shows_it_in_its_help():
    import argparse

    from keras_transfer.cli import build_parser

    subparsers = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    missing = [
        (name, action.option_strings[-1])
        for name, command in subparsers.choices.items()
        for action in command._actions
        if action.option_strings
        and action.default not in (None, False, argparse.SUPPRESS)
        and "default" not in (action.help or "")
    ]
    assert missing == []
