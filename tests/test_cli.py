"""The `keras-transfer` command line, end to end through `main()` and the installed script."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_transfer.cli import EXIT_BAD_INPUT, main


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
    code = main([
        "train", str(train_dir), "--val-dir", str(val_dir), "--backbone", "mobilenet_v2",
        "--weights", "none", "--image-size", "32", "--head-epochs", "1", "--finetune-epochs", "1",
        "--batch-size", "4", "--output", str(output),
    ])
    assert code == 0
    return root, output


def test_train_writes_model_report_and_plots(trained_run):
    root, output = trained_run
    assert sorted(os.listdir(output)) == [
        "confusion_matrix.png", "model.keras", "report.json", "training_curves.png"
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


def test_train_refuses_non_empty_output_without_overwrite(trained_run, capsys):
    root, output = trained_run
    before = (output / "model.keras").read_bytes()
    code = main(["train", str(root / "train"), "--backbone", "mobilenet_v2", "--weights", "none",
                 "--image-size", "32", "--output", str(output)])
    assert code == EXIT_BAD_INPUT
    assert "--overwrite" in capsys.readouterr().err
    assert (output / "model.keras").read_bytes() == before


def test_train_reports_bad_data_before_training(tmp_path, capsys):
    _image_folder(tmp_path / "one_class", classes=("cats",))
    code = main(["train", str(tmp_path / "one_class"), "--backbone", "mobilenet_v2", "--weights", "none",
                 "--image-size", "32", "--output", str(tmp_path / "out")])
    assert code == EXIT_BAD_INPUT
    assert "2 classes" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_train_rejects_unknown_backbone_with_close_names(tmp_path, capsys):
    _image_folder(tmp_path / "data")
    code = main(["train", str(tmp_path / "data"), "--backbone", "mobilenet_v9", "--weights", "none",
                 "--image-size", "32", "--output", str(tmp_path / "out")])
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
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [row["image"] for row in rows] == images
    assert all(row["class"] in ("cats", "dogs") and 0.5 <= row["probability"] <= 1 for row in rows)


def test_predict_names_unreadable_image(trained_run, tmp_path, capsys):
    _, output = trained_run
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    assert main(["predict", str(output / "model.keras"), str(bad)]) == EXIT_BAD_INPUT
    assert str(bad) in capsys.readouterr().err


def test_backbones_lists_registry(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    for name in ("vgg16", "resnet152_v2", "mobilenet_v3_large", "efficientnet_v2_l", "convnext_xlarge"):
        assert name in out
    assert main(["backbones", "--family", "VGG", "--json"]) == 0
    assert [spec["name"] for spec in json.loads(capsys.readouterr().out)] == ["vgg16", "vgg19"]


@pytest.mark.parametrize("command", ["backbones", "train", "evaluate", "predict", "demo"])
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


def test_demo_shows_transfer_beating_scratch(capsys):
    assert main(["demo", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["transfer_accuracy"] > result["scratch_accuracy"]
    assert result["source_accuracy"] > 0.9


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
    assert main([
        "train", str(tmp_path / "train"), "--val-dir", str(tmp_path / "validation"),
        "--backbone", "mobilenet_v2", "--image-size", "96", "--head-epochs", "2",
        "--finetune-epochs", "1", "--output", str(output),
    ]) == 0
    report = json.loads((output / "report.json").read_text())
    print("CLI train on 100 real cats/dogs images, val accuracy:", report["val_accuracy"])
    assert report["val_accuracy"] >= 0.75
