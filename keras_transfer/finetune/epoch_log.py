"""Every epoch's logs kept in a JSON file, so that a resumed `fit` reports its whole history.

`EpochLogMixin` holds the logic without a base class: Keras 3 callbacks
(`fine_tune`) and tf_keras callbacks (the TF-MOT methods) mix it with their
own `Callback`.
"""

import json
import os

from keras_transfer import atomic_files as files


class EpochLogMixin:
    """`on_epoch_begin`/`on_epoch_end` that keep `{epoch: logs}` in `path` (written atomically; only read
    without `write`, in a non-chief worker of multi-worker training)."""

    def __init__(self, path, *, write=True):
        super().__init__()
        self.path = path
        self.write = bool(write)
        self.epochs = {}
        if os.path.isfile(path):
            with open(path) as file:
                self.epochs = json.load(file)
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._started:  # epochs from here on run (again): what an earlier run logged for them goes
            self._started = True
            self.epochs = {key: value for key, value in self.epochs.items() if int(key) < epoch}

    def on_epoch_end(self, epoch, logs=None):
        self.epochs[str(epoch)] = {key: float(value) for key, value in (logs or {}).items()}
        if self.write:
            files.write_json(self.epochs, self.path)

    def metrics(self):
        """`{metric: [value per epoch]}` over every logged epoch, in order."""
        logged = [self.epochs[key] for key in sorted(self.epochs, key=int)]
        return {name: [entry[name] for entry in logged if name in entry] for name in (logged[-1] if logged else {})}
