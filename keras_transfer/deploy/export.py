"""Exporting models to LiteRT (`.tflite`) and TF SavedModel, checked against Keras.

One call exports and, given data, checks the exported model in a real LiteRT
interpreter (or the loaded SavedModel) against the Keras model:

>>> result = export(model, "model.tflite", quantization="dynamic", check_data=(images, labels))
>>> result.check.top1_agreement
1.0

Every file and folder is written atomically (temporary, then renamed), and
nothing that exists is replaced unless `overwrite=True`. Beside every export
lies a JSON metadata file (class names, inputs, quantization, your
`metadata`): `<path>.json` next to a `.tflite` file (`model.tflite.json`), and
`metadata.json` inside a SavedModel folder. `read_metadata(path)` reads it.
"""

import collections
import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import warnings
from typing import Any, Optional

import keras
import numpy as np
import tensorflow as tf

from keras_transfer import atomic_files as files
from keras_transfer.deploy import litert
FORMATS = ("tflite", "saved_model")
QUANTIZATION_MODES = ("none", "dynamic", "float16", "int8")
IO_DTYPES = ("float32", "int8", "uint8")


# --------------------------------------------------------------------------
# Quantization configs.


@dataclasses.dataclass(frozen=True)
class Quantization:
    """How `export_tflite` quantizes a model; build one with the classmethods.

    - `Quantization.none()`: float32 weights and math.
    - `Quantization.dynamic()`: int8 weights, float activations (about 4x
      smaller; the converter leaves weights under 1024 values in float).
    - `Quantization.float16()`: float16 weights (about 2x smaller).
    - `Quantization.int8(representative_data, num_samples=100, io_dtype="float32")`:
      full-integer weights and activations, calibrated on `num_samples`
      examples drawn across all classes of `representative_data`. With
      `io_dtype="float32"` inputs and outputs stay float, so the model is
      called like the others; `"int8"` or `"uint8"` makes them integers too,
      as integer-only accelerators (Edge TPU, many NPUs) need.

    The strings `"none"`, `"dynamic"` and `"float16"` are accepted wherever
    a `Quantization` is.

    Example:
    >>> Quantization.get("dynamic") == Quantization.dynamic()
    True
    >>> Quantization.float16().get_config()
    {'mode': 'float16'}
    """

    mode: str = "none"
    representative_data: Any = dataclasses.field(default=None, repr=False, compare=False)
    num_samples: int = 100
    seed: int = 0
    io_dtype: str = "float32"

    def __post_init__(self):
        if self.mode not in QUANTIZATION_MODES:
            raise ValueError(
                f"Unknown quantization {self.mode!r}; valid ones are {', '.join(QUANTIZATION_MODES)}."
            )
        if self.mode == "int8" and self.representative_data is None:
            raise ValueError(
                "int8 quantization needs representative_data: "
                "Quantization.int8(dataset, num_samples=100)."
            )
        if self.io_dtype not in IO_DTYPES:
            raise ValueError(f"io_dtype must be one of {', '.join(IO_DTYPES)}, got {self.io_dtype!r}.")
        if self.io_dtype != "float32" and self.mode != "int8":
            raise ValueError("Integer inputs and outputs need full-integer quantization: Quantization.int8(...).")

    @classmethod
    def none(cls):
        return cls("none")

    @classmethod
    def dynamic(cls):
        return cls("dynamic")

    @classmethod
    def float16(cls):
        return cls("float16")

    @classmethod
    def int8(cls, representative_data, num_samples=100, *, seed=0, io_dtype="float32"):
        """Full-integer quantization calibrated on `representative_data`.

        Args:
            representative_data: a `tf.data.Dataset` of `(x, y)` batches, an
                `(x, y)` tuple of arrays, or inputs alone (array or dict).
                With labels, the samples are drawn evenly across classes.
            num_samples: how many examples calibrate the activation ranges.
            seed: seed of the random draw.
            io_dtype: `"float32"`, `"int8"` or `"uint8"` inputs and outputs.
        """
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
        return cls("int8", representative_data, int(num_samples), seed, io_dtype)

    @classmethod
    def get(cls, value):
        """A `Quantization` from itself, a mode name or None (float32)."""
        if value is None:
            return cls.none()
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            if value == "int8":
                raise ValueError(
                    "int8 quantization needs representative data: pass "
                    "Quantization.int8(dataset, num_samples=100), not the string 'int8'."
                )
            return cls(value)
        raise TypeError(f"quantization must be a Quantization or a mode name, not {value!r}.")

    def get_config(self):
        if self.mode == "int8":
            return {"mode": self.mode, "num_samples": self.num_samples, "seed": self.seed,
                    "io_dtype": self.io_dtype}
        return {"mode": self.mode}

    @classmethod
    def from_config(cls, config, representative_data=None):
        return cls(representative_data=representative_data, **config)

    def converter_options(self, input_dtypes):
        """Keyword arguments for Keras' LiteRT exporter (TFLiteConverter attributes).

        Args:
            input_dtypes: `{input name: numpy dtype}` of the exported signature.
        """
        # Builtin ops only: the LiteRT interpreter has no Flex delegate, so a
        # model needing select TF ops must fail here, not later on a device.
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if self.mode == "int8" else tf.lite.OpsSet.TFLITE_BUILTINS]
        options = {"target_spec": {"supported_ops": ops}}
        if self.mode == "none":
            return options
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
        if self.mode == "float16":
            options["target_spec"]["supported_types"] = [tf.float16]
        if self.mode == "int8":
            samples = representative_samples(self.representative_data, self.num_samples, seed=self.seed)
            options["representative_dataset"] = lambda: (
                {name: value.astype(input_dtypes[name])
                 for name, value in litert.named_inputs(sample, list(input_dtypes)).items()}
                for sample in samples
            )
            if self.io_dtype != "float32":
                options["inference_input_type"] = tf.as_dtype(self.io_dtype)
                options["inference_output_type"] = tf.as_dtype(self.io_dtype)
        return options


KERAS_QUANTIZATION_MODES = ("int8", "float8", "int4")


@dataclasses.dataclass
class KerasQuantization:
    """What Keras' own `model.quantize(mode)` did to a copy of a model."""

    mode: str
    quantized_layers: list
    skipped_layers: list
    quantized_parameter_fraction: float

    def __str__(self):
        return (f"Keras {self.mode} quantization: {len(self.quantized_layers)} layers quantized "
                f"({self.quantized_parameter_fraction:.1%} of the parameters), "
                f"{len(self.skipped_layers)} layers with weights left in float "
                f"({', '.join(self.skipped_layers[:5])}{' ...' if len(self.skipped_layers) > 5 else ''}).")


def keras_quantize(model, mode="int8"):
    """A copy of `model` quantized by Keras 3 (`model.quantize(mode)`), and what it covered.

    Keras quantizes the weights of Dense, EinsumDense and Embedding layers
    (e.g. a transformer's projections) and leaves Conv layers in float, so
    this suits Dense-heavy models such as text classifiers; for a CNN use
    TFLite `Quantization.int8`. The copy runs and saves in Keras and exports
    as a SavedModel; TFLite's builtin ops cannot run its int8 matmuls, so
    `export_tflite` refuses it (use `quantization="dynamic"` for int8
    weights in TFLite).

    Args:
        model: a built Keras 3 model; it is not changed.
        mode: `"int8"`, `"float8"` or `"int4"`.

    Returns:
        `(quantized copy, KerasQuantization)`.
    """
    if mode not in KERAS_QUANTIZATION_MODES:
        raise ValueError(f"Keras quantizes to {', '.join(KERAS_QUANTIZATION_MODES)}, not {mode!r}.")
    folder = tempfile.mkdtemp(prefix="keras-transfer-quantize-")
    try:
        copy_path = os.path.join(folder, "copy.keras")
        model.save(copy_path)
        copy = keras.saving.load_model(copy_path, compile=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have a `quantize` method.*")
        copy.quantize(mode)
    quantized, skipped, quantized_parameters = [], [], 0
    for layer in _leaf_layers(copy):
        if not layer.weights:
            continue
        if getattr(layer, "quantization_mode", None):
            quantized.append(layer.name)
            quantized_parameters += sum(int(np.prod(w.shape)) for w in layer.weights)
        else:
            skipped.append(layer.name)
    if not quantized:
        raise ValueError(
            f"Keras quantized none of the model's layers ({mode} covers Dense, EinsumDense and "
            "Embedding): use TFLite quantization instead, e.g. Quantization.int8(train_data)."
        )
    fraction = quantized_parameters / max(1, copy.count_params())
    return copy, KerasQuantization(mode, quantized, skipped, min(1.0, fraction))


def _leaf_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False) if not layer._layers]


def _keras_quantized_layers(model):
    return [layer.name for layer in _leaf_layers(model) if getattr(layer, "quantization_mode", None)]


def representative_samples(data, num_samples=100, *, seed=0):
    """`num_samples` single examples drawn evenly across classes, shuffled.

    Reads all of `data` once, keeping a random reservoir of at most
    `num_samples` examples per class, then takes classes in turn, so that
    calibration sees every class rather than the first batches.

    Args:
        data: a `tf.data.Dataset` of `(x, y)` or `x` batches, an `(x, y)`
            tuple of arrays, or inputs alone (array or dict of arrays).
        num_samples: how many examples to return.
        seed: seed of the random draw.

    Returns:
        A list of inputs with a batch dimension of 1 (arrays or dicts).

    Example:
    >>> x, y = np.arange(10.0)[:, None], np.array([0] * 8 + [1] * 2)
    >>> sorted(int(y[int(s[0, 0])]) for s in representative_samples((x, y), 4))
    [0, 0, 1, 1]
    """
    rng = np.random.default_rng(seed)
    reservoirs, seen = {}, collections.Counter()
    for x, y in _batches(data):
        for row in range(litert.num_rows(x)):
            key = _class_key(None if y is None else y[row])
            seen[key] += 1
            reservoir = reservoirs.setdefault(key, [])
            example = litert.take_rows(x, slice(row, row + 1))
            if len(reservoir) < num_samples:
                reservoir.append(example)
            elif (slot := rng.integers(seen[key])) < num_samples:
                reservoir[slot] = example
    for reservoir in reservoirs.values():
        rng.shuffle(reservoir)
    picked, turn = [], 0
    while len(picked) < num_samples and any(turn < len(r) for r in reservoirs.values()):
        picked += [r[turn] for r in reservoirs.values() if turn < len(r)]
        turn += 1
    picked = picked[:num_samples]
    rng.shuffle(picked)
    return picked


def _class_key(label):
    if label is None:
        return None
    label = np.asarray(label)
    if label.size > 1:  # one-hot
        return int(label.argmax())
    value = float(label.reshape(()))
    return int(value) if value.is_integer() else None  # regression targets: one pool


# --------------------------------------------------------------------------
# Exporting.


def export_tflite(
    model,
    path,
    *,
    quantization="none",
    input_signature=None,
    sequence_length=None,
    metadata=None,
    overwrite=False,
):
    """Exports `model` to a LiteRT `.tflite` file with a dynamic batch size.

    Inputs keep their Keras names (`token_ids`, `padding_mask`, ...) in the
    file's `serving_default` signature; the output is `output_0`.

    Args:
        model: a built Keras 3 model (functional, or with `input_signature`).
        path: the `.tflite` file to write.
        quantization: a `Quantization` or `"none"`, `"dynamic"`, `"float16"`.
        input_signature: shapes and dtypes of the inputs: a `keras.InputSpec`
            or `tf.TensorSpec`, or a dict (or list) of them. Defaults to the
            model's inputs with a dynamic batch size.
        sequence_length: fills the non-batch dimensions that are None, e.g.
            the length of text inputs `(None, None)`; LiteRT needs it fixed.
        metadata: a JSON-serializable dict saved in `<path>.json`, with the
            model's `class_names`, inputs and quantization added.
        overwrite: replace an existing file; otherwise an existing file
            (or metadata file) is an error and is left untouched.

    Returns:
        The path written.

    Example:
    >>> export_tflite(model, "model_fp16.tflite", quantization="float16")
    'model_fp16.tflite'
    """
    path = os.fspath(path)
    if not path.endswith(".tflite"):
        raise ValueError(f"A LiteRT file name must end with '.tflite', got {path!r}.")
    quantization = Quantization.get(quantization)
    keras_quantized = _keras_quantized_layers(model)
    if keras_quantized:
        raise ValueError(
            f"Layers {keras_quantized[:5]} were quantized by Keras (model.quantize), whose integer "
            "matmuls TFLite's builtin ops cannot run: export the float model with "
            "quantization='dynamic' (int8 weights) or Quantization.int8(data), or export this one "
            "with format='saved_model'."
        )
    sequence_length = sequence_length or getattr(model, "sequence_length", None)
    signature = export_signature(model, input_signature, sequence_length, fixed_shapes=True)
    info = export_metadata(model, "tflite", path, signature, quantization, metadata)
    refuse_to_overwrite([path, metadata_path(path), assets_path(path)], overwrite)
    options = quantization.converter_options(
        {spec.name: spec.dtype.as_numpy_dtype for spec in tf.nest.flatten(signature)}
    )
    # Keras' own LiteRT path (ExportArchive -> SavedModel -> TFLiteConverter),
    # with named tf.TensorSpecs: it keeps dict inputs and their names in the
    # signature, keeps the batch dimension dynamic, and takes the converter's
    # quantization options as keyword arguments.
    with files.atomic_path(path) as temporary, warnings.catch_warnings():
        # TF's own int8 calibrator still runs the deprecated tf.lite.Interpreter.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        model.export(temporary, format="litert", input_signature=signature, verbose=False, **options)
        info.update(_export_assets(model, assets_path(path)))
        files.write_json(info, metadata_path(path))
    return path


def export_saved_model(
    model, path, *, input_signature=None, sequence_length=None, metadata=None, overwrite=False
):
    """Exports `model` as a TF SavedModel folder with a `serve` signature.

    The folder is written beside `path` under a temporary name and renamed
    into place, with `metadata.json` inside. Load it with
    `tf.saved_model.load(path).signatures["serve"]` (keyword inputs named
    like the Keras inputs) or `keras.layers.TFSMLayer(path)`.

    Args:
        model: a built Keras 3 model.
        path: the folder to write.
        input_signature: as for `export_tflite`; None dimensions stay dynamic.
        sequence_length: fills the non-batch dimensions that are None.
        metadata: a JSON-serializable dict saved in `metadata.json`.
        overwrite: replace an existing folder; otherwise it is an error.

    Returns:
        The path written.

    Example:
    >>> export_saved_model(model, "saved_model")
    'saved_model'
    >>> read_metadata("saved_model")["format"]
    'saved_model'
    """
    path = os.fspath(path)
    signature = export_signature(model, input_signature, sequence_length, fixed_shapes=False)
    info = export_metadata(model, "saved_model", path, signature, Quantization.none(), metadata)
    refuse_to_overwrite([path], overwrite)
    with _atomic_folder(path) as temporary:
        model.export(temporary, format="tf_saved_model", input_signature=signature, verbose=False)
        info.update(_export_assets(model, os.path.join(temporary, ASSETS_FOLDER)))
        files.write_json(info, os.path.join(temporary, "metadata.json"))
    return path


@dataclasses.dataclass
class ExportCheck:
    """How closely an exported model reproduces the Keras model.

    Attributes:
        num_examples: rows compared.
        max_abs_difference: largest absolute difference of any output value.
        top1_agreement: fraction of rows where both models predict the same
            class: argmax for several outputs, the 0.5 threshold (0 for
            logits) for one sigmoid output; None for regression and
            multilabel outputs, where `max_abs_difference` is the measure.
        accuracy_keras, accuracy_exported: accuracies on the labels, when
            labels were given and the outputs are classes.
    """

    num_examples: int
    max_abs_difference: float
    top1_agreement: Optional[float] = None
    accuracy_keras: Optional[float] = None
    accuracy_exported: Optional[float] = None


@dataclasses.dataclass
class ExportResult:
    """What `export` wrote: the path, its format and size, and the check."""

    path: str
    format: str
    quantization: dict
    size_bytes: int
    metadata_path: str
    check: Optional[ExportCheck] = None


def export(
    model,
    path,
    *,
    format="tflite",
    quantization="none",
    check_data=None,
    metadata=None,
    overwrite=False,
    input_signature=None,
    sequence_length=None,
    max_check_examples=None,
):
    """Exports `model` and, given `check_data`, checks it against Keras.

    Args:
        model: a built Keras 3 model.
        path: a `.tflite` file or a SavedModel folder.
        format: `"tflite"` or `"saved_model"`.
        quantization: a `Quantization` or mode name (TFLite only).
        check_data: inputs to compare the models on: an array, a dict of
            arrays, an `(x, y)` tuple or a batched `tf.data.Dataset`.
        metadata: a JSON-serializable dict saved beside the model.
        overwrite: replace what exists at `path`.
        input_signature, sequence_length: see `export_tflite`.
        max_check_examples: compare at most this many examples.

    Returns:
        An `ExportResult`.

    Example:
    >>> result = export(model, "checked.tflite", quantization="float16", check_data=(images, labels))
    >>> result.check.top1_agreement, result.check.accuracy_exported
    (1.0, 1.0)
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}; valid ones are {', '.join(FORMATS)}.")
    quantization = Quantization.get(quantization)
    options = dict(input_signature=input_signature, sequence_length=sequence_length, metadata=metadata,
                   overwrite=overwrite)
    if format == "tflite":
        export_tflite(model, path, quantization=quantization, **options)
    else:
        if quantization.mode != "none":
            raise ValueError("Quantization applies to TFLite exports; use format='tflite'.")
        export_saved_model(model, path, **options)
    check = None
    if check_data is not None:
        check = check_export(path, model, check_data, max_examples=max_check_examples)
    return ExportResult(
        path=os.fspath(path),
        format=format,
        quantization=quantization.get_config(),
        size_bytes=_size_bytes(path),
        metadata_path=metadata_path(path),
        check=check,
    )


# --------------------------------------------------------------------------
# Choosing the smallest export within an accuracy budget.

BUDGET_CANDIDATES = ("int8", "dynamic", "float16", "none")


@dataclasses.dataclass
class BudgetCandidate:
    """One quantization tried by `export_within_budget`, and how it did."""

    quantization: str
    size_bytes: Optional[int] = None
    accuracy_keras: Optional[float] = None
    accuracy_exported: Optional[float] = None
    accuracy_drop: Optional[float] = None
    within_budget: bool = False
    reason: str = ""


@dataclasses.dataclass
class BudgetChoice:
    """What `export_within_budget` wrote, and why."""

    result: ExportResult
    chosen: str
    max_accuracy_drop: float
    candidates: list

    def explanation(self):
        """One line per candidate, then the choice."""
        lines = [f"{c.quantization:>8}: {c.reason}" for c in self.candidates]
        lines.append(f"chose {self.chosen}: the smallest file within an accuracy drop of "
                     f"{self.max_accuracy_drop:.4f}.")
        return "\n".join(lines)


def export_within_budget(
    model,
    path,
    eval_data,
    *,
    max_accuracy_drop=0.005,
    representative_data=None,
    num_samples=100,
    candidates=BUDGET_CANDIDATES,
    metadata=None,
    overwrite=False,
    sequence_length=None,
):
    """Exports the smallest `.tflite` whose accuracy on `eval_data` stays within budget.

    Every candidate is exported beside `path`, run in a real LiteRT
    interpreter on all of `eval_data` and compared with the Keras model's
    accuracy on the same examples; of those within `max_accuracy_drop`, the
    smallest file is moved to `path`. float32 (`"none"`) always qualifies
    against itself, so there is always a choice when it is a candidate.

    Args:
        model: a built Keras 3 classifier.
        path: the `.tflite` file to write.
        eval_data: labelled data: a `tf.data.Dataset` of `(x, y)` or `(x, y)` arrays.
        max_accuracy_drop: largest allowed `keras accuracy - exported accuracy`
            (0.005 is half a point).
        representative_data: calibration data for int8 (defaults to `eval_data`;
            pass training data to keep evaluation honest).
        num_samples: int8 calibration examples.
        candidates: quantization modes to try.

    Returns:
        A `BudgetChoice`; `.explanation()` says what each candidate scored.
    """
    path = os.fspath(path)
    if not path.endswith(".tflite"):
        raise ValueError(f"A LiteRT file name must end with '.tflite', got {path!r}.")
    if not 0 <= max_accuracy_drop < 1:
        raise ValueError(f"max_accuracy_drop must be in [0, 1), got {max_accuracy_drop}.")
    unknown = [mode for mode in candidates if mode not in QUANTIZATION_MODES]
    if unknown or not candidates:
        raise ValueError(f"Unknown candidates {unknown}; choose from {', '.join(QUANTIZATION_MODES)}.")
    refuse_to_overwrite([path, metadata_path(path), assets_path(path)], overwrite)
    calibration = eval_data if representative_data is None else representative_data
    folder = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-budget-")
    try:
        tried, results = [], {}
        for mode in candidates:
            quantization = Quantization.int8(calibration, num_samples) if mode == "int8" else mode
            candidate_path = os.path.join(folder, mode, os.path.basename(path))
            result = export(model, candidate_path, quantization=quantization, check_data=eval_data,
                            metadata=metadata, sequence_length=sequence_length)
            check = result.check
            if check.accuracy_exported is None:
                raise ValueError("export_within_budget needs labelled classification data as eval_data.")
            drop = check.accuracy_keras - check.accuracy_exported
            within = drop <= max_accuracy_drop + 1e-9
            tried.append(BudgetCandidate(
                mode, result.size_bytes, check.accuracy_keras, check.accuracy_exported, drop, within,
                f"{result.size_bytes / 1e6:.2f} MB, accuracy {check.accuracy_exported:.4f} vs Keras "
                f"{check.accuracy_keras:.4f} (drop {drop:+.4f}: {'within' if within else 'over'} budget)",
            ))
            results[mode] = result
        within = [candidate for candidate in tried if candidate.within_budget]
        if not within:
            raise ValueError(
                "No export stays within the accuracy budget:\n"
                + "\n".join(f"  {c.quantization}: {c.reason}" for c in tried)
                + "\nRaise max_accuracy_drop or add 'none' to the candidates."
            )
        best = min(within, key=lambda candidate: candidate.size_bytes)
        chosen = results[best.quantization]
        for source, target in ((chosen.path, path), (chosen.metadata_path, metadata_path(path)),
                               (assets_path(chosen.path), assets_path(path))):
            if os.path.lexists(source):
                _replace(source, target)
        chosen.path, chosen.metadata_path = path, metadata_path(path)
        return BudgetChoice(chosen, best.quantization, max_accuracy_drop, tried)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------
# Checking.


def check_export(
    path_or_interpreter, model, inputs, *, labels=None, max_examples=None, batch_size=32, head=None
):
    """Runs the exported model and the Keras model on `inputs` and compares them.

    A `.tflite` file runs in a real LiteRT interpreter (`litert.LiteRTModel`),
    integer inputs and outputs converted through their scales; a SavedModel folder is loaded
    with `tf.saved_model.load` and called through its `serve` signature.
    Dict inputs are matched to the exported inputs by name.

    Args:
        path_or_interpreter: a `.tflite` path, a LiteRT `Interpreter`, or a
            SavedModel folder.
        model: the Keras model that was exported (single output).
        inputs: an array, a dict of arrays, an `(x, y)` tuple, or a batched
            `tf.data.Dataset` of `(x, y)` (labels then come from it) or `x`.
        labels: class labels (ints or one-hot), for the accuracies.
        max_examples: compare at most this many examples.
        batch_size: rows per call of either model.
        head: the `Head` whose outputs these are, when `model` has no
            `head` attribute (e.g. a tf_keras model made by `optimize`).

    Returns:
        An `ExportCheck`.

    Example:
    >>> path = export_tflite(model, "float.tflite")
    >>> check = check_export(path, model, images, labels=labels)
    >>> check.top1_agreement, check.accuracy_exported, check.max_abs_difference < 1e-5
    (1.0, 1.0, True)
    """
    # keras_transfer tasks turn raw inputs (e.g. sentences) into what the graph takes.
    inputs = model.model_inputs(inputs) if hasattr(model, "model_inputs") else inputs
    x, data_labels = collect_examples(inputs, max_examples)
    labels = data_labels if labels is None else np.asarray(labels)[: litert.num_rows(x)]
    run = _runner(path_or_interpreter)
    keras_outputs = _as_2d(model.predict(x, batch_size=batch_size, verbose=0))
    exported_outputs = _as_2d(np.concatenate([
        run(litert.take_rows(x, slice(start, start + batch_size)))
        for start in range(0, litert.num_rows(x), batch_size)
    ]))
    decide = _decision(model, keras_outputs.shape[-1], head)
    check = ExportCheck(
        num_examples=len(keras_outputs),
        max_abs_difference=float(np.max(np.abs(keras_outputs - exported_outputs), initial=0.0)),
    )
    if decide is not None:
        keras_classes, exported_classes = decide(keras_outputs), decide(exported_outputs)
        check.top1_agreement = float(np.mean(keras_classes == exported_classes))
        if labels is not None:
            labels = labels.argmax(-1) if labels.ndim > 1 and labels.shape[-1] > 1 else labels.reshape(-1)
            check.accuracy_keras = float(np.mean(keras_classes == labels))
            check.accuracy_exported = float(np.mean(exported_classes == labels))
    return check


def _decision(model, num_outputs, head=None):
    """Turns outputs into class indices, or None when they are not classes."""
    head = head or getattr(model, "head", None)
    task = getattr(head, "task", None)
    if task in ("regression", "multilabel"):
        return None
    if num_outputs > 1:
        return lambda outputs: outputs.argmax(-1)
    from_logits = getattr(head, "from_logits", False)
    if task != "binary":  # a plain model: a sigmoid output layer means binary
        activation = getattr(model.layers[-1], "activation", None)
        if activation is not keras.activations.sigmoid:
            return None
    threshold = 0.0 if from_logits else 0.5
    return lambda outputs: (outputs[:, 0] >= threshold).astype(int)


def _runner(path_or_interpreter):
    """A function from an input batch to the exported model's float output array."""
    if isinstance(path_or_interpreter, (str, os.PathLike)) and os.path.isdir(path_or_interpreter):
        return _saved_model_runner(os.fspath(path_or_interpreter))
    return litert.LiteRTModel(path_or_interpreter).predict_on_batch


def _saved_model_runner(path):
    loaded = tf.saved_model.load(path)
    signatures = loaded.signatures
    serve = signatures["serve"] if "serve" in signatures else signatures["serving_default"]
    specs = serve.structured_input_signature[1]

    def run(x):
        named = litert.named_inputs(x, list(specs))
        outputs = serve(**{name: tf.constant(value, specs[name].dtype) for name, value in named.items()})
        if len(outputs) != 1:
            raise ValueError(f"check_export compares single-output models; this one has {sorted(outputs)}.")
        (output,) = outputs.values()
        return np.asarray(output)

    return run


# --------------------------------------------------------------------------
# Input signatures.


def export_signature(model, input_signature=None, sequence_length=None, *, fixed_shapes=True):
    """The `[inputs]` signature given to Keras' exporters, as named `tf.TensorSpec`s.

    Naming every spec after its input (the dict key, or the Keras input's
    name) is what keeps those names in the exported signatures.

    Args:
        model: the Keras model.
        input_signature: None (the model's inputs), a spec, or a dict or
            list of `keras.InputSpec` / `tf.TensorSpec`.
        sequence_length: fills the non-batch dimensions that are None.
        fixed_shapes: require every non-batch dimension to be known.
    """
    inputs = _model_inputs(model, required=input_signature is None)
    structure = inputs if input_signature is None else input_signature
    if isinstance(structure, (list, tuple)) and len(structure) == 1 and not isinstance(inputs, (list, tuple)):
        structure = structure[0]  # Keras' style: a list of positional arguments
    model_inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]

    def spec(value, name, from_model):
        shape = list(value.shape)
        if from_model:
            shape[0] = None  # a dynamic batch size
        shape[1:] = [sequence_length if size is None else size for size in shape[1:]]
        if fixed_shapes and None in shape[1:]:
            raise ValueError(
                f"Input {name!r} has shape {tuple(shape)}, but LiteRT needs every size but the "
                "batch fixed: pass sequence_length=... (text models) or an input_signature "
                "with fixed shapes."
            )
        return tf.TensorSpec(shape, tf.as_dtype(keras.backend.standardize_dtype(value.dtype)), name=name)

    from_model = input_signature is None
    if isinstance(structure, dict):
        return [{name: spec(value, name, from_model) for name, value in structure.items()}]
    if isinstance(structure, (list, tuple)):
        return [[spec(value, _name(value, model_inputs, i), from_model) for i, value in enumerate(structure)]]
    return [spec(structure, _name(structure, model_inputs, 0), from_model)]


def _model_inputs(model, required=True):
    """The model's inputs: a dict, a list or one tensor; None if unknown and not required."""
    try:
        return model.input  # the nested structure of functional models
    except (AttributeError, ValueError):
        pass
    try:
        inputs = model.inputs  # a Sequential has only this list
    except AttributeError:
        inputs = None
    if inputs:
        return inputs[0] if len(inputs) == 1 else list(inputs)
    if required:
        raise ValueError("The model has no known inputs (a subclassed model?): pass input_signature.")
    return None


def _name(spec, model_inputs, index):
    """The spec's own name, else the Keras input's, else `input_<index>`."""
    model_input = model_inputs[index] if index < len(model_inputs) else None
    return getattr(spec, "name", None) or getattr(model_input, "name", None) or f"input_{index}"


# --------------------------------------------------------------------------
# Data: arrays, dicts, (x, y) tuples and datasets, all as numpy batches.


def _batches(data):
    """Yields `(x, y or None)` numpy batches from any accepted form of data."""
    if isinstance(data, tf.data.Dataset):
        for batch in data.as_numpy_iterator():
            if isinstance(batch, tuple):
                yield batch[0], (np.asarray(batch[1]) if len(batch) > 1 else None)
            else:
                yield batch, None
    elif isinstance(data, tuple) and len(data) == 2:
        yield _as_numpy(data[0]), np.asarray(data[1])
    else:
        yield _as_numpy(data), None


def collect_examples(data, max_examples=None):
    """All of `data` (up to `max_examples` rows) as one `(x, y or None)`."""
    xs, ys, count = [], [], 0
    for x, y in _batches(data):
        xs.append(x)
        ys.append(y)
        count += litert.num_rows(x)
        if max_examples is not None and count >= max_examples:
            break
    if not xs:
        raise ValueError("No examples to check the export on.")
    if isinstance(xs[0], dict):
        x = {name: np.concatenate([batch[name] for batch in xs]) for name in xs[0]}
    else:
        x = np.concatenate(xs)
    y = None if any(batch is None for batch in ys) else np.concatenate(ys)
    if max_examples is not None:
        x = litert.take_rows(x, slice(0, max_examples))
        y = None if y is None else y[:max_examples]
    return x, y


def _as_numpy(x):
    if isinstance(x, dict):
        return {name: np.asarray(value) for name, value in x.items()}
    return np.asarray(x)


def _as_2d(outputs):
    outputs = np.asarray(outputs, dtype="float32")
    return outputs.reshape(len(outputs), -1)


# --------------------------------------------------------------------------
# Files: metadata, overwriting, atomic folders.


def metadata_path(path):
    """Where the metadata of the export at `path` lies: `<path>.json`, or `<folder>/metadata.json`."""
    path = os.fspath(path)
    if path.endswith(".tflite"):
        return path + ".json"
    return os.path.join(path, "metadata.json")


ASSETS_FOLDER = "preprocessor"


def assets_path(path):
    """Where a task's preprocessing (e.g. a text model's tokenizer) is saved beside its export."""
    path = os.fspath(path)
    if path.endswith(".tflite"):
        return path[: -len(".tflite")] + "_" + ASSETS_FOLDER
    return os.path.join(path, ASSETS_FOLDER)


def _export_assets(model, folder):
    """Lets a keras_transfer task save what its export needs; returns metadata entries."""
    write = getattr(model, "export_assets", None)
    if write is None:
        return {}
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(dir=parent, prefix=".tmp-")
    try:
        entries = write(temporary)
        if not os.listdir(temporary):
            return entries
        _replace(temporary, folder)
    finally:
        if os.path.exists(temporary):
            shutil.rmtree(temporary)
    return {**entries, "preprocessor": os.path.basename(folder)}


def read_metadata(path):
    """The metadata dict saved beside the export at `path`."""
    with open(metadata_path(path)) as file:
        return json.load(file)


def export_metadata(model, format, path, signature, quantization, extra):
    info = {
        "format": format,
        "model": os.path.basename(os.path.normpath(path)),
        "quantization": quantization.get_config(),
        "inputs": [
            {"name": spec.name, "shape": list(spec.shape.as_list()), "dtype": spec.dtype.name}
            for spec in tf.nest.flatten(signature)
        ],
        "output": "output_0",
    }
    class_names = getattr(model, "class_names", None)
    if class_names is not None:
        info["class_names"] = [str(name) for name in class_names]
    head = getattr(model, "head", None)
    if hasattr(head, "get_config"):  # lets evaluation read the task of a bare .tflite file
        info["head"] = head.get_config()
    info.update(extra or {})
    try:
        json.dumps(info)
    except TypeError as error:  # fail before writing anything
        raise TypeError(f"metadata must be JSON-serializable: {error}") from error
    return info


def refuse_to_overwrite(paths, overwrite):
    existing = [path for path in paths if os.path.lexists(path)]
    if existing and not overwrite:
        raise FileExistsError(
            f"{existing[0]!r} already exists: pass overwrite=True to replace it."
        )


@contextlib.contextmanager
def _atomic_folder(path):
    """Yields an empty temporary folder beside `path`; moves it into place on success."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(dir=parent, prefix=".tmp-")
    try:
        yield temporary
        _replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            shutil.rmtree(temporary)


def _replace(new, path):
    """Moves `new` to `path`; an existing `path` is moved aside first, then deleted."""
    if not os.path.lexists(path):
        os.replace(new, path)
        return
    aside = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".old-")
    old = os.path.join(aside, "old")
    os.replace(path, old)
    try:
        os.replace(new, path)
    except OSError:
        os.replace(old, path)
        raise
    finally:
        shutil.rmtree(aside)


def _size_bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, names in os.walk(path)
        for name in names
    )
