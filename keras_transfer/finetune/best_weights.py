"""The best validation epoch across both phases of `fine_tune`: its weights are the ones kept.

Keras's `EarlyStopping(restore_best_weights=True)` and `ModelCheckpoint` see
one `fit` call at a time; a fine-tuning phase that lowers validation accuracy
would leave a worse model than the head phase had. `BestWeights` follows one
model through every phase and puts back the weights of the best epoch.
"""

import json
import math
import os

import keras
import numpy as np

from keras_transfer import atomic_files as files


def validation_score(logs):
    """How good an epoch was, higher is better: `(val_accuracy, -val_loss)`, or `(-val_loss,)`; None without both."""
    logs = logs or {}
    loss = logs.get("val_loss")
    accuracy = logs.get("val_accuracy", logs.get("val_binary_accuracy"))
    values = [value for value in (accuracy, None if loss is None else -float(loss)) if value is not None]
    if not values or not all(math.isfinite(float(value)) for value in values):
        return None
    return tuple(float(value) for value in values)


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of `model`'s best validation epoch over several `fit` calls (phases).

    Best means the highest validation accuracy, ties broken by the lower
    validation loss (the lowest loss for tasks without accuracy). The
    callback may be given to the `fit` of another model that shares
    `model`'s variables (the head model of a cached-features phase): it
    always copies the whole of `model`.

    Args:
        model: the model whose weights are kept and restored.
        path: optional `.npz` file that keeps the best weights (and a `.json`
            beside it) across interrupted runs.
        write: False in a worker that only reads `path` (a non-chief worker
            of multi-worker training: the chief writes it).

    Attributes:
        best: `{"phase", "epoch", "val_accuracy", "val_loss"}` of the best
            epoch so far (epochs counted from 1 over all phases), or None.
        phase: the name of the phase being trained; set it before each `fit`.
    """

    def __init__(self, model, path=None, *, write=True):
        super().__init__()
        self.target = model
        self.path = None if path is None else os.fspath(path)
        self.write = bool(write)
        self.phase = None
        self.best = None
        self._score = None
        self._weights = None
        self._last_epoch = None
        if self.path and os.path.isfile(self.path) and os.path.isfile(self.path + ".json"):
            with open(self.path + ".json") as file:
                saved = json.load(file)
            with np.load(self.path) as arrays:
                self._weights = [arrays[f"arr_{index}"] for index in range(len(arrays.files))]
            self.best, self._score = saved["best"], tuple(saved["score"])

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = (self.phase, epoch + 1)
        score = validation_score(logs)
        if score is None or (self._score is not None and score <= self._score):
            return
        self._score = score
        self.best = {"phase": self.phase, "epoch": epoch + 1}
        for key in ("val_accuracy", "val_loss"):
            if key in logs:
                self.best[key] = float(logs[key])
        self._weights = self.target.get_weights()
        if self.path and self.write:
            with files.atomic_path(self.path) as temporary:
                with open(temporary, "wb") as file:
                    np.savez(file, *self._weights)
            files.write_json({"best": self.best, "score": list(score)}, self.path + ".json")

    def restore(self):
        """Puts the best epoch's weights back into the model; returns True when that epoch was not the last."""
        if self._weights is None:
            return False
        self.target.set_weights(self._weights)
        return self._last_epoch is not None and self._last_epoch != (self.best["phase"], self.best["epoch"])


class StopWhenNotBest(keras.callbacks.Callback):
    """Stops a phase after `patience` epochs in a row that were not the best so far of any phase.

    `fine_tune`'s fine-tuning phase goes on only while validation says it
    helps: an epoch that does not beat the best head-phase epoch (or an
    earlier fine-tuning epoch) counts against it. Give it after `best` in
    the callbacks, so that it reads this epoch's verdict.

    Attributes:
        message: why the phase stopped early, or None.
    """

    def __init__(self, best, patience):
        super().__init__()
        self.best_weights = best
        self.patience = int(patience)
        self.wait = 0
        self.message = None

    def on_epoch_end(self, epoch, logs=None):
        best = self.best_weights.best
        if best is not None and (best["phase"], best["epoch"]) == (self.best_weights.phase, epoch + 1):
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience and epoch + 1 < self.params.get("epochs", 0):  # epochs were left
            self.model.stop_training = True
            where = f"epoch {best['epoch']} ({best['phase']} phase)" if best else "no epoch"
            if best and best["epoch"] == 0:
                where = "the head's starting weights (epoch 0)"
            streak = f"epoch {epoch + 1} did not" if self.wait == 1 else f"{self.wait} epochs in a row did not"
            self.message = (
                f"fine-tuning stopped after epoch {epoch + 1} (counted over both phases): {streak} beat "
                f"the best validation epoch so far, {where}"
            )
