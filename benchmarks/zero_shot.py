"""Zero-shot text classification against the majority class and the few-shot results.

all-MiniLM-L6-v2 (mean pooling, from its folder's sentence-transformers
config) classifies with no labelled example: `kt.zero_shot_classifier`
embeds each class's prompts and assigns every text to the nearest class. Two
evaluation sets, the same ones `few_shot.py` scores on:

- SST-2: the 872 dev sentences (classes negative, positive);
- SMS spam: the held-out 20% of `few_shot.py` (its seeded, stratified split
  of the whole collection: 1,115 messages; classes ham, spam).

Several wordings per dataset (the library's default template with the plain
class names, other templates, class descriptions, a template ensemble) are
all reported; none is chosen on the evaluation labels, and the table's first
row (the default) is the headline. The evaluation texts' features are
computed once by the model's own `feature_extractor()`; each wording's
model is then scored by its cosine head on those features (`head_model()`),
and the default wording is also scored end to end (`evaluate_report` on the
raw sentences) to check the two agree. Beside them: the majority class, and,
when `results/few_shot.json` exists, the few-shot rows (K labelled examples
per class) for the same datasets.

Writes `results/zero_shot.json` and `results/zero_shot.md`. `--refresh-few-shot`
only reads `results/few_shot.json` again into them (after `few_shot.py` ran).

    python benchmarks/zero_shot.py [--refresh-few-shot]   # reads KERAS_TRANSFER_ASSETS (default ../shared/assets)
"""

import argparse
import datetime
import json
import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf

import keras_transfer as kt
from keras_transfer.evaluation.metrics import evaluate_model
from keras_transfer.version import cpu_model
from keras_transfer.zeroshot import DEFAULT_TEMPLATE

RESULTS = os.path.join(os.path.dirname(__file__), "results")
# few_shot.py's SMS split: a stratified 20% of the whole collection held out with this seed.

# Each: (label, template(s), descriptions or None). The first is the library's default with the class names.
WORDINGS = {
    "sst2": [
        ("default template, class names", DEFAULT_TEMPLATE, None),
        ("'A {} movie review.'", "A {} movie review.", None),
        ("'The movie was {}.'", "The movie was {}.", None),
        ("'A {} movie review.', bad / good", "A {} movie review.", {"negative": "bad", "positive": "good"}),
        ("'It was {}.', terrible / great", "It was {}.", {"negative": "terrible", "positive": "great"}),
        (
            "ensemble of the 3 templates above, class names",
            [DEFAULT_TEMPLATE, "A {} movie review.", "The movie was {}."],
            None,
        ),
    ],
    "sms_spam": [
        ("default template, class names", DEFAULT_TEMPLATE, None),
        ("'This message is {}.'", "This message is {}.", None),
        (
            "'{}', a personal message / an advertisement or a prize offer",
            "{}",
            {"ham": "a personal message", "spam": "an advertisement or a prize offer"},
        ),
        (
            "default template, everyday life / winning a prize, free offers and promotions",
            DEFAULT_TEMPLATE,
            {"ham": "everyday life", "spam": "winning a prize, free offers and promotions"},
        ),
        (
            "ensemble of 'This message is {}.' and '{}', the descriptions above",
            ["This message is {}.", "{}"],
            {"ham": "a personal message", "spam": "an advertisement or a prize offer"},
        ),
    ],
}
DATASET_NAMES = {"sst2": "SST-2 dev (872 sentences)", "sms_spam": "SMS spam, few_shot.py's held-out 20%"}


def _evaluation_sets(assets):
    """`{name: (texts, labels, class names)}`: SST-2 dev, and the SMS messages few_shot.py holds out."""
    from few_shot import text_sets  # benchmarks/ is on sys.path when a script there runs

    sets = {name: (texts, labels, names) for name, (_, _, texts, labels, names) in text_sets(assets).items()}
    # SST-2's labels are 0/1: the zero-shot classes need words.
    sets["sst2"] = (*sets["sst2"][:2], ["negative", "positive"])
    return sets


def _scores(report):
    return {
        "accuracy": round(report.accuracy, 4),
        "balanced_accuracy": round(report.macro_avg["recall"], 4),
        "macro_f1": round(report.macro_avg["f1"], 4),
        "recall": {name: round(row["recall"], 4) for name, row in report.per_class.items()},
    }


def run_dataset(name, texts, labels, class_names, backbone, preprocessor, pooling):
    began = time.perf_counter()
    rows, features, end_to_end = [], None, None
    for index, (label, template, descriptions) in enumerate(WORDINGS[name]):
        model = kt.zero_shot_classifier(
            class_names,
            backbone=backbone,
            preprocessor=preprocessor,
            pooling=pooling,
            template=template,
            descriptions=descriptions,
            verbose=0,
        )
        if features is None:
            start = time.perf_counter()
            features, _ = kt.extract_features(model, texts, verbose=0)
            feature_seconds = time.perf_counter() - start
            # The whole model on the raw sentences, once, to check the cached path gives the same predictions.
            end_to_end = model.evaluate_report((texts, labels))
        outputs = model.head_model().predict(features, batch_size=256, verbose=0)
        report = evaluate_model(model, None, predictions=(labels, outputs))
        if index == 0:
            agreement = float(np.mean(report.y_pred == end_to_end.y_pred))
        prompts = kt.zeroshot.class_prompts(class_names, template, descriptions)
        rows.append({"wording": label, "prompts": dict(zip(class_names, prompts)), **_scores(report)})
        print(f"{name}: {label}: accuracy {report.accuracy:.3f}, macro F1 {report.macro_avg['f1']:.3f}", flush=True)
    counts = np.bincount(labels, minlength=len(class_names))
    majority = {
        "class": class_names[int(counts.argmax())],
        "accuracy": round(float(counts.max() / counts.sum()), 4),
        "balanced_accuracy": 0.5 if len(class_names) == 2 else round(1 / len(class_names), 4),
        "macro_f1": round(float(counts.max() / counts.sum()) / len(class_names), 4),
    }
    accuracies = [row["accuracy"] for row in rows]
    return {
        "dataset": name,
        "examples": len(texts),
        "class_counts": dict(zip(class_names, counts.tolist())),
        "majority": majority,
        "wordings": rows,
        "mean_over_wordings": {
            key: round(float(np.mean([row[key] for row in rows])), 4)
            for key in ("accuracy", "balanced_accuracy", "macro_f1")
        },
        "accuracy_range": [min(accuracies), max(accuracies)],
        "end_to_end_default_accuracy": round(end_to_end.accuracy, 4),
        "end_to_end_agreement": agreement,
        "feature_seconds": round(feature_seconds, 1),
        "seconds": round(time.perf_counter() - began, 1),
    }


def _few_shot_rows():
    path = os.path.join(RESULTS, "few_shot.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as file:
        results = json.load(file)
    rows = results.get("rows", results) if isinstance(results, dict) else results
    return [row for row in rows if isinstance(row, dict) and row.get("dataset") in WORDINGS]


def _markdown(result):
    lines = ["# Zero-shot text classification", ""]
    for dataset in result["datasets"]:
        name = dataset["dataset"]
        majority = dataset["majority"]
        counts = ", ".join(f"{key} {value}" for key, value in dataset["class_counts"].items())
        lines += [
            f"## {DATASET_NAMES[name]}: {dataset['examples']:,} texts ({counts})",
            "",
            "| wording | accuracy | balanced accuracy | macro F1 |",
            "|---|---|---|---|",
            f"| majority class ({majority['class']}) | {majority['accuracy']:.3f} | "
            f"{majority['balanced_accuracy']:.3f} | {majority['macro_f1']:.3f} |",
        ]
        for row in dataset["wordings"]:
            lines.append(
                f"| {row['wording']} | {row['accuracy']:.3f} | {row['balanced_accuracy']:.3f} | {row['macro_f1']:.3f} |"
            )
        mean = dataset["mean_over_wordings"]
        lines.append(
            f"| mean of the {len(dataset['wordings'])} wordings | {mean['accuracy']:.3f} | "
            f"{mean['balanced_accuracy']:.3f} | {mean['macro_f1']:.3f} |"
        )
        few = [row for row in result["few_shot"] or [] if row.get("dataset") == name]
        if few:
            lines += ["", "Few-shot (`few_shot.py`, K labelled examples per class, mean +- std over draws):", ""]
            lines += ["| method | K | accuracy |", "|---|---|---|"]
            for row in sorted(few, key=lambda row: (row.get("method", ""), row.get("shots", 0))):
                lines.append(
                    f"| {row.get('method')} | {row.get('shots')} | {row.get('mean', float('nan')):.3f} +- "
                    f"{row.get('std', float('nan')):.3f} |"
                )
        lines.append("")
    if not result["few_shot"]:
        lines += ["Few-shot comparison: pending (`results/few_shot.json` did not exist when this ran).", ""]
    environment = result["environment"]
    lines.append(
        f"all-MiniLM-L6-v2, {result['pooling']} pooling, cosine similarity to each class's prompt embedding (mean "
        "over a class's prompts), no training, no labelled example. Every wording run is shown; none was chosen on "
        "these labels. Balanced accuracy is the mean of the per-class recalls (0.5 for any constant guess). "
        f"The default wording scored end to end on the raw texts agrees with the cached-feature scoring on "
        + ", ".join(f"{d['end_to_end_agreement']:.1%} ({d['dataset']})" for d in result["datasets"])
        + f". {result['date']}, {environment['cpu']}, {environment['cpus']} CPUs (1-min load average "
        f"{environment['load_average_1min']['start']:g} at the start, {environment['load_average_1min']['end']:g} "
        f"at the end), TensorFlow {environment['tensorflow']}, Keras {environment['keras']}; "
        f"{result['seconds']:.0f} s in all."
    )
    return "\n".join(lines) + "\n"


def _refresh_few_shot():
    """Reads the few-shot rows again into an existing zero_shot.json and rewrites the Markdown."""
    path = os.path.join(RESULTS, "zero_shot.json")
    with open(path, encoding="utf-8") as file:
        result = json.load(file)
    result["few_shot"] = _few_shot_rows()
    kt.files.write_json(result, path)
    with open(os.path.join(RESULTS, "zero_shot.md"), "w", encoding="utf-8") as file:
        file.write(_markdown(result))
    print(_markdown(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--refresh-few-shot",
        action="store_true",
        help="only read results/few_shot.json again into the existing results (no model runs)",
    )
    if parser.parse_args().refresh_few_shot:
        return _refresh_few_shot()
    load_before = os.getloadavg()
    began = time.perf_counter()
    default_assets = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "assets")
    assets = os.path.abspath(os.environ.get("KERAS_TRANSFER_ASSETS") or default_assets)
    folder = os.path.join(assets, "keras-hub", "all-MiniLM-L6-v2")
    keras.utils.set_random_seed(0)
    tf.get_logger().setLevel("ERROR")  # one small model per wording: TF's retracing notices are expected
    built = kt.build_text_backbone(folder)
    pooling = kt.zeroshot.sentence_embedding_pooling(folder)
    datasets = [
        run_dataset(name, texts, labels, class_names, built.model, built.preprocessor, pooling)
        for name, (texts, labels, class_names) in _evaluation_sets(assets).items()
    ]
    result = {
        "benchmark": "zero_shot",
        "date": datetime.date.today().isoformat(),
        "backbone": "all-MiniLM-L6-v2",
        "pooling": pooling,
        "datasets": datasets,
        "few_shot": _few_shot_rows(),
        "environment": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "cpus": os.cpu_count(),
            "cpu": cpu_model(),
            "machine": platform.machine(),
            "load_average_1min": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
        },
        "seconds": round(time.perf_counter() - began, 1),
    }
    os.makedirs(RESULTS, exist_ok=True)
    kt.files.write_json(result, os.path.join(RESULTS, "zero_shot.json"))
    with open(os.path.join(RESULTS, "zero_shot.md"), "w", encoding="utf-8") as file:
        file.write(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
