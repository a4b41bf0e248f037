"""Few-shot: prototypes, fine-tuning from prototypes and SetFit against a normally trained head.

Every method sees the same K examples per class (`kt.draw_shots`, one seeded
draw per seed) and is scored on the same evaluation set; nothing looks at the
evaluation labels while training (no validation data, no best-epoch choice):

- images: cats_and_dogs_filtered, ImageNet MobileNetV2 (`--image-size`, 160
  px), K = 1, 5, 10; scored on all 1,000 validation images.
- text: all-MiniLM-L6-v2 (mean pooling), K = 8, 16; SST-2 (K from train.tsv,
  scored on the 872 dev sentences) and SMS spam (a seeded, stratified 20%
  held out: 1,114 messages, K drawn from the rest).

Methods (the `method` key of each row):

- `head`: the baseline, the project's frozen-backbone head training on the
  K examples: `Head.multiclass` trained by `fine_tune` with the head phase of
  `IMAGE_RECIPE` (60 epochs on cached features from a logistic-regression
  start) or `TEXT_RECIPES["frozen"]` (with the same logistic-regression start).
- `prototypes`: `kt.fit_prototypes`: class means in a cosine head, no training.
- `finetune_from_prototypes` (images): the prototype model, then
  `PROTOTYPE_FINETUNE_RECIPE` (the top 30% of the backbone and the head).
- `setfit` (text): `kt.setfit_classifier` with its defaults (`--setfit-draws`
  draws: each fine-tunes the backbone, so it costs far more than the others).

The evaluation set's backbone features are computed once and reused by every
draw of the methods that keep the backbone frozen; fine-tuned images are
scored above the frozen cut on its cached output.

Writes `results/few_shot.json` (rows: `dataset`, `task`, `method`, `shots`,
`seeds`, `accuracies`, `mean`, `std`, `seconds`) and `results/few_shot.md`.

    python benchmarks/few_shot.py [--only images|text] [--draws 5] [--setfit-draws 3] [--image-size 160]
"""

import argparse
import datetime
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

import keras_transfer as kt
from keras_transfer.fewshot.shots import examples_of, shot_indices
from keras_transfer.finetune.frozen_cut import FrozenCut
from keras_transfer.finetune.recipes import IMAGE_RECIPE, TEXT_RECIPES
from keras_transfer.version import cpu_model

RESULTS = os.path.join(os.path.dirname(__file__), "results")
IMAGE_SHOTS = (1, 5, 10)
TEXT_SHOTS = (8, 16)
# The baselines: the project's frozen-backbone head training, head phase only, from a logistic-regression start.
IMAGE_HEAD_RECIPE = IMAGE_RECIPE.replace(finetune_epochs=0)
TEXT_HEAD_RECIPE = TEXT_RECIPES["frozen"].replace(probe_start=True)
METHOD_NAMES = {
    "head": "normal head (frozen backbone)",
    "prototypes": "prototypes (no training)",
    "finetune_from_prototypes": "fine-tuned from prototypes",
    "setfit": "SetFit",
}


def _accuracy(scores, labels):
    return float(np.mean(np.argmax(scores, axis=-1) == labels))


def _row(dataset, task, method, shots, seeds, accuracies, seconds):
    return {
        "dataset": dataset,
        "task": task,
        "method": method,
        "shots": shots,
        "seeds": list(seeds),
        "accuracies": [round(value, 4) for value in accuracies],
        "mean": round(float(np.mean(accuracies)), 4),
        "std": round(float(np.std(accuracies)), 4),
        "seconds": round(float(np.mean(seconds)), 2),
    }


def _print_row(row):
    print(
        f"{row['dataset']} K={row['shots']} {row['method']}: {row['mean']:.4f} +- {row['std']:.4f} "
        f"({row['seconds']:.1f} s per draw)",
        flush=True,
    )


# --- images ---------------------------------------------------------------------------


def _images_and_features(model, folder, image_size):
    """Images (uint8) and the frozen backbone's head features of a folder, in one pass."""
    dataset = kt.data.image_folder(folder, image_size=image_size, shuffle=False, batch_size=50)
    extractor = model.feature_extractor()
    images, features, labels = [], [], []
    for batch_images, batch_labels in dataset:
        images.append(batch_images.numpy().astype(np.uint8))
        features.append(extractor(batch_images, training=False).numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(images), np.concatenate(features), np.concatenate(labels), dataset.class_names


def run_images(args, assets):
    folder = os.path.join(assets, "images", "cats_and_dogs_filtered")
    built = kt.build_backbone("mobilenet_v2", weights="imagenet", image_size=args.image_size)
    backbone, preprocessor = built.model, built.preprocessor
    initial_weights = backbone.get_weights()

    def model_with(head):
        return kt.ImageClassifier(backbone, head=head, preprocessor=preprocessor, class_names=class_names)

    class_names = None
    start = time.perf_counter()
    probe = model_with(kt.Head.cosine(2))
    train_images, _, train_labels, class_names = _images_and_features(
        probe, os.path.join(folder, "train"), args.image_size
    )
    val_images, val_features, val_labels, _ = _images_and_features(
        probe, os.path.join(folder, "validation"), args.image_size
    )
    cut = FrozenCut.find(probe, top=PROTOTYPE_RECIPE.unfreeze)
    val_below_cut = cut.bottom.predict(val_images.astype(np.float32), batch_size=50, verbose=0)
    del val_images
    print(f"Images: features of {len(train_labels)} + {len(val_labels)} images, {time.perf_counter() - start:.0f} s")

    rows = []
    for shots in args.shots or IMAGE_SHOTS:
        results = {method: ([], []) for method in ("head", "prototypes", "finetune_from_prototypes")}
        for seed in range(args.draws):
            chosen = shot_indices(train_labels, shots, seed=seed)
            data = (train_images[chosen].astype(np.float32), train_labels[chosen])
            keras.utils.set_random_seed(seed)

            began = time.perf_counter()
            head_model = model_with(kt.Head.multiclass(2))
            head_model.fine_tune(data, None, IMAGE_HEAD_RECIPE, verbose=0)
            scores = head_model.head_model().predict(val_features, verbose=0)
            _record(results["head"], _accuracy(scores, val_labels), began)

            began = time.perf_counter()
            model = kt.fit_prototypes(model_with(kt.Head.cosine(2)), data, verbose=0)
            scores = model.head_model().predict(val_features, verbose=0)
            _record(results["prototypes"], _accuracy(scores, val_labels), began)

            model.fine_tune(data, None, PROTOTYPE_RECIPE, verbose=0)
            scores = FrozenCut.find(model, top=PROTOTYPE_RECIPE.unfreeze).top.predict(val_below_cut, verbose=0)
            _record(results["finetune_from_prototypes"], _accuracy(scores, val_labels), began)
            backbone.set_weights(initial_weights)  # the next draw starts from ImageNet's weights again
        for method, (accuracies, seconds) in results.items():
            rows.append(_row("cats_and_dogs_filtered", "image", method, shots, range(args.draws), accuracies, seconds))
            _print_row(rows[-1])
    return rows, {"cats_and_dogs_filtered": float(max(np.mean(val_labels), 1 - np.mean(val_labels)))}


def _record(result, accuracy, began):
    result[0].append(accuracy)
    result[1].append(time.perf_counter() - began)


# --- text -------------------------------------------------------------------------------


def text_sets(assets, seed=0):
    """`{name: (pool texts, pool labels, evaluation texts, evaluation labels, class names)}`."""
    sst2 = os.path.join(assets, "text", "sst2")
    train = kt.data.text_file(os.path.join(sst2, "train.tsv"), text_column="sentence", label_column="label")
    dev = kt.data.text_file(
        os.path.join(sst2, "dev.tsv"), text_column="content", label_column="label", class_names=train.class_names
    )
    sms = kt.data.text_file(
        os.path.join(assets, "text", "sms_spam", "SMSSpamCollection"), text_column="SMS", label_column="Label"
    )
    sms_texts, sms_labels = examples_of(sms)
    pool, held_out = kt.data.splits.split_train_validation(sms_labels, 0.2, seed=seed)
    sms_texts = np.asarray(sms_texts, dtype=object)
    return {
        "sst2": (*examples_of(train), *examples_of(dev), train.class_names),
        "sms_spam": (
            list(sms_texts[pool]),
            sms_labels[pool],
            list(sms_texts[held_out]),
            sms_labels[held_out],
            sms.class_names,
        ),
    }


def run_text(args, assets):
    path = os.path.join(assets, "keras-hub", "all-MiniLM-L6-v2")
    built = kt.build_text_backbone(path)
    backbone, preprocessor = built.model, built.preprocessor
    rows, majority = [], {}
    for name, (pool_texts, pool_labels, eval_texts, eval_labels, class_names) in text_sets(assets).items():
        # One sequence length for every model of a dataset: the evaluation texts' 95th percentile of tokens.
        length = kt.data.choose_sequence_length(eval_texts, preprocessor.tokenizer, maximum=256)

        def model_with(head, class_names=class_names, length=length):
            return kt.TextClassifier(
                backbone, preprocessor=preprocessor, head=head, class_names=class_names, pooling="mean",
                sequence_length=length,
            )  # fmt: skip

        start = time.perf_counter()
        eval_features, _ = kt.extract_features(model_with(kt.Head.cosine(2)), (eval_texts, eval_labels), verbose=0)
        print(
            f"Text {name}: features of {len(eval_labels)} texts, length {length}, {time.perf_counter() - start:.0f} s"
        )
        majority[name] = float(max(np.mean(eval_labels), 1 - np.mean(eval_labels)))
        for shots in args.shots or TEXT_SHOTS:
            results = {method: ([], []) for method in ("head", "prototypes", "setfit")}
            for seed in range(args.draws):
                texts, labels = kt.draw_shots(pool_texts, pool_labels, shots, seed=seed)
                keras.utils.set_random_seed(seed)

                began = time.perf_counter()
                head_model = model_with(kt.Head.multiclass(2))
                head_model.fine_tune((texts, labels), None, TEXT_HEAD_RECIPE, verbose=0)
                scores = head_model.head_model().predict(eval_features, verbose=0)
                _record(results["head"], _accuracy(scores, eval_labels), began)

                began = time.perf_counter()
                model = kt.fit_prototypes(model_with(kt.Head.cosine(2)), (texts, labels), verbose=0)
                scores = model.head_model().predict(eval_features, verbose=0)
                _record(results["prototypes"], _accuracy(scores, eval_labels), began)

                if seed < args.setfit_draws:
                    began = time.perf_counter()
                    model, _ = kt.setfit_classifier(
                        path, texts, labels, class_names=class_names, sequence_length=length, seed=seed, verbose=0
                    )
                    scores = model.predict(eval_texts, batch_size=64, verbose=0)
                    _record(results["setfit"], _accuracy(scores, eval_labels), began)
            for method, (accuracies, seconds) in results.items():
                if accuracies:
                    seeds = range(len(accuracies))
                    rows.append(_row(name, "text", method, shots, seeds, accuracies, seconds))
                    _print_row(rows[-1])
    return rows, majority


# --- report ---------------------------------------------------------------------------------


def _markdown(result):
    settings = result["settings"]
    lines = [
        "| dataset | K per class | method | accuracy (mean +- std) | draws | seconds per draw |",
        "|---|---|---|---|---|---|",
    ]
    for dataset, rate in result["majority"].items():
        lines.append(f"| {dataset} | - | majority class | {rate:.3f} | - | - |")
    for row in result["rows"]:
        lines.append(
            f"| {row['dataset']} | {row['shots']} | {METHOD_NAMES[row['method']]} | "
            f"{row['mean']:.3f} +- {row['std']:.3f} | {len(row['seeds'])} | {row['seconds']:.1f} |"
        )
    setup = (
        f"Measured {result['date']} on {result['cpu']} ({result['cpus']} cores, shared with other jobs), "
        f"TensorFlow {result['tensorflow']}, Keras {result['keras']}. Images: ImageNet MobileNetV2 at "
        f"{settings['image_size']} px, scored on the 1,000 validation images of cats_and_dogs_filtered. Text: "
        "all-MiniLM-L6-v2, mean pooling; SST-2 scored on its 872 dev sentences, SMS spam on a seeded stratified "
        "20% held out (1,114 messages). Each draw (seeds 0, 1, ...) takes K examples per class from the "
        "training pool; every method of a draw sees the same examples, and none sees evaluation labels while "
        f"training. Normal head: `IMAGE_RECIPE`'s head phase ({IMAGE_HEAD_RECIPE.head_epochs} epochs on cached "
        "features) or `TEXT_RECIPES['frozen']` "
        f"({TEXT_HEAD_RECIPE.head_epochs} epochs at {TEXT_HEAD_RECIPE.head_learning_rate:g}), both from a "
        "logistic-regression start. Fine-tuned from prototypes: `PROTOTYPE_FINETUNE_RECIPE` "
        f"({PROTOTYPE_RECIPE.finetune_epochs} epochs, {PROTOTYPE_RECIPE.finetune_optimizer} at "
        f"{PROTOTYPE_RECIPE.finetune_learning_rate:g}, the top {PROTOTYPE_RECIPE.unfreeze:.0%} of the backbone). "
        f"SetFit: `setfit_classifier` defaults, {settings['setfit_draws']} draws. {result['seconds']:.0f} s in all."
    )
    return "\n".join(lines) + "\n\n" + setup + "\n"


PROTOTYPE_RECIPE = kt.PROTOTYPE_FINETUNE_RECIPE


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("images", "text"), help="run one part; the other's rows are kept")
    parser.add_argument("--draws", type=int, default=5, help="seeded draws per K (default: 5)")
    parser.add_argument("--setfit-draws", type=int, default=3, help="of them, SetFit's (default: 3)")
    parser.add_argument("--image-size", type=int, default=160, help="image size in pixels (default: 160)")
    parser.add_argument("--shots", type=int, nargs="+", help="only these K (default: 1 5 10 for images, 8 16 for text)")
    parser.add_argument("--finetune-epochs", type=int, help="change PROTOTYPE_FINETUNE_RECIPE's epochs")
    parser.add_argument("--finetune-learning-rate", type=float, help="change PROTOTYPE_FINETUNE_RECIPE's rate")
    parser.add_argument("--no-write", action="store_true", help="print the results only (for trying settings)")
    args = parser.parse_args()
    global PROTOTYPE_RECIPE
    PROTOTYPE_RECIPE = PROTOTYPE_RECIPE.replace(
        finetune_epochs=args.finetune_epochs, finetune_learning_rate=args.finetune_learning_rate
    )
    assets = os.environ.get("KERAS_TRANSFER_ASSETS") or os.path.join(
        os.path.dirname(__file__), "..", "..", "shared", "assets"
    )
    json_path = os.path.join(RESULTS, "few_shot.json")
    previous = {}
    if args.only and os.path.isfile(json_path):
        with open(json_path, encoding="utf-8") as file:
            previous = json.load(file)
    start = time.perf_counter()
    rows, majority = [], {}
    kept_task = {"images": "text", "text": "image"}.get(args.only)
    if kept_task:
        rows = [row for row in previous.get("rows", []) if row["task"] == kept_task]
        majority = {name: rate for name, rate in previous.get("majority", {}).items() if any(
            row["dataset"] == name for row in rows)}  # fmt: skip
    for part, run in (("images", run_images), ("text", run_text)):
        if args.only in (None, part):
            part_rows, part_majority = run(args, assets)
            rows += part_rows
            majority.update(part_majority)
    order = {"cats_and_dogs_filtered": 0, "sst2": 1, "sms_spam": 2}
    methods = list(METHOD_NAMES)
    rows.sort(key=lambda row: (order[row["dataset"]], row["shots"], methods.index(row["method"])))
    result = {
        "benchmark": "few_shot",
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "settings": {"draws": args.draws, "setfit_draws": args.setfit_draws, "image_size": args.image_size},
        "seconds": round(time.perf_counter() - start + previous.get("seconds", 0) * bool(kept_task), 1),
        "majority": majority,
        "rows": rows,
    }
    if args.no_write:
        print(_markdown(result))
        return
    os.makedirs(RESULTS, exist_ok=True)
    kt.files.write_json(result, json_path)
    with kt.files.atomic_path(os.path.join(RESULTS, "few_shot.md")) as temporary:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
