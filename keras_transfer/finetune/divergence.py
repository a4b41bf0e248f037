"""Stop a training run whose loss turns NaN or infinite, and keep the last good weights.

Keras' own `TerminateOnNaN` stops training but leaves the NaN weights in the
model, so the model that gets saved predicts NaN for everything. `StopOnNaN`
also puts back the weights as they were at the end of the last epoch whose
loss was finite (or at the start of training), and says what happened:

>>> stop = StopOnNaN(phase="head")
>>> model.fit(train, epochs=5, callbacks=[stop])  # doctest: +SKIP
>>> stop.message  # doctest: +SKIP
'the loss became NaN in the head phase at epoch 3, batch 12; weights restored to the end of epoch 2. ...'
"""

import math
import warnings

import keras

DEFAULT_ADVICE = (
    "Lower the learning rate (--head-lr / --finetune-lr; --lr for train-text) or check the data for extreme values."
)


class StopOnNaN(keras.callbacks.Callback):
    """Stops training when the loss becomes NaN or infinite, restoring the last good weights.

    The weights are copied (as numpy arrays, one `get_weights()` call) at the
    start of training and at the end of every epoch whose loss is finite.
    When a batch's loss (or an epoch's loss or validation loss) is not
    finite, training stops, the copy is put back and `message` says where it
    happened; it is also given as a warning.

    Args:
        phase: Optional name of the training phase, for the message ("head").
        advice: The last sentence of the message: what to do about it.

    Attributes:
        stopped: True once the loss went bad and training was stopped.
        message: The explanation, or None.
        restored_epoch: 1-based epoch whose end state was restored (0: the
            start of training), or None.
    """

    def __init__(self, phase=None, advice=DEFAULT_ADVICE):
        super().__init__()
        self.phase = phase
        self.advice = advice
        self.stopped = False
        self.message = None
        self.restored_epoch = None
        self._good_weights = None
        self._good_epoch = 0
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.stopped = False
        self.message = None
        self.restored_epoch = None
        self._good_weights = self.model.get_weights()
        self._good_epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not _finite(loss):
            self._stop(_describe(loss), f"epoch {self._epoch + 1}, batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        if self.stopped:
            return
        logs = logs or {}
        for key in ("loss", "val_loss"):
            value = logs.get(key)
            if value is not None and not _finite(value):
                what = "validation loss" if key == "val_loss" else "loss"
                self._stop(_describe(value), f"the end of epoch {epoch + 1}", what=what)
                return
        self._good_weights = self.model.get_weights()
        self._good_epoch = epoch + 1

    def _stop(self, value, where, what="loss"):
        if self.stopped:
            return
        self.stopped = True
        self.model.stop_training = True
        if self._good_weights is not None:
            self.model.set_weights(self._good_weights)
        self.restored_epoch = self._good_epoch
        restored = (
            f"the end of epoch {self._good_epoch}"
            if self._good_epoch
            else ("the start of the phase" if self.phase else "the start of training")
        )
        phase = f" in the {self.phase} phase" if self.phase else ""
        self.message = (
            f"the {what} became {value}{phase} at {where}; training stopped and the weights were restored to "
            f"{restored}. {self.advice}"
        )
        warnings.warn(self.message, UserWarning, stacklevel=2)  # a UserWarning: the CLI shows it as one line


def _finite(value):
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True  # not a number: nothing to judge


def _describe(value):
    return "NaN" if math.isnan(float(value)) else "infinite"
