"""TensorFlow's transfer-learning tutorial against keras_transfer's recipe, in one process.

Both start from the ImageNet MobileNetV2 weights and train on the full
cats_and_dogs_filtered data (2,000 training, 1,000 validation images):

- `tutorial`: the recipe of https://www.tensorflow.org/tutorials/images/transfer_learning
  written in plain Keras: 160 px, RandomFlip + RandomRotation(0.2), 10 epochs of the head
  (Adam 1e-4) on the frozen base, then 10 epochs fine-tuning from layer 100 on
  (RMSprop 1e-5), validating after every epoch.
- `keras_transfer`: the command line with its defaults, in a process of its own
  (`keras-transfer train train/ --val-dir validation/ --backbone mobilenet_v2 --weights imagenet`):
  `IMAGE_RECIPE` at 224 px (the resolution the weights were trained at). The
  frozen layers run once over the training and validation images; the head trains
  on the cached features, then the top 30% of the backbone fine-tunes on the cached
  output of the layers below it while validation says it helps; the best epoch is kept.
  Its time is the whole command's: start-up, reading the folders and writing the run included.

It also measures the accuracy floor (`probe`: logistic regression on the frozen
backbone's pooled features of the same images, which the recipe must not fall below;
`second_folder`: the command and the probe again on 500 MNIST digits unlike ImageNet),
the time floor (one forward pass of the training images through the
backbone, reading and decoding them included, with plain Keras `predict`), the toolkit's
overhead (the same frozen-backbone epoch through keras_transfer and through plain Keras,
interleaved), and the speed switches (decoded-image caching, XLA, mixed precision) on a
fine-tuning epoch. Targets are printed as PASS/FAIL, never asserted.

Writes `results/fine_tuning.json`, `.md` and `.png` (validation accuracy against
wall-clock seconds for both recipes) beside this file, or into `--output-dir`.

    python benchmarks/fine_tuning.py [--parts floor recipes probe overhead switches]
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from cli_run import run_command

import keras_transfer as kt

# Issue "Fast and accurate by default": 0.99 in 0.15x of the tutorial's time, with the CLI's defaults.
TARGETS = {"accuracy_min": 0.99, "time_ratio_max": 0.15, "frozen_floor_ratio_max": 1.5, "overhead_ratio_max": 1.02}
BATCH_SIZE = 32
PARTS = ("floor", "recipes", "probe", "second_folder", "overhead", "switches")
# `fine_tune`'s seconds spent running the frozen layers once (FineTuneHistory.seconds).
CACHING_PARTS = ("below_cut", "below_cut_validation", "head_features", "head_validation_features")
VALIDATION_CACHING_PARTS = ("below_cut_validation", "head_validation_features")
TRAINING_CACHING_PARTS = ("below_cut", "head_features")


class EpochClock(keras.callbacks.Callback):
    """Records validation accuracy against seconds since `start` after every epoch."""

    def __init__(self, start, phase, curve):
        super().__init__()
        self.start, self.phase, self.curve = start, phase, curve

    def on_epoch_end(self, epoch, logs=None):
        self.curve.append(
            {
                "phase": self.phase,
                "epoch": epoch + 1,
                "seconds": round(time.perf_counter() - self.start, 2),
                "val_accuracy": float(logs["val_accuracy"]),
            }
        )


def plain_folder(root, subset, image_size, shuffle):
    dataset = keras.utils.image_dataset_from_directory(
        os.path.join(root, subset),
        shuffle=shuffle,
        batch_size=BATCH_SIZE,
        image_size=(image_size, image_size),
        seed=1337,
        verbose=False,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def mobilenet_v2(image_size):
    return keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3), include_top=False, weights="imagenet"
    )


def tutorial_model(image_size, augment=True):
    """The tutorial's model: augmentation, preprocess_input, frozen base, pooling, dropout, one logit."""
    base = mobilenet_v2(image_size)
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3))
    x = inputs
    if augment:
        x = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.2)])(x)
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, keras.layers.Dense(1)(x)), base


def compile_binary(model, optimizer):
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")],
    )


def tutorial_recipe(root, head_epochs=10, finetune_epochs=10, image_size=160):
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    curve = []
    train = plain_folder(root, "train", image_size, shuffle=True)
    validation = plain_folder(root, "validation", image_size, shuffle=False)
    model, base = tutorial_model(image_size)
    compile_binary(model, keras.optimizers.Adam(1e-4))
    head_start = time.perf_counter()
    history = model.fit(
        train, epochs=head_epochs, validation_data=validation, verbose=2, callbacks=[EpochClock(start, "head", curve)]
    )
    head_seconds = time.perf_counter() - head_start
    base.trainable = True
    for layer in base.layers[:100]:
        layer.trainable = False
    compile_binary(model, keras.optimizers.RMSprop(1e-5))
    finetune_start = time.perf_counter()
    model.fit(
        train,
        epochs=head_epochs + finetune_epochs,
        initial_epoch=len(history.epoch),
        validation_data=validation,
        verbose=2,
        callbacks=[EpochClock(start, "finetune", curve)],
    )
    finetune_seconds = time.perf_counter() - finetune_start
    return {
        "image_size": image_size,
        "val_accuracy": curve[-1]["val_accuracy"],
        "head_accuracy": curve[head_epochs - 1]["val_accuracy"],
        "seconds": {"total": time.perf_counter() - start, "head": head_seconds, "finetune": finetune_seconds},
        "curve": curve,
    }


def cli_defaults(root, extra_options=()):
    """`keras-transfer train` with its defaults, in a process of its own, as a user runs it."""
    report, total, command = run_command(
        [
            "train",
            os.path.join(root, "train"),
            "--val-dir",
            os.path.join(root, "validation"),
            "--backbone",
            "mobilenet_v2",
            "--weights",
            "imagenet",
            *extra_options,
        ]
    )
    history, phases = report["history"], report["phases"]
    head_epochs = phases["head"]["epochs"]
    # Per-epoch times are not in the report: the plot spreads each phase's epochs over its seconds,
    # after the time spent caching the frozen layers' outputs.
    caching = sum(report["seconds_by_part"].get(key, 0.0) for key in CACHING_PARTS)
    curve, clock = [], total - report["seconds"]  # before training: start-up, reading the folder, building
    for phase, epochs in (("head", head_epochs), ("finetune", phases.get("finetune", {}).get("epochs", 0))):
        if not epochs:
            continue
        spent = phases[phase]["seconds"] - (caching if phase == "head" else 0.0)
        clock += caching if phase == "head" else 0.0
        for _ in range(epochs):
            clock += spent / epochs
            curve.append(
                {
                    "phase": phase,
                    "epoch": len(curve) + 1,
                    "seconds": round(clock, 2),
                    "val_accuracy": history["val_accuracy"][len(curve)],
                }
            )
    return {
        "command": command.replace(root, "$DATA"),
        "image_size": report["image_size"][0],
        "val_accuracy": report["val_accuracy"],
        "head_accuracy": max(history["val_accuracy"][:head_epochs]) if head_epochs else None,
        "best_epoch": report["best_epoch"],
        "finetune_stopped": report.get("finetune_stopped"),
        "seconds": {
            "total": total,
            "training": report["seconds"],
            "head": phases.get("head", {}).get("seconds", 0.0),
            "finetune": phases.get("finetune", {}).get("seconds", 0.0),
            **report["seconds_by_part"],
        },
        "curve": curve,
    }


def linear_probe(root, image_size=224):
    """The accuracy floor: logistic regression on the frozen backbone's pooled features of the same images.

    The features are those the head of `keras_transfer_recipe` sees (ImageNet
    MobileNetV2, global average pooling, no augmentation); scikit-learn's
    LogisticRegression picks its regularisation by 5-fold cross-validation on
    the training images alone, and is scored on the validation images.
    """
    from sklearn.linear_model import LogisticRegressionCV

    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    train, validation = kt.data.image_folder(
        os.path.join(root, "train"),
        validation_dir=os.path.join(root, "validation"),
        image_size=image_size,
        batch_size=BATCH_SIZE,
        augment=None,
    )
    model = kt.ImageClassifier("mobilenet_v2", weights="imagenet", image_size=image_size, class_names=train.class_names)
    train_features, train_labels = kt.extract_features(model, train, verbose=0)
    val_features, val_labels = kt.extract_features(model, validation, verbose=0)
    features_seconds = time.perf_counter() - start
    probe = LogisticRegressionCV(Cs=10, cv=5, max_iter=2000).fit(train_features, train_labels)
    return {
        "image_size": image_size,
        "val_accuracy": float(probe.score(val_features, val_labels)),
        "C": float(probe.C_[0]),
        "features": int(train_features.shape[1]),
        "seconds": {"features": round(features_seconds, 2), "total": round(time.perf_counter() - start, 2)},
    }


def digits_folder(assets, folder, train_per_class=50, val_per_class=30):
    """A second image set, unlike ImageNet: MNIST test digits written as PNG files in train/ and validation/.

    The first `train_per_class` digits of each class (in file order) train, the next
    `val_per_class` validate: 10 classes of 28x28 grey digits the backbone has never seen.
    """
    import gzip

    with gzip.open(os.path.join(assets, "images", "mnist_t10k", "t10k-images-idx3-ubyte.gz")) as file:
        images = np.frombuffer(file.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
    with gzip.open(os.path.join(assets, "images", "mnist_t10k", "t10k-labels-idx1-ubyte.gz")) as file:
        labels = np.frombuffer(file.read(), np.uint8, offset=8)
    for digit in range(10):
        chosen = np.flatnonzero(labels == digit)[: train_per_class + val_per_class]
        for rank, index in enumerate(chosen):
            subset = "train" if rank < train_per_class else "validation"
            os.makedirs(os.path.join(folder, subset, str(digit)), exist_ok=True)
            tf.io.write_file(os.path.join(folder, subset, str(digit), f"{index}.png"), tf.io.encode_png(images[index]))
    return folder


def second_folder(assets):
    """The CLI's defaults and the linear probe on the digits: the default must not fall below the probe there either."""
    with tempfile.TemporaryDirectory() as folder:
        digits_folder(assets, folder)
        return {
            "name": "MNIST digits (500 training, 300 validation images, 10 classes)",
            "keras_transfer": cli_defaults(folder),
            "probe": linear_probe(folder),
        }


def forward_floor(root, image_size):
    """Seconds to read, decode and push the training images through the backbone once."""
    base = mobilenet_v2(image_size)
    inputs = keras.Input((image_size, image_size, 3))
    model = keras.Model(inputs, base(keras.applications.mobilenet_v2.preprocess_input(inputs)))
    model.predict(np.zeros((BATCH_SIZE, image_size, image_size, 3), "float32"), verbose=0)
    data = plain_folder(root, "train", image_size, shuffle=False)
    start = time.perf_counter()
    model.predict(data, verbose=0)
    return time.perf_counter() - start


def overhead(root, image_size=160, rounds=12, steps=20):
    """The same frozen-backbone epoch through keras_transfer and through plain Keras.

    The machine's speed drifts by up to 2x between minutes (shared host), so one long
    epoch each says little. Instead: `rounds` rounds of short epochs (`steps` batches),
    every configuration once per round in an order that reverses every round, and the
    ratio taken within each round, where the drift is shared. Crossed pairs (our model on
    plain Keras' data pipeline and the other way round) say which half any extra time
    comes from; `keras_transfer (head metrics)` adds the binary head's default AUC metric,
    which the tutorial model does not compute.
    """
    folder = os.path.join(root, "train")
    data = {
        "keras_transfer": kt.data.image_folder(folder, image_size=image_size, batch_size=BATCH_SIZE),
        "keras": plain_folder(root, "train", image_size, shuffle=True),
    }
    same_metrics = [keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")]
    models = {}
    for name, metrics in (("keras_transfer", same_metrics), ("keras_transfer (head metrics)", "auto")):
        model = kt.ImageClassifier(
            "mobilenet_v2",
            weights="imagenet",
            image_size=image_size,
            head=kt.Head.binary(logits=True),
            class_names=["cats", "dogs"],
        )
        model.freeze_backbone()
        model.compile("adam", learning_rate=1e-4, metrics=metrics)
        models[name] = model
    models["keras"], _ = tutorial_model(image_size, augment=False)
    compile_binary(models["keras"], keras.optimizers.Adam(1e-4))
    configs = {  # name: (model, data pipeline)
        "keras_transfer": ("keras_transfer", "keras_transfer"),
        "keras": ("keras", "keras"),
        "keras_transfer (head metrics)": ("keras_transfer (head metrics)", "keras_transfer"),
        "keras_transfer model, keras data": ("keras_transfer", "keras"),
        "keras model, keras_transfer data": ("keras", "keras_transfer"),
    }
    for model_name, data_name in configs.values():  # trace once, outside the timing
        models[model_name].fit(data[data_name].take(2), epochs=1, verbose=0)
    seconds = {name: [] for name in configs}
    order = list(configs)
    for round_index in range(rounds):
        for name in order if round_index % 2 == 0 else reversed(order):
            model_name, data_name = configs[name]
            start = time.perf_counter()
            models[model_name].fit(data[data_name].take(steps), epochs=1, verbose=0)
            seconds[name].append(time.perf_counter() - start)
    summary = overhead_summary(seconds)
    return {
        "image_size": image_size,
        "steps": steps,
        "rounds": rounds,
        "seconds": seconds,
        "summary": summary,
        "ratio": summary["keras_transfer"]["paired_ratio_median"],
    }


def overhead_summary(seconds):
    """Per configuration: median and min seconds, and its ratio to plain Keras within each round."""
    summary = {}
    for name, times in seconds.items():
        paired = [ours / plain for ours, plain in zip(times, seconds["keras"])]
        quartiles = statistics.quantiles(paired, n=4)
        summary[name] = {
            "median_s": statistics.median(times),
            "min_s": min(times),
            "paired_ratio_median": statistics.median(paired),
            "paired_ratio_quartiles": [quartiles[0], quartiles[2]],
            "min_ratio": min(times) / min(seconds["keras"]),
        }
    return summary


def speed_switches(root, image_size=160, images=192):
    """Seconds of a fine-tuning epoch (top 30% of the backbone) on `images` training images per switch."""
    results = {}
    folder = os.path.join(root, "train")
    configs = {
        "baseline": {},
        "decoded-image cache": {"cache": True},
        "xla (jit_compile)": {"jit_compile": True},
        "mixed_bfloat16": {"policy": "mixed_bfloat16"},
        "mixed_float16": {"policy": "mixed_float16"},
    }
    for name, config in configs.items():
        keras.config.set_dtype_policy(config.get("policy", "float32"))
        try:
            train = kt.data.image_folder(
                folder, image_size=image_size, batch_size=BATCH_SIZE, cache=config.get("cache", False)
            ).take(images // BATCH_SIZE)
            model = kt.ImageClassifier(
                "mobilenet_v2", weights="imagenet", image_size=image_size, class_names=["cats", "dogs"]
            )
            # The fine-tuning phase of IMAGE_RECIPE.
            model.unfreeze_backbone(top=kt.IMAGE_RECIPE.unfreeze)
            model.compile(
                kt.IMAGE_RECIPE.finetune_optimizer,
                learning_rate=kt.IMAGE_RECIPE.finetune_learning_rate,
                jit_compile=config.get("jit_compile", False),
            )
            start = time.perf_counter()
            model.fit(train, epochs=1, verbose=0)  # tracing / compiling, and filling the cache
            first = time.perf_counter() - start
            epochs = []
            for _ in range(2):
                start = time.perf_counter()
                model.fit(train, epochs=1, verbose=0)
                epochs.append(time.perf_counter() - start)
            results[name] = {"first_epoch": first, "epoch": min(epochs)}
        except Exception as error:  # a switch that fails on this machine is a result too
            results[name] = {"error": f"{type(error).__name__}: {str(error)[:200]}"}
        finally:
            keras.config.set_dtype_policy("float32")
    base = results["baseline"]["epoch"]
    for result in results.values():
        if "epoch" in result:
            result["ratio"] = result["epoch"] / base
    return {"image_size": image_size, "images": images, "results": results}


def plot(results, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, style in (("tutorial", "o-"), ("keras_transfer", "s-")):
        curve = results[name]["curve"]
        axes.plot(
            [p["seconds"] for p in curve],
            [p["val_accuracy"] for p in curve],
            style,
            label=f"{name} ({results[name]['image_size']} px)",
            markersize=4,
        )
    axes.axhline(
        TARGETS["accuracy_min"], color="grey", linestyle="--", linewidth=1, label=f"target {TARGETS['accuracy_min']}"
    )
    axes.set_xlabel("wall-clock seconds since the recipe started")
    axes.set_ylabel("validation accuracy")
    axes.set_title("cats_and_dogs_filtered, ImageNet MobileNetV2")
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    with kt.files.atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110)


def check_targets(results):
    ours, tutorial = results["keras_transfer"], results["tutorial"]
    floor = results["floor_seconds"][str(ours["image_size"])]
    # The floor is a pass over the training images: the validation images' pass is evaluation.
    # One pass over the training images through the frozen layers (below the cut, then above it):
    # what the floor measures with plain Keras.
    frozen = sum(ours["seconds"].get(key, 0.0) for key in TRAINING_CACHING_PARTS)
    checks = {
        "accuracy": (ours["val_accuracy"], ours["val_accuracy"] >= TARGETS["accuracy_min"]),
        "time_ratio": (
            ours["seconds"]["total"] / tutorial["seconds"]["total"],
            ours["seconds"]["total"] / tutorial["seconds"]["total"] <= TARGETS["time_ratio_max"],
        ),
        "caching_vs_floor": (frozen / floor, frozen / floor <= TARGETS["frozen_floor_ratio_max"]),
    }
    if "probe" in results:
        # Never worse than a linear probe on the same frozen features (issue "Fast and accurate by default").
        margin = ours["val_accuracy"] - results["probe"]["val_accuracy"]
        checks["accuracy_vs_linear_probe"] = (margin, margin >= 0)
    if "second_folder" in results:
        second = results["second_folder"]
        margin = second["keras_transfer"]["val_accuracy"] - second["probe"]["val_accuracy"]
        checks["second_folder_vs_linear_probe"] = (margin, margin >= 0)
    if "overhead" in results:
        ratio = results["overhead"]["ratio"]
        checks["overhead"] = (ratio, ratio <= TARGETS["overhead_ratio_max"])
    return {name: {"value": round(value, 4), "pass": bool(passed)} for name, (value, passed) in checks.items()}


def markdown(results):
    ours, tutorial = results["keras_transfer"], results["tutorial"]
    floor = results["floor_seconds"]
    lines = [
        "| recipe | px | val accuracy | after head phase | head phase s | fine-tune s | total s | time x tutorial |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in (("tutorial (plain Keras)", tutorial), ("keras_transfer", ours)):
        seconds = run["seconds"]
        lines.append(
            f"| {name} | {run['image_size']} | {run['val_accuracy']:.3f} | {run['head_accuracy']:.3f} | "
            f"{seconds['head']:.1f} | {seconds.get('finetune', 0.0):.1f} | {seconds['total']:.1f} | "
            f"{seconds['total'] / tutorial['seconds']['total']:.3f} |"
        )
    if "probe" in results:
        probe = results["probe"]
        lines += [
            "",
            f"Floor: logistic regression (C={probe['C']:.3g} by 5-fold cross-validation) on the frozen backbone's "
            f"{probe['features']} pooled features at {probe['image_size']} px: val accuracy "
            f"{probe['val_accuracy']:.3f} ({probe['seconds']['total']:.0f} s, features included).",
        ]
    lines += [
        "",
        "Floor (one forward pass of the 2,000 training images, decoding included): "
        + ", ".join(f"{size} px {seconds:.1f} s" for size, seconds in floor.items())
        + ".",
        f"keras_transfer's head phase: {ours['seconds']['head']:.1f} s: "
        f"{ours['seconds'].get('below_cut', 0.0) + ours['seconds'].get('head_features', 0.0):.1f} s caching the "
        "training images' features (the layers below the fine-tuned top, then the top once), "
        f"{sum(ours['seconds'].get(key, 0.0) for key in VALIDATION_CACHING_PARTS):.1f} s the validation images' "
        "(not counted against the floor), the rest training the head.",
        f"keras_transfer: `{ours['command']}`: {ours['seconds']['total']:.1f} s in all, "
        f"{ours['seconds']['training']:.1f} s of it training; "
        + (
            f"kept epoch {ours['best_epoch']['epoch']} ({ours['best_epoch']['phase']} phase)"
            if ours.get("best_epoch")
            else "no best epoch recorded"
        )
        + (f"; {ours['finetune_stopped']}." if ours.get("finetune_stopped") else "."),
    ]
    if "second_folder" in results:
        second = results["second_folder"]
        ours_there, probe_there = second["keras_transfer"], second["probe"]
        kept = ours_there.get("best_epoch") or {}
        lines += [
            "",
            f"Second image set, {second['name']}, the same command and the same probe: defaults "
            f"{ours_there['val_accuracy']:.3f} in {ours_there['seconds']['total']:.0f} s (kept epoch "
            f"{kept.get('epoch')}, {kept.get('phase')} phase), probe {probe_there['val_accuracy']:.3f} "
            f"(C={probe_there['C']:.3g}).",
        ]
    if "overhead" in results:
        over = results["overhead"]
        lines += [
            "",
            f"Overhead, frozen-backbone epochs of {over['steps']} batches at {over['image_size']} px, "
            f"{over['rounds']} rounds, every configuration once per round in alternating order; "
            "ratio to plain Keras taken within each round (median over rounds):",
            "",
            "| configuration | median s | min s | x keras (paired median) | paired quartiles | x keras (min/min) |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in over["summary"].items():
            low, high = row["paired_ratio_quartiles"]
            lines.append(
                f"| {name} | {row['median_s']:.2f} | {row['min_s']:.2f} | "
                f"{row['paired_ratio_median']:.3f} | {low:.3f}-{high:.3f} | {row['min_ratio']:.3f} |"
            )
    if "switches" in results:
        switches = results["switches"]
        lines += [
            "",
            f"Speed switches, fine-tuning epoch (top 30% trainable) on {switches['images']} "
            f"images at {switches['image_size']} px:",
            "",
            "| switch | first epoch s | epoch s | x baseline |",
            "|---|---|---|---|",
        ]
        for name, result in switches["results"].items():
            if "error" in result:
                lines.append(f"| {name} | failed: {result['error']} | | |")
            else:
                lines.append(
                    f"| {name} | {result['first_epoch']:.1f} | {result['epoch']:.1f} | {result['ratio']:.2f} |"
                )
    lines += ["", "| target | value | result |", "|---|---|---|"]
    for name, check in results["targets"].items():
        lines.append(f"| {name} | {check['value']} | {'PASS' if check['pass'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        default=None,
        help="cats_and_dogs_filtered folder (default: $KERAS_TRANSFER_ASSETS/images/cats_and_dogs_filtered)",
    )
    parser.add_argument("--output-dir", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="what to run (default: all); the others are kept from the existing "
        "results file, so `--parts overhead` re-measures only the overhead",
    )
    args = parser.parse_args(argv)
    root = args.data or os.path.join(
        os.environ.get("KERAS_TRANSFER_ASSETS", "../shared/assets"), "images", "cats_and_dogs_filtered"
    )
    if not os.path.isdir(os.path.join(root, "train")):
        parser.error(f"{root} has no train/ folder: set KERAS_TRANSFER_ASSETS or pass --data.")
    stem = os.path.join(args.output_dir, "fine_tuning")
    results = {}
    if set(args.parts) != set(PARTS):
        if not os.path.exists(stem + ".json"):
            parser.error(
                f"--parts {' '.join(args.parts)} updates {stem}.json, which does not exist: run without --parts first."
            )
        with open(stem + ".json") as file:
            results = json.load(file)
    started = time.perf_counter()
    results["machine"] = {
        "cpus": os.cpu_count(),
        "processor": platform.processor(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    if "floor" in args.parts:
        results["floor_seconds"] = {str(size): forward_floor(root, size) for size in (160, 224)}
    if "recipes" in args.parts:
        results["tutorial"] = tutorial_recipe(root)
        results["keras_transfer"] = cli_defaults(root)
    if "probe" in args.parts:
        results["probe"] = linear_probe(root)
    if "second_folder" in args.parts:
        results["second_folder"] = second_folder(os.path.dirname(os.path.dirname(root)))
    if "overhead" in args.parts:
        results["overhead"] = overhead(root)
    if "switches" in args.parts:
        results["switches"] = speed_switches(root)
    results["targets"] = check_targets(results)
    results.setdefault("benchmark_seconds", {})[" ".join(args.parts)] = time.perf_counter() - started
    os.makedirs(args.output_dir, exist_ok=True)
    kt.files.write_json(results, stem + ".json")
    table = markdown(results)
    with kt.files.atomic_path(stem + ".md") as temporary:
        with open(temporary, "w") as file:
            file.write(table)
    plot(results, stem + ".png")
    print(table)


if __name__ == "__main__":
    main()
