"""`keras-transfer predict`: the class and its probability for image files or sentences."""

import json
import sys

from keras_transfer.cli import common
from keras_transfer.cli.common import CLEANING_STEPS, CommandError

# Shown under `--help` (and checked to parse by the tests).
EXAMPLES = (
    "keras-transfer predict runs/photos/model.keras cat.jpg dog.jpg",
    "keras-transfer predict photos_int8.tflite cat.jpg --json",
    "keras-transfer predict runs/photos/model.keras cat.jpg --top-k 3",
    "keras-transfer predict runs/reviews/model.keras 'a gripping, funny film' 'two dull hours'",
    "keras-transfer predict reviews.tflite 'a gripping, funny film' --top-k 2",
)
DEFAULT_TOP_K = 1


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="classify image files, or sentences with a text model",
        description="Prints which runtime and quantization ran MODEL, then the predicted class and its "
        "probability (or the --top-k most probable classes) for each input: image files for a model "
        "written by train, sentences for one written by train-text. Unreadable images are named and "
        "skipped; the others are still predicted, and the run then exits 2.",
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a model.keras written by train or train-text (run in Keras), or a .tflite written by export "
        "or optimize (run in the LiteRT interpreter; a text model's with the tokenizer export saved beside it)",
    )
    parser.add_argument(
        "inputs", metavar="INPUT", nargs="*", help="image files; for a text model, sentences (quote each one)"
    )
    parser.add_argument(
        "--file", metavar="FILE", help="read more inputs from FILE, one per line (blank lines are skipped)"
    )
    parser.add_argument(
        "--top-k",
        type=common.positive_int,
        default=DEFAULT_TOP_K,
        metavar="K",
        help="show the K most probable classes of each input with their probabilities, most probable first; "
        f"K above the model's number of classes is an error (default: {DEFAULT_TOP_K})",
    )
    parser.add_argument(
        "--clean",
        nargs="+",
        metavar="STEP",
        choices=CLEANING_STEPS,
        help="text models: the cleaning steps the model was trained with (default: none)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object instead of text: the runtime and quantization, and the predictions",
    )
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


def _check_model(model, args):
    """Before any input is read: a classification head, with at least --top-k classes."""
    from keras_transfer.models import task_io

    if model.head.task not in task_io.CLASSIFICATION_TASKS:
        raise CommandError(f"predict needs a classification model; this one's head is {model.head.task!r}.")
    classes = common.class_count(model)
    if args.top_k > classes:
        names = f" ({', '.join(model.class_names)})" if model.class_names else ""
        raise CommandError(
            f"--top-k {args.top_k} is more than the model's {classes} classes{names}: give --top-k {classes} or less."
        )
    if args.clean and not common.is_text_model(model):
        raise CommandError("--clean applies to text models; this is an image model.")


def run(args):
    inputs = _inputs(args)
    model = common.load_any_model(args.model, purpose="predict")
    _check_model(model, args)
    ran, fields = common.runtime_summary(model, args.model)
    if common.is_text_model(model):
        return _predict_text(model, inputs, args, ran, fields)
    from keras_transfer.data import read_image_files

    # Decoded and resized as training reads images; unreadable ones are named as training names them.
    images, unreadable = read_image_files(inputs, model.image_size)
    readable = [path for path in inputs if path not in unreadable]
    if unreadable:
        # Named like the unreadable images train and evaluate skip.
        print(
            f"keras-transfer predict: warning: Skipping {len(unreadable)} unreadable image "
            f"{'file' if len(unreadable) == 1 else 'files'}:\n  "
            + "\n  ".join(f"{path}: {reason}" for path, reason in unreadable.items()),
            file=sys.stderr,
        )
    predicted = iter(_predicted_rows(model, images, readable, "image", args.top_k) if readable else [])
    rows = [
        {"image": path, "class": None, "probability": None, "top_k": None, "error": unreadable[path]}
        if path in unreadable
        else next(predicted)
        for path in inputs
    ]
    if args.json:
        print(json.dumps(_json_output(fields, args, rows)))
    else:
        print(ran)
        width = max(len(row["image"]) for row in rows)
        cells = _cells(model)
        for row in rows:
            if row["class"] is not None:
                print(f"{row['image']:<{width}}  {cells(row)}")
    if unreadable:
        done = {0: "nothing was predicted", 1: "the other one was predicted"}.get(
            len(readable), f"the other {len(readable)} were predicted"
        )
        raise CommandError(
            f"{len(unreadable)} of {len(inputs)} inputs could not be read as images (named above); {done}."
        )


def _predict_text(model, sentences, args, ran, fields):
    from keras_transfer.data import TextCleaner

    texts = TextCleaner(args.clean)(sentences) if args.clean else sentences
    rows = _predicted_rows(model, texts, sentences, "text", args.top_k)
    if args.json:
        print(json.dumps(_json_output(fields, args, rows)))
        return
    print(ran)
    cells = _cells(model)
    for row in rows:
        text = " ".join(row["text"].split())
        text = text if len(text) <= 70 else text[:67] + "..."
        print(f"{cells(row)}  {text}")


def _json_output(fields, args, rows):
    """--json: the runtime and quantization (`common.runtime_summary`), then one row per input."""
    return {**fields, "top_k": args.top_k, "predictions": rows}


def _cells(model):
    """A row's K classes and probabilities as text, class names padded so that columns line up."""
    width = max((len(name) for name in model.class_names or ()), default=1)
    return lambda row: "   ".join(f"{top['class']:<{width}}  ({top['probability']:.3f})" for top in row["top_k"])


def _predicted_rows(model, inputs, shown, key, top_k=1):
    """One `{key: shown input, "class", "probability", "top_k": [{"class", "probability"}, ...]}` row per input.

    `class` and `probability` are the most probable class's; `top_k` lists the `top_k` most probable,
    most probable first. A .tflite file's head (from its metadata) reads its outputs as a model.keras's does.
    """
    import numpy as np

    from keras_transfer.models import task_io

    outputs = model.predict(inputs, batch_size=32, verbose=0)  # Keras, or the LiteRT interpreter
    probabilities = task_io.decode_outputs(outputs, model.head).probabilities
    if model.head.task == "binary":  # the positive class's probability: both classes'
        probabilities = np.stack([1.0 - probabilities, probabilities], axis=-1)
    names = model.class_names or [str(i) for i in range(probabilities.shape[-1])]
    # Stable on ties: the lower class index first, as argmax picks it.
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :top_k]
    rows = []
    for item, indices, row in zip(shown, order, probabilities):
        top = [{"class": names[index], "probability": round(float(row[index]), 4)} for index in indices]
        rows.append({key: item, "class": top[0]["class"], "probability": top[0]["probability"], "top_k": top})
    return rows
