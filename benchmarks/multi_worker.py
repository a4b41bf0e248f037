"""Multi-worker training on this machine: one process against two loopback workers, same data and global batch.

ImageNet MobileNetV2 on cats_and_dogs_filtered (`--train-images` of the
2,000 training photos, all 1,000 validation photos, `--image-size` px),
fine-tuned whole (every layer but BatchNormalization, no feature cache: the
heaviest path) with `TransferModel.fine_tune`, `--epochs` epochs at global
batch `--batch-size`, seed 0. Each run is its own process(es); four runs,
one after the other on the same machine:

- `1 process`: what a user of this machine runs (TensorFlow's default threads);
- `1 process, 1 thread`: the same on one core (intra- and inter-op threads 1);
- `2 workers, 1 thread each`: `MultiWorkerMirroredStrategy`, each worker on
  one core: against `1 process, 1 thread` it shows what two machines would
  gain, less the cost of summing the gradients (9 MB per step) over loopback;
- `2 workers`: both with default threads, sharing the cores.

Reported per run: training throughput (images per second over the epochs
after the first, which includes tracing), seconds per step, and validation
accuracy after the last epoch (both runs shuffle with the same seed, but a
single process and the workers do not take the same order, so accuracies
agree within run-to-run noise, not exactly; `tests/test_distribute.py` checks
exact parity on unshuffled data).

Writes `results/multi_worker.json` and `results/multi_worker.md`.

    python benchmarks/multi_worker.py [--train-images 1000] [--image-size 128] [--epochs 3] [--batch-size 32]
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

RESULTS = os.path.join(os.path.dirname(__file__), "results")
# The synchronisation probe's hidden widths: 4 KB and 8 MB of gradients per step.
PROBE_WIDTHS = (4, 8192)
RUNS = (
    ("1 process", 1, None),
    ("1 process, 1 thread", 1, 1),
    ("2 workers, 1 thread each", 2, 1),
    ("2 workers", 2, None),
)


def _assets():
    return os.environ.get("KERAS_TRANSFER_ASSETS") or os.path.join(
        os.path.dirname(__file__), "..", "..", "shared", "assets"
    )


def _epoch_timer(seconds):
    """A callback appending each epoch's wall time to `seconds`."""
    import keras

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    return EpochTimes()


def train_once(args):
    """One worker (or the single process): fine-tunes and, from the chief, writes its timings to `args.out`."""
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras_transfer as kt

    strategy = kt.distribute.multi_worker_strategy() if os.environ.get("TF_CONFIG") else tf.distribute.get_strategy()
    import keras

    keras.utils.set_random_seed(0)
    images = os.path.join(_assets(), "images", "cats_and_dogs_filtered")
    train = kt.data.image_folder(args.subset, image_size=args.image_size, batch_size=args.batch_size, seed=0)
    validation = kt.data.image_folder(
        os.path.join(images, "validation"), image_size=args.image_size, batch_size=args.batch_size, shuffle=False
    )
    with strategy.scope():
        model = kt.ImageClassifier("mobilenet_v2", class_names=["cats", "dogs"], image_size=args.image_size)
    recipe = kt.IMAGE_RECIPE.replace(
        head_epochs=0, finetune_epochs=args.epochs, unfreeze="all", cache_features=False, finetune_patience=None
    )
    epoch_seconds = []
    # Validation only at the end: the epochs time training alone.
    model.fine_tune(train, None, recipe, callbacks=[_epoch_timer(epoch_seconds)], verbose=0)
    report = model.evaluate_report(validation)
    if kt.distribute.is_chief(strategy):
        steps = args.train_images // args.batch_size
        timed = epoch_seconds[1:] or epoch_seconds
        with open(args.out, "w") as file:
            json.dump(
                {
                    "epoch_seconds": [round(value, 2) for value in epoch_seconds],
                    "images_per_second": round(steps * args.batch_size * len(timed) / sum(timed), 2),
                    "seconds_per_step": round(sum(timed) / (len(timed) * steps), 4),
                    "val_accuracy": round(report.accuracy, 4),
                    "workers": kt.distribute.worker_count(strategy),
                },
                file,
            )
    return 0


def probe_synchronisation(args):
    """One worker of the synchronisation probe: a two-layer model whose step costs next to nothing, so the
    step time of two workers is what keeping them in step costs (collectives and the gradient all-reduce)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    import keras_transfer as kt

    strategy = kt.distribute.multi_worker_strategy() if os.environ.get("TF_CONFIG") else tf.distribute.get_strategy()
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential([keras.Input((256,)), keras.layers.Dense(args.probe_width), keras.layers.Dense(2)])
        model.compile("adam", "sparse_categorical_crossentropy")
    steps = 40
    inputs = np.random.default_rng(0).random((32 * steps, 256), dtype=np.float32)
    data = tf.data.Dataset.from_tensor_slices((inputs, np.zeros(len(inputs), "int64"))).batch(32)
    data = kt.distribute.sharding.distribute(data, strategy)
    epoch_seconds = []
    model.fit(data, epochs=4, verbose=0, callbacks=[_epoch_timer(epoch_seconds)])
    if kt.distribute.is_chief(strategy):
        with open(args.out, "w") as file:
            json.dump({"ms_per_step": round(1000 * min(epoch_seconds[1:]) / steps, 2)}, file)
    return 0


def _training_subset(count, folder):
    """The first `count` / 2 training photos of each class, linked into `folder` (an image folder of its own)."""
    source = os.path.join(_assets(), "images", "cats_and_dogs_filtered", "train")
    for name in ("cats", "dogs"):
        os.makedirs(os.path.join(folder, name))
        for file_name in sorted(os.listdir(os.path.join(source, name)))[: count // 2]:
            os.symlink(os.path.join(source, name, file_name), os.path.join(folder, name, file_name))
    return folder


def _run(args, name, workers, threads, folder, probe_width=None):
    from keras_transfer.distribute import LocalCluster

    out = os.path.join(folder, f"{len(os.listdir(folder))}.json")
    command = [sys.executable, __file__, "--worker", "--out", out]
    if probe_width:
        command += ["--probe-width", str(probe_width)]
    else:
        command += ["--subset", args.subset, "--train-images", str(args.train_images)]
        command += ["--image-size", str(args.image_size), "--epochs", str(args.epochs)]
        command += ["--batch-size", str(args.batch_size)]
    command += ["--threads", str(threads)] if threads else []
    print(f"{name}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    if workers == 1:
        environment = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
        status = subprocess.run(command, env=environment).returncode
    else:
        status = LocalCluster(command, workers, log_dir=os.path.join(folder, "logs")).run()
    if status != 0:
        raise SystemExit(f"{name} failed with exit status {status}")
    with open(out) as file:
        result = json.load(file)
    result.update(
        run=name, processes=workers, threads=threads or "default", wall_seconds=round(time.perf_counter() - start, 1)
    )
    print(f"  {result}", flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-images", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--subset", help=argparse.SUPPRESS)
    parser.add_argument("--probe-width", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--markdown-only", action="store_true", help="rewrite multi_worker.md from its JSON")
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return probe_synchronisation(args) if args.probe_width else train_once(args)
    if args.markdown_only:  # the table again from the JSON, e.g. after its wording changed
        with open(os.path.join(RESULTS, "multi_worker.json")) as file:
            result = json.load(file)
        with open(os.path.join(RESULTS, "multi_worker.md"), "w") as file:
            file.write(_markdown(result))
        return 0

    from keras_transfer.version import environment

    with tempfile.TemporaryDirectory() as folder:
        args.subset = _training_subset(args.train_images, os.path.join(folder, "train"))
        runs = os.path.join(folder, "runs")
        os.makedirs(runs)
        rows = [_run(args, name, workers, threads, runs) for name, workers, threads in RUNS]
        probes = []
        for width in PROBE_WIDTHS:
            parameters = 256 * width + width + 2 * width + 2
            for workers in (1, 2):
                probe = _run(args, f"probe {parameters:,} parameters, {workers}", workers, 1, runs, width)
                probes.append({"parameters": parameters, "gradient_mb": round(parameters * 4 / 2**20, 2),
                               "processes": workers, "ms_per_step": probe["ms_per_step"]})  # fmt: skip
    by_name = {row["run"]: row for row in rows}
    one_core = by_name["1 process, 1 thread"]["images_per_second"]
    for row in rows:
        row["speed_vs_1_process"] = round(row["images_per_second"] / by_name["1 process"]["images_per_second"], 3)
    two_on_two = by_name["2 workers, 1 thread each"]["images_per_second"]
    small, large = (
        [p for p in probes if p["parameters"] == size] for size in sorted({p["parameters"] for p in probes})
    )
    added = [two["ms_per_step"] - one["ms_per_step"] for one, two in (small, large)]
    summary = {
        "synchronisation_ms_per_step": round(added[0], 1),
        "synchronisation_ms_per_gradient_mb": round(
            (added[1] - added[0]) / (large[0]["gradient_mb"] - small[0]["gradient_mb"]), 2
        ),
        "scaling_efficiency_1_thread_each": round(two_on_two / (2 * one_core), 3),
        "val_accuracy_gap_2_workers_vs_1_process": round(
            by_name["2 workers"]["val_accuracy"] - by_name["1 process"]["val_accuracy"], 4
        ),
    }
    result = {
        "date": datetime.date.today().isoformat(),
        "settings": {
            key: value
            for key, value in vars(args).items()
            if key not in ("worker", "out", "threads", "subset", "probe_width", "markdown_only")
        },
        "environment": environment(),
        "rows": rows,
        "synchronisation_probe": probes,
        "summary": summary,
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "multi_worker.json"), "w") as file:
        json.dump(result, file, indent=2)
    with open(os.path.join(RESULTS, "multi_worker.md"), "w") as file:
        file.write(_markdown(result))
    print(_markdown(result))
    return 0


def _markdown(result):
    env, settings = result["environment"], result["settings"]
    lines = [
        "# Multi-worker training on one machine",
        "",
        f"{result['date']}; {env['cpu']} ({', '.join(env['cpu_flags']) or 'flags unknown'}), "
        f"{os.cpu_count()} cores; TensorFlow {env['versions'].get('tensorflow')}, "
        f"Keras {env['versions'].get('keras')}.",
        f"ImageNet MobileNetV2 fine-tuned whole on {settings['train_images']} cats_and_dogs_filtered photos at "
        f"{settings['image_size']} px, {settings['epochs']} epochs, global batch {settings['batch_size']}; "
        "validation accuracy on all 1,000 validation photos.",
        "",
        "| run | images/s | x 1 process | s/step | val accuracy | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['run']} | {row['images_per_second']:.1f} | {row['speed_vs_1_process']:.2f} | "
            f"{row['seconds_per_step']:.3f} | {row['val_accuracy']:.4f} | {row['wall_seconds']:.0f} |"
        )
    summary = result["summary"]
    lines += [
        "",
        "Synchronisation probe (a two-layer model whose step costs next to nothing; 1 thread per process; "
        "global batch 32):",
        "",
        "| parameters | gradient MB | processes | ms/step |",
        "|---|---|---|---|",
        *(
            f"| {probe['parameters']:,} | {probe['gradient_mb']} | {probe['processes']} | {probe['ms_per_step']} |"
            for probe in result["synchronisation_probe"]
        ),
        "",
        f"Keeping two workers in step costs {summary['synchronisation_ms_per_step']} ms per step plus "
        f"{summary['synchronisation_ms_per_gradient_mb']} ms per MB of gradients over loopback here.",
        "",
        f"Scaling efficiency with one core per worker (2 workers x 1 thread against 2 x 1 process x 1 thread): "
        f"{summary['scaling_efficiency_1_thread_each']:.2f}. Validation accuracy, 2 workers minus 1 process: "
        f"{summary['val_accuracy_gap_2_workers_vs_1_process']:+.4f}.",
        "",
        "What this does and does not predict. Two workers on one 2-core machine share its cores, so they cannot "
        "beat one process that already uses both (the `2 workers` row, oversubscribed, is far slower). The "
        "one-thread rows stand in for two machines of one core each: their ratio is what is left of a 2x "
        "speed-up once the workers are kept in step over loopback (collectives every step, the gradients "
        "summed). On real machines a step costs about (one process's step) / workers + synchronisation, and "
        "synchronisation there adds the network: every step moves each worker's share of the gradients "
        "(about their size, 9 MB for MobileNetV2) both ways, about 15 ms at 10 Gb/s before latency. Workload "
        "with more compute per step (larger images, batches or backbones per parameter) scales better; a "
        "large model with a small batch scales worse. Not measured here: real networks, GPUs (NCCL), "
        "more than 2 workers.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
