"""`keras-transfer evaluate`: score a model.keras (or an image model's .tflite) on labelled data."""

import json

from keras_transfer.cli import common

# Shown under `--help` (and checked to parse by the tests).
EXAMPLES = (
    "keras-transfer evaluate runs/photos/model.keras photos_test/",
    "keras-transfer evaluate photos_int8.tflite photos_test/ --json",
    "keras-transfer evaluate runs/reviews/model.keras test.csv --text-column text --label-column label",
)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a saved model on a folder of images, or a text model on a CSV/TSV file",
        description="Scores a model.keras written by train (on an image folder, one sub-folder "
        "per class) or by train-text (on a CSV/TSV file read with --text-column and "
        "--label-column).",
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a model.keras written by train or train-text, or an image model's "
        ".tflite written by export or optimize (run in the LiteRT interpreter)",
    )
    parser.add_argument(
        "data", metavar="DATA", help="images, one sub-folder per class; for a text model, a CSV/TSV file"
    )
    common.add_batch_size_option(parser)
    common.add_text_file_options(parser, for_model=True)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)
    return parser


def run(args):
    from keras_transfer import evaluation

    if args.model.endswith(".tflite"):
        model = common.load_tflite(args.model, purpose="evaluate")
    else:
        model = common.load_model(args.model)
    # The model's classes fix the label order; labels it does not know fail here.
    dataset = common.labelled_data(model, args.data, args, "DATA")
    report = evaluation.evaluate_model(model, dataset, batch_size=args.batch_size)
    if args.json:
        print(json.dumps({**report.to_dict(), "skipped_files": getattr(dataset, "skipped_files", [])}))
    else:
        print(report.format_text())
