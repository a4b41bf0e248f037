"""Transactional outputs (issue 13, defects 4 and 5): a run or an export replaces what was there whole, or not at all.

A run writes into OUT.partial and moves it to OUT when everything is written;
`--overwrite` replaces a previous run only when every file in it is one
keras-transfer wrote (its manifest, or the known names of runs older than
manifests), and never deletes a file it did not write.
"""

import json
import os
import stat

import numpy as np
import pytest
from helpers import RUN_FILES, image_dataset, tiny_classifier, train_tiny_cli

import keras_transfer as kt
from keras_transfer import evaluation
from keras_transfer.cli import EXIT_BAD_INPUT, main
from keras_transfer.deploy import export as ex


def _normal_folder_mode():
    return kt.files.normal_mode(folder=True)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _train(images, output, *extra):
    return train_tiny_cli(images, output, *extra)


def test_overwrite_refuses_a_folder_with_files_it_did_not_write_before_any_work(tmp_path, capsys):
    output = tmp_path / "run"
    output.mkdir()
    (output / "model.keras").write_text("an old model")
    (output / "notes.txt").write_text("the user's notes")
    (output / "data").mkdir()
    # The data folder does not exist: the refusal must come before anything else.
    code = _train(str(tmp_path / "no_such_images"), output, "--overwrite")
    assert code == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "did not write: data/, notes.txt" in error and "nothing was changed" in error
    assert sorted(os.listdir(output)) == ["data", "model.keras", "notes.txt"]
    assert (output / "notes.txt").read_text() == "the user's notes"
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no OUT.partial


def test_overwrite_replaces_a_finished_run_whole_and_a_failed_run_changes_nothing(
    tmp_path, make_image_folder, monkeypatch, capsys
):
    images = make_image_folder(per_class=3, size=32)
    output = tmp_path / "run"
    assert _train(images, output) == 0
    assert _mode(output) == _normal_folder_mode()  # not mkdtemp's 0700
    first = sorted(os.listdir(output))
    assert first == RUN_FILES
    # A run written before manifests, with a plot this run does not make.
    os.remove(output / ".keras-transfer.json")
    (output / "lr_finder.png").write_bytes(b"an old plot")
    (output / "report.json").write_text('{"old": true}')
    before = {name: (output / name).read_bytes() for name in os.listdir(output)}

    # Failing half-way (after the model is written, before the plots): the old run stays whole.
    def broken_plot(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(evaluation, "plot_confusion_matrix", broken_plot)
    assert _train(images, output, "--overwrite") != 0
    assert "plotting failed" in capsys.readouterr().err
    assert {name: (output / name).read_bytes() for name in os.listdir(output)} == before
    assert (tmp_path / "run.partial" / "model.keras").is_file()  # the failed run's work is kept aside
    monkeypatch.undo()

    # --overwrite discards the failed run's folder (it says so) and replaces the old run as a whole.
    assert _train(images, output, "--overwrite") == 0
    assert "Discarded the interrupted run" in capsys.readouterr().out
    assert sorted(os.listdir(output)) == first  # lr_finder.png of the old run is gone with it
    assert "old" not in json.loads((output / "report.json").read_text())
    assert sorted(os.listdir(tmp_path)) == ["images", "run"]
    assert _mode(output) == _normal_folder_mode()


def test_an_interrupted_run_is_never_silently_deleted(tmp_path, capsys):
    partial = tmp_path / "run.partial"
    partial.mkdir()
    (partial / "run.json").write_text('{"options": {}}')
    assert _train(str(tmp_path), tmp_path / "run") == EXIT_BAD_INPUT
    assert "holds an interrupted run: pass --resume" in capsys.readouterr().err
    (partial / "run.json").unlink()
    (partial / "mine.txt").write_text("not a run")
    for extra in ([], ["--overwrite"], ["--resume"]):
        assert _train(str(tmp_path), tmp_path / "run", *extra) == EXIT_BAD_INPUT
        assert "holds no keras-transfer run" in capsys.readouterr().err
    assert os.listdir(partial) == ["mine.txt"]


# --- exports ------------------------------------------------------------------------------


def test_saved_model_overwrite_refuses_foreign_files_and_keeps_normal_permissions(tmp_path, capsys):
    model = tiny_classifier(class_names=["a", "b"])
    path = tmp_path / "saved"
    ex.export(model, path, format="saved_model")
    assert _mode(path) == _normal_folder_mode()
    (path / "README.txt").write_text("the user's notes")
    listing = sorted(os.listdir(path))
    with pytest.raises(FileExistsError, match="did not write: README.txt"):
        ex.export(model, path, format="saved_model", overwrite=True)
    assert sorted(os.listdir(path)) == listing and (path / "README.txt").read_text() == "the user's notes"

    model_file = tmp_path / "model.keras"
    model.save(model_file)
    argv = ["export", str(model_file), "--format", "saved_model", "--output", str(path), "--overwrite"]
    assert main(argv) == EXIT_BAD_INPUT
    assert "README.txt" in capsys.readouterr().err
    assert sorted(os.listdir(path)) == listing

    (path / "README.txt").unlink()  # only what an export wrote: replaced whole
    assert main(argv) == 0
    assert _mode(path) == _normal_folder_mode() and (path / "saved_model.pb").is_file()
    assert sorted(os.listdir(tmp_path)) == ["model.keras", "saved"]


def test_tflite_and_its_metadata_are_replaced_together(tmp_path, monkeypatch):
    model = tiny_classifier()
    images = image_dataset(4)[1]
    path = tmp_path / "model.tflite"
    ex.export(model, path, metadata={"version": 1})
    old_model, old_metadata = path.read_bytes(), (tmp_path / "model.tflite.json").read_text()

    # The metadata fails to move into place after the new model did: both old files come back.
    real_replace = os.replace

    def failing_metadata(source, destination):
        if os.fspath(destination) == str(tmp_path / "model.tflite.json") and ".tmp-export-" in os.fspath(source):
            raise OSError("disk full")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", failing_metadata)
    with pytest.raises(OSError, match="disk full"):
        ex.export(model, path, quantization="dynamic", metadata={"version": 2}, overwrite=True)
    monkeypatch.undo()
    assert path.read_bytes() == old_model and (tmp_path / "model.tflite.json").read_text() == old_metadata
    assert sorted(os.listdir(tmp_path)) == ["model.tflite", "model.tflite.json"]

    ex.export(model, path, quantization="dynamic", metadata={"version": 2}, overwrite=True)
    assert path.read_bytes() != old_model and ex.read_metadata(path)["version"] == 2
    assert ex.read_metadata(path)["quantization"]["mode"] == "dynamic"
    assert sorted(os.listdir(tmp_path)) == ["model.tflite", "model.tflite.json"]
    assert np.isfinite(kt.deploy.litert.LiteRTModel(str(path)).predict(images)).all()
