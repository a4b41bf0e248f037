"""The `keras-transfer` command line, end to end through `main()` and the installed script."""

import argparse
import contextlib
import functools
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import RUN_FILES, sentiment_texts, tiny_bert
from PIL import Image

from keras_transfer import cli
from keras_transfer.cli import EXIT_BAD_INPUT, main
from keras_transfer.cli import train_text as train_text_command
from keras_transfer.finetune import recipes


def _image_folder(root, classes=("cats", "dogs"), per_class=6, size=40):
    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            # Classes differ in brightness, so even a tiny model can learn them.
            pixels = rng.integers(0, 100, (size, size, 3)) + 120 * index
            Image.fromarray(pixels.astype("uint8")).save(root / name / f"{i}.jpg")
    return root


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    train_dir = _image_folder(root / "train")
    val_dir = _image_folder(root / "val", per_class=3)
    (train_dir / "cats" / "broken.jpg").write_text("not an image")
    output = root / "run"
    code = main(
        [
            "train",
            str(train_dir),
            "--val-dir",
            str(val_dir),
            "--backbone",
            "mobilenet_v2",
            "--weights",
            "none",
            "--image-size",
            "32",
            "--head-epochs",
            "1",
            "--finetune-epochs",
            "1",
            "--batch-size",
            "4",
            "--output",
            str(output),
        ]
    )
    assert code == 0
    return root, output


def test_train_writes_model_report_and_plots(trained_run):
    root, output = trained_run
    assert sorted(os.listdir(output)) == [
        ".keras-transfer.json",  # the manifest: what --overwrite may replace
        "confusion_matrix.png",
        "model.keras",
        "report.json",
        "training_curves.png",
    ]
    report = json.loads((output / "report.json").read_text())
    assert report["classes"] == ["cats", "dogs"]
    assert report["skipped_files"] == [str(root / "train" / "cats" / "broken.jpg")]
    assert report["phases"]["head"]["epochs"] == 1 and report["phases"]["finetune"]["epochs"] == 1
    assert report["phases"]["head"]["seconds"] > 0
    assert 0.0 <= report["val_accuracy"] <= 1.0
    assert report["val_examples"] == 6 and report["train_examples"] == 12
    for png in ("confusion_matrix.png", "training_curves.png"):
        assert (output / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_with_strategies_finds_lr_caches_and_unfreezes_progressively(tmp_path, capsys):
    train_dir = _image_folder(tmp_path / "train")
    output = tmp_path / "run"
    code = main(
        [
            "train",
            str(train_dir),
            "--val-split",
            "0.25",
            "--backbone",
            "mobilenet_v2",
            "--weights",
            "none",
            "--image-size",
            "32",
            "--head-epochs",
            "1",
            "--finetune-epochs",
            "2",
            "--batch-size",
            "4",
            "--cache-features",
            "--schedule",
            "one_cycle",
            "--layer-decay",
            "0.5",
            "--progressive",
            "2",
            "--lr-find",
            "--output",
            str(output),
        ]
    )
    assert code == 0
    assert "LR finder suggests" in capsys.readouterr().out
    assert (output / "lr_finder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((output / "report.json").read_text())
    assert report["head_learning_rate"] != 1e-3 and report["head_learning_rate"] > 0
    assert report["phases"]["finetune"]["epochs"] == 2


def test_train_refuses_non_empty_output_without_overwrite(trained_run, capsys):
    root, output = trained_run
    before = (output / "model.keras").read_bytes()
    code = main(
        [
            "train",
            str(root / "train"),
            "--backbone",
            "mobilenet_v2",
            "--weights",
            "none",
            "--image-size",
            "32",
            "--output",
            str(output),
        ]
    )
    assert code == EXIT_BAD_INPUT
    assert "--overwrite" in capsys.readouterr().err
    assert (output / "model.keras").read_bytes() == before


def test_train_reports_bad_data_before_training(tmp_path, capsys):
    _image_folder(tmp_path / "one_class", classes=("cats",))
    code = main(
        [
            "train",
            str(tmp_path / "one_class"),
            "--backbone",
            "mobilenet_v2",
            "--weights",
            "none",
            "--image-size",
            "32",
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert code == EXIT_BAD_INPUT
    assert "2 classes" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_train_rejects_unknown_backbone_with_close_names(tmp_path, capsys):
    _image_folder(tmp_path / "data")
    code = main(
        [
            "train",
            str(tmp_path / "data"),
            "--backbone",
            "mobilenet_v9",
            "--weights",
            "none",
            "--image-size",
            "32",
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert code == EXIT_BAD_INPUT
    assert "mobilenet_v2" in capsys.readouterr().err


def test_evaluate_json(trained_run, capsys):
    root, output = trained_run
    assert main(["evaluate", str(output / "model.keras"), str(root / "val"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["num_examples"] == 6
    assert result["class_names"] == ["cats", "dogs"]
    assert np.array(result["confusion_matrix"]).sum() == 6


def test_evaluate_rejects_folder_with_other_classes(trained_run, tmp_path, capsys):
    _, output = trained_run
    _image_folder(tmp_path / "birds", classes=("crows", "owls"), per_class=2)
    assert main(["evaluate", str(output / "model.keras"), str(tmp_path / "birds")]) == EXIT_BAD_INPUT
    assert "differ" in capsys.readouterr().err


def test_predict(trained_run, capsys):
    root, output = trained_run
    images = [str(root / "val" / "cats" / "0.jpg"), str(root / "val" / "dogs" / "0.jpg")]
    assert main(["predict", str(output / "model.keras"), *images, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["predictions"]
    assert [row["image"] for row in rows] == images
    assert all(row["class"] in ("cats", "dogs") and 0.5 <= row["probability"] <= 1 for row in rows)


def test_predict_names_unreadable_image(trained_run, tmp_path, capsys):
    _, output = trained_run
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    assert main(["predict", str(output / "model.keras"), str(bad)]) == EXIT_BAD_INPUT
    assert str(bad) in capsys.readouterr().err


def test_export_int8_checks_and_evaluate_runs_the_tflite_file(trained_run, tmp_path, capsys):
    root, output = trained_run
    path = tmp_path / "model.tflite"
    assert (
        main(
            [
                "export",
                str(output / "model.keras"),
                "--quantize",
                "int8",
                "--representative-data",
                str(root / "train"),
                "--num-samples",
                "8",
                "--eval-data",
                str(root / "val"),
                "--output",
                str(path),
                "--json",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["quantization"]["mode"] == "int8" and summary["checked_on"] == "eval-data"
    # The tiny model's scores are near-ties (0.4997/0.5003), so agreement says little here.
    assert summary["num_examples"] == 6 and summary["max_abs_difference"] < 0.05
    assert summary["size_bytes"] == os.path.getsize(path) and "top-1 agreement" in out
    assert json.loads((tmp_path / "model.tflite.json").read_text())["class_names"] == ["cats", "dogs"]

    assert main(["evaluate", str(path), str(root / "val"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["num_examples"] == 6 and result["accuracy"] == summary["exported_accuracy"]

    # Nothing is overwritten without --overwrite, and bad combinations stop before any work.
    before = path.read_bytes()
    for argv, message in [
        (["--output", str(path)], "exists"),
        (["--quantize", "int8", "--output", str(tmp_path / "x.tflite")], "--representative-data"),
        (["--output", str(tmp_path / "x.bin")], ".tflite"),
        (["--max-accuracy-drop", "0.01", "--output", str(tmp_path / "x.tflite")], "--eval-data"),
        (["--format", "saved_model", "--quantize", "dynamic", "--output", str(tmp_path / "x")], "tflite"),
    ]:
        assert main(["export", str(output / "model.keras"), *argv]) == EXIT_BAD_INPUT
        assert message in capsys.readouterr().err
    assert path.read_bytes() == before


def test_export_within_an_accuracy_budget_and_saved_model(trained_run, tmp_path, capsys):
    root, output = trained_run
    path = tmp_path / "budget.tflite"
    assert (
        main(
            [
                "export",
                str(output / "model.keras"),
                "--eval-data",
                str(root / "val"),
                "--max-accuracy-drop",
                "0.5",
                "--output",
                str(path),
                "--json",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    # Any drop fits in 0.5, so the smallest file wins (dynamic range can beat int8 on size).
    sizes = {candidate["quantization"]: candidate["size_bytes"] for candidate in summary["candidates"]}
    assert sorted(sizes) == ["dynamic", "float16", "int8", "none"]
    assert summary["quantization"]["mode"] == min(sizes, key=sizes.get) and summary["size_bytes"] == min(sizes.values())
    assert f"chose {summary['quantization']['mode']}" in out and "float16" in out
    assert (
        main(["export", str(output / "model.keras"), "--format", "saved_model", "--output", str(tmp_path / "saved")])
        == 0
    )
    assert "Checked on 8 random inputs" in capsys.readouterr().out
    assert (tmp_path / "saved" / "metadata.json").exists()


@pytest.mark.parametrize(
    "method, extra",
    [
        ("prune", ["--sparsity", "0.5", "--epochs", "2"]),
        ("qat", ["--epochs", "1"]),
        ("low-bit", ["--scheme", "ternary", "--epochs", "1"]),
    ],
)
def test_optimize_writes_tflite_and_report(trained_run, tmp_path, capsys, method, extra):
    root, output = trained_run
    out_dir = tmp_path / method
    assert (
        main(
            [
                "optimize",
                str(output / "model.keras"),
                str(root / "train"),
                "--method",
                method,
                "--val-dir",
                str(root / "val"),
                "--batch-size",
                "4",
                *extra,
                "--output",
                str(out_dir),
                "--json",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    summary = json.loads(printed.strip().splitlines()[-1])
    assert sorted(os.listdir(out_dir)) == [".keras-transfer.json", "model.tflite", "model.tflite.json", "report.json"]
    report = json.loads((out_dir / "report.json").read_text())
    for key in ("accuracy", "tflite_accuracy", "original_accuracy", "size_bytes", "latency_ms"):
        assert report[key] is not None and report[key] == summary[key]
    assert report["num_examples"] == 6 and report["latency_threads"] == 1
    assert report["size_bytes"] == os.path.getsize(out_dir / "model.tflite") and "ms/img" in printed
    assert f"1 thread, {report['environment']['cpu']}" in printed  # a latency names its CPU
    if method == "prune":
        assert report["sparsity"] > 0.3  # over all kernels; depthwise kernels are not pruned
    elif method == "low-bit":
        assert report["settings"]["scheme"] == "ternary" and report["low_bit_layers"]
        assert report["bit_packed_size_bytes"] < report["size_bytes"] and "packed at 2 bit(s)" in printed
        metadata = json.loads((out_dir / "model.tflite.json").read_text())
        assert metadata["quantization"]["mode"] == "weight_only_mixed_wi4_wi8"
    else:
        assert json.loads((out_dir / "model.tflite.json").read_text())["quantization"]["mode"] == "int8"
    # The exported file evaluates like any other.
    assert main(["evaluate", str(out_dir / "model.tflite"), str(root / "val"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy"] == report["tflite_accuracy"]


def test_optimize_bad_input_exits_2_before_training(trained_run, tmp_path, capsys):
    root, output = trained_run
    model = str(output / "model.keras")
    for argv, message in [
        ([model, str(root / "train"), "--method", "prune", "--sparsity", "1.5"], "between 0 and 1"),
        ([model, str(root / "train"), "--method", "cluster", "--clusters", "1"], ">= 2"),
        ([model, str(root / "train"), "--method", "distill"], "invalid choice"),
        ([model, str(root / "train"), "--method", "low-bit", "--scheme", "octal"], "invalid choice"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["optimize", *argv, "--output", str(tmp_path / "x")])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    _image_folder(tmp_path / "birds", classes=("crows", "owls"), per_class=2)
    assert (
        main(["optimize", model, str(tmp_path / "birds"), "--method", "prune", "--output", str(tmp_path / "y")])
        == EXIT_BAD_INPUT
    )
    assert "differ" in capsys.readouterr().err and not (tmp_path / "y").exists()
    for argv, message in [
        (["--method", "prune", "--scheme", "binary"], "--scheme applies to --method low-bit"),
        (["--method", "low-bit", "--layers", "nowhere"], "nowhere"),
    ]:
        assert main(["optimize", model, str(root / "train"), *argv, "--output", str(tmp_path / "z")]) == EXIT_BAD_INPUT
        assert message in capsys.readouterr().err and not (tmp_path / "z").exists()


def test_evaluate_tflite_needs_its_metadata(trained_run, tmp_path, capsys):
    root, output = trained_run
    path = tmp_path / "bare.tflite"
    assert main(["export", str(output / "model.keras"), "--output", str(path)]) == 0
    os.remove(str(path) + ".json")
    capsys.readouterr()
    assert main(["evaluate", str(path), str(root / "val")]) == EXIT_BAD_INPUT
    assert "no metadata" in capsys.readouterr().err


def test_backbones_lists_registry(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    for name in ("vgg16", "resnet152_v2", "mobilenet_v3_large", "efficientnet_v2_l", "convnext_xlarge"):
        assert name in out
    assert main(["backbones", "--family", "VGG", "--json"]) == 0
    assert [spec["name"] for spec in json.loads(capsys.readouterr().out)] == ["vgg16", "vgg19"]


@pytest.mark.parametrize(
    "command", ["backbones", "train", "train-text", "evaluate", "predict", "export", "optimize", "demo"]
)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: keras-transfer {command}" in capsys.readouterr().out


def test_installed_script_runs():
    script = shutil.which("keras-transfer")
    args = [script] if script else [sys.executable, "-m", "keras_transfer.cli"]
    result = subprocess.run([*args, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "backbones" in result.stdout and "train" in result.stdout


def test_demo_compares_both_sides_on_the_same_seeds(capsys, monkeypatch):
    from keras_transfer import demo

    # The real settings take about a minute (measured numbers: keras_transfer/demo.py, README); tiny ones here.
    tiny = functools.partial(demo.run_demo, seeds=(0, 1), source_epochs=1, source_augment_copies=1, target_epochs=2)
    monkeypatch.setattr(demo, "run_demo", tiny)
    assert main(["demo", "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    assert result["seeds"] == [0, 1]
    assert result["source_digits"] == [5, 6, 7, 8, 9] and result["target_digits"] == [0, 1, 2, 3, 4]
    transfer, scratch = result["transfer_accuracy_per_seed"], result["scratch_accuracy_per_seed"]
    assert len(transfer) == len(scratch) == 2
    assert result["gap_per_seed"] == pytest.approx([t - s for t, s in zip(transfer, scratch)])
    assert result["transfer_wins"] == sum(t > s for t, s in zip(transfer, scratch))
    assert result["transfer_spread"]["mean"] == pytest.approx(np.mean(transfer))
    assert result["scratch_spread"]["std"] == pytest.approx(np.std(scratch, ddof=1))
    assert result["gap_spread"]["min"] == pytest.approx(min(result["gap_per_seed"]))
    assert result["target_test_examples"] == 901 - 2 * 5
    # Each phase and side is announced as it runs, then the table.
    for line in ("Source task, digits 5-9", "Target task, digits 0-4", "transfer:", "scratch:", "seed 1: transfer"):
        assert line in out
    assert "per seed" in out and "of 2 seeds" in out


@pytest.mark.integration
def test_the_real_demo_shows_transfer_beating_scratch_on_every_seed():
    """The demo's claim at its real settings (about a minute): deterministic on CPU, so exact."""
    from keras_transfer.demo import run_demo

    result = run_demo(verbose=0)
    assert result["transfer_wins"] == len(result["seeds"]) == 8
    assert result["gap_spread"]["mean"] >= 0.04 and result["gap_spread"]["min"] > 0
    assert result["source_accuracy"] > 0.95


def test_format_demo_shows_the_spread_and_the_per_seed_gap():
    from keras_transfer.demo import _spread, format_demo

    transfer, scratch = [0.932, 0.945, 0.891], [0.847, 0.951, 0.860]
    gaps = [t - s for t, s in zip(transfer, scratch)]
    result = {
        "transfer_accuracy_per_seed": transfer,
        "scratch_accuracy_per_seed": scratch,
        "transfer_spread": _spread(transfer),
        "scratch_spread": _spread(scratch),
        "gap_per_seed": gaps,
        "gap_spread": _spread(gaps),
        "transfer_wins": 2,
        "source_accuracy": 1.0,
        "source_digits": [5, 6, 7, 8, 9],
        "target_digits": [0, 1, 2, 3, 4],
        "source_training_images": 717,
        "source_augmented_images": 2151,
        "source_epochs": 30,
        "target_epochs": 20,
        "transfer_head_epochs": 10,
        "shots_per_class": 2,
        "target_test_examples": 891,
        "seeds": [0, 1, 2],
        "seconds": 61.0,
    }
    text = format_demo(result)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith("  ")}
    assert rows["accuracy"] == ["mean", "std", "min", "max", "per", "seed"]
    # mean, std (over seeds, n-1), min, max, then every seed's value.
    assert rows["transfer"] == ["0.923", "0.028", "0.891", "0.945", "0.932", "0.945", "0.891"]
    assert rows["scratch"] == ["0.886", "0.057", "0.847", "0.951", "0.847", "0.951", "0.860"]
    assert rows["gap"] == ["+0.037", "0.046", "-0.006", "+0.085", "+0.085", "-0.006", "+0.031"]
    assert "Transfer scored higher on 2 of 3 seeds" in text
    assert "digits 5-9" in text and "digits 0-4" in text and "891 held-out images" in text
    assert "head on the frozen features for 10 epochs, then everything for 10" in text
    assert "everything for 20 epochs" in text


@pytest.mark.integration
def test_train_on_real_cats_and_dogs(assets_dir, tmp_path):
    source = os.path.join(assets_dir, "images", "cats_and_dogs_filtered")
    for split, count in (("train", 50), ("validation", 25)):
        for name in ("cats", "dogs"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for file in sorted(os.listdir(os.path.join(source, split, name)))[:count]:
                os.symlink(os.path.join(source, split, name, file), folder / file)
    output = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(tmp_path / "train"),
                "--val-dir",
                str(tmp_path / "validation"),
                "--backbone",
                "mobilenet_v2",
                "--image-size",
                "96",
                "--head-epochs",
                "2",
                "--finetune-epochs",
                "1",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    report = json.loads((output / "report.json").read_text())
    print("CLI train on 100 real cats/dogs images, val accuracy:", report["val_accuracy"])
    assert report["val_accuracy"] >= 0.75


# --------------------------------------------------------------------------
# Text: train-text, and evaluate / predict / backbones on text models.

TEXT_CLASSES = ["negative", "positive"]
TEXT_REPORT_KEYS = {
    "val_accuracy",
    "classes",
    "trainable_params",
    "total_params",
    "trainable_percent",
    "seconds",
    "recipe",
    "strategy",
    "sequence_length",
    "backbone",
    "num_train",
    "num_val",
}


def _write_table(path, rows, delimiter=",", header=("text", "label")):
    lines = [delimiter.join(header)] if header else []
    lines += [delimiter.join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _sentiment_rows(repeats, label_first=False):
    texts, labels = sentiment_texts(repeats)
    return [
        (TEXT_CLASSES[label], text) if label_first else (text, TEXT_CLASSES[label])
        for text, label in zip(texts, labels)
    ]


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    """A tiny BERT saved as a keras-hub preset folder, and small CSV/TSV files of toy sentiment."""
    root = tmp_path_factory.mktemp("cli_text")
    backbone, preprocessor = tiny_bert()
    backbone.save_to_preset(str(root / "preset"))
    preprocessor.save_to_preset(str(root / "preset"))
    _write_table(root / "train.csv", _sentiment_rows(2))
    _write_table(root / "val.csv", _sentiment_rows(1))
    # SMS-spam style: label first, tab-separated, no header (columns by index).
    _write_table(root / "train.tsv", _sentiment_rows(1, label_first=True), "\t", header=None)
    return root


def _train_text(text_files, output, *extra):
    return main(
        [
            "train-text",
            str(text_files / "train.csv"),
            "--backbone",
            str(text_files / "preset"),
            "--weights",
            "none",
            "--batch-size",
            "8",
            "--output",
            str(output),
            *extra,
        ]
    )


def _last_json_line(out):
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def text_run(text_files):
    """One LoRA training, reused by the evaluate and predict tests."""
    output = text_files / "lora_run"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = _train_text(
            text_files, output, "--val-file", str(text_files / "val.csv"), "--lora-rank", "2", "--epochs", "1", "--json"
        )
    assert code == 0
    return output, stdout.getvalue().strip().splitlines()


def test_train_text_lora_writes_model_report_and_plots(text_files, text_run):
    output, printed = text_run
    assert sorted(os.listdir(output)) == RUN_FILES
    report = json.loads((output / "report.json").read_text())
    assert TEXT_REPORT_KEYS <= set(report)
    assert report["recipe"] == report["strategy"] == "lora" and report["lora_rank"] == 2 and report["lora_layers"] == 4
    assert report["classes"] == TEXT_CLASSES
    assert report["num_train"] == 24 and report["num_val"] == 12
    assert report["backbone"] == str(text_files / "preset")
    assert 2 <= report["sequence_length"] <= 32  # chosen from the texts, capped by the backbone
    assert 0 < report["trainable_params"] < report["total_params"] and report["trainable_percent"] < 10
    assert report["phases"]["finetune"]["epochs"] == 1 and "head" not in report["phases"]
    assert 0.0 <= report["val_accuracy"] <= 1.0 and report["seconds"] > 0
    for png in ("confusion_matrix.png", "training_curves.png"):
        assert (output / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The summary ends with where the files went, then one line of JSON.
    assert any("validation accuracy" in line and "LoRA rank 2" in line for line in printed)
    assert f"to {output}" in printed[-2]
    assert _last_json_line(printed[-1])["val_accuracy"] == report["val_accuracy"]


@pytest.mark.parametrize("recipe", ["full", "frozen"])
def test_train_text_full_and_frozen(text_files, tmp_path, recipe):
    output = tmp_path / "run"
    if recipe == "full":
        # The whole network; validation carved out of the file.
        code = _train_text(
            text_files, output, "--recipe", "full", "--epochs", "1", "--val-split", "0.25", "--sequence-length", "8"
        )
    else:
        # The head alone, no validation data, columns by index in a headerless TSV; --strategy is
        # the old name of --recipe.
        code = main(
            [
                "train-text",
                str(text_files / "train.tsv"),
                "--text-column",
                "1",
                "--label-column",
                "0",
                "--backbone",
                str(text_files / "preset"),
                "--weights",
                "none",
                "--strategy",
                "frozen",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--output",
                str(output),
            ]
        )
    assert code == 0
    report = json.loads((output / "report.json").read_text())
    assert TEXT_REPORT_KEYS <= set(report) and report["recipe"] == report["strategy"] == recipe
    assert report["classes"] == TEXT_CLASSES and report["lora_rank"] is None
    if recipe == "full":
        assert sorted(os.listdir(output)) == RUN_FILES
        assert report["num_train"] == 18 and report["num_val"] == 6 and report["sequence_length"] == 8
        assert list(report["phases"]) == ["finetune"] and report["phases"]["finetune"]["epochs"] == 1
        assert report["trainable_params"] == report["total_params"]
        assert report["learning_rate"] == recipes.TEXT_RECIPES["full"].finetune_learning_rate
    else:
        manifest_and_files = [".keras-transfer.json", "model.keras", "report.json", "training_curves.png"]
        assert sorted(os.listdir(output)) == manifest_and_files
        assert report["num_train"] == 12 and report["num_val"] == 0 and report["val_accuracy"] is None
        assert list(report["phases"]) == ["head"]
        assert report["trainable_params"] == 32 * 2 + 2  # the Dense head on the 32-wide pooler
        assert report["learning_rate"] == recipes.TEXT_RECIPES["frozen"].head_learning_rate


def test_evaluate_text_model_on_a_csv_file(text_files, text_run, capsys):
    output, _ = text_run
    assert main(["evaluate", str(output / "model.keras"), str(text_files / "val.csv"), "--json"]) == 0
    result = _last_json_line(capsys.readouterr().out)
    assert result["num_examples"] == 12 and result["class_names"] == TEXT_CLASSES
    assert np.array(result["confusion_matrix"]).sum() == 12
    # The reloaded model scores the validation file as it did right after training.
    report = json.loads((output / "report.json").read_text())
    assert result["accuracy"] == pytest.approx(report["val_accuracy"])

    # Columns by index, and the text report.
    assert (
        main(
            [
                "evaluate",
                str(output / "model.keras"),
                str(text_files / "train.tsv"),
                "--text-column",
                "1",
                "--label-column",
                "0",
            ]
        )
        == 0
    )
    assert "accuracy" in capsys.readouterr().out


def test_evaluate_model_accepts_a_text_classifier_and_a_string_dataset(text_files, text_run):
    import keras

    import keras_transfer as kt

    output, _ = text_run
    model = keras.saving.load_model(output / "model.keras", compile=False)
    dataset = kt.data.text_file(text_files / "val.csv", text_column="text", label_column="label", shuffle=False)
    report = kt.evaluation.evaluate_model(model, dataset)
    assert report.num_examples == 12 and report.class_names == TEXT_CLASSES
    assert report.accuracy == pytest.approx(json.loads((output / "report.json").read_text())["val_accuracy"])


@pytest.mark.parametrize(
    "options, expected",
    [
        (dict(), ("full", None, 0)),
        (dict(lora_rank=4), ("lora", 4, 0)),
        (dict(recipe="lora", head_epochs=2), ("lora", recipes.DEFAULT_LORA_RANK, 2)),
        (dict(recipe="frozen"), ("frozen", None, 3)),
        (dict(recipe="full", head_epochs=1), ("full", None, 1)),
    ],
)
def test_text_recipe_options(options, expected):
    args = cli.build_parser().parse_args(["train-text", "t.csv", "--backbone", "b", "--output", "o"])
    for key, value in options.items():
        setattr(args, key, value)
    recipe = train_text_command.text_recipe(args)
    assert (recipes.text_recipe_name(recipe), recipe.lora_rank, recipe.head_epochs) == expected
    # The recipe is the library's, with only the options given changed.
    assert recipe == recipes.text_recipe(
        expected[0], lora_rank=options.get("lora_rank"), head_epochs=options.get("head_epochs")
    )


def test_train_text_recipe_options_and_strategy_alias():
    parse = cli.build_parser().parse_args
    base = ["train-text", "t.csv", "--backbone", "b", "--output", "o"]
    assert parse([*base, "--strategy", "frozen"]).recipe == "frozen"  # the old name still works
    args = parse([*base, "--recipe", "lora", "--epochs", "2", "--lr", "1e-3", "--early-stopping", "1"])
    assert train_text_command.text_recipe(args) == recipes.text_recipe(
        "lora", epochs=2, learning_rate=1e-3, early_stopping=1
    )
    args = parse([*base, "--recipe", "frozen", "--epochs", "4", "--lr", "0.01"])
    recipe = train_text_command.text_recipe(args)
    assert (recipe.head_epochs, recipe.head_learning_rate, recipe.finetune_epochs) == (4, 0.01, 0)


def test_train_builds_the_image_recipe_from_its_options():
    from keras_transfer.cli import train as train_command

    parse = cli.build_parser().parse_args
    base = ["train", "d", "--backbone", "b", "--output", "o"]
    assert train_command.image_recipe(parse(base)) == recipes.IMAGE_RECIPE
    args = parse(
        [
            *base,
            "--head-epochs",
            "2",
            "--unfreeze",
            "all",
            "--finetune-optimizer",
            "adam",
            "--finetune-lr",
            "1e-4",
            "--schedule",
            "one_cycle",
            "--cache-features",
        ]
    )
    assert train_command.image_recipe(args) == recipes.IMAGE_RECIPE.replace(
        head_epochs=2,
        unfreeze="all",
        finetune_optimizer="adam",
        finetune_learning_rate=1e-4,
        schedule="one_cycle",
        cache_features=True,
    )
    assert train_command.image_recipe(parse([*base, "--schedule", "constant"])).schedule is None
    # The defaults turn off one by one.
    plain = train_command.image_recipe(parse([*base, "--no-cache-features", "--finetune-patience", "0"]))
    assert (plain.cache_features, plain.finetune_patience) == (False, 0)
    assert train_command.augmentation(parse(base), recipes.IMAGE_RECIPE) is None  # one cached copy: no augmentation
    assert train_command.augmentation(parse([*base, "--no-cache-features"]), plain) == "standard"
    assert train_command.augmentation(parse([*base, "--augment", "flip"]), recipes.IMAGE_RECIPE) == "flip"
    assert train_command.augmentation(parse([*base, "--augment", "none"]), plain) is None


def test_train_text_epochs_follow_the_size_of_the_data():
    parse = cli.build_parser().parse_args
    args = parse(["train-text", "t.csv", "--backbone", "b", "--output", "o"])
    assert [train_text_command.text_recipe(args, n).finetune_epochs for n in (500, 13_333, 13_334, 20_001)] == [
        3,
        3,
        2,
        1,
    ]
    assert train_text_command.text_recipe(args, 67_349).schedule == "warmup_cosine"
    args = parse(["train-text", "t.csv", "--backbone", "b", "--output", "o", "--epochs", "2", "--schedule", "constant"])
    recipe = train_text_command.text_recipe(args, 67_349)
    assert (recipe.finetune_epochs, recipe.schedule) == (2, None)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--head-epochs", "-1"], "--head-epochs must be an integer >= 0"),
        (["--unfreeze", "1.5"], "--unfreeze 1.5"),
        (["--early-stopping", "0"], "--early-stopping must be an integer >= 1"),
        (["--finetune-lr", "-0.001"], "--finetune-lr must be a number >= 0"),
    ],
)
def test_train_recipe_errors_exit_2_before_loading_data(tmp_path, capsys, extra, message):
    # DATA_DIR does not exist: the recipe's error comes first, without a traceback.
    code = main(
        [
            "train",
            str(tmp_path / "missing"),
            "--backbone",
            "mobilenet_v2",
            "--weights",
            "none",
            "--output",
            str(tmp_path / "out"),
            *extra,
        ]
    )
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "missing" not in err
    assert not (tmp_path / "out").exists()


def test_help_shows_the_library_defaults_and_choices(capsys):
    from keras_transfer import data
    from keras_transfer.deploy import quantization
    from keras_transfer.deploy.tfmot import low_bit
    from keras_transfer.models import text_classifier

    def help_of(command):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        return " ".join(capsys.readouterr().out.split())

    text = help_of("train-text")
    full, frozen, lora = (recipes.TEXT_RECIPES[name] for name in ("full", "frozen", "lora"))
    assert f"{full.finetune_learning_rate:g} full, {frozen.head_learning_rate:g} frozen" in text
    assert f"default with lora: {lora.lora_rank}" in text and "--recipe {full,frozen,lora}" in text
    assert "{" + ",".join(text_classifier.POOLINGS) + "}" in text
    assert ", ".join(data.CLEANING_STEPS) in text
    image = help_of("train")
    recipe = recipes.IMAGE_RECIPE
    assert f"(default: {recipe.head_epochs}," in image and f"default: {recipe.finetune_learning_rate:g}" in image
    assert "{" + ",".join(recipes.OPTIMIZERS) + "}" in image and "one_cycle" in image
    assert "{" + ",".join(quantization.QUANTIZATION_MODES) + "}" in help_of("export")
    assert "--method {qat,prune,cluster,low-bit}" in help_of("optimize")
    assert "--scheme {" + ",".join(low_bit.SCHEMES) + "}" in help_of("optimize")


def test_evaluate_text_model_rejects_unknown_labels(text_files, text_run, tmp_path, capsys):
    output, _ = text_run
    other = _write_table(tmp_path / "other.csv", [("good film", "positive"), ("so so", "neutral")])
    assert main(["evaluate", str(output / "model.keras"), str(other)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "'neutral'" in err and "line 3" in err and "Traceback" not in err


def test_predict_text_sentences_and_file(text_files, text_run, tmp_path, capsys):
    output, _ = text_run
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("the worst plot\n\nnice film\n")
    assert (
        main(["predict", str(output / "model.keras"), "good film", "awful movie", "--file", str(sentences), "--json"])
        == 0
    )
    rows = _last_json_line(capsys.readouterr().out)["predictions"]
    assert [row["text"] for row in rows] == ["good film", "awful movie", "the worst plot", "nice film"]
    assert all(row["class"] in TEXT_CLASSES and 0.5 <= row["probability"] <= 1 for row in rows)

    assert main(["predict", str(output / "model.keras"), "it was fine", "--clean", "lower"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.split()[0] in TEXT_CLASSES and line.endswith("it was fine")


def test_predict_needs_inputs(text_run, capsys):
    output, _ = text_run
    assert main(["predict", str(output / "model.keras")]) == EXIT_BAD_INPUT
    assert "nothing to predict" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--text-column", "review"], "column(s) ['review'] not found"),
        (["--label-column", "7", "--text-column", "0"], "field(s) but the columns need 8"),
        (["--val-split", "1.5"], "--val-split must be between 0 and 1"),
        (["--recipe", "full", "--lora-rank", "4"], "--lora-rank trains LoRA adapters"),
        (["--strategy", "frozen", "--head-epochs", "1"], "drop --head-epochs"),
        (["--sequence-length", "1"], "--sequence-length 1 is too short"),
        (["--sequence-length", "500"], "--sequence-length 500 is out of range: the backbone takes 2 to 32"),
        (["--weights", "missing.weights.h5"], "neither 'pretrained', None, nor an existing weights file"),
        (["--pooling", "mean", "--lora-rank", "2", "--clean", "shout"], "invalid choice: 'shout'"),
    ],
)
def test_train_text_bad_input_exits_2_before_training(text_files, tmp_path, capsys, extra, message):
    output = tmp_path / "out"
    if message.startswith("invalid choice"):  # argparse's own check, also exit 2
        with pytest.raises(SystemExit) as exit_info:
            _train_text(text_files, output, *extra)
        code = exit_info.value.code
    else:
        code = _train_text(text_files, output, *extra)
    assert code == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert "Epoch" not in captured.out
    assert not output.exists()


def test_train_text_missing_file_and_unknown_backbone(text_files, tmp_path, capsys):
    output = tmp_path / "out"
    code = main(
        ["train-text", str(tmp_path / "nope.csv"), "--backbone", str(text_files / "preset"), "--output", str(output)]
    )
    assert code == EXIT_BAD_INPUT
    assert "nope.csv' does not exist" in capsys.readouterr().err

    code = main(
        ["train-text", str(text_files / "train.csv"), "--backbone", "bert_tiny_en_uncasd", "--output", str(output)]
    )
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Unknown text backbone 'bert_tiny_en_uncasd'" in err and "bert_tiny_en_uncased" in err
    assert not output.exists()


def test_train_text_refuses_non_empty_output_without_overwrite(text_files, text_run, capsys):
    output, _ = text_run
    before = (output / "model.keras").read_bytes()
    assert _train_text(text_files, output, "--epochs", "1") == EXIT_BAD_INPUT
    assert "--overwrite" in capsys.readouterr().err
    assert (output / "model.keras").read_bytes() == before


def test_backbones_text_lists_keras_hub_presets(capsys):
    assert main(["backbones", "--text"]) == 0
    out = capsys.readouterr().out
    for name in ("BERT", "DistilBERT", "DeBERTaV3", "bert_tiny_en_uncased", "distil_bert_base_en_uncased"):
        assert name in out
    assert main(["backbones", "--text", "--family", "bert", "--json"]) == 0
    families = json.loads(capsys.readouterr().out)
    assert list(families) == ["BERT"] and "bert_base_en_uncased" in families["BERT"]
    assert main(["backbones", "--text", "--family", "GPT"]) == EXIT_BAD_INPUT
    assert "families: BERT" in capsys.readouterr().err


@pytest.mark.integration
def test_train_text_lora_on_real_sms_spam(assets_dir, tmp_path, capsys):
    import time

    output = tmp_path / "run"
    start = time.perf_counter()
    assert (
        main(
            [
                "train-text",
                os.path.join(assets_dir, "text", "sms_spam", "SMSSpamCollection"),
                "--text-column",
                "SMS",
                "--label-column",
                "Label",
                "--max-examples",
                "300",
                "--val-split",
                "0.25",
                "--backbone",
                os.path.join(assets_dir, "keras-hub", "all-MiniLM-L6-v2"),
                "--recipe",
                "lora",
                "--epochs",
                "2",
                "--batch-size",
                "16",
                "--sequence-length",
                "48",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    seconds = time.perf_counter() - start
    report = json.loads((output / "report.json").read_text())
    matrix = np.array(report["evaluation"]["confusion_matrix"])
    majority = matrix.sum(axis=1).max() / matrix.sum()
    with capsys.disabled():
        print(
            f"\ntrain-text LoRA on MiniLM, SMS spam {report['num_train']} train / {report['num_val']} val: "
            f"val accuracy {report['val_accuracy']:.3f} (majority {majority:.3f}), "
            f"{report['trainable_percent']:.2f}% trained, {seconds:.0f} s in all"
        )
    assert report["classes"] == ["ham", "spam"] and report["num_val"] == 75
    assert report["pooling"] == "mean"  # from the folder's 1_Pooling/config.json
    assert report["trainable_percent"] < 5 and report["total_params"] > 22_000_000
    assert report["val_accuracy"] >= 0.9 and report["val_accuracy"] >= majority + 0.05


def test_every_command_shows_examples_that_parse_and_helps_every_option(tmp_path):
    import shlex

    from keras_transfer.cli.common import expand_config

    parser = cli.build_parser()
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    for name, command in subparsers.choices.items():
        assert command.description, f"{name} has no description"
        assert all(action.help for action in command._actions), f"{name} has an option without help"
        text = command.format_help()
        assert "examples:\n  keras-transfer " + name in text
        examples = [line.strip() for line in text.split("examples:\n", 1)[1].splitlines() if line.strip()]
        assert examples
        for example in examples:
            words = shlex.split(example)
            assert words[:2] == ["keras-transfer", name]
            if "--config" in words:  # the report an earlier example's run wrote
                report = tmp_path / words[words.index("--config") + 1].replace("/", "_")
                report.write_text(json.dumps({"command_line": shlex.split(examples[0])[1:]}))
                words[words.index("--config") + 1] = str(report)
            parser.parse_args(expand_config(words[1:]))  # argparse exits (SystemExit) on an example that does not parse
