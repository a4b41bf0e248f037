"""Interruption and resume (issue 13, defect 6): `fine_tune(backup_dir=...)` and `train --resume`.

An interruption is simulated by a callback that raises KeyboardInterrupt when
epoch k begins, as Ctrl-C would. The data order is fixed (an unshuffled
dataset, no augmentation, no dropout), so a resumed run must end with the
weights of an uninterrupted run with the same seed: equal within `ATOL`
(float32 arithmetic on the CPU; measured: exactly equal).
"""

import json
import os

import keras
import numpy as np
import pytest
from helpers import (
    RUN_FILES,
    image_dataset,
    sentiment_texts,
    tiny_bert,
    tiny_classifier,
    tiny_text_classifier,
    train_tiny_cli,
)

import keras_transfer as kt
from keras_transfer.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, main
from keras_transfer.finetune import two_phase
from keras_transfer.finetune.two_phase import backup_progress

ATOL = 1e-6


class EpochsRun(keras.callbacks.Callback):
    """Records the epochs that begin."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


class InterruptAt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt when epoch `epoch` begins (0-based, counted as Keras counts them)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _fine_tune(model, train, validation, **options):
    options = {"head_epochs": 3, "finetune_epochs": 3, "unfreeze": "all", **options}
    return model.fine_tune(train, validation, verbose=0, **options)


def _run(train, validation, interrupt_at=None, backup_dir=None, seed=7, epochs_run=None, **options):
    keras.utils.set_random_seed(seed)
    model = tiny_classifier()
    callbacks = [InterruptAt(interrupt_at)] if interrupt_at is not None else []
    callbacks += [epochs_run] if epochs_run is not None else []
    return model, _fine_tune(model, train, validation, backup_dir=backup_dir, callbacks=callbacks, **options)


def _assert_same(first, second):
    a, b = first.get_weights(), second.get_weights()  # in the same order: the models are built alike
    assert [x.shape for x in a] == [y.shape for y in b]
    worst = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
    assert worst <= ATOL, worst


@pytest.mark.parametrize(
    "interrupt_at, options",
    [(1, {}), (4, {}), (1, {"cache_features": True}), (4, {"unfreeze": "conv3", "finetune_patience": 10})],
    ids=["in-the-head-phase", "in-fine-tuning", "cached-features-head-phase", "cached-fine-tuning-above-the-cut"],
)
def test_fine_tune_resumes_after_an_interruption_to_the_same_weights(tmp_path, interrupt_at, options):
    train, _, _ = image_dataset(16, batch_size=4)
    validation, _, _ = image_dataset(8, batch_size=4, seed=1)
    reference, reference_history = _run(train, validation, **options)

    backup = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        _run(train, validation, interrupt_at=interrupt_at, backup_dir=backup, **options)
    assert backup_progress(backup) == (interrupt_at, "head" if interrupt_at < 3 else "finetune")

    # A new process would build the model again: so does the resumed run.
    epochs_run = EpochsRun()
    resumed, history = _run(train, validation, backup_dir=backup, epochs_run=epochs_run, **options)
    assert epochs_run.epochs == list(range(interrupt_at, 6))  # what finished did not run again
    _assert_same(reference, resumed)
    assert history.merged().keys() == reference_history.merged().keys()
    for key, values in reference_history.merged().items():
        np.testing.assert_allclose(history.merged()[key], values, atol=1e-5, err_msg=key)
    assert len(history.head.epoch) == 3 and history.finetune.epoch == [3, 4, 5]

    # A finished run is kept: calling again skips both phases and gives the same model.
    epochs_run = EpochsRun()
    again, _ = _run(train, validation, backup_dir=backup, seed=99, epochs_run=epochs_run, **options)
    assert epochs_run.epochs == []
    _assert_same(reference, again)
    with pytest.raises(ValueError, match="another recipe"):
        tiny_classifier().fine_tune(train, head_epochs=2, finetune_epochs=3, verbose=0, backup_dir=backup)


def test_lora_fine_tuning_resumes_to_the_same_weights(tmp_path):
    texts, labels = sentiment_texts(2)
    data = kt.data.from_texts(texts, labels, batch_size=8, shuffle=False)  # a fixed order

    def run(backup_dir=None, interrupt_at=None, epochs_run=None):
        model = tiny_text_classifier()  # seeded
        callbacks = [InterruptAt(interrupt_at)] if interrupt_at is not None else []
        callbacks += [epochs_run] if epochs_run is not None else []
        options = dict(head_epochs=1, finetune_epochs=2, lora_rank=2, verbose=0)
        history = model.fine_tune(data, backup_dir=backup_dir, callbacks=callbacks, **options)
        return model, history

    reference, _ = run()
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "backup", interrupt_at=2)
    epochs_run = EpochsRun()
    resumed, history = run(tmp_path / "backup", epochs_run=epochs_run)
    assert epochs_run.epochs == [2] and len(history.merged()["loss"]) == 3
    assert resumed.lora_layers and [w.path for w in resumed.trainable_weights] == [
        w.path for w in reference.trainable_weights
    ]
    _assert_same(reference, resumed)


# --- the command line -------------------------------------------------------------------


def _train(images, output, *extra):
    return train_tiny_cli(images, output, *extra, head_epochs=2, finetune_epochs=2)


def test_train_interrupted_keeps_its_state_and_resumes(tmp_path, make_image_folder, monkeypatch, capsys):
    images = make_image_folder(per_class=4, size=32)
    output = tmp_path / "run"
    partial = tmp_path / "run.partial"
    real_phase_callbacks = two_phase.phase_callbacks

    def interrupting(phase, **options):  # Ctrl-C when epoch 3 (the second of fine-tuning) begins
        return [*real_phase_callbacks(phase, **options), InterruptAt(3)]

    monkeypatch.setattr(two_phase, "phase_callbacks", interrupting)
    assert _train(images, output) == EXIT_INTERRUPTED
    error = capsys.readouterr().err
    assert "Traceback" not in error and "interrupted" in error
    assert "Interrupted after epoch 3 of 4" in error and "--resume" in error and str(partial) in error
    assert not output.exists()
    state = json.loads((partial / "run.json").read_text())
    assert state["options"]["head_epochs"] == 2 and state["command"] == "train"
    assert (partial / "backup" / "head.done.json").is_file()
    assert (partial / "backup" / "finetune" / "latest.state.npz").is_file()
    assert (partial / "checkpoints" / "best_head.keras").is_file()  # the best model so far
    assert backup_progress(partial / "backup") == (3, "finetune")
    monkeypatch.setattr(two_phase, "phase_callbacks", real_phase_callbacks)

    # Other options than the interrupted run's, or no --resume: refused, the state kept.
    assert _train(images, output, "--resume", "--head-epochs", "3") == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "--head-epochs 2 -> 3" in error and "finetune_epochs" not in error
    assert _train(images, output) == EXIT_BAD_INPUT
    assert "pass --resume" in capsys.readouterr().err
    assert (partial / "run.json").is_file()

    assert _train(images, output, "--resume") == 0
    assert "3 of 4 epochs had finished" in capsys.readouterr().out
    assert not partial.exists()
    names = sorted(os.listdir(output))
    assert names == RUN_FILES
    report = json.loads((output / "report.json").read_text())
    assert report["phases"]["head"]["epochs"] == 2 and report["phases"]["finetune"]["epochs"] == 2
    assert len(report["history"]["loss"]) == 4  # the epochs before the interruption are in the history too
    manifest = json.loads((output / ".keras-transfer.json").read_text())
    assert manifest["files"] == names[1:]


def test_resume_without_an_interrupted_run_is_one_line(tmp_path, make_image_folder, capsys):
    images = make_image_folder(per_class=2, size=32)
    assert _train(images, tmp_path / "run", "--resume") == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no interrupted run to continue" in error
    assert sorted(os.listdir(tmp_path)) == ["images"]


# --- optimize (TF-MOT, through tf_keras) ------------------------------------------------------


@pytest.mark.parametrize("method, options", [("prune", {"sparsity": 0.5}), ("quantization_aware", {})])
def test_optimize_resumes_after_an_interruption(tmp_path, monkeypatch, method, options):
    from keras_transfer.deploy.tfmot import optimize

    train, _, _ = image_dataset(16, batch_size=4)

    def run(backup_dir=None):
        keras.utils.set_random_seed(7)
        model = tiny_classifier()
        return optimize.optimize(model, train, method, epochs=3, verbose=0, backup_dir=backup_dir, **options)

    reference = run()
    real_epoch_log = optimize._epoch_log
    epochs_run = []

    def watched_log(path, interrupt_at=None):
        log = real_epoch_log(path)
        begin = log.on_epoch_begin

        def on_epoch_begin(epoch, logs=None):
            begin(epoch, logs)
            epochs_run.append(epoch)
            if epoch == interrupt_at:
                raise KeyboardInterrupt

        log.on_epoch_begin = on_epoch_begin
        return log

    monkeypatch.setattr(optimize, "_epoch_log", lambda path: watched_log(path, interrupt_at=2))  # Ctrl-C at epoch 2
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "backup")
    monkeypatch.setattr(optimize, "_epoch_log", watched_log)
    epochs_run.clear()
    resumed = run(tmp_path / "backup")
    assert epochs_run == [2]  # epochs 0 and 1 finished before the interruption
    for name, values in reference.history.items():
        np.testing.assert_allclose(resumed.history[name], values, atol=1e-5, err_msg=name)
    worst = max(
        float(np.max(np.abs(a - b))) for a, b in zip(reference.model.get_weights(), resumed.model.get_weights())
    )
    assert worst <= ATOL, worst


def test_optimize_interrupted_keeps_its_state_and_resumes(tmp_path, make_image_folder, monkeypatch, capsys):
    from keras_transfer.deploy.tfmot import optimize

    images = make_image_folder(per_class=4, size=32)
    model_file = tmp_path / "model.keras"
    tiny_classifier(class_names=["cats", "dogs"]).save(model_file)
    output = tmp_path / "pruned"
    partial = tmp_path / "pruned.partial"
    argv = ["optimize", str(model_file), images, "--method", "prune", "--epochs", "3", "--batch-size", "4"]
    argv += ["--output", str(output)]
    real_epoch_log = optimize._epoch_log

    def interrupting_log(path):  # Ctrl-C when epoch 1 begins
        log = real_epoch_log(path)
        begin = log.on_epoch_begin

        def on_epoch_begin(epoch, logs=None):
            begin(epoch, logs)
            if epoch == 1:
                raise KeyboardInterrupt

        log.on_epoch_begin = on_epoch_begin
        return log

    monkeypatch.setattr(optimize, "_epoch_log", interrupting_log)
    assert main(argv) == EXIT_INTERRUPTED
    error = capsys.readouterr().err
    assert "Traceback" not in error and "--resume" in error and str(partial) in error
    assert not output.exists() and (partial / "run.json").is_file()
    assert json.loads((partial / "backup" / "epochs.json").read_text()).keys() == {"0"}
    monkeypatch.undo()

    assert main([*argv, "--resume"]) == 0
    assert not partial.exists()
    assert sorted(os.listdir(output)) == [".keras-transfer.json", "model.tflite", "model.tflite.json", "report.json"]
    assert len(json.loads((output / "report.json").read_text())["history"]["loss"]) == 3


def test_train_text_interrupted_resumes(tmp_path, monkeypatch, capsys):
    backbone, preprocessor = tiny_bert()
    backbone.save_to_preset(str(tmp_path / "preset"))
    preprocessor.save_to_preset(str(tmp_path / "preset"))
    texts, labels = sentiment_texts(2)
    rows = "".join(f'"{text}",{"pos" if label else "neg"}\n' for text, label in zip(texts, labels))
    (tmp_path / "train.csv").write_text("text,label\n" + rows)
    output = tmp_path / "run"
    argv = ["train-text", str(tmp_path / "train.csv"), "--backbone", str(tmp_path / "preset"), "--weights", "none"]
    argv += ["--lora-rank", "2", "--head-epochs", "1", "--epochs", "2", "--batch-size", "8", "--output", str(output)]
    real_phase_callbacks = two_phase.phase_callbacks
    monkeypatch.setattr(
        two_phase, "phase_callbacks", lambda phase, **options: [*real_phase_callbacks(phase, **options), InterruptAt(2)]
    )
    assert main(argv) == EXIT_INTERRUPTED
    assert "Interrupted after epoch 2 of 3" in capsys.readouterr().err and not output.exists()
    monkeypatch.undo()
    assert main([*argv, "--resume"]) == 0
    assert "2 of 3 epochs had finished" in capsys.readouterr().out
    report = json.loads((output / "report.json").read_text())
    assert report["phases"]["head"]["epochs"] == 1 and report["phases"]["finetune"]["epochs"] == 2
    assert len(report["history"]["loss"]) == 3 and not (tmp_path / "run.partial").exists()
