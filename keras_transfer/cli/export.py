"""`keras-transfer export`: TFLite/LiteRT or SavedModel, checked against Keras."""

import dataclasses
import json
import os
import time

from keras_transfer.cli import common
from keras_transfer.cli.common import CommandError
from keras_transfer.cli.library_source import constant, default

_EXPORT = "keras_transfer.deploy.export"
_QUANTIZATION = "keras_transfer.deploy.quantization"
_BUDGET = "keras_transfer.deploy.budget"

# Shown under `--help` (and checked to parse by the tests).
EXAMPLES = (
    "keras-transfer export runs/photos/model.keras --output photos.tflite",
    "keras-transfer export runs/photos/model.keras --quantize int8 --representative-data photos/ "
    "--eval-data photos_test/ --output photos_int8.tflite",
    "keras-transfer export runs/photos/model.keras --max-accuracy-drop 0.005 --representative-data photos/ "
    "--eval-data photos_test/ --output photos_small.tflite",
    "keras-transfer export runs/photos/model.keras --max-accuracy-drop 0.01 --candidates dynamic,mixed "
    "--eval-data photos_test/ --output photos_int4_mix.tflite",
)


def add_parser(subparsers):
    num_samples = default(_QUANTIZATION, "Quantization.int8", "num_samples")
    io_dtype = default(_QUANTIZATION, "Quantization.int8", "io_dtype")
    parser = subparsers.add_parser(
        "export",
        help="export a saved model to TFLite/LiteRT or SavedModel, checked against Keras",
        description="Exports MODEL (a model.keras written by train or train-text) and runs the "
        "export in a real LiteRT interpreter (or loads the SavedModel) to compare it with Keras: "
        "top-1 agreement, max abs difference, and accuracy on --eval-data. With "
        "--max-accuracy-drop it tries int8, dynamic, float16 and float32 (or --candidates) and keeps the "
        "smallest file within that drop. Class names are written beside the model (OUTPUT.json).",
    )
    parser.add_argument("model", metavar="MODEL", help="a model.keras written by train or train-text")
    default_format = default(_EXPORT, "export", "format")
    parser.add_argument(
        "--format",
        default=default_format,
        choices=constant(_EXPORT, "FORMATS"),
        help=f"tflite (LiteRT, run by the interpreter to check it) or saved_model (default: {default_format})",
    )
    parser.add_argument(
        "--quantize",
        default=default(_EXPORT, "export", "quantization"),
        choices=constant(_QUANTIZATION, "QUANTIZATION_MODES"),
        help="tflite only: none (float32), dynamic (int8 weights), float16, or int8 "
        "(full integer, calibrated on --representative-data), by the TFLite converter; or a LiteRT Quantizer "
        f"recipe: {', '.join(constant(_QUANTIZATION, 'QUANTIZER_RECIPES'))} (wi4: int4 weights; static ones "
        f"calibrate on --representative-data) (default: {default(_EXPORT, 'export', 'quantization')})",
    )
    parser.add_argument(
        "--representative-data",
        metavar="DIR",
        help="calibration data for int8 and the static recipes: training images (one sub-folder per "
        "class), or a CSV/TSV file for a text model; drawn across all classes "
        "(with --max-accuracy-drop and no DIR, int8 calibrates on --eval-data)",
    )
    parser.add_argument(
        "--num-samples",
        type=common.positive_int,
        default=num_samples,
        metavar="N",
        help=f"int8 calibration examples (default {num_samples})",
    )
    parser.add_argument(
        "--io-dtype",
        default=io_dtype,
        choices=constant(_QUANTIZATION, "IO_DTYPES"),
        help=f"int8 only: type of the model's inputs and outputs (default {io_dtype})",
    )
    parser.add_argument(
        "--eval-data", metavar="DIR", help="labelled data to check the export's accuracy on (images or CSV/TSV)"
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=common.fraction,
        metavar="F",
        help="with --eval-data: keep the smallest TFLite export whose accuracy "
        "drops at most F (e.g. 0.005) below Keras's; overrides --quantize",
    )
    candidates = constant(_BUDGET, "BUDGET_CANDIDATES")
    parser.add_argument(
        "--candidates",
        type=common.names,
        metavar="MODES",
        help="with --max-accuracy-drop: the quantizations to try, comma-separated, of --quantize's choices "
        f"and {constant(_BUDGET, 'MIXED_CANDIDATE')} (weight-only int8 with int4 on the layers the budget "
        f"allows, searched; the [quantizer] extra) (default: {','.join(candidates)})",
    )
    common.add_batch_size_option(parser)
    common.add_text_file_options(parser, for_model=True)
    common.add_run_options(parser, "export", seed=False)
    parser.set_defaults(run=run)
    return parser


def _check_options(args):
    unquantized = default(_EXPORT, "export", "quantization")
    if args.format == "tflite" and not args.output.endswith(".tflite"):
        raise CommandError(f"--output {args.output!r}: a TFLite file name must end with .tflite.")
    if args.format == "saved_model" and (args.quantize != unquantized or args.max_accuracy_drop is not None):
        raise CommandError("--quantize and --max-accuracy-drop apply to --format tflite.")
    calibrated = args.quantize in constant(_QUANTIZATION, "CALIBRATED_MODES")
    if calibrated and args.representative_data is None and args.max_accuracy_drop is None:
        raise CommandError(
            f"--quantize {args.quantize} needs --representative-data (training data across all classes: an image "
            "folder, or a CSV/TSV file for a text model)."
        )
    if args.io_dtype != default(_QUANTIZATION, "Quantization.int8", "io_dtype") and args.quantize != "int8":
        raise CommandError("--io-dtype int8/uint8 needs --quantize int8.")
    if args.max_accuracy_drop is not None and args.eval_data is None:
        raise CommandError("--max-accuracy-drop needs --eval-data (labelled data to measure the drop on).")
    if args.candidates is not None:
        if args.max_accuracy_drop is None:
            raise CommandError("--candidates needs --max-accuracy-drop (the candidates are what it tries).")
        valid = (*constant(_QUANTIZATION, "QUANTIZATION_MODES"), constant(_BUDGET, "MIXED_CANDIDATE"))
        unknown = [mode for mode in args.candidates if mode not in valid]
        if unknown:
            raise CommandError(f"--candidates: unknown {', '.join(unknown)}; choose from {', '.join(valid)}.")
    if os.path.lexists(args.output) and not args.overwrite:
        raise CommandError(f"--output {args.output!r} exists; pass --overwrite to replace it.")
    if args.format == "saved_model" and args.overwrite:
        from keras_transfer.deploy.export import refuse_foreign_files

        try:
            refuse_foreign_files(args.output)
        except FileExistsError as error:
            raise CommandError(f"--output: {error}") from error
    if args.format == "tflite" and os.path.isdir(args.output):
        raise CommandError(f"--output {args.output!r} is a folder, not a .tflite file: choose another path.")
    common.check_writable(os.path.dirname(os.path.abspath(args.output)))


def run(args):
    _check_options(args)
    from keras_transfer.deploy.budget import export_within_budget
    from keras_transfer.deploy.export import export as export_model
    from keras_transfer.deploy.quantization import Quantization

    model = common.load_model(args.model)
    eval_data = args.eval_data and common.labelled_data(model, args.eval_data, args, "--eval-data")
    representative = args.representative_data and common.labelled_data(
        model, args.representative_data, args, "--representative-data"
    )
    start = time.perf_counter()
    candidates = None
    try:
        if args.max_accuracy_drop is not None:
            choice = export_within_budget(
                model,
                args.output,
                eval_data,
                max_accuracy_drop=args.max_accuracy_drop,
                representative_data=representative,
                num_samples=args.num_samples,
                overwrite=args.overwrite,
                **({} if args.candidates is None else {"candidates": args.candidates}),
            )
            result = choice.result
            candidates = [dataclasses.asdict(candidate) for candidate in choice.candidates]
            print(choice.explanation())
        else:
            quantization = Quantization.calibrated(args.quantize, representative, args.num_samples)
            if args.quantize == "int8":
                quantization = Quantization.int8(representative, args.num_samples, io_dtype=args.io_dtype)
            check_data = eval_data if eval_data is not None else representative
            result = export_model(
                model,
                args.output,
                format=args.format,
                quantization=quantization,
                check_data=check_data if check_data is not None else random_inputs(model),
                overwrite=args.overwrite,
            )
    except (ValueError, FileExistsError) as error:
        raise CommandError(error) from error
    seconds = time.perf_counter() - start
    check = result.check
    summary = {
        "output": result.path,
        "format": result.format,
        "quantization": result.quantization,
        "size_bytes": result.size_bytes,
        "classes": model.class_names,
        "checked_on": "eval-data"
        if eval_data is not None
        else ("representative-data" if representative is not None else "random inputs"),
        "num_examples": check.num_examples,
        "top1_agreement": check.top1_agreement,
        "max_abs_difference": check.max_abs_difference,
        "accuracy": check.accuracy_keras,
        "exported_accuracy": check.accuracy_exported,
        "seconds": round(seconds, 2),
    }
    if candidates is not None:
        summary["candidates"] = candidates
    agreement = "-" if check.top1_agreement is None else f"{check.top1_agreement:.4f}"
    accuracy = (
        ""
        if check.accuracy_exported is None
        else (f"; accuracy {check.accuracy_exported:.4f} (Keras {check.accuracy_keras:.4f})")
    )
    print(
        f"Wrote {result.path} ({result.format}, {_quantization_words(result.quantization)}, "
        f"{result.size_bytes / 1e6:.2f} MB) in {seconds:.0f} s. Checked on {check.num_examples} "
        f"{summary['checked_on'].replace('-data', ' examples')}: top-1 agreement {agreement}, max abs difference "
        f"{check.max_abs_difference:.2g}{accuracy}."
    )
    if args.json:
        print(json.dumps(summary))


def _quantization_words(config):
    """`int8, calibrated on 24 examples`, `float16`, `no quantization`."""
    if config["mode"] == "none":
        return "float32, no quantization"
    if config.get("int4_layers") is not None:
        return f"weight-only int8, {len(config['int4_layers'])} layers int4"
    if config.get("calibration_examples") is not None:
        return f"{config['mode']}, calibrated on {config['calibration_examples']} examples"
    return config["mode"]


def random_inputs(model):
    """Inputs in the model's range, for checking an export when no data was given."""
    import numpy as np

    if common.is_text_model(model):
        return model.tokenize(["a short example sentence", "another one"] * 4)
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, size=(8, *model.image_size, 3)).astype("float32")
