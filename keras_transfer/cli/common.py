"""What the commands share: argument types, text-file options, output folders, loading models and data.

Every command module has `add_parser(subparsers)` and `run(args)`; long work
(TensorFlow, data, models) is imported inside `run`, after the arguments are
checked.
"""

import argparse
import inspect
import os

from keras_transfer import data
from keras_transfer.data import CLEANING_STEPS


class CommandError(Exception):
    """Bad input found before any long work; printed without a traceback."""


# --------------------------------------------------------------------------
# Argument types.


def positive_int(text):
    return _number(text, int, lambda value: value > 0, "a positive integer")


def non_negative_int(text):
    return _number(text, int, lambda value: value >= 0, "an integer >= 0")


def positive_float(text):
    return _number(text, float, lambda value: value > 0, "a positive number")


def open_fraction(text):
    return _number(text, float, lambda value: 0 < value < 1, "a number between 0 and 1")


def at_least_two(text):
    return _number(text, int, lambda value: value >= 2, "an integer >= 2")


def fraction(text):
    return _number(text, float, lambda value: 0 <= value < 1, "a number in [0, 1)")


def _number(text, kind, valid, what):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def library_default(function, name):
    """The default of `function`'s argument `name`: help texts show the library's value, never a copy."""
    return inspect.signature(function).parameters[name].default


def recipe(make, **changes):
    """`make(**changes)` (a `Recipe` constructor or `replace`), its ValueError a CommandError."""
    try:
        return make(**changes)
    except ValueError as error:
        raise CommandError(error) from error


# --------------------------------------------------------------------------
# Text files (train-text, evaluate, export).


def add_batch_size_option(parser):
    """`--batch-size`, with the data loaders' default."""
    default = library_default(data.image_folder, "batch_size")
    parser.add_argument(
        "--batch-size", type=positive_int, default=default, metavar="N", help=f"examples per batch (default: {default})"
    )


# What `--output`, `--overwrite` and `--json` mean for each kind of command that writes.
_RUN_OUTPUTS = {
    "training": (
        "OUT_DIR",
        "folder for the model, report and plots",
        "allow writing into a non-empty OUT_DIR",
        "print the report as JSON at the end",
    ),
    "optimize": (
        "OUT_DIR",
        "folder for model.tflite and report.json",
        "allow writing into a non-empty OUT_DIR",
        "end with one line of JSON",
    ),
    "export": (
        "FILE",
        "the .tflite file, or the SavedModel folder",
        "replace an existing OUTPUT",
        "end with one line of JSON",
    ),
}


def add_run_options(parser, kind, *, seed=True):
    """`--seed`, `--output`, `--overwrite` and `--json`, shared by the commands that write (see `_RUN_OUTPUTS`)."""
    metavar, output_help, overwrite_help, json_help = _RUN_OUTPUTS[kind]
    if seed:
        parser.add_argument(
            "--seed", type=int, default=library_default(data.image_folder, "seed"), help="seed of every random draw"
        )
    parser.add_argument("--output", required=True, metavar=metavar, help=output_help)
    parser.add_argument("--overwrite", action="store_true", help=overwrite_help)
    parser.add_argument("--json", action="store_true", help=json_help)


def add_text_file_options(parser, for_model=False):
    where = "text models: " if for_model else ""
    parser.add_argument(
        "--text-column",
        default="text",
        metavar="C",
        help=f"{where}column with the texts: a header name or a 0-based index (default: text)",
    )
    parser.add_argument(
        "--label-column",
        default="label",
        metavar="C",
        help=f"{where}column with the labels: a header name or a 0-based index (default: label)",
    )
    parser.add_argument(
        "--header",
        default="auto",
        choices=["auto", "yes", "no"],
        help=f"{where}whether the first row names the columns; auto: yes when the "
        "named columns are in it (with index columns, auto means no)",
    )
    parser.add_argument(
        "--delimiter",
        default="auto",
        metavar="CHAR",
        help=f"{where}field separator, e.g. ';' or tab (default: tab for .tsv, comma "
        "for .csv, else sniffed from the file)",
    )
    parser.add_argument(
        "--clean",
        nargs="+",
        metavar="STEP",
        choices=CLEANING_STEPS,
        help=f"{where}cleaning steps applied to every text, in order: "
        + ", ".join(CLEANING_STEPS)
        + (" (give the ones the model was trained with)" if for_model else ""),
    )


def column(text):
    """A column option: a 0-based index when it is all digits, else a header name."""
    return int(text) if text.isdigit() else text


def text_file_options(args):
    """The `text_file` keyword arguments shared by train-text and evaluate."""
    return dict(
        text_column=column(args.text_column),
        label_column=column(args.label_column),
        header={"auto": "auto", "yes": True, "no": False}[args.header],
        delimiter={"tab": "\t", "\\t": "\t"}.get(args.delimiter, args.delimiter),
        clean=args.clean,
        batch_size=args.batch_size,
    )


# --------------------------------------------------------------------------
# Output folders, models and labelled data.


def check_output_dir(path, overwrite):
    if os.path.isfile(path):
        raise CommandError(f"--output {path!r} is a file: give a folder.")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise CommandError(
            f"--output {path!r} is not empty; pass --overwrite to write into it, or choose a new folder."
        )
    check_writable(path)


def check_writable(folder, option="--output"):
    """Before any work: a CommandError when `folder` cannot be written."""
    from keras_transfer.atomic_files import check_writable as probe

    try:
        probe(folder)
    except PermissionError as error:
        raise CommandError(f"{option}: {error} Choose a folder you can write to.") from error


def bad_input_errors():
    """The library's exceptions for bad input (data, backbone names, options): CommandErrors here."""
    from keras_transfer.errors import DataError, UnknownBackboneError

    return (DataError, UnknownBackboneError, ValueError, FileNotFoundError)


def load_model(path):
    if not os.path.isfile(path):
        raise CommandError(f"no model file at {path!r}: give the model.keras that `train` wrote.")
    import keras

    import keras_transfer  # noqa: F401  (registers the classes the file names)

    # Only predictions are needed: skipping the optimizer state also skips Keras's
    # warning about it for models saved after a LoRA or frozen-backbone phase.
    return keras.saving.load_model(path, compile=False)


def load_tflite(path):
    from keras_transfer.deploy import litert

    if not os.path.isfile(path):
        raise CommandError(f"no model file at {path!r}.")
    model = litert.LiteRTModel(path)
    if model.head is None:
        raise CommandError(
            f"{path!r} has no metadata beside it ({path}.json with the head and class names): "
            "export it with `keras-transfer export` or keras_transfer.export_model."
        )
    if model.image_size is None:
        raise CommandError(
            f"{path!r} is not an image model (inputs {sorted(model.input_details)}): evaluate text "
            "models from their model.keras."
        )
    return model


def is_text_model(model):
    from keras_transfer.models import TextClassifier

    return isinstance(model, TextClassifier)


def labelled_data(model, path, args, option, shuffle=False, seed=None):
    """Images (one sub-folder per class) or, for a text model, a CSV/TSV file, in the model's classes.

    `option` names the argument in error messages; `seed` (the loader's default when None) orders a shuffle."""
    from keras_transfer.errors import DataError

    seeded = {} if seed is None else {"seed": seed}

    try:
        if is_text_model(model):
            return data.text_file(path, class_names=model.class_names, shuffle=False, **text_file_options(args))
        dataset = data.image_folder(
            path, image_size=model.image_size, batch_size=args.batch_size, shuffle=shuffle, **seeded
        )
    except DataError as error:
        raise CommandError(error if option == "DATA" else f"{option}: {error}") from error
    if model.class_names and dataset.class_names != model.class_names:
        where = "" if option == "DATA" else option + ": "
        raise CommandError(
            f"{where}the folder's classes {dataset.class_names} differ from the model's {model.class_names}."
        )
    return dataset
