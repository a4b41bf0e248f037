"""`keras-transfer predict`: the class and its probability for image files or sentences."""

import json

from keras_transfer.cli import common
from keras_transfer.cli.common import CommandError
from keras_transfer.data import CLEANING_STEPS


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="classify image files, or sentences with a text model",
        description="Prints the predicted class and its probability for each input: image "
        "files for a model written by train, sentences for one written by train-text.",
    )
    parser.add_argument("model", metavar="MODEL", help="a model.keras written by train or train-text")
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
    model = common.load_model(args.model)
    if common.is_text_model(model):
        return _predict_text(model, inputs, args)
    if args.clean:
        raise CommandError("--clean applies to text models; this is an image model.")
    import keras
    import numpy as np

    images = []
    for path in inputs:
        try:
            image = keras.utils.load_img(path, target_size=model.image_size)
        except Exception as error:  # PIL raises several kinds for unreadable files
            raise CommandError(f"cannot read {path!r} as an image ({error}).") from error
        images.append(keras.utils.img_to_array(image))
    rows = _predicted_rows(model, np.stack(images), inputs, "image")
    if args.json:
        print(json.dumps(rows))
        return
    width = max(len(path) for path in inputs)
    for row in rows:
        print(f"{row['image']:<{width}}  {row['class']}  ({row['probability']:.3f})")


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
    indices, probabilities = model.predict_classes(inputs)
    names = model.class_names or [str(i) for i in range(max(indices) + 1)]
    return [
        {key: item, "class": names[index], "probability": round(float(probability), 4)}
        for item, index, probability in zip(shown, indices, probabilities)
    ]
