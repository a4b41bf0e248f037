"""TensorFlow's transfer-learning tutorial against keras_transfer's recipe, in one process.

Both start from the ImageNet MobileNetV2 weights and train on the full
cats_and_dogs_filtered data (2,000 training, 1,000 validation images):

- `tutorial`: the recipe of https://www.tensorflow.org/tutorials/images/transfer_learning
  written in plain Keras: 160 px, RandomFlip + RandomRotation(0.2), 10 epochs of the head
  (Adam 1e-4) on the frozen base, then 10 epochs fine-tuning from layer 100 on
  (RMSprop 1e-5), validating after every epoch.
- `keras_transfer`: `ImageClassifier.fine_tune(cache_features=True)` at 224 px (the
  resolution the weights were trained at): the frozen backbone runs once over the
  training and validation images, then the head trains for 10 epochs on the cached
  features (Adam 1e-3); `--finetune-epochs N` adds N epochs of fine-tuning the top of
  the backbone afterwards.

It also measures the floor (one forward pass of the training images through the
backbone, reading and decoding them included, with plain Keras `predict`), the toolkit's
overhead (the same frozen-backbone epoch through keras_transfer and through plain Keras,
interleaved), and the speed switches (decoded-image caching, XLA, mixed precision) on a
fine-tuning epoch. Targets are printed as PASS/FAIL, never asserted.

Writes `results/fine_tuning.json`, `.md` and `.png` (validation accuracy against
wall-clock seconds for both recipes) beside this file, or into `--output-dir`.

    python benchmarks/fine_tuning.py [--finetune-epochs 0] [--skip-switches] [--skip-overhead]
"""

import argparse
import json
import os
import platform
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

import keras_transfer as kt

TARGETS = {"accuracy_min": 0.985, "time_ratio_max": 1 / 3, "frozen_floor_ratio_max": 1.5,
           "overhead_ratio_max": 1.02}
BATCH_SIZE = 32


class EpochClock(keras.callbacks.Callback):
    """Records validation accuracy against seconds since `start` after every epoch."""

    def __init__(self, start, phase, curve):
        super().__init__()
        self.start, self.phase, self.curve = start, phase, curve

    def on_epoch_end(self, epoch, logs=None):
        self.curve.append({"phase": self.phase, "epoch": epoch + 1,
                           "seconds": round(time.perf_counter() - self.start, 2),
                           "val_accuracy": float(logs["val_accuracy"])})


def plain_folder(root, subset, image_size, shuffle):
    dataset = keras.utils.image_dataset_from_directory(
        os.path.join(root, subset), shuffle=shuffle, batch_size=BATCH_SIZE,
        image_size=(image_size, image_size), seed=1337, verbose=False)
    return dataset.prefetch(tf.data.AUTOTUNE)


def mobilenet_v2(image_size):
    return keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3), include_top=False, weights="imagenet")


def tutorial_model(image_size, augment=True):
    """The tutorial's model: augmentation, preprocess_input, frozen base, pooling, dropout, one logit."""
    base = mobilenet_v2(image_size)
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3))
    x = inputs
    if augment:
        x = keras.Sequential([keras.layers.RandomFlip("horizontal"),
                              keras.layers.RandomRotation(0.2)])(x)
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, keras.layers.Dense(1)(x)), base


def compile_binary(model, optimizer):
    model.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")])


def tutorial_recipe(root, head_epochs=10, finetune_epochs=10, image_size=160):
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    curve = []
    train = plain_folder(root, "train", image_size, shuffle=True)
    validation = plain_folder(root, "validation", image_size, shuffle=False)
    model, base = tutorial_model(image_size)
    compile_binary(model, keras.optimizers.Adam(1e-4))
    head_start = time.perf_counter()
    history = model.fit(train, epochs=head_epochs, validation_data=validation, verbose=2,
                        callbacks=[EpochClock(start, "head", curve)])
    head_seconds = time.perf_counter() - head_start
    base.trainable = True
    for layer in base.layers[:100]:
        layer.trainable = False
    compile_binary(model, keras.optimizers.RMSprop(1e-5))
    finetune_start = time.perf_counter()
    model.fit(train, epochs=head_epochs + finetune_epochs, initial_epoch=len(history.epoch),
              validation_data=validation, verbose=2, callbacks=[EpochClock(start, "finetune", curve)])
    finetune_seconds = time.perf_counter() - finetune_start
    return {
        "image_size": image_size,
        "val_accuracy": curve[-1]["val_accuracy"],
        "head_accuracy": curve[head_epochs - 1]["val_accuracy"],
        "seconds": {"total": time.perf_counter() - start, "head": head_seconds,
                    "finetune": finetune_seconds},
        "curve": curve,
    }


def keras_transfer_recipe(root, head_epochs=10, finetune_epochs=0, image_size=224):
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    curve = []
    train, validation = kt.data.image_folder(
        os.path.join(root, "train"), validation_dir=os.path.join(root, "validation"),
        image_size=image_size, batch_size=BATCH_SIZE)
    model = kt.ImageClassifier("mobilenet_v2", weights="imagenet", image_size=image_size,
                               class_names=train.class_names)
    history = model.fine_tune(
        train, validation, head_epochs=head_epochs, finetune_epochs=finetune_epochs,
        cache_features=True, head_learning_rate=1e-3, unfreeze=0.3,
        callbacks=[EpochClock(start, "recipe", curve)], verbose=2)
    for point in curve:
        point["phase"] = "head" if point["epoch"] <= head_epochs else "finetune"
    seconds = {"total": time.perf_counter() - start, **history.seconds}
    return {
        "image_size": image_size,
        "val_accuracy": curve[-1]["val_accuracy"],
        "head_accuracy": curve[head_epochs - 1]["val_accuracy"],
        "seconds": seconds,
        "curve": curve,
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


def overhead(root, image_size=160, repeats=3):
    """One frozen-backbone epoch through keras_transfer and through plain Keras, interleaved."""
    train_kt = kt.data.image_folder(os.path.join(root, "train"), image_size=image_size,
                                    batch_size=BATCH_SIZE)
    ours = kt.ImageClassifier("mobilenet_v2", weights="imagenet", image_size=image_size,
                              head=kt.Head.binary(logits=True), class_names=train_kt.class_names)
    ours.freeze_backbone()
    ours.compile("adam", learning_rate=1e-4)
    train_plain = plain_folder(root, "train", image_size, shuffle=True)
    plain, _ = tutorial_model(image_size, augment=False)
    compile_binary(plain, keras.optimizers.Adam(1e-4))
    times = {"keras_transfer": [], "keras": []}
    for model, data, name in [(ours, train_kt, "keras_transfer"), (plain, train_plain, "keras")]:
        model.fit(data.take(2), epochs=1, verbose=0)  # trace once, outside the timing
    for _ in range(repeats):
        for model, data, name in [(plain, train_plain, "keras"), (ours, train_kt, "keras_transfer")]:
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - start)
    ratio = statistics.median(times["keras_transfer"]) / statistics.median(times["keras"])
    return {"image_size": image_size, "seconds": times, "ratio": ratio}


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
            train = kt.data.image_folder(folder, image_size=image_size, batch_size=BATCH_SIZE,
                                         cache=config.get("cache", False)).take(images // BATCH_SIZE)
            model = kt.ImageClassifier("mobilenet_v2", weights="imagenet", image_size=image_size,
                                       class_names=["cats", "dogs"])
            model.unfreeze_backbone(top=0.3)
            model.compile("rmsprop", learning_rate=1e-5, jit_compile=config.get("jit_compile", False))
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
        axes.plot([p["seconds"] for p in curve], [p["val_accuracy"] for p in curve], style,
                  label=f"{name} ({results[name]['image_size']} px)", markersize=4)
    axes.axhline(TARGETS["accuracy_min"], color="grey", linestyle="--", linewidth=1, label="target 0.985")
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
    frozen = ours["seconds"]["head"] - ours["seconds"].get("head_validation_features", 0.0)
    checks = {
        "accuracy": (ours["val_accuracy"], ours["val_accuracy"] >= TARGETS["accuracy_min"]),
        "time_ratio": (ours["seconds"]["total"] / tutorial["seconds"]["total"],
                       ours["seconds"]["total"] / tutorial["seconds"]["total"] <= TARGETS["time_ratio_max"]),
        "frozen_phase_vs_floor": (frozen / floor, frozen / floor <= TARGETS["frozen_floor_ratio_max"]),
    }
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
            f"{seconds['total'] / tutorial['seconds']['total']:.3f} |")
    lines += ["", "Floor (one forward pass of the 2,000 training images, decoding included): " +
              ", ".join(f"{size} px {seconds:.1f} s" for size, seconds in floor.items()) + ".",
              f"keras_transfer's frozen phase: {ours['seconds']['head']:.1f} s: "
              f"{ours['seconds'].get('head_features', 0.0):.1f} s caching the training images' features, "
              f"{ours['seconds'].get('head_validation_features', 0.0):.1f} s the validation images' "
              "(not counted against the floor), the rest training the head."]
    if "overhead" in results:
        over = results["overhead"]
        lines += ["", f"Overhead, frozen-backbone epoch at {over['image_size']} px (median of "
                  f"{len(over['seconds']['keras'])}, interleaved): keras_transfer "
                  f"{statistics.median(over['seconds']['keras_transfer']):.1f} s, plain Keras "
                  f"{statistics.median(over['seconds']['keras']):.1f} s, ratio {over['ratio']:.3f}."]
    if "switches" in results:
        switches = results["switches"]
        lines += ["", f"Speed switches, fine-tuning epoch (top 30% trainable) on {switches['images']} "
                  f"images at {switches['image_size']} px:", "",
                  "| switch | first epoch s | epoch s | x baseline |", "|---|---|---|---|"]
        for name, result in switches["results"].items():
            if "error" in result:
                lines.append(f"| {name} | failed: {result['error']} | | |")
            else:
                lines.append(f"| {name} | {result['first_epoch']:.1f} | {result['epoch']:.1f} | {result['ratio']:.2f} |")
    lines += ["", "| target | value | result |", "|---|---|---|"]
    for name, check in results["targets"].items():
        lines.append(f"| {name} | {check['value']} | {'PASS' if check['pass'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="cats_and_dogs_filtered folder "
                        "(default: $KERAS_TRANSFER_ASSETS/images/cats_and_dogs_filtered)")
    parser.add_argument("--output-dir", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--finetune-epochs", type=int, default=0,
                        help="keras_transfer fine-tuning epochs after the cached head phase")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-switches", action="store_true")
    args = parser.parse_args(argv)
    root = args.data or os.path.join(os.environ.get("KERAS_TRANSFER_ASSETS", "../shared/assets"),
                                     "images", "cats_and_dogs_filtered")
    if not os.path.isdir(os.path.join(root, "train")):
        parser.error(f"{root} has no train/ folder: set KERAS_TRANSFER_ASSETS or pass --data.")
    started = time.perf_counter()
    results = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor(),
                           "tensorflow": tf.__version__, "keras": keras.__version__}}
    results["floor_seconds"] = {str(size): forward_floor(root, size) for size in (160, 224)}
    results["tutorial"] = tutorial_recipe(root)
    results["keras_transfer"] = keras_transfer_recipe(root, finetune_epochs=args.finetune_epochs)
    if not args.skip_overhead:
        results["overhead"] = overhead(root)
    if not args.skip_switches:
        results["switches"] = speed_switches(root)
    results["targets"] = check_targets(results)
    results["benchmark_seconds"] = time.perf_counter() - started
    os.makedirs(args.output_dir, exist_ok=True)
    stem = os.path.join(args.output_dir, "fine_tuning")
    kt.files.write_json(results, stem + ".json")
    table = markdown(results)
    with kt.files.atomic_path(stem + ".md") as temporary:
        with open(temporary, "w") as file:
            file.write(table)
    plot(results, stem + ".png")
    print(table)


if __name__ == "__main__":
    main()
