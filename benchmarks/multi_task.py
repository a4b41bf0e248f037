"""Multi-task learning against one model per task: all-MiniLM-L6-v2 with SST-2 sentiment and SMS spam.

One `MultiTaskTextModel` (one backbone, a binary head per task) trains on both
tasks' examples mixed into shared batches (each example's loss on its own
task); beside it, two single-task `TextClassifier`s train on the same
examples, one task each, with the same recipe (head epochs on the frozen
backbone, then the whole network), batch size and sequence length, so both
sides see every example the same number of times. Reported: each task's
accuracy (SST-2: the whole dev set; SMS spam: a seeded stratified held-out
split), total parameters and training time, and the majority-class rate of
each test set; with several `--seeds` (each draws the data and the
initialisation), the mean and standard deviation over them.

    python benchmarks/multi_task.py [--train-examples 1000] [--head-epochs 1] [--finetune-epochs 1]
        [--sequence-length 64] [--batch-size 32] [--seeds 0,1,2]

Writes `results/multi_task.json` and `.md` beside this file.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf

import keras_transfer as kt
from keras_transfer.multitask.recipes import MULTITASK_TEXT_RECIPE
from keras_transfer.version import cpu_model

ASSETS = os.environ.get("KERAS_TRANSFER_ASSETS") or os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "assets"
)
# SST-2's dev file names its text column "content", the training file "sentence".
SENTIMENT_NAMES = ["negative", "positive"]
SPAM_NAMES = ["ham", "spam"]
SMS_TEST_EXAMPLES = 1000


def read_rows(path, text_column, label_column):
    with open(path, encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row[text_column] for row in rows], [row[label_column] for row in rows]


def load_tasks(train_examples, seed):
    """`{task: (train texts, train labels, test texts, test labels)}`, labels 0/1."""
    rng = np.random.default_rng(seed)
    texts, labels = read_rows(os.path.join(ASSETS, "text", "sst2", "train.tsv"), "sentence", "label")
    chosen = rng.choice(len(texts), train_examples, replace=False)
    dev_texts, dev_labels = read_rows(os.path.join(ASSETS, "text", "sst2", "dev.tsv"), "content", "label")
    sentiment = (
        [texts[i] for i in chosen],
        np.array([int(labels[i]) for i in chosen]),
        dev_texts,
        np.array([int(label) for label in dev_labels]),
    )
    sms, kinds = read_rows(os.path.join(ASSETS, "text", "sms_spam", "SMSSpamCollection"), "SMS", "Label")
    is_spam = np.array([SPAM_NAMES.index(kind) for kind in kinds])
    # A stratified split: each class keeps its share in both the test and the training examples.
    train_index, test_index = [], []
    for label in (0, 1):
        members = rng.permutation(np.flatnonzero(is_spam == label))
        share = len(members) / len(is_spam)
        test_count = round(SMS_TEST_EXAMPLES * share)
        test_index += list(members[:test_count])
        train_index += list(members[test_count : test_count + round(train_examples * share)])
    train_index, test_index = rng.permutation(train_index), np.array(test_index)
    spam = ([sms[i] for i in train_index], is_spam[train_index], [sms[i] for i in test_index], is_spam[test_index])
    return {"sentiment": sentiment, "spam": spam}


def multi_task(folder, data, recipe, args, seed):
    keras.utils.set_random_seed(seed)
    tasks = [
        kt.Task("sentiment", kt.Head.binary(), class_names=SENTIMENT_NAMES),
        kt.Task("spam", kt.Head.binary(), class_names=SPAM_NAMES),
    ]
    model = kt.MultiTaskTextModel(folder, tasks, pooling="mean", sequence_length=args.sequence_length)
    start = time.perf_counter()
    model.fine_tune(
        {name: (texts, labels) for name, (texts, labels, _, _) in data.items()},
        recipe=recipe,
        batch_size=args.batch_size,
        seed=seed,
    )
    seconds = time.perf_counter() - start
    reports = model.evaluate_report({name: (texts, labels) for name, (_, _, texts, labels) in data.items()})
    _, total = model.parameter_counts()
    return {
        "accuracy": {name: round(report.accuracy, 4) for name, report in reports.items()},
        "total_params": total,
        "train_seconds": round(seconds, 1),
    }


def single_tasks(folder, data, recipe, args, seed):
    accuracy, total_params, seconds = {}, 0, 0.0
    for name, class_names in (("sentiment", SENTIMENT_NAMES), ("spam", SPAM_NAMES)):
        keras.utils.set_random_seed(seed)
        train_texts, train_labels, test_texts, test_labels = data[name]
        model = kt.TextClassifier(
            folder,
            head=kt.Head.binary(),
            class_names=class_names,
            pooling="mean",
            sequence_length=args.sequence_length,
        )
        start = time.perf_counter()
        model.fine_tune((train_texts, train_labels), recipe=recipe, batch_size=args.batch_size)
        seconds += time.perf_counter() - start
        accuracy[name] = round(model.evaluate_report((test_texts, test_labels)).accuracy, 4)
        total_params += model.parameter_counts()[1]
    return {"accuracy": accuracy, "total_params": total_params, "train_seconds": round(seconds, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-examples", type=int, default=1000, help="training examples per task")
    parser.add_argument("--head-epochs", type=int, default=1)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds: one draw of the data and run each")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    folder = os.path.join(ASSETS, "keras-hub", "all-MiniLM-L6-v2")
    recipe = MULTITASK_TEXT_RECIPE.replace(head_epochs=args.head_epochs, finetune_epochs=args.finetune_epochs)
    load_before = os.getloadavg()[0]
    begin = time.perf_counter()
    runs = []
    for seed in seeds:
        data = load_tasks(args.train_examples, seed)
        runs.append(
            {
                "seed": seed,
                "majority": {
                    name: round(float(max(np.mean(labels), 1 - np.mean(labels))), 4)
                    for name, (*_, labels) in data.items()
                },
                "multi_task": multi_task(folder, data, recipe, args, seed),
                "single_task": single_tasks(folder, data, recipe, args, seed),
            }
        )
    results = {
        "summary": _summary(runs),
        "runs": runs,
        "settings": {
            "backbone": "all-MiniLM-L6-v2 (mean pooling)",
            "train_examples_per_task": args.train_examples,
            "test_examples": {name: len(labels) for name, (*_, labels) in data.items()},
            "sequence_length": args.sequence_length,
            "batch_size": args.batch_size,
            "seeds": seeds,
            "recipe": recipe.to_dict(),
        },
        "environment": {
            "date": datetime.date.today().isoformat(),
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "load_average_start": round(load_before, 2),
            "load_average_end": round(os.getloadavg()[0], 2),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
            "seconds": round(time.perf_counter() - begin, 1),
        },
    }
    out_dir = os.path.join(os.path.dirname(__file__), "results")
    kt.files.write_json(results, os.path.join(out_dir, "multi_task.json"))
    table = _table(results)
    with open(os.path.join(out_dir, "multi_task.md"), "w", encoding="utf-8") as file:
        file.write(table + "\n")
    print(table)
    print(json.dumps(results))


def _summary(runs):
    """Mean and standard deviation over the seeds of each side's accuracies, parameters and seconds."""

    def spread(values):
        return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}

    summary = {"majority": {name: spread([run["majority"][name] for run in runs]) for name in runs[0]["majority"]}}
    for side in ("multi_task", "single_task"):
        summary[side] = {
            "accuracy": {name: spread([run[side]["accuracy"][name] for run in runs]) for name in runs[0]["majority"]},
            "total_params": runs[0][side]["total_params"],
            "train_seconds": spread([run[side]["train_seconds"] for run in runs]),
        }
    summary["accuracy_gain"] = {
        name: spread([run["multi_task"]["accuracy"][name] - run["single_task"]["accuracy"][name] for run in runs])
        for name in runs[0]["majority"]
    }
    return summary


def _table(results):
    summary, settings, environment = results["summary"], results["settings"], results["environment"]
    recipe = settings["recipe"]

    def cell(value, digits=3):
        return f"{value['mean']:.{digits}f} +- {value['std']:.{digits}f}"

    rows = [
        "| model | SST-2 dev accuracy | SMS spam test accuracy | total params | train seconds |",
        "|---|---|---|---|---|",
        f"| majority class | {cell(summary['majority']['sentiment'])} | {cell(summary['majority']['spam'])} | - | - |",
    ]
    for side, label in (("single_task", "two single-task models"), ("multi_task", "one multi-task model")):
        numbers = summary[side]
        rows.append(
            f"| {label} | {cell(numbers['accuracy']['sentiment'])} | {cell(numbers['accuracy']['spam'])} "
            f"| {numbers['total_params']:,} | {cell(numbers['train_seconds'], 0)} |"
        )
    gain = summary["accuracy_gain"]
    per_seed = "; ".join(
        f"seed {run['seed']}: SST-2 {run['multi_task']['accuracy']['sentiment']:.3f} vs "
        f"{run['single_task']['accuracy']['sentiment']:.3f}, spam {run['multi_task']['accuracy']['spam']:.3f} vs "
        f"{run['single_task']['accuracy']['spam']:.3f}"
        for run in results["runs"]
    )
    return "\n".join(
        [
            *rows,
            "",
            f"Multi-task minus single-task accuracy: SST-2 {cell(gain['sentiment'])}, SMS spam {cell(gain['spam'])} "
            f"(mean +- standard deviation over {len(results['runs'])} seeded draws; per seed, multi vs single: "
            f"{per_seed}).",
            "",
            f"{settings['backbone']}: {settings['train_examples_per_task']:,} training examples per task (SST-2: a "
            f"seeded subset of train.tsv; SMS spam: a seeded stratified split, {settings['test_examples']['spam']:,} "
            f"held out for testing), all {settings['test_examples']['sentiment']} SST-2 dev sentences; sequence "
            f"length {settings['sequence_length']}, batch {settings['batch_size']}, seeds {settings['seeds']} (each "
            f"seed draws the data and the initialisation). Both sides: {recipe['head_epochs']} head epoch(s) on the "
            f"frozen backbone at {recipe['head_learning_rate']:g}, then {recipe['finetune_epochs']} epoch(s) of the "
            f"whole network at {recipe['finetune_learning_rate']:g} ({recipe['schedule']}), Adam, binary heads. The "
            "multi-task model mixes both tasks' examples into shared batches (each example's loss on its own "
            "task); each single-task model sees only its task's examples. "
            f"{environment['cpu']}, {environment['cpus']} CPUs (1-min load average "
            f"{environment['load_average_start']} at the start, {environment['load_average_end']} at the end: "
            f"shared with other jobs), TensorFlow {environment['tensorflow']}, {environment['date']}; "
            f"{environment['seconds']:.0f} s in all.",
        ]
    )


if __name__ == "__main__":
    main()
