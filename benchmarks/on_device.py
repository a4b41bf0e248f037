"""Smaller than int8 on device: mixed int4/int8, low-bit kernels, clustering, and int8 latency with its CPU.

An ImageNet MobileNetV2 at 160 px gets a new head trained on cats_and_dogs_filtered
(2,000 training images, backbone frozen, as `benchmarks/optimization.py`). The 1,000
validation images are split in two class-balanced halves (alternate files): the
*selection* half is what searches look at (the mixed-precision budget), the *report*
half is what every row's accuracy is measured on, so no number is the one a search
was fitted to. Each row is a `.tflite` file run in the LiteRT interpreter:

- `float32`, `int8 weight-only` (LiteRT Quantizer), `int8 PTQ` (the converter's full
  integer), `int4 weight-only` (every int4-capable layer, post-training);
- `mixed PTQ`: `kt.export_mixed_precision` within `--budget` on the selection half;
- `low-bit <scheme>`: `kt.low_bit_weights` (binary, ternary, int4 kernels trained with a
  straight-through estimator, all Conv/Dense layers but the first and the last),
  stored int4 with the rest int8; `packed MB` is the file with the binary / ternary
  kernels packed at 1 / 2 bits per weight;
- `clustered <recipe>`: `kt.cluster`, exported float32 and with int8 weights (the
  gzip size is what clustering saves).

Latency: every file timed call by call in turn (1 thread, batch 1), beside the CPU
model and its instruction sets (`keras_transfer.version.environment`).
Targets (PASS/FAIL, never asserted): mixed precision (post-training or trained)
at <= 0.22x float32 within 1 point; clustering within 1 point with a smaller gzip
file than int8's; int8 latency <= 0.5x float32 on one thread where the CPU has
AVX-512 VNNI (or ARM dot-product) int8 instructions.

Writes `results/on_device.json` and `.md` beside this file.

    python benchmarks/on_device.py [--only ptq,mixed,low_bit,cluster] [--schemes int4,ternary,binary]
"""

import argparse
import itertools
import os
import tempfile
import time

import keras
import numpy as np
from optimization import Clock  # run as a script: this folder is on sys.path

import keras_transfer as kt
from keras_transfer.deploy.tfmot import low_bit
from keras_transfer.version import environment

STEPS = ("ptq", "mixed", "low_bit", "cluster")
TARGETS = {"mixed_size_ratio_max": 0.22, "accuracy_drop_max": 0.01, "int8_latency_ratio_max": 0.5}
# Instruction sets that make int8 faster than float32 on a CPU.
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "amx_int8", "asimddp")
# The clustering recipes compared: TF-MOT's usual setting (the old default) and the recipe kt.cluster uses now.
CLUSTER_RECIPES = {
    "clustered 16, all kernels, 1 epoch at 1e-5": dict(clusters=16, layers="all", epochs=1, learning_rate=1e-5),
    "clustered (kt.cluster defaults)": dict(),
}


def _halves(source, scratch):
    """Two class-balanced folders of symlinks: even- and odd-numbered files of each class (sorted)."""
    folders = [os.path.join(scratch, "selection"), os.path.join(scratch, "report")]
    for name in sorted(os.listdir(source)):
        for index, file in enumerate(sorted(os.listdir(os.path.join(source, name)))):
            target = os.path.join(folders[index % 2], name)
            os.makedirs(target, exist_ok=True)
            os.symlink(os.path.join(source, name, file), os.path.join(target, file))
    return folders


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(STEPS), help=f"steps to run, of {', '.join(STEPS)}")
    parser.add_argument(
        "--schemes",
        default="int4,ternary,binary,int4:inner",
        help="low-bit runs: SCHEME or SCHEME:LAYERS (kt.low_bit_weights's layers=, default its own)",
    )
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--head-epochs", type=int, default=2)
    parser.add_argument("--budget", type=float, default=0.01, help="mixed precision's max accuracy drop")
    parser.add_argument(
        "--seeds", default="1,2", help="low-bit runs per scheme, one per seed (500 images: +-0.8 points of noise)"
    )
    parser.add_argument("--low-bit-epochs", type=int, default=None, help="default: kt.low_bit_weights's")
    parser.add_argument("--low-bit-lr", type=float, default=None, help="default: kt.low_bit_weights's")
    parser.add_argument("--latency-repeats", type=int, default=500, help="timed calls per file, interleaved")
    parser.add_argument("--output-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--models-dir", default=None, help="keep the .tflite files here (default: deleted)")
    args = parser.parse_args()
    steps = [step for step in args.only.split(",") if step]
    unknown = [step for step in steps if step not in STEPS]
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {', '.join(STEPS)}")
    low_bit_runs = [tuple(run.split(":", 1)) if ":" in run else (run, None) for run in args.schemes.split(",") if run]
    for scheme, _ in low_bit_runs:
        low_bit.check_scheme(scheme)

    assets = os.environ.get(
        "KERAS_TRANSFER_ASSETS", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "assets")
    )
    images = os.path.join(assets, "images", "cats_and_dogs_filtered")
    begin, load_before, clock = time.perf_counter(), os.getloadavg()[0], Clock()
    reports, extra = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        models_dir = args.models_dir or os.path.join(scratch, "models")
        os.makedirs(models_dir, exist_ok=True)
        selection_dir, report_dir = _halves(os.path.join(images, "validation"), scratch)
        options = dict(image_size=args.image_size, batch_size=32, cache=True)
        train = kt.data.image_folder(os.path.join(images, "train"), shuffle=True, **options)
        selection = kt.data.image_folder(selection_dir, **options)
        evaluated = kt.data.image_folder(report_dir, **options)

        keras.utils.set_random_seed(0)
        model = kt.ImageClassifier(
            "mobilenet_v2", class_names=train.class_names, weights="imagenet", image_size=args.image_size
        )
        clock("fine_tune (head)", model.fine_tune, train, head_epochs=args.head_epochs, finetune_epochs=0, verbose=2)

        def path_of(name):
            return os.path.join(models_dir, name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", ""))

        def measure(name, path, measured_model, **more):
            report = clock(
                f"measure {name}", kt.measure_export, path, measured_model, evaluated, name=name, repeats=0, **more
            )
            reports.append(report)
            return report

        def export(name, quantization):
            path = path_of(name + ".tflite")
            clock(f"export {name}", kt.export_model, model, path, quantization=quantization, overwrite=True)
            return measure(name, path, model)

        base = export("float32", "none")
        if "ptq" in steps:
            export("int8 weight-only", "weight_only_wi8_afp32")
            export("int8 PTQ", kt.Quantization.int8(train, num_samples=200))
            export("int4 weight-only", "weight_only_wi4_afp32")
        if "mixed" in steps:
            path = path_of("mixed_ptq.tflite")
            choice = clock(
                "mixed PTQ search",
                kt.export_mixed_precision,
                model,
                path,
                evaluated,
                selection_data=selection,
                max_accuracy_drop=args.budget,
                overwrite=True,
            )
            print(choice.explanation())
            extra["mixed_ptq"] = {
                "int4_layers": len(choice.int4_layers),
                "int4_capable_layers": len(choice.sensitivities),
                "tried_on_selection": [
                    {**step, "size_ratio": step["size_bytes"] / choice.float_size_bytes} for step in choice.tried
                ],
            }
            measure(f"mixed PTQ ({len(choice.int4_layers)} int4)", path, model)
        if "low_bit" in steps:
            settings = {"epochs": args.low_bit_epochs, "learning_rate": args.low_bit_lr}
            settings = {key: value for key, value in settings.items() if value is not None}
            for (scheme, layers), seed in itertools.product(low_bit_runs, args.seeds.split(",")):
                name = f"low-bit {scheme}" + (f" ({layers})" if layers else "") + f" seed {seed}"
                chosen = {} if layers is None else {"layers": layers}
                keras.utils.set_random_seed(int(seed))
                result = clock(
                    f"train {name}", kt.low_bit_weights, model, train, scheme=scheme, verbose=2, **settings, **chosen
                )
                path = clock(f"export {name}", result.to_tflite, path_of(name + ".tflite"), overwrite=True)
                report = measure(name, path, result.model, head=model.head)
                report.extra.update(
                    settings=result.settings,
                    low_bit_layers=len(result.low_bit_layers),
                    low_bit_weights=sum(result.low_bit_layers.values()),
                    bit_packed_size_bytes=result.bit_packed_size_bytes(path),
                    history=result.history,
                )
        if "cluster" in steps:
            for name, recipe in CLUSTER_RECIPES.items():
                result = clock(f"train {name}", kt.cluster, model, train, verbose=2, **recipe)
                for suffix, optimize in (("", False), (" + int8 weights", True)):
                    path = path_of(name + suffix + ".tflite")
                    clock(f"export {name}{suffix}", result.to_tflite, path, optimize=optimize, overwrite=True)
                    report = measure(name + suffix, path, result.model, head=model.head)
                    report.extra.update(settings=result.settings, history=result.history)

        example = next(iter(evaluated))[0].numpy()[:1]
        paths = [report.path for report in reports]
        latencies = clock(
            "interleaved latency",
            kt.litert.compare_latency,
            paths,
            example,
            num_threads=1,
            repeats=args.latency_repeats,
        )
        for report in reports:
            report.latency_ms, report.latency_threads = latencies[report.path].median_ms, 1
            report.extra["latency_min_ms"] = latencies[report.path].min_ms  # the call the load disturbed least
            report.path = os.path.basename(report.path)

    float_accuracy = base.accuracy
    for report in reports:
        report.relative_to(base)
        # Against the float Keras model on the same images, whatever model the file came from.
        report.extra["drop_vs_float_keras"] = float_accuracy - report.tflite_accuracy
    env = environment()
    env["load_average_1min"] = {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)}
    targets = _targets(reports, env)
    total_seconds = round(time.perf_counter() - begin, 1)
    settings = {**vars(args), "train_examples": train.num_examples, "report_examples": evaluated.num_examples,
                "selection_examples": selection.num_examples, "float_keras_accuracy": float_accuracy}  # fmt: skip
    kt.report.write_reports(
        reports,
        os.path.join(args.output_dir, "on_device.json"),
        settings=settings,
        targets=targets,
        environment=env,
        seconds=clock.seconds,
        total_seconds=total_seconds,
        **extra,
    )
    markdown = _markdown(reports, targets, env, settings, extra, clock.seconds, total_seconds)
    with kt.files.atomic_path(os.path.join(args.output_dir, "on_device.md")) as path:
        with open(path, "w") as file:
            file.write(markdown)
    print(markdown)


def _targets(reports, env):
    """PASS/FAIL of each target whose rows were measured."""
    by_name = {report.name: report for report in reports}
    checks = {}
    budget = TARGETS["accuracy_drop_max"]
    # Every file with int4 weights: the post-training mix and the trained low-bit kernels, each setting
    # by its mean drop over the seeds.
    settings = {}
    for report in reports:
        if report.name.startswith(("mixed PTQ", "low-bit")):
            settings.setdefault(report.name.split(" seed ")[0], []).append(report)
    if settings:
        drops = {
            name: float(np.mean([r.extra["drop_vs_float_keras"] for r in runs])) for name, runs in settings.items()
        }
        sizes = {name: float(np.mean([r.size_ratio for r in runs])) for name, runs in settings.items()}
        small = [name for name in settings if drops[name] <= budget + 1e-9]
        best = min(small or settings, key=sizes.get)
        checks["mixed precision <= 0.22x float32 within 1 point"] = dict(
            row=best,
            runs=len(settings[best]),
            value=round(sizes[best], 4),
            mean_drop=round(drops[best], 4),
            passed=bool(small) and sizes[best] <= TARGETS["mixed_size_ratio_max"],
        )
    clustered = [r for r in reports if r.name.startswith("clustered (kt.cluster defaults)")]
    int8 = by_name.get("int8 weight-only")
    if clustered and int8 is not None:
        best = min(clustered, key=lambda report: report.compressed_size_bytes)
        checks["clustering within 1 point, gzip smaller than int8's"] = dict(
            row=best.name,
            value=round(best.compressed_size_bytes / 1e6, 3),
            limit=round(int8.compressed_size_bytes / 1e6, 3),
            drop=round(best.extra["drop_vs_float_keras"], 4),
            passed=best.extra["drop_vs_float_keras"] <= budget + 1e-9
            and best.compressed_size_bytes < int8.compressed_size_bytes,
        )
    ptq = by_name.get("int8 PTQ")
    if ptq is not None:
        dot_product = [flag for flag in env["cpu_flags"] if flag in INT8_DOT_PRODUCT_FLAGS]
        checks["int8 latency <= 0.5x float32 (1 thread)"] = dict(
            row=ptq.name,
            value=round(ptq.latency_ratio, 3),
            fastest_calls_ratio=round(ptq.extra["latency_min_ms"] / by_name["float32"].extra["latency_min_ms"], 3),
            limit=TARGETS["int8_latency_ratio_max"],
            cpu=env["cpu"],
            int8_instructions=dot_product,
            passed=ptq.latency_ratio <= TARGETS["int8_latency_ratio_max"] if dot_product else None,
        )
    return checks


def _markdown(reports, targets, env, settings, extra, seconds, total_seconds):
    header = (
        "| model | size MB | size x | gzip MB | packed MB | acc LiteRT | drop vs float | agree | ms/img | latency x |"
    )
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for r in reports:
        packed = r.extra.get("bit_packed_size_bytes")
        lines.append(
            f"| {r.name} | {r.size_bytes / 1e6:.2f} | {r.size_ratio:.3f} | {r.compressed_size_bytes / 1e6:.2f} | "
            f"{'-' if packed is None else f'{packed / 1e6:.2f}'} | {r.tflite_accuracy:.4f} | "
            f"{r.extra['drop_vs_float_keras']:+.4f} | {r.top1_agreement:.4f} | {r.latency_ms:.2f} | "
            f"{r.latency_ratio:.2f} |"
        )
    flags = ", ".join(env["cpu_flags"]) or "none of the listed"
    lines += [
        "",
        f"Accuracy on the report half ({settings['report_examples']} validation images); float Keras "
        f"{settings['float_keras_accuracy']:.4f} there. `drop vs float` is against that float Keras model, "
        "whatever model the file came from. Latency: median of "
        f"{settings['latency_repeats']} calls per file, every file's calls interleaved, 1 thread, batch 1, on "
        f"{env['cpu']} ({flags}); {os.cpu_count()} CPUs, 1-min load {env['load_average_1min']['start']:g} at the "
        f"start, {env['load_average_1min']['end']:g} at the end; TensorFlow {env['versions']['tensorflow']}, "
        f"ai-edge-litert {env['versions'].get('ai_edge_litert')}.",
    ]
    if "mixed_ptq" in extra:
        lines += ["", "Mixed PTQ search (prefixes of the least sensitive int4-capable layers, on the selection half):"]
        lines += [
            f"- {step['int4_layers']} layers int4: {step['size_ratio']:.3f}x, accuracy {step['accuracy']:.4f}"
            for step in extra["mixed_ptq"]["tried_on_selection"]
        ]
    lines += ["", "Targets:"]
    for name, check in targets.items():
        verdict = {True: "PASS", False: "FAIL", None: "NOT CHECKED"}[check["passed"]]
        details = ", ".join(f"{key} {value}" for key, value in check.items() if key != "passed")
        lines.append(f"- {verdict}: {name} ({details})")
    lines += [
        "",
        "Seconds per step: " + ", ".join(f"{k} {v:g}" for k, v in seconds.items()) + f"; {total_seconds:.0f} s in all.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
