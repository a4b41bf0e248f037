"""Size, accuracy and latency of every export and TF-MOT optimization of one model.

An ImageNet MobileNetV2 at 160 px gets a new head trained on cats_and_dogs_filtered
(backbone frozen, `ImageClassifier.fine_tune` with `finetune_epochs=0`), then is exported
and measured with `keras_transfer.deploy.reports.measure_export` on the validation set
(1 LiteRT thread, batch size 1 latency):

- `float32`, `float16`, `dynamic` (int8 weights) and `int8 PTQ` (full integer,
  calibrated on 200 training images): `keras_transfer.export_model`.
- `int8 QAT`: `keras_transfer.quantization_aware`, exported as real int8.
- `pruned 50%`: `keras_transfer.prune` to 50% sparsity, exported as float32
  (the gzip size shows what pruning saves).
- `clustered 16`: `keras_transfer.cluster` with 16 shared values per kernel, float32.

For QAT, pruning and clustering the report's `acc keras` is the optimized tf_keras
model's; `extra.accuracy_drop_vs_float32` is always against the original float Keras
model. The issue's targets (int8 size <= 0.31x, accuracy drop <= 0.005, latency <= 0.5x
of float32; QAT at least as accurate as PTQ) are printed as PASS/FAIL, never asserted.

Writes `results/optimization.json` and `.md` beside this file (or in `--output-dir`).

    python benchmarks/optimization.py [--train-limit N] [--val-limit N] [--head-epochs 2]
        [--skip-qat] [--skip-prune] [--skip-cluster] [--repeats 200]
"""

import argparse
import os
import platform
import tempfile
import time
import traceback

import keras
import tensorflow as tf

import keras_transfer as kt

# Measured by hand earlier with the plain TFLite converter (1 thread).
REFERENCE = {
    "float32": {"size_mb": 8.89, "latency_ms": 1.74},
    "int8": {"size_mb": 2.73, "size_ratio": 0.307, "latency_ms": 0.92, "accuracy": 0.973, "float_accuracy": 0.971},
}
TARGETS = {"int8_size_ratio_max": 0.31, "int8_accuracy_drop_max": 0.005, "int8_latency_ratio_max": 0.5}


def _subset(source, target, limit):
    """`limit` images (half per class, the first in sorted order) as symlinks; all when None."""
    if limit is None:
        return source
    classes = sorted(os.listdir(source))
    per_class = max(1, limit // len(classes))
    for name in classes:
        os.makedirs(os.path.join(target, name))
        for file in sorted(os.listdir(os.path.join(source, name)))[:per_class]:
            os.symlink(os.path.join(source, name, file), os.path.join(target, name, file))
    return target


class Clock:
    """Seconds per named step, printed as they finish."""

    def __init__(self):
        self.seconds = {}

    def __call__(self, step, function, *args, **kwargs):
        print(f"--- {step}", flush=True)
        start = time.perf_counter()
        value = function(*args, **kwargs)
        self.seconds[step] = round(time.perf_counter() - start, 1)
        print(f"--- {step}: {self.seconds[step]} s", flush=True)
        return value


def _interleaved_latency(reports, models_dir, example, repeats):
    """Re-times every file call by call in turn (`kt.litert.compare_latency`).

    On a machine shared with other jobs the load changes over minutes, so one latency per
    model taken minutes apart (as measure_export does, right after each export) compares
    the load as much as the models; interleaved calls share it. measure_export's own figure
    stays in extra.
    """
    paths = [os.path.join(models_dir, report.path) for report in reports]
    latencies = kt.litert.compare_latency(paths, example, num_threads=1, repeats=repeats)
    for report, path in zip(reports, paths):
        report.extra["latency_ms_measure_export"] = report.latency_ms
        report.extra["latency_min_ms"] = round(latencies[path].min_ms, 3)
        report.latency_ms = latencies[path].median_ms


def _targets(by_name):
    """PASS/FAIL of each target whose models were measured: {target: {value, limit, passed}}."""
    checks = {}
    ptq, qat = by_name.get("int8 PTQ"), by_name.get("int8 QAT")
    if ptq is not None:
        checks["int8 size <= 0.31x float32"] = dict(
            value=ptq.size_ratio,
            limit=TARGETS["int8_size_ratio_max"],
            passed=ptq.size_ratio <= TARGETS["int8_size_ratio_max"],
        )
        checks["int8 accuracy drop <= 0.005"] = dict(
            value=ptq.accuracy_drop,
            limit=TARGETS["int8_accuracy_drop_max"],
            passed=ptq.accuracy_drop <= TARGETS["int8_accuracy_drop_max"],
        )
        checks["int8 latency <= 0.5x float32"] = dict(
            value=ptq.latency_ratio,
            limit=TARGETS["int8_latency_ratio_max"],
            passed=ptq.latency_ratio <= TARGETS["int8_latency_ratio_max"],
        )
    if ptq is not None and qat is not None:
        checks["QAT accuracy >= PTQ accuracy (LiteRT)"] = dict(
            value=qat.tflite_accuracy, limit=ptq.tflite_accuracy, passed=qat.tflite_accuracy >= ptq.tflite_accuracy
        )
    return checks


def _facts(by_name, float_accuracy, settings, environment, total_seconds):
    """A short paragraph of the measured numbers."""
    base = by_name["float32"]
    parts = [
        f"MobileNetV2 (ImageNet) at {settings['image_size']} px, head trained "
        f"{settings['head_epochs']} epoch(s) on {settings['train_examples']} training images with the "
        f"backbone frozen; float Keras accuracy {float_accuracy:.4f} on {settings['val_examples']} "
        f"validation images. float32 LiteRT: {base.size_bytes / 1e6:.2f} MB, "
        f"{base.latency_ms:.2f} ms/image (1 thread, batch 1; "
        + (
            f"median of {settings['interleaved_repeats']} calls, every file's calls interleaved)."
            if settings["interleaved_repeats"]
            else f"median of {settings['repeats']} calls)."
        )
    ]
    for name, report in by_name.items():
        if name == "float32":
            continue
        text = (
            f"{name}: {report.size_bytes / 1e6:.2f} MB ({report.size_ratio:.3f}x, gzip "
            f"{report.compressed_size_bytes / 1e6:.2f} MB), LiteRT accuracy {report.tflite_accuracy:.4f} "
            f"(drop vs float Keras {report.extra['accuracy_drop_vs_float32']:+.4f}), "
            f"{report.latency_ms:.2f} ms ({report.latency_ratio:.2f}x)"
        )
        if report.extra.get("optimized_keras_accuracy") is not None:
            text += f"; its own Keras model scores {report.extra['optimized_keras_accuracy']:.4f}"
        if report.extra.get("kernel_sparsity") is not None:
            text += f", kernel sparsity {report.extra['kernel_sparsity']:.3f}"
        parts.append(text + ".")
    load = environment["load_average_1min"]
    parts.append(
        f"{environment['cpus']} CPUs shared with other jobs (1-min load average {load['start']:g} at the "
        f"start, {load['end']:g} at the end), TensorFlow {environment['tensorflow']}, Keras "
        f"{environment['keras']}; {total_seconds:.0f} s in all. Latencies move with the machine's "
        "load: compare them within one run."
    )
    return " ".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="use this many training images (half per class); all 2,000 by default",
    )
    parser.add_argument(
        "--val-limit",
        type=int,
        default=None,
        help="use this many validation images (half per class); all 1,000 by default",
    )
    parser.add_argument("--head-epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=200, help="timed LiteRT calls per latency (median)")
    parser.add_argument(
        "--interleaved-repeats",
        type=int,
        default=1000,
        help="after all exports, re-time every file with this many calls each, one "
        "call of every file in turn (the headline latency); 0 keeps measure_export's own",
    )
    parser.add_argument("--ptq-samples", type=int, default=200, help="int8 PTQ calibration images")
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--prune-epochs", type=int, default=2)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--cluster-epochs", type=int, default=1)
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--skip-qat", action="store_true")
    parser.add_argument("--skip-prune", action="store_true")
    parser.add_argument("--skip-cluster", action="store_true")
    parser.add_argument("--output-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument(
        "--models-dir", default=None, help="keep the .tflite files here (default: a temporary folder, deleted)"
    )
    args = parser.parse_args()

    assets = os.environ.get(
        "KERAS_TRANSFER_ASSETS",
        os.path.join(os.path.dirname(__file__), "..", "..", "shared", "assets"),
    )
    images = os.path.join(assets, "images", "cats_and_dogs_filtered")
    begin = time.perf_counter()
    load_before = os.getloadavg()
    clock = Clock()
    reports, errors = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        models_dir = args.models_dir or os.path.join(scratch, "models")
        os.makedirs(models_dir, exist_ok=True)

        def model_path(name):
            path = os.path.join(models_dir, name)
            for stale in (path, path + ".json"):
                if os.path.exists(stale):
                    os.remove(stale)
            return path

        train_dir = _subset(os.path.join(images, "train"), os.path.join(scratch, "train"), args.train_limit)
        val_dir = _subset(os.path.join(images, "validation"), os.path.join(scratch, "validation"), args.val_limit)
        # In-memory caches: every later step reads the decoded images again.
        train, val = kt.data.image_folder(
            train_dir,
            validation_dir=val_dir,
            image_size=args.image_size,
            batch_size=args.batch_size,
            shuffle=True,
            cache=True,
        )

        keras.utils.set_random_seed(0)
        model = kt.ImageClassifier(
            "mobilenet_v2", class_names=train.class_names, weights="imagenet", image_size=args.image_size
        )
        # No validation pass per epoch: measure_export scores the validation set below.
        history = clock(
            "fine_tune (head)", model.fine_tune, train, head_epochs=args.head_epochs, finetune_epochs=0, verbose=2
        )

        def measure(name, path, measured_model, **options):
            report = clock(
                f"measure {name}",
                kt.measure_export,
                path,
                measured_model,
                val,
                name=name,
                num_threads=1,
                repeats=args.repeats,
                **options,
            )
            report.path = os.path.basename(path)  # the folder may be temporary
            return report

        def export(name, file, quantization):
            path = model_path(file)
            clock(f"export {name}", kt.export_model, model, path, quantization=quantization)
            return measure(name, path, model)

        base = export("float32", "float32.tflite", "none")
        float_accuracy = base.accuracy  # the original float Keras model on the validation set
        reports.append(base)
        reports.append(export("float16", "float16.tflite", "float16"))
        reports.append(export("dynamic", "dynamic.tflite", "dynamic"))
        reports.append(export("int8 PTQ", "int8.tflite", kt.Quantization.int8(train, num_samples=args.ptq_samples)))

        optimizations = []
        if not args.skip_qat:
            optimizations.append(
                ("int8 QAT", "qat_int8.tflite", kt.quantization_aware, dict(epochs=args.qat_epochs, learning_rate=1e-5))
            )
        if not args.skip_prune:
            optimizations.append(
                (
                    f"pruned {args.sparsity:.0%}",
                    "pruned.tflite",
                    kt.prune,
                    dict(sparsity=args.sparsity, epochs=args.prune_epochs),
                )
            )
        if not args.skip_cluster:
            optimizations.append(
                (
                    f"clustered {args.clusters}",
                    "clustered.tflite",
                    kt.cluster,
                    # TF-MOT's usual setting, not kt.cluster's recipe (benchmarks/on_device.py compares both).
                    dict(clusters=args.clusters, epochs=args.cluster_epochs, learning_rate=1e-5, layers="all"),
                )
            )
        for name, file, method, options in optimizations:
            try:
                result = clock(f"train {name}", method, model, train, validation_data=None, verbose=2, **options)
                path = model_path(file)
                # float32 files: gzip shows what pruning and clustering save.
                clock(f"export {name}", result.to_tflite, path, optimize=result.method == "quantization_aware")
                report = measure(name, path, result.model, head=model.head)
            except Exception as error:  # a benchmark reports what failed and goes on
                traceback.print_exc()
                errors[name] = f"{type(error).__name__}: {error}"
                continue
            report.extra.update(
                method=result.method,
                settings=result.settings,
                optimized_keras_accuracy=report.accuracy,
                float_keras_accuracy=float_accuracy,
                kernel_sparsity=result.sparsity,
                train_history={key: [round(value, 4) for value in values] for key, values in result.history.items()},
            )
            if result.unique_values:
                report.extra["max_unique_values_per_kernel"] = max(result.unique_values.values())
            reports.append(report)

        if args.interleaved_repeats:
            example = next(iter(val))[0].numpy()[:1]
            clock("interleaved latency", _interleaved_latency, reports, models_dir, example, args.interleaved_repeats)

    for report in reports:
        report.relative_to(base)
        report.extra["accuracy_drop_vs_float32"] = float_accuracy - report.tflite_accuracy
    by_name = {report.name: report for report in reports}
    targets = _targets(by_name)
    total_seconds = round(time.perf_counter() - begin, 1)

    settings = {
        **vars(args),
        "backbone": "mobilenet_v2 (imagenet)",
        "train_examples": train.num_examples,
        "val_examples": val.num_examples,
        "latency_threads": 1,
        "head_train_accuracy_last_epoch": round(history.merged()["accuracy"][-1], 4),
        "qat_learning_rate": 1e-5,
    }
    environment = {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cpus": os.cpu_count(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "load_average_1min": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
    }
    table = kt.report.format_table(reports)
    verdicts = [
        f"- {'PASS' if check['passed'] else 'FAIL'}: {target} "
        f"(measured {check['value']:.4g}, limit {check['limit']:.4g})"
        for target, check in targets.items()
    ]
    facts = _facts(by_name, float_accuracy, settings, environment, total_seconds)

    kt.report.write_reports(
        reports,
        os.path.join(args.output_dir, "optimization.json"),
        settings=settings,
        float_keras_accuracy=float_accuracy,
        targets=targets,
        errors=errors,
        seconds=clock.seconds,
        total_seconds=total_seconds,
        environment=environment,
        reference_by_hand=REFERENCE,
    )
    markdown = "\n".join(
        [
            "```",
            table,
            "```",
            "",
            "`acc keras` is the model each file was exported from: the float model for the first four "
            "rows, the optimized tf_keras model for QAT, pruning and clustering; `drop` is against it.",
            "",
            facts,
            "",
            "Targets:",
            *verdicts,
            *([""] + [f"- ERROR {name}: {message}" for name, message in errors.items()] if errors else []),
            "",
            "Seconds per step: " + ", ".join(f"{step} {value:g}" for step, value in clock.seconds.items()) + ".",
        ]
    )
    with kt.files.atomic_path(os.path.join(args.output_dir, "optimization.md")) as path:
        with open(path, "w") as file:
            file.write(markdown + "\n")
    print(table)
    print()
    print(facts)
    print("\n".join(verdicts))
    for name, message in errors.items():
        print(f"ERROR {name}: {message}")
    print("seconds:", clock.seconds, "total:", total_seconds)


if __name__ == "__main__":
    main()
