"""`keras-transfer predict`: the class and its probability for image files or sentences."""

import json
import sys

from keras_transfer.cli import common
from keras_transfer.cli.common import CommandError
from keras_transfer.data import CLEANING_STEPS

# Shown under `--help` (and checked to parse by the tests).
EXAMPLES = (
    "keras-transfer predict runs/photos/model.keras cat.jpg dog.jpg",
    "keras-transfer predict photos_int8.tflite cat.jpg --json",
    "keras-transfer predict runs/reviews/model.keras 'a gripping, funny film' 'two dull hours'",
)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="classify image files, or sentences with a text model",
        description="Prints the predicted class and its probability for each input: image "
        "files for a model written by train, sentences for one written by train-text. Unreadable "
        "images are named and skipped; the others are still predicted, and the run then exits 2.",
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a model.keras written by train or train-text, or an image model's .tflite written by export "
        "or optimize (run in the LiteRT interpreter)",
    )
    parser.add_argument(
        "inputs", metavar="INPUT", nargs="*", help="image files; for a text model, sentences (quote each one)"
    )
    parser.add_argument(
        "--file", metavar="FILE", help="read more inputs from FILE, one per line (blank lines are skipped)"
    )
    parser.add_argument(
        "--clean",
        nargs="+",
        metavar="STEP",
        choices=CLEANING_STEPS,
        help="text models: the cleaning steps the model was trained with",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)
    return parser


def _inputs(args):
    inputs = list(args.inputs)
    if args.file is not None:
        try:
            with open(args.file, encoding="utf-8") as file:
                inputs += [line.rstrip("\r\n") for line in file if line.strip()]
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"cannot read --file {args.file!r} ({error}).") from error
    if not inputs:
        raise CommandError("nothing to predict: give inputs after MODEL, or --file with one per line.")
    return inputs


def run(args):
    inputs = _inputs(args)
    if args.model.endswith(".tflite"):
        model = common.load_tflite(args.model, purpose="predict")
    else:
        model = common.load_model(args.model)
    if common.is_text_model(model):
        return _predict_text(model, inputs, args)
    if args.clean:
        raise CommandError("--clean applies to text models; this is an image model.")
    from keras_transfer.data import read_image_files

    # Decoded and resized as training reads images; unreadable ones are named as training names them.
    images, unreadable = read_image_files(inputs, model.image_size)
    readable = [path for path in inputs if path not in unreadable]
    if unreadable:
        # Named like the unreadable images train and evaluate skip.
        print(
            f"keras-transfer predict: warning: Skipping {len(unreadable)} unreadable image file(s):\n  "
            + "\n  ".join(f"{path}: {reason}" for path, reason in unreadable.items()),
            file=sys.stderr,
        )
    predicted = iter(_predicted_rows(model, images, readable, "image") if readable else [])
    rows = [
        {"image": path, "class": None, "probability": None, "error": unreadable[path]}
        if path in unreadable
        else next(predicted)
        for path in inputs
    ]
    if args.json:
        print(json.dumps(rows))
    else:
        width = max(len(row["image"]) for row in rows)
        for row in rows:
            if row["class"] is not None:
                print(f"{row['image']:<{width}}  {row['class']}  ({row['probability']:.3f})")
    if unreadable:
        done = {0: "nothing was predicted", 1: "the other one was predicted"}.get(
            len(readable), f"the other {len(readable)} were predicted"
        )
        raise CommandError(
            f"{len(unreadable)} of {len(inputs)} inputs could not be read as images (named above); {done}."
        )


def _predict_text(model, sentences, args):
    from keras_transfer.data import TextCleaner

    texts = TextCleaner(args.clean)(sentences) if args.clean else sentences
    rows = _predicted_rows(model, texts, sentences, "text")
    if args.json:
        print(json.dumps(rows))
        return
    width = max(len(row["class"]) for row in rows)
    for row in rows:
        text = " ".join(row["text"].split())
        text = text if len(text) <= 70 else text[:67] + "..."
        print(f"{row['class']:<{width}}  ({row['probability']:.3f})  {text}")


def _predicted_rows(model, inputs, shown, key):
    """One `{key: shown input, "class", "probability"}` row per input."""
    if hasattr(model, "predict_classes"):
        indices, probabilities = model.predict_classes(inputs)
    else:  # a .tflite in the LiteRT interpreter: its head (from the metadata) reads the outputs
        from keras_transfer.models import task_io

        if model.head.task not in task_io.CLASSIFICATION_TASKS:
            raise CommandError(f"predict needs a classification model; this one's head is {model.head.task!r}.")
        decoded = task_io.decode_outputs(model.predict(inputs), model.head)
        indices, probabilities = decoded.classes, decoded.confidence
    names = model.class_names or [str(i) for i in range(max(indices) + 1)]
    return [
        {key: item, "class": names[index], "probability": round(float(probability), 4)}
        for item, index, probability in zip(shown, indices, probabilities)
    ]
