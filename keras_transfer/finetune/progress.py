"""What a training run shows: one line per phase, epochs numbered within their phase.

On a terminal (or in Jupyter) each epoch gets Keras's progress bar; written
to a file or a pipe, each epoch is one plain line (no ANSI codes, no
backspaces), as `verbose="auto"` chooses. `verbose=0` shows nothing.
"""

import sys
import time

import keras


def interactive():
    """True when the output redraws in place: a terminal, or a Jupyter kernel (as Keras's Progbar decides)."""
    return (hasattr(sys.stdout, "isatty") and sys.stdout.isatty()) or "ipykernel" in sys.modules


def resolve_verbose(verbose):
    """Keras's `verbose` with "auto" made concrete: 1 (bars) when `interactive()`, else 2 (a line per epoch)."""
    if verbose == "auto":
        return 1 if interactive() else 2
    return int(verbose)


def announce(verbose, message):
    """Prints one line about the run unless `verbose` is 0."""
    if resolve_verbose(verbose):
        print(message, flush=True)


def counted(count, noun, plural=None):
    """`1 epoch`, `3 epochs`, `1,200 images`."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def format_learning_rate(rate):
    """`2e-5`, `1e-3`, `0.05`: how learning rates are usually written."""
    rate = float(rate)
    if rate == 0 or rate >= 1e-2:
        return f"{rate:g}"
    mantissa, exponent = f"{rate:.2e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def format_logs(logs):
    return " - ".join(f"{name}: {value:.4f}" for name, value in (logs or {}).items() if _is_number(value))


def _is_number(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def epoch_line(label, number, epochs, seconds, logs):
    """`Head epoch 3/60 - 0.4 s - accuracy: 0.9900 - loss: 0.0312`: an epoch as one plain line."""
    return f"{label} epoch {number}/{epochs} - {seconds:.1f} s - {format_logs(logs)}"


class EpochLinesMixin:
    """One plain line per epoch (`epoch_line`); mixed into a Keras 3 or a tf_keras `Callback`."""

    def __init__(self, label, *, epochs, first_epoch=0):
        super().__init__()
        self.label, self.phase_epochs, self.first_epoch = label, epochs, first_epoch
        self._started = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._started
        number = epoch - self.first_epoch + 1
        print(epoch_line(self.label, number, self.phase_epochs, seconds, logs), flush=True)


class PhaseProgress(keras.callbacks.ProgbarLogger):
    """Keras's progress display with each epoch numbered within its phase (`Fine-tuning epoch 2/5`).

    Keras numbers epochs across `fit` calls and shows no number when a phase
    has one epoch; here every epoch line names its phase. With `verbose=2`
    (what "auto" means off a terminal) an epoch is one line:
    `Head epoch 3/60 - 0.4 s - accuracy: 0.9900 - loss: 0.0312 - ...`.
    """

    def __init__(self, label, *, first_epoch, epochs):
        super().__init__()
        self.label, self.first_epoch, self.phase_epochs = label, first_epoch, epochs
        self._started = None

    def set_params(self, params):
        super().set_params(params)
        self.verbose = resolve_verbose(params["verbose"])

    def _epoch_name(self, epoch):
        return f"{self.label} epoch {epoch - self.first_epoch + 1}/{self.phase_epochs}"

    def on_epoch_begin(self, epoch, logs=None):
        self._reset_progbar()
        self._started = time.perf_counter()
        if self.verbose == 1:
            print(self._epoch_name(epoch), flush=True)
            self._maybe_init_progbar()

    def on_train_batch_end(self, batch, logs=None):
        if self.verbose == 1:
            super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.verbose == 1:
            self._finalize_progbar(logs)
        elif self.verbose:
            seconds = time.perf_counter() - self._started
            number = epoch - self.first_epoch + 1
            print(epoch_line(self.label, number, self.phase_epochs, seconds, logs), flush=True)
