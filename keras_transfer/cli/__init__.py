"""The `keras-transfer` command line: one module per command, each with `add_parser` and `run`.

The commands parse options, call the library and print; defaults and choices
come from the library (`keras_transfer.finetune.recipes` and the constants of
`data`, `models` and `deploy`), never from copies here.

How a run ends: 0 when it worked; 2 for a user error (a `CommandError`, or an
error the library raises on purpose), printed as one line in the command's own
terms, flag names rather than Python argument names; 130 when interrupted
(Ctrl-C or SIGTERM); 1 for an internal error, printed as one line. `--debug`
(or `KERAS_TRANSFER_DEBUG=1`) lets every error propagate with its traceback.
"""

import argparse
import contextlib
import importlib
import os
import signal
import sys
import warnings

from keras_transfer import quiet
from keras_transfer.cli import (
    backbones,
    demo,
    evaluate,
    export,
    launch,
    optimize,
    predict,
    train,
    train_multitask,
    train_text,
    zero_shot,
)
from keras_transfer.cli.common import CommandError, cli_words, expand_config
from keras_transfer.quiet import DEBUG_ENVIRONMENT, VERBOSE_ENVIRONMENT, debugging

EXIT_INTERNAL_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
COMMANDS = (
    backbones,
    train,
    train_text,
    train_multitask,
    evaluate,
    predict,
    export,
    optimize,
    zero_shot,
    launch,
    demo,
)

__all__ = [
    "COMMANDS",
    "CommandError",
    "EXIT_BAD_INPUT",
    "EXIT_INTERNAL_ERROR",
    "EXIT_INTERRUPTED",
    "build_parser",
    "main",
]

_DEBUG_HELP = f"show the full traceback of any error, and TensorFlow's messages (also: {DEBUG_ENVIRONMENT}=1)"
_VERBOSE_HELP = (
    "show TensorFlow's, absl's and LiteRT's own log lines and warnings, hidden by default "
    f"(also: {VERBOSE_ENVIRONMENT}=1)"
)


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, keeping the examples under `--help` one per line as written."""

    def _fill_text(self, text, width, indent):
        if text.startswith("examples:"):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-transfer",
        description="Transfer learning on Keras 3: pretrained backbones, new heads, two-phase fine-tuning, evaluation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        subparser = command.add_parser(subparsers)
        subparser.formatter_class = _HelpFormatter
        subparser.epilog = "examples:\n" + "\n".join(f"  {example}" for example in command.EXAMPLES)
        # Also after the command (`keras-transfer train ... --debug`); SUPPRESS keeps the top-level value.
        subparser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP)
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
        # main words errors with this command's flags.
        subparser.set_defaults(command_parser=subparser)
    return parser


def main(argv=None):
    parser = build_parser()
    try:
        argv = expand_config(sys.argv[1:] if argv is None else list(argv))
    except CommandError as error:
        parser.error(str(error))  # usage and exit 2, like argparse's own errors
    args = parser.parse_args(argv)  # argparse's own errors: usage and exit 2
    debug = args.debug or debugging()
    if args.verbose:
        os.environ[VERBOSE_ENVIRONMENT] = "1"
    if getattr(args, "needs_library", True):  # launch only starts other processes
        _load_library()
    prefix = f"keras-transfer {args.command}"
    with _sigterm_as_interrupt(), _short_warnings(prefix, args.command_parser):
        try:
            return args.run(args) or 0
        except KeyboardInterrupt:
            if debug:
                raise
            print(f"{prefix}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # `keras-transfer ... | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            return 0
        except Exception as error:
            if debug:
                raise
            message = user_error_message(error)
            if message is not None:
                print(f"{prefix}: error: {cli_words(message, args.command_parser)}", file=sys.stderr)
                return EXIT_BAD_INPUT
            print(
                f"{prefix}: internal error: {type(error).__name__}: {_one_line(error)} "
                "(run with --debug for the traceback; please report it)",
                file=sys.stderr,
            )
            return EXIT_INTERNAL_ERROR


def _load_library():
    """TensorFlow (its start-up lines hidden) and keras_transfer's API, after the arguments are parsed."""
    quiet.import_tensorflow_quietly()
    quiet.quiet_python_loggers()
    importlib.import_module("keras_transfer.api")  # registers the classes saved models name


def user_error_message(error):
    """The message of a user error (bad input, bad files, no space or permission), else None."""
    import errno

    from keras_transfer import errors

    if isinstance(
        error,
        (
            CommandError,
            errors.DataError,
            errors.MissingExtraError,
            errors.UnknownBackboneError,
            errors.UnsupportedLayerError,
            errors.ModelFileError,
            errors.WeightsUnavailableError,
        ),
    ):
        return _one_line(error)
    if isinstance(error, PermissionError) or (
        isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
    ):
        return f"{_one_line(error)}: free some space or choose a folder you can write to."
    if isinstance(error, MemoryError) or type(error).__name__ == "ResourceExhaustedError":
        return "ran out of memory: try a smaller --batch-size (or a smaller model or image size)."
    return None


def _one_line(error, limit=600):
    text = " ".join(str(error).split()) or "(no message)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt while a command runs, so it ends like Ctrl-C."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _short_warnings(prefix, parser):
    """keras_transfer's own warnings (e.g. skipped files) as `keras-transfer CMD: warning: ...` lines,
    in the command's flags."""
    with warnings.catch_warnings():
        show = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):
            if f"{os.sep}keras_transfer{os.sep}" in filename and issubclass(category, UserWarning):
                print(f"{prefix}: warning: {cli_words(message, parser)}", file=file or sys.stderr)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = showwarning
        yield
