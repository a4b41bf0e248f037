"""Frozen backbone vs. full fine-tuning vs. LoRA: all-MiniLM-L6-v2 on SST-2.

Every text recipe (`keras_transfer.finetune.recipes.TEXT_RECIPES`, built with
`text_recipe`) starts from the same pretrained weights and trains through
`TextClassifier.fine_tune` on the same seeded subset of the SST-2 training
sentences, at the same sequence length, and is scored on the whole dev set
(872 sentences) beside the majority-class rate. The options below override
the recipes; those left out keep the recipe's value:

- `frozen`: the backbone stays frozen; only the head trains
  (`--frozen-epochs`, by default `--epochs`, at `--frozen-learning-rate`, by default the
  recipe's; its head trains on features cached once).
- `full`: optional `--head-epochs` of head warm-up (at `--head-learning-rate`),
  then `--epochs` with every backbone weight trainable (Adam at `--full-learning-rate`).
- `lora`: the same warm-up, then `--epochs` training rank `--lora-rank`
  adapters on the attention query/value projections, and the head
  (Adam at `--lora-learning-rate`).

The defaults took about 22 minutes on 2 CPU cores shared with other jobs
(README.md); more examples and epochs separate the strategies more clearly.

Writes `results/text_strategies.json` and `.md` beside this file.

`--only defaults` runs `keras-transfer train-text` with no recipe options on the
whole SST-2 training set (67,349 sentences) beside a linear probe (logistic
regression on the frozen backbone's mean-pooled features of the same
sentences), and checks the targets of the issue "Fast and accurate by
default": 0.89 or more on dev within 20 minutes of training on 2 cores, and
never below the probe. Writes `results/text_defaults.json` and `.md`.

The same run also measures length bucketing (`TextClassifier(bucket_by_length=...)`):
training steps of the whole network on SST-2 training sentences, in tokens per
second, with batches padded to the full sequence length and with length-bucketed
batches, side by side on the same model and sentences (a few minutes; alone with
`--only bucketing`). Writes `results/text_bucketing.json` and `.md`.

    python benchmarks/text_strategies.py [--train-examples 1000] [--epochs 2]
        [--sequence-length 64] [--recipes frozen,full,lora] [--only strategies|bucketing|defaults]
        [--bucketing-examples 384] [--bucketing-rounds 2]
"""

import argparse
import json
import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf
from cli_run import run_command

import keras_transfer as kt
from keras_transfer.finetune.recipes import TEXT_RECIPE, TEXT_RECIPES, text_recipe
from keras_transfer.version import cpu_model

# The recipes compared, in the table's order: the frozen backbone first, then the others by name.
RECIPE_NAMES = tuple(sorted(TEXT_RECIPES, key=lambda name: (TEXT_RECIPES[name].finetune_epochs > 0, name)))
CLASS_NAMES = ["negative", "positive"]


def _sequence_length(value):
    return value if value == "auto" else int(value)


def _load(path, *, max_examples=None, shuffle=True, batch_size=32):
    # The dev file's header says `content`, the training file's `sentence`: use indexes.
    return kt.data.text_file(
        path,
        text_column=1,
        label_column=0,
        header=True,
        class_names=CLASS_NAMES,
        max_examples=max_examples,
        shuffle=shuffle,
        batch_size=batch_size,
    )


def _texts_and_labels(dataset):
    texts, labels = [], []
    for batch_texts, batch_labels in dataset.as_numpy_iterator():
        texts.extend(text.decode("utf-8") for text in batch_texts)
        labels.extend(int(label) for label in batch_labels)
    return texts, np.asarray(labels)


def _token_counts(tokenizer, texts):
    ids = tokenizer(tf.constant(texts, dtype=tf.string))
    return np.asarray(ids.row_lengths() if isinstance(ids, tf.RaggedTensor) else [len(i) for i in ids]) + 2


def _recipe(name, args):
    """The library's recipe `name`, with the options given on the command line."""
    if name == "frozen":
        return text_recipe("frozen", epochs=args.frozen_epochs, learning_rate=args.frozen_learning_rate)
    return text_recipe(
        name,
        epochs=args.epochs,
        head_epochs=args.head_epochs,
        head_learning_rate=args.head_learning_rate,
        learning_rate=args.full_learning_rate if name == "full" else args.lora_learning_rate,
        lora_rank=args.lora_rank if name == "lora" else None,
    )


def _run(recipe, args, paths, sequence_length):
    keras.utils.set_random_seed(0)
    # A fresh dataset per recipe: the same examples in the same order for each.
    train = _load(paths["train"], max_examples=args.train_examples, batch_size=args.batch_size)
    dev = _load(paths["dev"], shuffle=False, batch_size=args.batch_size)
    start = time.perf_counter()
    model = kt.TextClassifier(
        paths["backbone"], class_names=CLASS_NAMES, pooling="mean", sequence_length=sequence_length
    )
    build_seconds = time.perf_counter() - start
    history = model.fine_tune(train, recipe=recipe, verbose=2)  # a recipe with lora_rank enables LoRA
    # Counted after training: what the last phase actually trained.
    summary = model.lora_summary()
    start = time.perf_counter()
    scores = model.evaluate(dev, return_dict=True, verbose=0)
    evaluate_seconds = time.perf_counter() - start
    seconds = {phase: round(value, 1) for phase, value in history.seconds.items()}
    result = {
        "dev_accuracy": round(float(scores["accuracy"]), 4),
        "dev_loss": round(float(scores["loss"]), 4),
        "train_accuracy_last_epoch": round(history.merged()["accuracy"][-1], 4),
        "trainable_params": summary["trainable_params"],
        "total_params": summary["total_params"],
        "trainable_percent": round(summary["trainable_percent"], 3),
        "seconds": seconds
        | {
            "train_total": round(sum(history.seconds.values()), 1),
            "build": round(build_seconds, 1),
            "evaluate": round(evaluate_seconds, 1),
        },
        "epochs": {"head": recipe.head_epochs, "finetune": recipe.finetune_epochs},
        "learning_rates": {
            "head": recipe.head_learning_rate,
            "finetune": recipe.finetune_learning_rate if recipe.finetune_epochs else None,
        },
        "sequence_length": model.sequence_length,
        "recipe": recipe.to_dict(),
    }
    if recipe.lora_rank:
        result |= {"lora_rank": recipe.lora_rank, "lora_layers": [layer.name for layer in model.lora_layers]}
    return result


class _StepTimer(keras.callbacks.Callback):
    """Seconds and tokens of the training steps after the first `skip` (tracing and warm-up)."""

    def __init__(self, skip):
        super().__init__()
        self.skip, self.seconds, self.steps, self._start = skip, 0.0, 0, None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if batch >= self.skip:
            self.seconds += time.perf_counter() - self._start
            self.steps += 1


def _bucketing(args, paths, sequence_length):
    """Tokens per second of training steps: fixed-length padding against length buckets, on one model."""
    from keras_transfer.data import length_buckets

    keras.utils.set_random_seed(0)
    texts, labels = _texts_and_labels(_load(paths["train"], max_examples=args.bucketing_examples))
    model = kt.TextClassifier(
        paths["backbone"], class_names=CLASS_NAMES, pooling="mean", sequence_length=sequence_length
    )
    model.compile("adam", learning_rate=1e-5)  # every weight trains, as in full fine-tuning
    batch_size = args.batch_size
    skip = 2  # the first steps of an epoch trace the step and fill the pipeline
    measured = {"fixed": {"seconds": 0.0, "steps": 0}, "bucketed": {"seconds": 0.0, "steps": 0}}
    padding = {}
    for mode in ("fixed", "bucketed"):
        model.bucket_by_length = mode == "bucketed"
        batches = model._bucketed_batches(texts, labels, batch_size=batch_size, shuffle=False, training=True)
        real, padded = length_buckets.padded_tokens(batches.skip(skip))
        widths = sorted({int(batch[0]["padding_mask"].shape[1]) for batch in batches})
        padding[mode] = {"real_tokens": real, "padded_tokens": padded, "widths": widths}
    # Alternating rounds: a machine shared with other jobs slows both modes alike.
    for round_index in range(args.bucketing_rounds):
        for mode in ("fixed", "bucketed"):
            model.bucket_by_length = mode == "bucketed"
            timer = _StepTimer(skip)
            # Without shuffling both modes see the same sentences in the same batches' windows.
            model.fit(texts, labels, batch_size=batch_size, epochs=1, shuffle=False, callbacks=[timer], verbose=0)
            measured[mode]["seconds"] += timer.seconds
            measured[mode]["steps"] += timer.steps
            print(f"bucketing round {round_index + 1} {mode}: {timer.steps} steps in {timer.seconds:.1f} s", flush=True)
    result = {"sequence_length": model.sequence_length, "batch_size": batch_size, "examples": len(texts)}
    for mode in ("fixed", "bucketed"):
        seconds = measured[mode]["seconds"]
        rounds = args.bucketing_rounds
        result[mode] = padding[mode] | {
            "seconds": round(seconds, 2),
            "steps": measured[mode]["steps"],
            # Real tokens: the sentences' own ([CLS] and [SEP] included), the same in both modes.
            "tokens_per_second": round(rounds * padding[mode]["real_tokens"] / seconds, 1),
            "padded_tokens_per_second": round(rounds * padding[mode]["padded_tokens"] / seconds, 1),
            "padding_fraction": round(1 - padding[mode]["real_tokens"] / padding[mode]["padded_tokens"], 4),
        }
    result["speedup"] = round(result["bucketed"]["tokens_per_second"] / result["fixed"]["tokens_per_second"], 2)
    result["bucket_lengths"] = list(model.bucket_lengths)
    return result


def _bucketing_table(result):
    rows = [
        "| padding | tokens/s (real) | padded tokens/s | padding fraction | batch widths | timed steps | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, label in (("fixed", f"fixed ({result['sequence_length']})"), ("bucketed", "length buckets")):
        row = result[mode]
        rows.append(
            f"| {label} | {row['tokens_per_second']:,.0f} | {row['padded_tokens_per_second']:,.0f} "
            f"| {row['padding_fraction']:.1%} | {', '.join(map(str, row['widths']))} | {row['steps']} "
            f"| {row['seconds']:.1f} |"
        )
    return "\n".join(rows) + f"\n\nSpeed-up (real tokens per second, bucketed / fixed): {result['speedup']:.2f}x"


def _run_bucketing(args, paths, sequence_length):
    begin, load_before = time.perf_counter(), os.getloadavg()
    result = _bucketing(args, paths, sequence_length if sequence_length != "auto" else 64)
    result["environment"] = _environment(load_before) | {"seconds": round(time.perf_counter() - begin, 1)}
    out_dir = os.path.join(os.path.dirname(__file__), "results")
    kt.files.write_json(result, os.path.join(out_dir, "text_bucketing.json"))
    environment = result["environment"]
    setup = (
        f"all-MiniLM-L6-v2 (mean pooling, every weight training, Adam) on {result['examples']} SST-2 training "
        f"sentences (seeded subset), sequence length {result['sequence_length']}, batch {result['batch_size']}, "
        f"{args.bucketing_rounds} alternating round(s) of one epoch each way; the first 2 steps of each epoch "
        f"are not timed. Bucket lengths {', '.join(map(str, result['bucket_lengths']))}. "
        f"{environment['cpu']} ({environment['cpus']} CPUs, 1-min load average "
        f"{environment['load_average_1min']['start']:g} to {environment['load_average_1min']['end']:g}), "
        f"{environment['gpus']} GPUs, TensorFlow {tf.__version__}; {environment['seconds']:.0f} s in all."
    )
    _write_markdown(os.path.join(out_dir, "text_bucketing.md"), _bucketing_table(result), setup, result)


def _cli_defaults(paths):
    """`keras-transfer train-text` on the whole SST-2 training set with no recipe options, in its own process.

    The column options only say where SST-2's files keep their texts and labels
    (their headers name the text column differently).
    """
    report, total, shown = run_command(
        [
            "train-text",
            paths["train"],
            "--val-file",
            paths["dev"],
            "--text-column",
            "1",
            "--label-column",
            "0",
            "--backbone",
            paths["backbone"],
        ]
    )
    for name, path in paths.items():
        shown = shown.replace(path, f"${name.upper()}")
    return {
        "command": shown,
        "dev_accuracy": report["val_accuracy"],
        "recipe": report["recipe"],
        "recipe_options": report["recipe_options"],
        "num_train": report["num_train"],
        "sequence_length": report["sequence_length"],
        "epochs": {phase: value["epochs"] for phase, value in report["phases"].items()},
        "training_seconds": report["seconds"],
        "command_seconds": round(total, 1),
        "trainable_percent": report["trainable_percent"],
        "best_epoch": report["best_epoch"],
        "history": {key: report["history"][key] for key in ("val_accuracy", "val_loss") if key in report["history"]},
    }


def _linear_probe(paths, batch_size=64):
    """The floor: logistic regression on the frozen backbone's mean-pooled features of all training sentences."""
    from sklearn.linear_model import LogisticRegressionCV

    start = time.perf_counter()
    train = _load(paths["train"], batch_size=batch_size, shuffle=False)
    dev = _load(paths["dev"], batch_size=batch_size, shuffle=False)
    model = kt.TextClassifier(paths["backbone"], class_names=CLASS_NAMES, pooling="mean", bucket_by_length=True)
    model.check_data(train, dev)  # picks the sequence length, as train-text does
    train_features, train_labels = kt.extract_features(model, train, verbose=0)
    dev_features, dev_labels = kt.extract_features(model, dev, verbose=0)
    features_seconds = time.perf_counter() - start
    probe = LogisticRegressionCV(Cs=10, cv=5, max_iter=3000).fit(train_features, train_labels)
    return {
        "dev_accuracy": round(float(probe.score(dev_features, dev_labels)), 4),
        "C": float(probe.C_[0]),
        "features": int(train_features.shape[1]),
        "num_train": int(len(train_labels)),
        "sequence_length": model.sequence_length,
        "seconds": {"features": round(features_seconds, 1), "total": round(time.perf_counter() - start, 1)},
    }


def _run_defaults(paths):
    """The command line's defaults on all of SST-2 beside the linear probe: `results/text_defaults.*`."""
    begin, load_before = time.perf_counter(), os.getloadavg()
    results = {"cli_defaults": _cli_defaults(paths), "probe": _linear_probe(paths)}
    results["environment"] = _environment(load_before) | {"seconds": round(time.perf_counter() - begin, 1)}
    out_dir = os.path.join(os.path.dirname(__file__), "results")
    kt.files.write_json(results, os.path.join(out_dir, "text_defaults.json"))
    ours, probe = results["cli_defaults"], results["probe"]
    bucketing = os.path.join(out_dir, "text_bucketing.json")
    speedup = ""
    if os.path.exists(bucketing):
        with open(bucketing) as file:
            speedup = json.load(file)["speedup"]
        speedup = f" Length bucketing: {speedup:.2f}x real tokens per second (text_bucketing.md)."
    epochs = ours["epochs"].get("finetune") or ours["epochs"].get("head", 0)
    checks = {
        "dev accuracy >= 0.89": (f"{ours['dev_accuracy']:.4f}", ours["dev_accuracy"] >= 0.89),
        "training <= 20 min": (f"{ours['training_seconds'] / 60:.1f} min", ours["training_seconds"] <= 1200),
        ">= linear probe": (
            f"{ours['dev_accuracy'] - probe['dev_accuracy']:+.4f}",
            ours["dev_accuracy"] >= probe["dev_accuracy"],
        ),
    }
    table = "\n".join(
        [
            "| run | dev accuracy | training s | trainable % | epochs |",
            "|---|---|---|---|---|",
            f"| `train-text` defaults ({ours['recipe']}) | {ours['dev_accuracy']:.4f} "
            f"| {ours['training_seconds']:.0f} | {ours['trainable_percent']:.3g} | {epochs} |",
            f"| linear probe (logistic regression, C={probe['C']:.3g} by 5-fold CV) | {probe['dev_accuracy']:.4f} "
            f"| {probe['seconds']['total']:.0f} (features {probe['seconds']['features']:.0f}) | 0 (frozen) | - |",
            "",
            "| target | value | result |",
            "|---|---|---|",
            *(f"| {name} | {value} | {'PASS' if passed else 'FAIL'} |" for name, (value, passed) in checks.items()),
        ]
    )
    environment = results["environment"]
    setup = (
        f"`{ours['command']}` on all {ours['num_train']:,} SST-2 training sentences, scored on the 872 dev "
        f"sentences (sequence length {ours['sequence_length']}, chosen from the data); the command took "
        f"{ours['command_seconds']:.0f} s in all. Probe: all-MiniLM-L6-v2 frozen, mean pooling, the same sentences. "
        f"{environment['cpu']} ({environment['cpus']} CPUs, 1-min load average "
        f"{environment['load_average_1min']['start']:g} to {environment['load_average_1min']['end']:g}), "
        f"{environment['gpus']} GPUs, TensorFlow {tf.__version__}; {environment['seconds']:.0f} s in all." + speedup
    )
    _write_markdown(os.path.join(out_dir, "text_defaults.md"), table, setup, results)


def _write_markdown(path, table, setup, results):
    """Writes the table and its setup paragraph to `path`; prints them and the results as JSON."""
    with kt.files.atomic_path(path) as temporary:
        with open(temporary, "w") as file:
            file.write(table + "\n\n" + setup + "\n")
    print(table)
    print(setup)
    print(json.dumps(results))


def _environment(load_before):
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "machine": platform.machine(),
        # Other jobs on the machine slow everything down: timings compare only within one run.
        "load_average_1min": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
    }


def _table(results):
    rows = [
        "| recipe | dev accuracy | trainable params | trainable % | total params "
        "| epochs (head + finetune) | train seconds (head + finetune) |",
        "|---|---|---|---|---|---|---|",
    ]
    majority = results["majority"]
    rows.append(f"| majority class ({majority['class']}) | {majority['dev_accuracy']:.3f} | 0 | 0 | - | - | - |")
    for name, row in results["strategies"].items():
        seconds = row["seconds"]
        phases = " + ".join(f"{seconds[phase]:.0f}" for phase in ("head", "finetune") if phase in seconds)
        rows.append(
            f"| {name} | {row['dev_accuracy']:.3f} | {row['trainable_params']:,} "
            f"| {row['trainable_percent']:.3g} | {row['total_params']:,} "
            f"| {row['epochs']['head']} + {row['epochs']['finetune']} "
            f"| {seconds['train_total']:.0f} ({phases}) |"
        )
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--train-examples", type=int, default=1000, help="seeded random subset of the 67,349 training sentences"
    )
    # Shorter than the recipes' 3 epochs, to fit the benchmark in about 20 minutes.
    parser.add_argument(
        "--epochs", type=int, default=2, help="epochs of full fine-tuning, of LoRA and (by default) of the frozen head"
    )
    parser.add_argument(
        "--head-epochs",
        type=int,
        help="head warm-up epochs on the frozen backbone before full / LoRA "
        f"(default: the recipes' {TEXT_RECIPES['full'].head_epochs})",
    )
    parser.add_argument(
        "--frozen-epochs", type=int, default=None, help="head epochs of the frozen recipe (default: --epochs)"
    )
    parser.add_argument(
        "--frozen-learning-rate",
        type=float,
        default=None,
        help=f"default: the frozen recipe's {TEXT_RECIPES['frozen'].head_learning_rate:g}",
    )
    parser.add_argument(
        "--sequence-length",
        type=_sequence_length,
        default=64,
        help="tokens per sentence, or 'auto' (95th percentile of the training subset)",
    )
    parser.add_argument(
        "--recipes",
        "--strategies",
        dest="recipes",
        default=",".join(RECIPE_NAMES),
        help=f"comma-separated subset of {','.join(RECIPE_NAMES)} (--strategies is the old name)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--head-learning-rate",
        type=float,
        help=f"of the warm-up (default: the recipes' {TEXT_RECIPE.head_learning_rate:g})",
    )
    parser.add_argument(
        "--full-learning-rate",
        type=float,
        help=f"default: the full recipe's {TEXT_RECIPES['full'].finetune_learning_rate:g}",
    )
    parser.add_argument(
        "--lora-learning-rate",
        type=float,
        help=f"default: the lora recipe's {TEXT_RECIPES['lora'].finetune_learning_rate:g}",
    )
    parser.add_argument("--lora-rank", type=int, help=f"default: the lora recipe's {TEXT_RECIPES['lora'].lora_rank}")
    parser.add_argument(
        "--only",
        choices=("strategies", "bucketing", "defaults"),
        help="run only the recipes, only the bucketing measurement, or only the command line's defaults on all "
        "of SST-2 beside the linear probe (about 20 minutes on 2 cores; not part of the default run)",
    )
    parser.add_argument(
        "--bucketing-examples", type=int, default=384, help="training sentences of the bucketing measurement"
    )
    parser.add_argument("--bucketing-rounds", type=int, default=2, help="alternating epochs of each padding")
    args = parser.parse_args()
    if args.frozen_epochs is None:
        args.frozen_epochs = args.epochs
    if args.frozen_learning_rate is None:
        args.frozen_learning_rate = TEXT_RECIPES["frozen"].head_learning_rate
    strategies = [name.strip() for name in args.recipes.split(",") if name.strip()]
    unknown = sorted(set(strategies) - set(RECIPE_NAMES))
    if unknown or not strategies:
        parser.error(f"unknown recipes {unknown}: use a comma-separated subset of {','.join(RECIPE_NAMES)}")
    try:  # bad values fail here, not after loading
        recipes = {name: _recipe(name, args) for name in RECIPE_NAMES}
    except ValueError as error:
        parser.error(str(error))
    # Record the values used, the recipes' where no option was given.
    full, lora = recipes["full"], recipes["lora"]
    args.head_epochs, args.head_learning_rate = full.head_epochs, full.head_learning_rate
    args.full_learning_rate, args.lora_learning_rate = full.finetune_learning_rate, lora.finetune_learning_rate
    args.lora_rank = lora.lora_rank

    assets = os.environ.get(
        "KERAS_TRANSFER_ASSETS",
        os.path.join(os.path.dirname(__file__), "..", "..", "shared", "assets"),
    )
    paths = {
        "backbone": os.path.join(assets, "keras-hub", "all-MiniLM-L6-v2"),
        "train": os.path.join(assets, "text", "sst2", "train.tsv"),
        "dev": os.path.join(assets, "text", "sst2", "dev.tsv"),
    }
    if args.only == "defaults":
        _run_defaults(paths)
        return
    if args.only != "strategies":
        print("--- bucketing", flush=True)
        _run_bucketing(args, paths, args.sequence_length)
        if args.only == "bucketing":
            return
    begin = time.perf_counter()
    load_before = os.getloadavg()
    train_texts, train_labels = _texts_and_labels(_load(paths["train"], max_examples=args.train_examples))
    dev_texts, dev_labels = _texts_and_labels(_load(paths["dev"], shuffle=False))
    tokenizer = kt.TextClassifier(
        paths["backbone"], class_names=CLASS_NAMES, pooling="mean", sequence_length=64
    ).preprocessor.tokenizer
    sequence_length = args.sequence_length
    if sequence_length == "auto":
        sequence_length = kt.data.choose_sequence_length(train_texts, tokenizer, maximum=512)
    train_counts, dev_counts = _token_counts(tokenizer, train_texts), _token_counts(tokenizer, dev_texts)
    majority = int(np.bincount(train_labels, minlength=2).argmax())

    results = {
        "majority": {"class": CLASS_NAMES[majority], "dev_accuracy": round(float(np.mean(dev_labels == majority)), 4)},
        "strategies": {},
    }
    for name in strategies:
        print(f"--- {name}", flush=True)
        results["strategies"][name] = _run(recipes[name], args, paths, sequence_length)
    results["settings"] = vars(args) | {
        "strategies": strategies,
        "sequence_length": sequence_length,
        "train_examples": len(train_texts),
        "dev_examples": len(dev_texts),
        "train_positive_fraction": round(float(train_labels.mean()), 4),
        # Tokens include [CLS] and [SEP]; sentences longer than sequence_length are cut.
        "tokens": {
            "train_p95": int(np.percentile(train_counts, 95)),
            "train_max": int(train_counts.max()),
            "dev_p95": int(np.percentile(dev_counts, 95)),
            "dev_max": int(dev_counts.max()),
            "train_fraction_cut": round(float(np.mean(train_counts > sequence_length)), 4),
            "dev_fraction_cut": round(float(np.mean(dev_counts > sequence_length)), 4),
        },
        "backbone": "all-MiniLM-L6-v2, mean pooling",
    }
    results["environment"] = _environment(load_before)
    results["total_seconds"] = round(time.perf_counter() - begin, 1)

    out_dir = os.path.join(os.path.dirname(__file__), "results")
    kt.files.write_json(results, os.path.join(out_dir, "text_strategies.json"))
    table = _table(results)
    settings, load = results["settings"], results["environment"]["load_average_1min"]
    setup = (
        f"all-MiniLM-L6-v2 (mean pooling) on SST-2: {settings['train_examples']:,} training "
        f"sentences (seeded subset), all {settings['dev_examples']} dev sentences, "
        f"sequence length {sequence_length} (cuts {settings['tokens']['dev_fraction_cut']:.1%} of dev), "
        f"batch {args.batch_size}, Adam. Frozen: {args.frozen_epochs} head epoch(s) at "
        f"{args.frozen_learning_rate:g}. Full / LoRA: "
        + (
            f"{args.head_epochs} head warm-up epoch(s) at {args.head_learning_rate:g}, then "
            if args.head_epochs
            else "no head warm-up, "
        )
        + f"{args.epochs} epoch(s) at {args.full_learning_rate:g} (full) or "
        f"{args.lora_learning_rate:g} (LoRA rank {args.lora_rank} on the attention query/value). "
        f"{results['environment']['cpus']} CPUs (1-min load average "
        f"{load['start']:g} at the start, {load['end']:g} at the end), "
        f"{results['environment']['gpus']} GPUs, TensorFlow {tf.__version__}; "
        f"{results['total_seconds']:.0f} s in all."
    )
    _write_markdown(os.path.join(out_dir, "text_strategies.md"), table, setup, results)


if __name__ == "__main__":
    main()
