"""Reports on exported models: size, sparsity, accuracy and on-device-style latency.

`measure_export` turns one exported `.tflite` file (and the Keras model it
came from) into a `ModelReport`; `format_table` prints several side by side;
`write_reports` saves them as JSON.

>>> report = measure_export("int8.tflite", model, eval_data, name="int8")   # doctest: +SKIP
>>> print(format_table([float_report, report]))                            # doctest: +SKIP
"""

import dataclasses
import gzip
import os

import numpy as np

from keras_transfer import atomic_files as files
from keras_transfer.deploy import litert
from keras_transfer.deploy.arrays import collect_examples
from keras_transfer.deploy.checks import check_export
from keras_transfer.models.task_io import as_model_inputs
from keras_transfer.version import cpu_flags, cpu_model


@dataclasses.dataclass
class ModelReport:
    """One exported model, measured.

    Attributes:
        name: a label for tables (e.g. `"int8 PTQ"`).
        path: the exported file.
        size_bytes: file size.
        compressed_size_bytes: gzip size, which shows what pruning and
            clustering save (zeros and repeated values compress; the raw
            `.tflite` stores them dense).
        parameters: weights in the Keras model.
        sparsity: fraction of exactly-zero values among the Keras model's
            kernels (weights with two or more dimensions).
        accuracy: the Keras model's accuracy on the evaluation data.
        tflite_accuracy: the exported model's accuracy on the same data.
        accuracy_drop: `accuracy - tflite_accuracy`.
        top1_agreement, max_abs_difference: exported vs Keras outputs.
        num_examples: evaluation examples.
        latency_ms: median LiteRT CPU latency per example at batch size 1.
        latency_threads: interpreter threads used for `latency_ms`.
        size_ratio: `size_bytes` over the reference (float32) export's size.
        latency_ratio: `latency_ms` over the reference export's latency.
        extra: anything else worth keeping (method settings, training time).
    """

    name: str
    path: str
    size_bytes: int
    compressed_size_bytes: int
    parameters: int | None = None
    sparsity: float | None = None
    accuracy: float | None = None
    tflite_accuracy: float | None = None
    accuracy_drop: float | None = None
    top1_agreement: float | None = None
    max_abs_difference: float | None = None
    num_examples: int | None = None
    latency_ms: float | None = None
    latency_threads: int | None = None
    size_ratio: float | None = None
    latency_ratio: float | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    def relative_to(self, reference):
        """Fills `size_ratio` and `latency_ratio` against `reference` (a `ModelReport`)."""
        self.size_ratio = self.size_bytes / reference.size_bytes
        if self.latency_ms is not None and reference.latency_ms:
            self.latency_ratio = self.latency_ms / reference.latency_ms
        return self

    def to_dict(self):
        return dataclasses.asdict(self)


def measure_export(
    path,
    model=None,
    eval_data=None,
    *,
    name=None,
    head=None,
    num_threads=1,
    repeats=50,
    max_examples=None,
):
    """Measures an exported `.tflite` file, against `model` on `eval_data` when given.

    Args:
        path: the `.tflite` file.
        model: the Keras (or tf_keras) model it was exported from.
        eval_data: labelled data for the accuracies: a `tf.data.Dataset` of
            `(x, y)` batches or an `(x, y)` tuple.
        name: the report's label; defaults to the file name.
        head: the model's `Head`, when `model` has none (tf_keras models).
        num_threads: LiteRT threads for the latency.
        repeats: timed calls for the latency (median); 0 leaves `latency_ms`
            unset, for files to be timed side by side afterwards with
            `litert.compare_latency`.
        max_examples: evaluate at most this many examples.

    Returns:
        A `ModelReport`.
    """
    path = os.fspath(path)
    report = ModelReport(
        name=name or os.path.basename(path),
        path=path,
        size_bytes=os.path.getsize(path),
        compressed_size_bytes=compressed_size(path),
    )
    example = None
    if model is not None:
        report.parameters = int(model.count_params())
        report.sparsity = weight_sparsity(model)
    if model is not None and eval_data is not None:
        check = check_export(path, model, eval_data, head=head, max_examples=max_examples)
        report.num_examples = check.num_examples
        report.top1_agreement = check.top1_agreement
        report.max_abs_difference = check.max_abs_difference
        report.accuracy, report.tflite_accuracy = check.accuracy_keras, check.accuracy_exported
        if report.accuracy is not None and report.tflite_accuracy is not None:
            report.accuracy_drop = report.accuracy - report.tflite_accuracy
        example = _first_example(model, eval_data)
    if repeats:
        latency = litert.LiteRTModel(path).measure_latency(example, num_threads=num_threads, repeats=repeats)
        report.latency_ms, report.latency_threads = latency.median_ms, latency.num_threads
        # int8 speed depends on the CPU's instruction sets (VNNI, AMX, dot-product): a latency names them.
        report.extra["latency_cpu"] = {"cpu": cpu_model(), "cpu_flags": cpu_flags()}
    return report


def _first_example(model, data):
    x, _ = collect_examples(as_model_inputs(model, data), max_examples=1)
    return x


def weight_sparsity(model):
    """Fraction of exactly-zero values among `model`'s kernels (weights of rank >= 2)."""
    zeros = total = 0
    for weight in model.weights:
        values = np.asarray(weight)
        if values.ndim >= 2 and np.issubdtype(values.dtype, np.floating):
            zeros += int(np.count_nonzero(values == 0))
            total += values.size
    return zeros / total if total else 0.0


def compressed_size(path):
    """gzip size of a file (level 9), in bytes."""
    with open(path, "rb") as file:
        return len(gzip.compress(file.read(), compresslevel=9))


_COLUMNS = (
    ("model", "name", "{}"),
    ("size MB", "size_bytes", "{:.2f}"),
    ("gzip MB", "compressed_size_bytes", "{:.2f}"),
    ("size x", "size_ratio", "{:.3f}"),
    ("sparsity", "sparsity", "{:.2f}"),
    ("acc keras", "accuracy", "{:.4f}"),
    ("acc tflite", "tflite_accuracy", "{:.4f}"),
    ("drop", "accuracy_drop", "{:+.4f}"),
    ("agree", "top1_agreement", "{:.4f}"),
    ("ms/img", "latency_ms", "{:.2f}"),
    ("latency x", "latency_ratio", "{:.2f}"),
    ("threads", "latency_threads", "{}"),
)


def format_table(reports, *, latency_per="img"):
    """The reports as an aligned text table, one row per model; `latency_per` names what one call takes
    (`"sentence"` for a text model)."""
    rows = [[f"ms/{latency_per}" if field == "latency_ms" else title for title, field, _ in _COLUMNS]]
    for report in reports:
        row = []
        for _, field, style in _COLUMNS:
            value = getattr(report, field)
            if value is None:
                row.append("-")
            elif field.endswith("size_bytes"):
                row.append(style.format(value / 1e6))
            else:
                row.append(style.format(value))
        rows.append(row)
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    lines = [
        "  ".join(
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write_reports(reports, path, **extra):
    """Writes `{"models": [report dicts], **extra}` as JSON, atomically."""
    files.write_json({**extra, "models": [report.to_dict() for report in reports]}, path)
    return path
