"""Keeps TensorFlow's, absl's and LiteRT's log lines out of what users see.

TensorFlow 2.21 writes absl messages (`WARNING: All log messages before
absl::InitializeLog()`, `I0000 ... oneDNN custom operations are on`, the CPU
feature guard, `E0000 ... failed call to cuInit` on machines without a GPU)
to file descriptor 2 before `TF_CPP_MIN_LOG_LEVEL` takes effect, and the
TFLite converter and LiteRT interpreter write theirs (`Ignored output_format.`,
`Reading SavedModel from: ...`, `Created TensorFlow Lite XNNPACK delegate`)
from C++ as well, so none of them can be filtered in Python. They are
informational; they are hidden by pointing descriptor 2 at /dev/null while
that native code runs. Python exceptions still propagate (after stderr is
restored). `KERAS_TRANSFER_VERBOSE=1` (the command line's `-v/--verbose`) and
`KERAS_TRANSFER_DEBUG=1` show everything.

The `keras-transfer` command parses its arguments (and prints `--help`)
before TensorFlow loads: `started_as_command` tells the package to wait.
"""

import contextlib
import os
import sys

DEBUG_ENVIRONMENT = "KERAS_TRANSFER_DEBUG"
VERBOSE_ENVIRONMENT = "KERAS_TRANSFER_VERBOSE"
COMMAND = "keras-transfer"
COMMAND_MODULE = "keras_transfer.cli"


def _environment_flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def debugging():
    """True when `KERAS_TRANSFER_DEBUG` asks for tracebacks and TensorFlow's own messages."""
    return _environment_flag(DEBUG_ENVIRONMENT)


def verbose():
    """True when TensorFlow's, absl's and LiteRT's own messages are wanted (`--verbose` or `--debug`)."""
    return debugging() or _environment_flag(VERBOSE_ENVIRONMENT)


def started_as_command():
    """True in the `keras-transfer` command, or `python -m keras_transfer.cli`, while the package loads."""
    if sys.argv and os.path.splitext(os.path.basename(sys.argv[0]))[0] == COMMAND:
        return True
    original = list(getattr(sys, "orig_argv", ()))
    return "-m" in original and original[original.index("-m") + 1 :][:1] == [COMMAND_MODULE]


@contextlib.contextmanager
def native_output_silenced():
    """Descriptor 2 points at /dev/null inside the block (unless `verbose()`): C++ log lines vanish."""
    if verbose():
        yield
        return
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
    if "tensorflow" in sys.modules or verbose():
        return
    # Later C++ lines too (info, warnings, and errors such as oneDNN's fallback notices, which are not failures:
    # a failing op raises a Python exception).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with native_output_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the cuInit attempt, which logs an error without a GPU


def quiet_python_loggers():
    """TensorFlow's and absl's Python loggers at ERROR (retracing warnings, deprecations), unless `verbose()`."""
    if verbose():
        return
    import logging

    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
