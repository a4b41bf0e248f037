"""Text classifiers on device: every LiteRT quantization of a fine-tuned all-MiniLM-L6-v2, measured.

all-MiniLM-L6-v2 (mean pooling) is fine-tuned briefly on two tasks, `--train-examples` seeded training
sentences each, `--epochs` of the library's full fine-tuning recipe (`text_recipe("full")`) at sequence
length `--sequence-length`:

- SMS spam: scored on as many held-out messages (stratified, disjoint from training);
- SST-2: scored on all 872 dev sentences.

Each model is then exported with `kt.export_model` in every mode of `--modes`: the TFLite converter's
float32, float16, dynamic (int8 weights) and int8 (full integer), and the LiteRT Quantizer's recipes
(int8/int4 weights, weight-only or dynamic; static int8 weights with int8 or int16 activations), every
calibrated one on `--calibration-examples` training sentences drawn across classes. `kt.measure_export`
runs each file in the LiteRT interpreter on the evaluation sentences beside the Keras model (accuracy of
both, top-1 agreement); latency is one sentence per call on 1 thread, all files of a task timed call by
call in turn (`kt.litert.compare_latency`), so a change in the machine's load lands on all of them. The
float32 file is also scored through its own tokenizer (the folder its export wrote beside it, as
`keras-transfer evaluate` reads it), which must give the same accuracy as the token ids above.

Writes `results/text_on_device.json` and `.md` beside this file (or in `--output-dir`).

    python benchmarks/text_on_device.py [--train-examples 1000] [--epochs 1] [--sequence-length 64]
        [--eval-examples 1000] [--tasks sms_spam,sst2] [--modes none,dynamic,...] [--repeats 50]
"""

import argparse
import datetime
import os
import tempfile
import time
import warnings

import keras
import numpy as np
from optimization import Clock  # run as a script: this folder is on sys.path

import keras_transfer as kt
from keras_transfer.deploy.quantization import QUANTIZATION_MODES
from keras_transfer.finetune.recipes import text_recipe
from keras_transfer.version import environment

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.environ.get("KERAS_TRANSFER_ASSETS", os.path.join(HERE, "..", "..", "shared", "assets"))
TASKS = ("sms_spam", "sst2")
# Names in the table: the converter's "none" is the float32 reference.
LABELS = {"none": "float32"}
# The accuracy drop the tables' last line picks the smallest file within.
BUDGET = 0.01


def _load_task(task, args):
    """`(train, eval)` datasets of sentences and int labels, and a description of the split."""
    if task == "sms_spam":
        path = os.path.join(ASSETS, "text", "sms_spam", "SMSSpamCollection")
        total = args.train_examples + args.eval_examples
        train, evaluation = kt.data.text_file(
            path,
            text_column="SMS",
            label_column="Label",
            validation_split=args.eval_examples / total,
            max_examples=total,
            batch_size=args.batch_size,
            seed=args.seed,
        )
        return train, evaluation, "held-out messages of the SMS Spam Collection (stratified)"
    folder = os.path.join(ASSETS, "text", "sst2")
    # The dev file's header says `content`, the training file's `sentence`: columns by index.
    options = dict(text_column=1, label_column=0, header=True, class_names=["negative", "positive"])
    train = kt.data.text_file(
        os.path.join(folder, "train.tsv"),
        max_examples=args.train_examples,
        batch_size=args.batch_size,
        seed=args.seed,
        **options,
    )
    evaluation = kt.data.text_file(
        os.path.join(folder, "dev.tsv"), shuffle=False, batch_size=args.batch_size, **options
    )
    return train, evaluation, "SST-2 dev sentences (all)"


def _quantization(mode, train, args):
    return kt.Quantization.calibrated(mode, train, args.calibration_examples, seed=args.seed)


def _run_task(task, args, folder, clock):
    keras.utils.set_random_seed(args.seed)
    train, evaluation, described = _load_task(task, args)
    model = kt.TextClassifier(
        os.path.join(ASSETS, "keras-hub", "all-MiniLM-L6-v2"),
        class_names=train.class_names,
        pooling="mean",
        sequence_length=args.sequence_length,
    )
    history = clock(f"{task}: fine-tune", model.fine_tune, train, recipe=text_recipe("full", epochs=args.epochs))
    reports, errors = [], {}
    for mode in args.modes:
        path = os.path.join(folder, f"{task}_{mode}.tflite")
        try:
            clock(f"{task}: export {mode}", kt.export_model, model, path, quantization=_quantization(mode, train, args))
            with warnings.catch_warnings():  # the exports that break the model are in the table
                warnings.filterwarnings("ignore", message=".* agrees with the Keras model on only")
                report = clock(
                    f"{task}: measure {mode}", kt.measure_export, path, model, evaluation, name=LABELS.get(mode, mode),
                    repeats=0,
                )  # fmt: skip
        except Exception as error:  # one mode failing must not lose the others' numbers
            errors[mode] = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
            print(f"--- {task}: {mode} failed: {errors[mode]}", flush=True)
            continue
        report.extra["mode"] = mode
        reports.append(report)
    if not reports:
        return {"errors": errors}, []
    # One sentence of the evaluation set, as the token ids every file takes.
    example = model.tokenize([next(iter(evaluation.unbatch().as_numpy_iterator()))[0].decode("utf-8")])
    latencies = clock(
        f"{task}: latency", kt.litert.compare_latency, [r.path for r in reports], example, num_threads=1,
        repeats=args.repeats,
    )  # fmt: skip
    for report in reports:
        report.latency_ms, report.latency_threads = latencies[report.path].median_ms, 1
        report.extra["latency_min_ms"] = round(latencies[report.path].min_ms, 3)
    reference = next((r for r in reports if r.extra["mode"] == "none"), None)
    if reference is not None:
        for report in reports:
            report.relative_to(reference)
        # The file's own tokenizer (saved beside it) must reproduce the token-id inputs' accuracy.
        own = clock(
            f"{task}: float32 through its own tokenizer", kt.evaluation.evaluate_model,
            kt.LiteRTModel(reference.path), evaluation,
        )  # fmt: skip
        reference.extra["accuracy_through_own_tokenizer"] = round(float(own.accuracy), 4)
    for report in reports:
        report.path = os.path.basename(report.path)
    summary = {
        "train_examples": train.num_examples,
        "eval_examples": reports[0].num_examples,
        "eval_data": described,
        "class_names": train.class_names,
        "majority_rate": round(_majority_rate(evaluation), 4),
        "train_accuracy_last_epoch": round(history.merged()["accuracy"][-1], 4),
        "errors": errors,
    }
    return summary, reports


def _majority_rate(dataset):
    labels = np.concatenate([labels for _, labels in dataset.as_numpy_iterator()])
    return np.bincount(labels).max() / len(labels)


def _markdown_table(reports):
    rows = [
        "| export | size MB | size / float32 | Keras accuracy | LiteRT accuracy | agreement with Keras "
        "| ms per sentence |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        rows.append(
            f"| {r.name} | {r.size_bytes / 1e6:.1f} | {_format(r.size_ratio, '{:.3f}')} | {r.accuracy:.4f} "
            f"| {r.tflite_accuracy:.4f} | {r.top1_agreement:.4f} | {_format(r.latency_ms, '{:.1f}')} |"
        )
    return "\n".join(rows)


def _format(value, style):
    return "-" if value is None else style.format(value)


def _markdown(result):
    settings, env = result["settings"], result["environment"]
    sections = []
    for task, title in (("sms_spam", "SMS spam"), ("sst2", "SST-2")):
        if task not in result["tasks"]:
            continue
        entry = result["tasks"][task]
        reports = [kt.ModelReport(**report) for report in entry["models"]]
        lines = [f"### {title}", ""]
        if reports:
            lines += [
                _markdown_table(reports),
                "",
                f"{entry['train_examples']:,} training sentences, {entry['eval_examples']:,} {entry['eval_data']} "
                f"(majority class {entry['majority_rate']:.3f}).",
            ]
            own = next(
                (r.extra.get("accuracy_through_own_tokenizer") for r in reports if r.extra["mode"] == "none"), None
            )
            if own is not None:
                lines[-1] += f" The float32 file through the tokenizer saved beside it: accuracy {own:.4f}."
            within = [r for r in reports if r.accuracy_drop is not None and r.accuracy_drop <= BUDGET + 1e-9]
            if within:
                smallest = min(within, key=lambda r: r.size_bytes)
                lines[-1] += (
                    f" Smallest file within {BUDGET:g} of the Keras accuracy (what `export_within_budget` would "
                    f"keep among these): {smallest.name}, {smallest.size_bytes / 1e6:.1f} MB."
                )
        for mode, message in entry["errors"].items():
            lines.append(f"- ERROR {mode}: {message}")
        sections.append("\n".join(lines))
    return (
        "\n\n".join(sections)
        + "\n\n"
        + f"all-MiniLM-L6-v2 (mean pooling), full fine-tuning ({settings['epochs']} epoch(s) of the `full` text "
        f"recipe), sequence length {settings['sequence_length']}; calibrated modes on "
        f"{settings['calibration_examples']} training sentences drawn across classes. Latency: median of "
        f"{settings['repeats']} calls of one sentence, 1 LiteRT thread, all files of a task timed in turn. "
        f"{result['date']}; {env['cpu']} ({', '.join(env['cpu_flags']) or 'flags unknown'}), {result['cpus']} "
        f"cores shared with other jobs (1-min load average {result['load_average_1min']['start']:g} at the start, "
        f"{result['load_average_1min']['end']:g} at the end); TensorFlow {env['versions'].get('tensorflow')}, "
        f"Keras {env['versions'].get('keras')}, ai-edge-litert {env['versions'].get('ai_edge_litert')}; "
        f"{result['total_seconds']:.0f} s in all.\n"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-examples", type=int, default=1000)
    parser.add_argument("--eval-examples", type=int, default=1000, help="SMS spam held-out messages")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--calibration-examples", type=int, default=100)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--modes", default=",".join(QUANTIZATION_MODES))
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    args.tasks, args.modes = args.tasks.split(","), args.modes.split(",")
    unknown = [task for task in args.tasks if task not in TASKS] + [
        m for m in args.modes if m not in QUANTIZATION_MODES
    ]
    if unknown:
        parser.error(f"unknown {', '.join(unknown)}; tasks: {', '.join(TASKS)}; modes: {', '.join(QUANTIZATION_MODES)}")

    begin, load_before, clock = time.perf_counter(), os.getloadavg(), Clock()
    tasks = {}
    with tempfile.TemporaryDirectory(prefix="text-on-device-") as folder:
        for task in args.tasks:
            summary, reports = _run_task(task, args, folder, clock)
            tasks[task] = {**summary, "models": [report.to_dict() for report in reports]}
            if reports:
                print(kt.report.format_table(reports, latency_per="sentence"), flush=True)
    result = {
        "date": datetime.date.today().isoformat(),
        "settings": {**vars(args), "backbone": "all-MiniLM-L6-v2 (mean pooling)", "recipe": "full"},
        "tasks": tasks,
        "seconds": clock.seconds,
        "total_seconds": round(time.perf_counter() - begin, 1),
        "cpus": os.cpu_count(),
        "load_average_1min": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
        "environment": environment(),
    }
    os.makedirs(args.output_dir, exist_ok=True)
    kt.files.write_json(result, os.path.join(args.output_dir, "text_on_device.json"))
    with kt.files.atomic_path(os.path.join(args.output_dir, "text_on_device.md")) as path:
        with open(path, "w") as file:
            file.write(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
