"""Imports TensorFlow without the C++ log lines it writes straight to stderr.

TensorFlow 2.21 writes absl messages (`WARNING: All log messages before
absl::InitializeLog()`, `I0000 ... oneDNN custom operations are on`, the CPU
feature guard, `E0000 ... failed call to cuInit` on machines without a GPU)
to file descriptor 2 before `TF_CPP_MIN_LOG_LEVEL` takes effect, so they
cannot be filtered in Python. They are informational; they are hidden by
pointing descriptor 2 at /dev/null while TensorFlow loads and looks for
devices. Python exceptions still propagate (after stderr is restored), and
`KERAS_TRANSFER_DEBUG=1` shows everything.
"""

import contextlib
import os
import sys

DEBUG_ENVIRONMENT = "KERAS_TRANSFER_DEBUG"


def debugging():
    """True when `KERAS_TRANSFER_DEBUG` asks for tracebacks and TensorFlow's own messages."""
    return os.environ.get(DEBUG_ENVIRONMENT, "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def _stderr_silenced():
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (some embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly():
    """Imports TensorFlow (and initialises its devices) once, with its C++ start-up messages hidden."""
    if "tensorflow" in sys.modules or debugging():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # later C++ info and warning lines too
    with _stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the cuInit attempt, which logs an error without a GPU
