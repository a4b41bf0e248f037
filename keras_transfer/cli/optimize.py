"""`keras-transfer optimize`: quantization-aware training (int8 or low-bit kernels), pruning or clustering (TF-MOT),
to TFLite."""

import json
import sys
import time

from keras_transfer.cli import common
from keras_transfer.cli.common import CommandError
from keras_transfer.cli.library_source import constant, default
from keras_transfer.errors import require_extra

_OPTIMIZE = "keras_transfer.deploy.tfmot.optimize"

# The command line's short names of `optimize.METHODS` (the others keep theirs).
SHORT_NAMES = {"quantization_aware": "qat", "low_bit_weights": "low-bit"}
METHODS = {SHORT_NAMES.get(method, method): method for method in constant(_OPTIMIZE, "METHODS")}
SCHEMES = tuple(constant("keras_transfer.deploy.tfmot.low_bit", "SCHEMES"))
LAYER_CHOICES = constant(_OPTIMIZE, "LAYER_CHOICES")
# Options that only one method takes.
METHOD_OPTIONS = {
    "sparsity": ("prune",),
    "clusters": ("cluster",),
    "scheme": ("low_bit_weights",),
    "layers": ("cluster", "low_bit_weights"),
}


def _defaults(option, methods=None):
    """`qat 1, prune 2, cluster 1`: each method's default of `option`, from its function."""
    return ", ".join(
        f"{name} {_shown(default(_OPTIMIZE, method, option))}"
        for name, method in METHODS.items()
        if methods is None or method in methods
    )


def _shown(value):
    return f"{value:g}" if isinstance(value, float | int) else str(value)


# Shown under `--help` (and checked to parse by the tests).
EXAMPLES = (
    "keras-transfer optimize runs/photos/model.keras photos/ --method qat --val-dir photos_test/ "
    "--output runs/photos_qat",
    "keras-transfer optimize runs/photos/model.keras photos/ --method prune --sparsity 0.5 --output runs/pruned",
    "keras-transfer optimize runs/photos/model.keras photos/ --method low-bit --scheme ternary --val-dir photos_test/ "
    "--output runs/ternary",
)


def add_parser(subparsers):
    sparsity = default(_OPTIMIZE, "prune", "sparsity")
    clusters = default(_OPTIMIZE, "cluster", "clusters")
    scheme = default(_OPTIMIZE, "low_bit_weights", "scheme")
    parser = subparsers.add_parser(
        "optimize",
        help="quantization-aware training (int8 or low-bit kernels), pruning or clustering (TF-MOT), to TFLite",
        description="Fine-tunes MODEL (an image model.keras written by train) on TRAIN_DIR with "
        "TF-MOT (through a Keras 3 -> tf_keras bridge that is checked for equal outputs), exports "
        "OUT_DIR/model.tflite (int8 for qat; the trained kernels int4 and the rest int8 for low-bit; "
        "int8 weights for cluster; float32 for prune) with its metadata, and writes OUT_DIR/report.json: accuracy "
        "(Keras, optimized model), tflite_accuracy, original_accuracy, size_bytes (and bit_packed_size_bytes "
        "for low-bit), sparsity and latency_ms (LiteRT, batch 1).",
    )
    parser.add_argument("model", metavar="MODEL", help="an image model.keras written by train")
    parser.add_argument("train_dir", metavar="TRAIN_DIR", help="training images, one sub-folder per class")
    parser.add_argument(
        "--method",
        required=True,
        choices=tuple(METHODS),
        help="qat: quantization-aware training to int8; prune: magnitude pruning "
        "to --sparsity; cluster: weight clustering to --clusters values per kernel; low-bit: "
        "--scheme kernels trained with a straight-through estimator",
    )
    parser.add_argument(
        "--val-dir", metavar="DIR", help="validation images for the accuracies (default: TRAIN_DIR, said in the report)"
    )
    parser.add_argument(
        "--epochs", type=common.positive_int, metavar="N", help=f"fine-tuning epochs (default: {_defaults('epochs')})"
    )
    parser.add_argument(
        "--lr",
        type=common.positive_float,
        metavar="RATE",
        help=f"Adam learning rate (default: {_defaults('learning_rate')})",
    )
    parser.add_argument(
        "--sparsity",
        type=common.open_fraction,
        metavar="F",
        help=f"prune: fraction of zero weights per kernel (default {sparsity:g})",
    )
    parser.add_argument(
        "--clusters",
        type=common.at_least_two,
        metavar="N",
        help=f"cluster: distinct values per kernel (default {clusters})",
    )
    parser.add_argument(
        "--scheme",
        choices=SCHEMES,
        help=f"low-bit: binary (sign x alpha), ternary (-alpha, 0, +alpha) or int4 kernels, alpha per "
        f"output channel (default {scheme})",
    )
    parser.add_argument(
        "--layers",
        type=common.names,
        metavar="NAMES",
        help="low-bit and cluster: the Conv2D/Dense layers to compress: all, inner (all but the first "
        "convolution and the output layer), largest (the fewest inner ones holding 3/4 of their weights) or "
        "names, comma-separated (default: "
        f"{_defaults('layers', ('cluster', 'low_bit_weights'))})",
    )
    common.add_batch_size_option(parser)
    parser.add_argument(
        "--threads", type=common.positive_int, default=1, metavar="N", help="LiteRT threads for the latency (default 1)"
    )
    common.add_run_options(parser, "optimize")
    parser.set_defaults(run=run)
    return parser


def run(args):
    for module in ("tensorflow_model_optimization", "tf_keras"):  # the optional `tfmot` extra, before any work
        require_extra(module, "optimize")
    folder = common.check_output_dir(args.output, args.overwrite, resume=args.resume, args=args)
    import keras

    from keras_transfer.deploy import reports as report_lib

    keras.utils.set_random_seed(args.seed)
    model = common.load_model(args.model)
    if common.is_text_model(model):
        raise CommandError("optimize takes image models; for a text model use `export --quantize`.")
    method = METHODS[args.method]
    for option, owners in METHOD_OPTIONS.items():
        if getattr(args, option) is not None and method not in owners:
            methods = " or ".join(SHORT_NAMES.get(owner, owner) for owner in owners)
            raise CommandError(f"--{option} applies to --method {methods}, not {args.method}.")
    train = common.labelled_data(model, args.train_dir, args, "TRAIN_DIR", shuffle=True, seed=args.seed)
    evaluated = common.labelled_data(
        model, args.val_dir or args.train_dir, args, "--val-dir" if args.val_dir else "TRAIN_DIR"
    )
    options = {"epochs": args.epochs, "learning_rate": args.lr}
    if method == "prune":
        options["sparsity"] = args.sparsity
    if method == "cluster":
        options["clusters"] = args.clusters
    if method == "low_bit_weights":
        options["scheme"] = args.scheme
    if method in METHOD_OPTIONS["layers"]:
        choice = len(args.layers or ()) == 1 and args.layers[0] in LAYER_CHOICES
        options["layers"] = args.layers[0] if choice else args.layers
    # Options left out keep the method's own defaults.
    options = {name: value for name, value in options.items() if value is not None}
    folder.begin()
    if folder.discarded:
        print(f"Discarded the interrupted run in {folder.partial} (--overwrite).")
    if folder.resume:
        print(f"Resuming the interrupted run in {folder.partial}.")
    try:
        summary, measured, original, seconds = _optimize_and_write(
            args, folder, model, method, train, evaluated, options
        )
    except KeyboardInterrupt:
        print(flush=True)  # end the progress bar's line
        print(
            f"Interrupted; what finished is kept in {folder.partial}. Run the same command with --resume "
            "to go on from the last completed epoch, or with --overwrite to start again.",
            file=sys.stderr,
        )
        raise
    folder.finish()
    print(report_lib.format_table([measured]))
    print(
        f"\n{args.method}: TFLite accuracy {measured.tflite_accuracy:.4f} vs the original model's "
        f"{original.accuracy:.4f} on {measured.num_examples} {summary['evaluated_on']} images; "
        f"{measured.size_bytes / 1e6:.2f} MB, {measured.latency_ms:.2f} ms/image "
        f"({measured.latency_threads} thread, {_cpu_words(summary['environment'])}); trained {seconds:.0f} s."
        + (
            f" With its {summary['settings']['scheme']} kernels packed at {summary['settings']['bits']} bit(s) "
            f"per weight: {summary['bit_packed_size_bytes'] / 1e6:.2f} MB."
            if summary.get("low_bit_layers")
            else ""
        )
    )
    print(f"Wrote model.tflite, model.tflite.json, report.json to {args.output}")
    if args.json:
        print(json.dumps({key: value for key, value in summary.items() if key != "history"}))


def _optimize_and_write(args, folder, model, method, train, evaluated, options):
    """Fine-tunes with TF-MOT (resuming from `folder`'s backup) and writes every output into OUT_DIR.partial."""
    from keras_transfer import atomic_files as files
    from keras_transfer import evaluation
    from keras_transfer.deploy import reports as report_lib
    from keras_transfer.deploy.tfmot import optimize as optimize_lib
    from keras_transfer.version import environment

    start = time.perf_counter()
    try:
        optimized = optimize_lib.optimize(model, train, method, backup_dir=folder.backup_dir, **options)
    except ValueError as error:  # the bridge names layers it cannot carry, before training
        raise CommandError(error) from error
    seconds = time.perf_counter() - start
    path = folder.file("model.tflite")
    folder.file("model.tflite.json")
    optimized.to_tflite(path, overwrite=True)  # a file left by an interrupted run is replaced
    measured = report_lib.measure_export(
        path, optimized.model, evaluated, name=args.method, head=optimized.head, num_threads=args.threads
    )
    original = evaluation.evaluate_model(model, evaluated, batch_size=args.batch_size)
    summary = {
        "method": args.method,
        "settings": optimized.settings,
        "classes": model.class_names,
        "evaluated_on": "val-dir" if args.val_dir else "train-dir (no --val-dir given)",
        "num_examples": measured.num_examples,
        "original_accuracy": original.accuracy,
        "accuracy": measured.accuracy,
        "tflite_accuracy": measured.tflite_accuracy,
        "accuracy_drop": original.accuracy - measured.tflite_accuracy,
        "top1_agreement": measured.top1_agreement,
        "size_bytes": measured.size_bytes,
        "compressed_size_bytes": measured.compressed_size_bytes,
        "parameters": measured.parameters,
        "sparsity": measured.sparsity,
        "latency_ms": measured.latency_ms,
        "latency_threads": measured.latency_threads,
        "unique_values": optimized.unique_values,
        "low_bit_layers": optimized.low_bit_layers,
        "bit_packed_size_bytes": optimized.bit_packed_size_bytes(path),
        "history": optimized.history,
        "seconds": round(seconds, 2),
        "environment": environment(),
    }
    files.write_json(summary, folder.file("report.json"))
    return summary, measured, original, seconds


def _cpu_words(environment):
    """`AMD EPYC: avx2, avx512_vnni`: the CPU a latency was measured on, and its int8-relevant instruction sets."""
    flags = ", ".join(environment["cpu_flags"]) or "no AVX2, AVX-512, VNNI, AMX or dot-product flags"
    return f"{environment['cpu']}: {flags}"
