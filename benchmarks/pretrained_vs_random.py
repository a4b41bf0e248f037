"""ImageNet MobileNetV2 vs. the same model with random weights, on cats_and_dogs_filtered.

Both train for the same number of epochs in one process: the pretrained model with
`fine_tune`'s transfer recipe (head on the frozen backbone, then the top 30%), the
random one from scratch (everything trainable, BatchNormalization learning its
statistics, Adam 1e-3). The gap is what the pretrained weights buy. Writes `results/pretrained_vs_random.json`
and `.md` beside this file.

    python benchmarks/pretrained_vs_random.py [--train-per-class 200] [--image-size 160]
"""

import argparse
import json
import os
import tempfile
import time

import keras

import keras_transfer as kt
from keras_transfer.finetune.recipes import GUIDE_RECIPE


def _subset(source, target, per_class):
    for name in sorted(os.listdir(source)):
        os.makedirs(os.path.join(target, name))
        for file in sorted(os.listdir(os.path.join(source, name)))[:per_class]:
            os.symlink(os.path.join(source, name, file), os.path.join(target, name, file))
    return target


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--head-epochs", type=int, default=3)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    args = parser.parse_args()

    assets = os.environ.get(
        "KERAS_TRANSFER_ASSETS",
        os.path.join(os.path.dirname(__file__), "..", "..", "shared", "assets"),
    )
    images = os.path.join(assets, "images", "cats_and_dogs_filtered")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        train_dir = _subset(os.path.join(images, "train"), os.path.join(scratch, "train"), args.train_per_class)
        train, val = kt.data.image_folder(
            train_dir,
            validation_dir=os.path.join(images, "validation"),
            image_size=args.image_size,
            augment="flip",
            cache=True,
        )
        epochs = args.head_epochs + args.finetune_epochs
        for weights in ("imagenet", None):
            keras.utils.set_random_seed(0)
            # From random weights the whole network trains, BatchNormalization's
            # statistics included, at a from-scratch learning rate, for as many epochs.
            model = kt.ImageClassifier(
                "mobilenet_v2",
                weights=weights,
                image_size=args.image_size,
                class_names=train.class_names,
                train_batch_norm=weights is None,
            )
            recipe = (
                GUIDE_RECIPE.replace(head_epochs=args.head_epochs, finetune_epochs=args.finetune_epochs)
                if weights
                else GUIDE_RECIPE.replace(
                    head_epochs=0,
                    finetune_epochs=epochs,
                    unfreeze="all",
                    finetune_optimizer="adam",
                    finetune_learning_rate=1e-3,
                )
            )
            start = time.perf_counter()
            model.fine_tune(train, val, recipe=recipe, verbose=2)
            seconds = time.perf_counter() - start
            report = kt.evaluation.evaluate_model(model, val)
            results[str(weights)] = {"val_accuracy": report.accuracy, "seconds": round(seconds, 1)}

    results["settings"] = vars(args) | {"validation_examples": val.num_examples}
    results["accuracy_gain"] = results["imagenet"]["val_accuracy"] - results["None"]["val_accuracy"]
    out_dir = os.path.join(os.path.dirname(__file__), "results")
    kt.files.write_json(results, os.path.join(out_dir, "pretrained_vs_random.json"))
    table = "\n".join(
        [
            "| weights | val accuracy | seconds |",
            "|---|---|---|",
            *(f"| {w} | {results[w]['val_accuracy']:.3f} | {results[w]['seconds']} |" for w in ("imagenet", "None")),
        ]
    )
    with kt.files.atomic_path(os.path.join(out_dir, "pretrained_vs_random.md")) as path:
        with open(path, "w") as file:
            file.write(table + "\n")
    print(table)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
