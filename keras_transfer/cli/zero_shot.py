"""`keras-transfer zero-shot`: classify the texts of a file into classes given by name, with no training.

The classes' prompts are embedded by a sentence-embedding backbone and each
text goes to the nearest one (`keras_transfer.zeroshot.zero_shot_classifier`);
with `--label-column` the predictions are scored. The template's default is
read from the library's source, so `--help` imports no TensorFlow.
"""

import argparse
import json
import os

from keras_transfer.cli import common
from keras_transfer.cli.common import CommandError
from keras_transfer.cli.library_source import constant
from keras_transfer.errors import require_extra

DEFAULT_TEMPLATE = constant("keras_transfer.zeroshot.prompts", "DEFAULT_TEMPLATE")
DEFAULT_SHOWN = 10

# Shown under `--help` (and checked to parse by the tests).
EXAMPLES = (
    "keras-transfer zero-shot news.csv --classes sports politics science --backbone ./all-MiniLM-L6-v2",
    "keras-transfer zero-shot dev.tsv --text-column content --label-column label --classes negative positive "
    "--template 'A {} movie review.' --backbone ./all-MiniLM-L6-v2",
    "keras-transfer zero-shot sms.tsv --text-column SMS --label-column Label --classes 'ham=a personal message' "
    "'spam=an advertisement or a prize offer' --backbone ./all-MiniLM-L6-v2 --output spam_zero_shot.keras --json",
)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "zero-shot",
        help="classify the texts of a CSV/TSV file into classes given by name, with no labelled examples",
        description="Puts each class's name (or description) into a template, embeds these prompts with a "
        "sentence-embedding backbone (e.g. all-MiniLM-L6-v2), and assigns each text of FILE to the class "
        "whose prompt is nearest by cosine similarity; nothing trains. Prints a table of predictions "
        "(class, confidence, text) and, with --label-column, the accuracy and a per-class report. "
        "--output saves the model (.keras), which predict, evaluate and export take like a trained one. "
        "Images: keras_transfer.zero_shot_image_classifier with a CLIP or SigLIP keras-hub preset, in Python "
        "(useful accuracy needs the preset's downloaded weights).",
    )
    parser.add_argument("file", metavar="FILE", help="CSV or TSV file (UTF-8), one text per row")
    parser.add_argument(
        "--classes",
        nargs="+",
        required=True,
        metavar="NAME",
        help="the classes, at least 2, in the model's output order; NAME=DESCRIPTION puts the description "
        "into the template instead of the name (e.g. 'spam=an advertisement or a prize offer'). Labels in "
        "FILE may be these names or 0-based indexes into them",
    )
    parser.add_argument(
        "--template",
        action="append",
        metavar="T",
        help="the prompt, with {} where the class name or description goes; give it several times for an "
        "ensemble (the class vector is the mean of its prompts' embeddings) "
        f"(default: {DEFAULT_TEMPLATE!r})",
    )
    parser.add_argument(
        "--backbone",
        required=True,
        metavar="PRESET_OR_DIR",
        help="a sentence-embedding backbone: a local folder (e.g. all-MiniLM-L6-v2 from Hugging Face, "
        "works offline) or a keras-hub preset such as all_minilm_l6_v2_en (downloaded the first time)",
    )
    common.add_text_file_options(parser, optional_labels=True)
    common.add_batch_size_option(parser)
    parser.add_argument(
        "--show",
        type=common.non_negative_int,
        default=DEFAULT_SHOWN,
        metavar="N",
        help=f"print the predictions of the first N texts (--json has them all) (default: {DEFAULT_SHOWN})",
    )
    parser.add_argument("--output", metavar="FILE", help="save the zero-shot model here (a .keras file)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead: prompts, every prediction, the report"
    )
    parser.set_defaults(run=run)
    return parser


def parse_classes(values):
    """`--classes` values -> `(class names, {name: description})`; NAME=DESCRIPTION gives a description."""
    names, descriptions = [], {}
    for value in values:
        name, separator, description = value.partition("=")
        name = name.strip()
        if separator and not description.strip():
            raise CommandError(f"--classes {value!r} has an empty description: write NAME=DESCRIPTION, or NAME alone.")
        names.append(name)
        if separator:
            descriptions[name] = description.strip()
    return names, descriptions


def _check_output(args):
    if args.output is None:
        return
    if not args.output.endswith(".keras"):
        raise CommandError(f"--output {args.output!r} must end in .keras (the model is saved in Keras's format).")
    if os.path.isdir(args.output):
        raise CommandError(f"--output {args.output!r} is a folder: give a file name ending in .keras.")
    if os.path.exists(args.output) and not args.overwrite:
        raise CommandError(f"--output {args.output!r} exists: give another name, or --overwrite to replace it.")
    common.check_writable(os.path.dirname(os.path.abspath(args.output)))


def run(args):
    require_extra("keras_hub", "zero-shot")  # the optional `text` extra, checked before any work
    from keras_transfer.zeroshot.prompts import class_prompts

    names, descriptions = parse_classes(args.classes)
    templates = args.template or [DEFAULT_TEMPLATE]
    try:
        prompts = class_prompts(names, templates, descriptions)
    except ValueError as error:
        raise CommandError(error) from error
    _check_output(args)
    texts, labels, label_words = _read_file(args, names)

    from keras_transfer.zeroshot import zero_shot_classifier

    verbose = 0 if args.json else "auto"
    try:
        model = zero_shot_classifier(
            names,
            backbone=args.backbone,
            template=templates,
            descriptions=descriptions,
            batch_size=args.batch_size,
            verbose=verbose,
        )
    except common.bad_input_errors() as error:
        raise CommandError(error) from error
    rows, outputs = _predict(model, texts, args, verbose)
    report = _report(model, labels, outputs) if labels is not None else None
    if args.output:
        from keras_transfer import atomic_files as files

        files.save_model(model, args.output)
    if args.json:
        print(json.dumps(_json_output(args, model, prompts, rows, report, label_words)))
        return
    _print_results(args, model, rows, report, label_words)


def _read_file(args, names):
    """`(texts, labels or None, how the labels were read)`, labels as indices of `names`: before any model loads."""
    from keras_transfer import data
    from keras_transfer.data import TextCleaner

    # text_file_options reads every text-file option; without labels the label column is never read.
    options = common.text_file_options(argparse.Namespace(**{**vars(args), "label_column": args.label_column or "0"}))
    try:
        if args.label_column is None:
            texts = data.read_texts(
                args.file, text_column=options["text_column"], header=options["header"], delimiter=options["delimiter"]
            )
            return (TextCleaner(args.clean)(texts) if args.clean else texts), None, None
        raw = data.read_column(
            args.file, options["label_column"], header=options["header"], delimiter=options["delimiter"]
        )
        dataset = data.text_file(args.file, class_names=names, shuffle=False, **options)
    except data.DataError as error:
        raise CommandError(error) from error
    import numpy as np

    texts, labels = [], []
    for batch_texts, batch_labels in dataset:
        texts += [text.decode("utf-8") for text in batch_texts.numpy()]
        labels.append(batch_labels.numpy())
    # The last rows: a header row that text_file detected and skipped comes first.
    by_name = all(label.strip() in names for label in raw[len(raw) - len(texts) :])
    words = (
        "by class name" if by_name else "as 0-based indexes: " + ", ".join(f"{i} = {n}" for i, n in enumerate(names))
    )
    return texts, np.concatenate(labels), words


def _predict(model, texts, args, verbose):
    from keras_transfer.finetune import progress
    from keras_transfer.models import task_io

    progress.announce(verbose, f"Classifying {progress.counted(len(texts), 'text')}.")
    shown = 1 if progress.resolve_verbose(verbose) == 1 else 0
    outputs = model.predict(texts, batch_size=args.batch_size, verbose=shown)
    decoded = task_io.decode_outputs(outputs, model.head)
    rows = [
        {"text": text, "class": model.class_names[index], "confidence": round(float(confidence), 4)}
        for text, index, confidence in zip(texts, decoded.classes, decoded.confidence)
    ]
    return rows, outputs


def _report(model, labels, outputs):
    from keras_transfer import evaluation

    return evaluation.evaluate_model(model, None, predictions=(labels, outputs))


def _majority_rate(report):
    counts = [row["support"] for row in report.per_class.values()] if report.per_class else []
    return max(counts) / sum(counts) if counts and sum(counts) else None


def _json_output(args, model, prompts, rows, report, label_words):
    return {
        "backbone": args.backbone,
        "pooling": model.pooling,
        "classes": model.class_names,
        "prompts": dict(zip(model.class_names, prompts)),
        "num_texts": len(rows),
        "labels": label_words,
        "accuracy": report.accuracy if report is not None else None,
        "majority_class_accuracy": _majority_rate(report) if report is not None else None,
        "evaluation": report.to_dict() if report is not None else None,
        "output": args.output,
        "predictions": rows,
    }


def _print_results(args, model, rows, report, label_words):
    shown = rows[: args.show]
    if shown:
        width = max(len(name) for name in model.class_names)
        print(f"\n{'class':<{width}}  confidence  text")
        for row in shown:
            text = " ".join(row["text"].split())
            text = text if len(text) <= 70 else text[:67] + "..."
            print(f"{row['class']:<{width}}  {row['confidence']:>10.3f}  {text}")
        if len(rows) > len(shown):
            print(f"... and {len(rows) - len(shown):,} more (--show N prints more, --json prints them all)")
    counts = {name: sum(row["class"] == name for row in rows) for name in model.class_names}
    predicted = ", ".join(f"{name} {count:,}" for name, count in counts.items())
    summary = (
        f"\nZero-shot with {args.backbone}: {len(rows):,} texts into {len(model.class_names)} classes ({predicted})"
    )
    if report is not None:
        print(f"\nLabels from column {args.label_column!r}, read {label_words}.")
        print(report.format_text())
        majority = _majority_rate(report)
        summary += f"; accuracy {report.accuracy:.3f} (majority class {majority:.3f})"
    print(summary + ".")
    if args.output:
        print(f"Wrote {args.output}")
