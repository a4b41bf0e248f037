"""`keras-transfer evaluate`: score a model.keras or a .tflite file (image or text model) on labelled data."""

import json

from keras_transfer.cli import common

# Shown under `--help` (and checked to parse by the tests).
EXAMPLES = (
    "keras-transfer evaluate runs/photos/model.keras photos_test/",
    "keras-transfer evaluate photos_int8.tflite photos_test/ --json",
    "keras-transfer evaluate runs/reviews/model.keras test.csv --text-column text --label-column label",
    "keras-transfer evaluate reviews_dynamic.tflite test.csv --json",
)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a saved model on a folder of images, or a text model on a CSV/TSV file",
        description="Scores a model.keras written by train (on an image folder, one sub-folder "
        "per class) or by train-text (on a CSV/TSV file read with --text-column and "
        "--label-column), or a .tflite file either model was exported to; first says which runtime "
        "and quantization ran it.",
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a model.keras written by train or train-text (run in Keras), or a .tflite written by export "
        "or optimize (run in the LiteRT interpreter; a text model's with the tokenizer export saved beside it)",
    )
    parser.add_argument(
        "data", metavar="DATA", help="images, one sub-folder per class; for a text model, a CSV/TSV file"
    )
    common.add_batch_size_option(parser)
    common.add_text_file_options(parser, for_model=True)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object instead of text: the report, with the runtime and quantization",
    )
    parser.set_defaults(run=run)
    return parser


def run(args):
    from keras_transfer import evaluation

    model = common.load_any_model(args.model, purpose="evaluate")
    ran, fields = common.runtime_summary(model, args.model)
    # The model's classes fix the label order; labels it does not know fail here.
    dataset = common.labelled_data(model, args.data, args, "DATA")
    report = evaluation.evaluate_model(model, dataset, batch_size=args.batch_size)
    if args.json:
        print(json.dumps({**fields, **report.to_dict(), "skipped_files": getattr(dataset, "skipped_files", [])}))
    else:
        print(ran)
        print(report.format_text())
