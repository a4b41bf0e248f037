"""What the commands share: argument types, text-file options, output folders, loading models and data.

Every command module has `add_parser(subparsers)` and `run(args)`; long work
(TensorFlow, data, models) is imported inside `run`, after the arguments are
checked.
"""

import argparse
import dataclasses
import os

from keras_transfer.cli import library_source

# Read from the library's source: --help imports no TensorFlow (see library_source).
CLEANING_STEPS = library_source.constant("keras_transfer.data.text_cleaning", "CLEANING_STEPS")


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


def names(text):
    """A comma-separated list of names, none empty."""
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of names")
    return parts


def _number(text, kind, valid, what):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


CONSTANT = "constant"  # --schedule's name for a recipe's `schedule=None`


def add_schedule_option(parser, default):
    """`--schedule`: a recipe's learning-rate schedule; `default` is the recipe's (None: constant)."""
    from keras_transfer.finetune.recipes import SCHEDULES

    parser.add_argument(
        "--schedule",
        choices=(CONSTANT, *SCHEDULES),
        help=f"learning-rate schedule of each phase, peaking at its rate (default: {default or CONSTANT})",
    )


def with_schedule(recipe, args):
    """`recipe` with the --schedule given (`replace` cannot set None: --schedule constant can)."""
    if args.schedule is None:
        return recipe
    return dataclasses.replace(recipe, schedule=None if args.schedule == CONSTANT else args.schedule)


def recipe(make, **changes):
    """`make(**changes)` (a `Recipe` constructor or `replace`), its ValueError a CommandError."""
    try:
        return make(**changes)
    except ValueError as error:
        raise CommandError(error) from error


# Library argument names that reach a command under another option name (its `dest`): the first
# one the command has wins (train-text's --epochs and --lr set the recipe's main phase).
LIBRARY_NAMES = {
    "head_learning_rate": ("head_lr", "lr"),
    "finetune_learning_rate": ("finetune_lr", "lr"),
    "learning_rate": ("lr",),
    "finetune_epochs": ("finetune_epochs", "epochs"),
    "head_epochs": ("head_epochs", "epochs"),
    "validation_split": ("val_split",),
    "validation_dir": ("val_dir",),
    "validation_file": ("val_file",),
    "num_threads": ("threads",),
}


def option_names(parser):
    """`{Python name: flag or METAVAR}` for the options of a command's `parser`, library names included."""
    names = {}
    for action in parser._actions:
        if action.dest in (argparse.SUPPRESS, "help"):
            continue
        flags = [flag for flag in action.option_strings if flag.startswith("--")]
        if flags:
            names[action.dest] = flags[0]
        elif not action.option_strings and isinstance(action.metavar, str):
            names[action.dest] = action.metavar
    for library_name, dests in LIBRARY_NAMES.items():
        found = next((names[dest] for dest in dests if dest in names), None)
        if found is not None and library_name not in names:
            names[library_name] = found
    return names


def cli_words(message, parser):
    """`message` with the Python argument names it quotes as the command's flags.

    A name with an underscore (`finetune_epochs`) is an identifier wherever it stands; a plain word
    (`weights`, `unfreeze`) only as `name=value` or in backquotes. `name=value` becomes
    `--flag value` (None as `none`, the command line's spelling); paths are left alone.
    """
    if parser is None:
        return str(message)
    import re

    names = option_names(parser)
    if not names:
        return str(message)
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    pattern = re.compile(
        rf"(?P<quote>`?)(?<![\w./\\-])(?P<name>{alternatives})(?![\w/\\])(?P=quote)(?P<op>=(?!=)|>=|<=)?"
        r"(?P<none>(?<==)None\b)?"
    )

    def replace(match):
        name, op = match["name"], match["op"]
        if not (match["quote"] or op or "_" in name):
            return match[0]
        flag = names[name]
        if op == "=":
            return f"{flag} " + ("none" if match["none"] else "")
        return f"{flag} {op} " if op else flag

    return pattern.sub(replace, str(message))


# --------------------------------------------------------------------------
# Text files (train-text, evaluate, export).


def add_batch_size_option(parser):
    """`--batch-size`, with the data loaders' default."""
    default = library_source.default("keras_transfer.data.images", "image_folder", "batch_size")
    parser.add_argument(
        "--batch-size", type=positive_int, default=default, metavar="N", help=f"examples per batch (default: {default})"
    )


# What `--output`, `--overwrite` and `--json` mean for each kind of command that writes.
_RUN_OUTPUTS = {
    "training": (
        "OUT_DIR",
        "folder for the model, report and plots (written in OUT_DIR.partial, moved into place when complete)",
        "replace the previous run in OUT_DIR as a whole once the new one is complete (refused if OUT_DIR "
        "holds files keras-transfer did not write), or discard an interrupted run in OUT_DIR.partial",
        "print the report as JSON at the end",
    ),
    "optimize": (
        "OUT_DIR",
        "folder for model.tflite and report.json (written in OUT_DIR.partial, moved into place when complete)",
        "replace the previous run in OUT_DIR as a whole once the new one is complete (refused if OUT_DIR "
        "holds files keras-transfer did not write), or discard an interrupted run in OUT_DIR.partial",
        "end with one line of JSON",
    ),
    "export": (
        "FILE",
        "the .tflite file, or the SavedModel folder",
        "replace an existing export (a .tflite with its .json, or a SavedModel folder holding only "
        "what an export wrote) once the new one is written",
        "end with one line of JSON",
    ),
}


def add_run_options(parser, kind, *, seed=True):
    """`--seed`, `--output`, `--overwrite`, `--json` and, for runs, `--resume` (see `_RUN_OUTPUTS`)."""
    metavar, output_help, overwrite_help, json_help = _RUN_OUTPUTS[kind]
    if seed:
        default_seed = library_source.default("keras_transfer.data.images", "image_folder", "seed")
        parser.add_argument(
            "--seed", type=int, default=default_seed, help=f"seed of every random draw (default: {default_seed})"
        )
    parser.add_argument("--output", required=True, metavar=metavar, help=output_help)
    parser.add_argument("--overwrite", action="store_true", help=overwrite_help)
    if kind != "export":
        parser.add_argument(
            "--resume",
            action="store_true",
            help="continue the run interrupted (Ctrl-C) in OUT_DIR.partial, from its last completed epoch; "
            "give the same options as the interrupted run",
        )
    parser.add_argument("--json", action="store_true", help=json_help)
    if kind == "training":
        add_config_option(parser)


def add_text_file_options(parser, for_model=False, optional_labels=False):
    """The text-file options; with `optional_labels`, --label-column has no default (files without labels)."""
    where = "text models: " if for_model else ""
    parser.add_argument(
        "--text-column",
        default="text",
        metavar="C",
        help=f"{where}column with the texts: a header name or a 0-based index (default: text)",
    )
    parser.add_argument(
        "--label-column",
        default=None if optional_labels else "label",
        metavar="C",
        help=f"{where}column with the labels: a header name or a 0-based index "
        + ("(default: none, the file is not labelled)" if optional_labels else "(default: label)"),
    )
    parser.add_argument(
        "--header",
        default="auto",
        choices=["auto", "yes", "no"],
        help=f"{where}whether the first row names the columns; auto: yes when the "
        "named columns are in it (with index columns, auto means no) (default: auto)",
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
        + (" (give the ones the model was trained with)" if for_model else "")
        + " (default: none)",
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


# Options that change no result: --resume may differ from the interrupted run's in these.
_RESUME_FREE_OPTIONS = (
    "resume",
    "overwrite",
    "json",
    "debug",
    "verbose",
    "config",
    "run",
    "command",
    "command_parser",
    # A restarted group of workers may listen on other ports.
    "worker_hosts",
    "task_index",
)


# --------------------------------------------------------------------------
# Repeating a run: report.json's command line and --config.


def add_config_option(parser):
    """`--config REPORT`: repeat the run a report.json describes (read by `expand_config` before parsing)."""
    parser.add_argument(
        "--config",
        metavar="REPORT",
        help="repeat the run that wrote REPORT (its report.json): its command line is used, and the "
        "options given here replace its options (give a new --output, or --overwrite)",
    )


def expand_config(argv):
    """`argv` with `--config REPORT` replaced by the command line REPORT recorded (`run_settings`).

    The recorded options come first, so those given beside --config replace
    them (argparse keeps an option's last value). Raises CommandError for a
    report that cannot be read or that another command wrote.
    """
    import json

    index = next((i for i, token in enumerate(argv) if token == "--config" or token.startswith("--config=")), None)
    if index is None:
        return list(argv)
    token = argv[index]
    if token == "--config":
        if index + 1 >= len(argv):
            raise CommandError("--config needs the path of a report.json written by train or train-text.")
        path, rest = argv[index + 1], [*argv[:index], *argv[index + 2 :]]
    else:
        path, rest = token.split("=", 1)[1], [*argv[:index], *argv[index + 1 :]]
    try:
        with open(path, encoding="utf-8") as file:
            recorded = json.load(file).get("command_line")
    except (OSError, ValueError, AttributeError) as error:
        raise CommandError(f"--config {path!r}: cannot read it as a report.json ({error}).") from error
    if not isinstance(recorded, list) or not recorded or not all(isinstance(item, str) for item in recorded):
        raise CommandError(
            f"--config {path!r} has no command line to repeat: give a report.json written by "
            "`keras-transfer train` or `train-text`."
        )
    commands = [token for token in rest if not token.startswith("-")]
    if commands and commands[0] != recorded[0]:
        raise CommandError(
            f"--config {path!r} was written by `keras-transfer {recorded[0]}`, not `{commands[0]}`: "
            f"run `keras-transfer {recorded[0]} --config {path}`."
        )
    position = rest.index(commands[0]) if commands else len(rest)
    return [*rest[:position], *recorded, *rest[position + 1 :]]


# Options of a command that are not settings of the run (shown nowhere in report.json's command line).
_NOT_SETTINGS = (*_RESUME_FREE_OPTIONS, "help")


def run_settings(parser, args):
    """`(command_line, defaults_used)` of a training run, for report.json.

    `command_line` is the argv after `keras-transfer` that repeats the run
    (`--config` reads it): the command, its arguments and every option with a
    value, given or default (`--seed 1337`), so a later version's defaults do
    not change it. `defaults_used` names the options left at their defaults;
    those without a value here (the recipe's: `--head-epochs`, ...) resolved
    to the values report.json's `recipe` holds.
    """
    command_line, defaults_used = [parser.prog.split()[-1]], []
    for action in parser._actions:
        if action.dest in _NOT_SETTINGS or action.dest == argparse.SUPPRESS:
            continue
        value = getattr(args, action.dest, None)
        if not action.option_strings:  # a positional argument
            command_line.extend(str(item) for item in (value if isinstance(value, list) else [value]))
            continue
        flag = next(flag for flag in action.option_strings if flag.startswith("--"))
        if value is None or value == action.default:
            defaults_used.append(flag)
        if value is None or (value is False and not isinstance(action, argparse.BooleanOptionalAction)):
            continue  # no value, or a flag that is off
        if isinstance(action, argparse.BooleanOptionalAction):
            command_line.append(flag if value else "--no-" + flag[2:])
        elif action.nargs == 0:  # store_true
            command_line.append(flag)
        else:
            command_line.extend([flag, *(str(item) for item in (value if isinstance(value, list) else [value]))])
    return command_line, defaults_used


def data_summary(train, validation):
    """report.json's `data`: examples and examples per class of each split, and the files skipped."""

    def split(dataset):
        counts = getattr(dataset, "class_counts", None)
        names = dataset.class_names or [str(index) for index in range(len(counts or []))]
        return {
            "examples": dataset.num_examples,
            "class_counts": dict(zip(names, counts)) if counts is not None else None,
        }

    summary = {"train": split(train), "validation": split(validation) if validation is not None else None}
    summary["skipped_files"] = train.skipped_files + (validation.skipped_files if validation is not None else [])
    return summary


def run_record(args, train, validation):
    """What report.json needs to repeat a training run: its command line, seed, data and library versions."""
    from keras_transfer.version import environment

    command_line, defaults_used = run_settings(args.command_parser, args)
    return {
        "command_line": command_line,
        "defaults_used": defaults_used,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "data": data_summary(train, validation),
        "environment": environment(),
    }


def check_output_dir(path, overwrite, *, resume=False, args=None):
    """Before any work: the `RunFolder` of `--output`, or a CommandError for what would lose or mix up data.

    `args` (the parsed options) are kept in OUT_DIR.partial, for `--resume` to compare. A command that
    `keras-transfer launch` started again after a failure continues the run it left there, as `--resume`."""
    from keras_transfer.atomic_files import PARTIAL_SUFFIX, RUN_STATE, OutputError, RunFolder
    from keras_transfer.distribute.launcher import restarted

    if restarted() and os.path.isfile(os.path.join(path + PARTIAL_SUFFIX, RUN_STATE)):
        resume = True

    plain = (str, int, float, bool, list, tuple, type(None))
    given = vars(args).items() if args is not None else ()
    options = {name: value for name, value in given if name not in _RESUME_FREE_OPTIONS and isinstance(value, plain)}
    folder = RunFolder(
        path, overwrite=overwrite, resume=resume, options=options, command=getattr(args, "command", None)
    )
    try:
        folder.check()
    except OutputError as error:
        raise CommandError(error) from error
    check_writable(folder.partial)
    return folder


def check_writable(folder, option="--output"):
    """Before any work: a CommandError when `folder` cannot be written."""
    from keras_transfer.atomic_files import check_writable as probe

    try:
        probe(folder)
    except PermissionError as error:
        raise CommandError(f"{option}: {error} Choose a folder you can write to.") from error


def bad_input_errors():
    """The library's exceptions for bad input (data, backbone names, options, model files, weights that
    cannot be downloaded): CommandErrors here."""
    from keras_transfer.errors import DataError, ModelFileError, UnknownBackboneError, WeightsUnavailableError

    return (DataError, UnknownBackboneError, ModelFileError, WeightsUnavailableError, ValueError, FileNotFoundError)


# How to make a model the commands can load, for the messages about files they cannot.
_MAKE_A_MODEL = (
    "train one with `keras-transfer train` or `train-text`, or build it with keras_transfer.ImageClassifier "
    "or TextClassifier and save it with model.save('model.keras')"
)


def load_model(path):
    """The keras_transfer model saved at `path`; a one-line CommandError for any file it cannot load."""
    if not os.path.isfile(path):
        what = "a folder" if os.path.isdir(path) else "no model file"
        raise CommandError(f"{path!r} is {what}: give the model.keras that `train` or `train-text` wrote.")
    if path.endswith(".tflite"):
        raise CommandError(f"{path!r} is a TFLite file; this command takes the model.keras it was exported from.")
    import zipfile

    import keras

    from keras_transfer.errors import extra_missing_from
    from keras_transfer.models.transfer_model import TransferModel

    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise CommandError(
            f"cannot read {path!r}: it is not a complete .keras file (those are zip archives; this one is "
            "truncated or corrupted). Copy it again, or train the model again."
        )
    try:
        # Only predictions are needed: skipping the optimizer state also skips Keras's
        # warning about it for models saved after a LoRA or frozen-backbone phase.
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:
        missing = extra_missing_from(error, f"Loading {path!r}")  # a text model without keras-hub
        if missing is not None:
            raise missing from error
        raise CommandError(_load_failure(path, error)) from error
    if not isinstance(model, TransferModel):
        raise CommandError(
            f"{path!r} holds a plain Keras {type(model).__name__}, not a keras-transfer model: it lacks the "
            f"head, class names and input description keras-transfer saves with its models; {_MAKE_A_MODEL}."
        )
    return model


def _load_failure(path, error):
    """The one-line message for a .keras file that Keras could not load."""
    text = " ".join(str(error).split())
    if "safe_mode" in text or "arbitrary code" in text:
        layer = "a Lambda layer" if "Lambda" in text else "Python code (e.g. a lambda)"
        return (
            f"{path!r} holds {layer}, which keras-transfer does not load: loading it would run arbitrary "
            "code stored in the file. Rebuild the model without Lambda layers (built-in Keras layers, or "
            "registered custom layer classes) and save it again."
        )
    if "Could not locate" in text or "Unknown layer" in text or "not a known" in text:
        return (
            f"cannot load {path!r}: it names classes that neither Keras nor keras-transfer define "
            f"({_first_sentence(text)}); {_MAKE_A_MODEL}."
        )
    return (
        f"cannot load {path!r} ({type(error).__name__}: {_first_sentence(text)}): the file is corrupted, or "
        f"was not written by keras-transfer; {_MAKE_A_MODEL}."
    )


def _first_sentence(text, limit=200):
    sentence = text.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 3] + "..."


def load_tflite(path, purpose="run"):
    """A .tflite file in the LiteRT interpreter, with its metadata; CommandErrors for bad files.

    A text model's file comes with the tokenizer its export saved beside it, loaded here (before any
    work), so it takes sentences; `purpose` ("evaluate", "predict") words the message for a file that
    is neither an image nor a text model's."""
    from keras_transfer.deploy import litert
    from keras_transfer.errors import ModelFileError

    if not os.path.isfile(path):
        raise CommandError(f"no model file at {path!r}.")
    try:
        model = litert.LiteRTModel(path)
    except ModelFileError as error:
        raise CommandError(error) from error
    if model.head is None:
        raise CommandError(
            f"{path!r} has no metadata beside it ({path}.json with the head and class names): "
            "export it with `keras-transfer export` or keras_transfer.export_model."
        )
    if model.takes_text:
        try:
            model.text_preprocessor()
        except ModelFileError as error:
            raise CommandError(error) from error
    elif model.image_size is None:
        raise CommandError(
            f"{path!r} takes inputs {sorted(model.input_details)}, neither images nor token ids with the "
            f"tokenizer saved beside them: {purpose} the model.keras it was exported from."
        )
    return model


def is_text_model(model):
    """Whether `model` classifies sentences: a TextClassifier, or a text model's .tflite (LiteRTModel)."""
    from keras_transfer.models import TextClassifier

    return isinstance(model, TextClassifier) or getattr(model, "takes_text", False) is True


def load_any_model(path, purpose="run"):
    """A model.keras (in Keras) or a .tflite file (in the LiteRT interpreter), by the file's name."""
    return load_tflite(path, purpose=purpose) if path.endswith(".tflite") else load_model(path)


def runtime_summary(model, path):
    """Which runtime and quantization run `model` (loaded from `path`): `(line, fields)`.

    The line is printed before a command's results ("Ran model_int8.tflite in the LiteRT interpreter
    (int8 weights and activations, float32 input/output)"); the fields (`model`, `runtime`,
    `quantization`, `ran`: the line) go into its --json output. A .tflite file's quantization comes from
    its export metadata, else from its tensors' dtypes; a model.keras's from its dtype policy and the
    layers Keras' `model.quantize` quantized.
    """
    from keras_transfer.deploy.litert import LiteRTModel

    name = os.path.basename(path)
    if isinstance(model, LiteRTModel):
        quantization = model.quantization
        words = _litert_quantization_words(quantization, model.takes_text)
        line = f"Ran {name} in the LiteRT interpreter ({words})"
        return line, {"model": path, "runtime": "litert", "quantization": quantization, "ran": line}
    policy = model.dtype_policy
    with_weights = [layer for layer in model._flatten_layers(include_self=False) if not layer._layers and layer.weights]
    quantized = [layer for layer in with_weights if getattr(layer, "quantization_mode", None)]
    modes = sorted({layer.quantization_mode for layer in quantized})
    quantization = {
        "mode": "/".join(modes) if modes else "none",
        "dtype_policy": policy.name,
        "compute_dtype": policy.compute_dtype,
        "variable_dtype": policy.variable_dtype,
        "quantized_layers": len(quantized),
        "layers_with_weights": len(with_weights),
    }
    if policy.compute_dtype == policy.variable_dtype:
        words = policy.compute_dtype
    else:
        words = f"{policy.name}: {policy.compute_dtype} compute, {policy.variable_dtype} weights"
    if quantized:
        words = (
            f"{'/'.join(modes)} weights in {len(quantized)} of {len(with_weights)} layers with weights, quantized "
            f"by Keras' model.quantize; {words} elsewhere"
        )
    line = f"Ran {name} in Keras ({words})"
    return line, {"model": path, "runtime": "keras", "quantization": quantization, "ran": line}


def _litert_quantization_words(quantization, text=False):
    """E.g. "int8 weights and activations, float32 input/output" for `LiteRTModel.quantization`."""
    weights, activations = quantization["weights"], quantization["activations"]
    if weights is None:
        words = "quantization unknown"
    elif weights == activations:
        words = f"{weights} weights and activations"
    else:
        words = f"{weights} weights, {activations} activations"
    mode = quantization["mode"] or ""
    if mode.startswith("dynamic"):  # the converter's "dynamic" and the quantizer's dynamic_* recipes
        words = f"dynamic range: {words}"
    elif mode.startswith("weight_only_"):
        words = f"weight-only: {words}"
    if quantization["source"] == "tensors" and weights is not None:
        words += " (read from its tensors)"
    inputs, outputs = "/".join(quantization["inputs"]), "/".join(quantization["outputs"])
    if text:
        inputs += " token-id"
    return f"{words}, {inputs} input/output" if inputs == outputs else f"{words}, {inputs} input, {outputs} output"


def class_count(model):
    """How many classes a classification model's head tells apart (2 for a binary head)."""
    head = model.head
    return 2 if head.task == "binary" else int(head.num_outputs)


def labelled_data(model, path, args, option, shuffle=False, seed=None):
    """Images (one sub-folder per class) or, for a text model, a CSV/TSV file, in the model's classes.

    Labels index the model's classes: the data may hold any of them (a class
    it lacks is only warned about) and no other. `option` names the argument
    in error messages; `seed` (the loader's default when None) orders a shuffle."""
    from keras_transfer import data
    from keras_transfer.errors import DataError

    seeded = {} if seed is None else {"seed": seed}
    try:
        if is_text_model(model):
            return data.text_file(path, class_names=model.class_names, shuffle=False, **text_file_options(args))
        return data.image_folder(
            path,
            image_size=model.image_size,
            batch_size=args.batch_size,
            class_names=getattr(model, "class_names", None) or None,
            shuffle=shuffle,
            **seeded,
        )
    except DataError as error:
        raise CommandError(error if option == "DATA" else f"{option}: {error}") from error


def best_epoch_line(best):
    """The summary line saying which epoch's weights a training run kept (`FineTuneHistory.best`), or None."""
    if not best:
        return None
    phase = {"head": "head phase", "finetune": "fine-tuning phase"}.get(best["phase"], best["phase"])
    scores = ", ".join(
        f"{name.replace('_', ' ')} {best[name]:.4f}" for name in ("val_accuracy", "val_loss") if name in best
    )
    if best["epoch"] == 0:  # Recipe.probe_start: the head's logistic-regression start
        return (
            "Kept the head's starting weights (a logistic regression on the cached features, before epoch 1), "
            f"the best on validation ({scores})."
        )
    return f"Kept the weights of epoch {best['epoch']} ({phase}), the best on validation ({scores})."


def image_training_data(args, image_size, augment=None):
    """`(train, validation or None)` from DATA_DIR and `--val-split` / `--val-dir`, as the image commands read them."""
    from keras_transfer import data

    loaded = data.image_folder(
        args.data_dir,
        image_size=image_size,
        batch_size=args.batch_size,
        validation_split=args.val_split,
        validation_dir=args.val_dir,
        augment=augment,
        seed=args.seed,
    )
    return loaded if isinstance(loaded, tuple) else (loaded, None)


def text_training_data(args, **file_options):
    """`(train, validation or None)` from TRAIN_FILE and `--val-file` / `--val-split` (`--max-examples`, `--seed`)."""
    from keras_transfer import data

    loaded = data.text_file(
        args.train_file,
        validation_file=args.val_file,
        validation_split=args.val_split,
        max_examples=args.max_examples,
        seed=args.seed,
        **(file_options or text_file_options(args)),
    )
    return loaded if isinstance(loaded, tuple) else (loaded, None)


def text_backbone_weights(args):
    """`--weights pretrained|none|PATH` as `TextClassifier` takes it."""
    from keras_transfer.models.text_backbones import PRETRAINED

    return {"pretrained": PRETRAINED, "none": None}.get(args.weights, args.weights)


def add_text_backbone_options(parser):
    """`--backbone` and `--weights`, as the commands that build a keras-hub text model take them."""
    parser.add_argument(
        "--backbone",
        required=True,
        metavar="PRESET_OR_DIR",
        help="keras-hub preset (see `keras-transfer backbones --text`), hub handle, "
        "or a local keras-hub preset / Hugging Face folder",
    )
    parser.add_argument(
        "--weights", default="pretrained", metavar="pretrained|none|PATH", help="backbone weights (default: pretrained)"
    )


def text_classifier(args, class_names):
    """The `TextClassifier` that `--backbone`, `--weights`, `--sequence-length`, `--pooling` and
    `--[no-]bucket-by-length` describe."""
    from keras_transfer.models import TextClassifier

    return TextClassifier(
        args.backbone,
        weights=text_backbone_weights(args),
        class_names=class_names,
        sequence_length=args.sequence_length,
        pooling=args.pooling,
        bucket_by_length=args.bucket_by_length,
    )


def add_max_examples_option(parser):
    """`--max-examples N`: a seeded random subset of each text file (`text_training_data` passes it on)."""
    parser.add_argument(
        "--max-examples",
        type=positive_int,
        metavar="N",
        help="use a seeded random subset of N rows of each file",
    )
