"""Quantization configs: how an export quantizes a model, and Keras' own `model.quantize`.

`Quantization` is what `keras_transfer.deploy.export.export` takes; its
int8 calibration examples come from `representative_samples`, drawn across
all classes. `keras_quantize` is the other route: a copy quantized by Keras
itself, for Dense-heavy models exported as SavedModel.
"""

import collections
import contextlib
import dataclasses
import os
import tempfile
import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.deploy import litert
from keras_transfer.deploy.arrays import iterate_batches

# The TFLite converter's modes (the "keras" engine) and the LiteRT Quantizer's recipes, by their names
# there (the "litert_quantizer" engine): weights int8/int4, per channel; activations float (weight-only:
# dequantized before each op; dynamic: quantized on the fly) or calibrated int8/int16 (static).
CONVERTER_MODES = ("none", "dynamic", "float16", "int8")
QUANTIZER_RECIPES = (
    "weight_only_wi8_afp32",
    "weight_only_wi4_afp32",
    "dynamic_wi8_afp32",
    "dynamic_wi4_afp32",
    "static_wi8_ai8",
    "static_wi8_ai16",
)
QUANTIZATION_MODES = (*CONVERTER_MODES, *QUANTIZER_RECIPES)
# Weight-only int8, with int4 on chosen layers (`Quantization.mixed`, `deploy.mixed_precision`): made by a
# search, not named on the command line.
MIXED_MODE = "weight_only_mixed_wi4_wi8"
# Modes whose activation ranges are calibrated on representative data.
CALIBRATED_MODES = ("int8", "static_wi8_ai8", "static_wi8_ai16")
IO_DTYPES = ("float32", "int8", "uint8")
# What a masked attention score becomes in a calibrated export (Keras writes -1e9): below any real score
# (all-MiniLM-L6-v2's span -63 to 46), so masked tokens still get no weight, and near enough that the range
# calibration measures, which the masked scores share with the real ones, stays about the real ones' own.
CALIBRATION_MASK_VALUE = -100.0


@dataclasses.dataclass(frozen=True)
class Quantization:
    """How `export` quantizes a model for LiteRT; build one with the classmethods.

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
    - `Quantization.litert(recipe, representative_data=None, num_samples=100)`:
      a LiteRT Quantizer recipe (`QUANTIZER_RECIPES`: int8 or int4 weights,
      weight-only or dynamic; static int8 weights with int8 or int16
      activations, calibrated like int8), written by the `"litert_quantizer"`
      export engine.

    The strings `"none"`, `"dynamic"`, `"float16"` and the uncalibrated
    recipes are accepted wherever a `Quantization` is.

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
    # The op scopes (`litert_quantizer.quantizable_layers`) whose weights MIXED_MODE stores in int4.
    int4_layers: tuple = ()
    # How many examples int8 calibration really drew (fewer than num_samples when the data is smaller).
    calibration_examples: int | None = dataclasses.field(default=None, init=False, compare=False)

    def __post_init__(self):
        if self.mode not in (*QUANTIZATION_MODES, MIXED_MODE):
            raise ValueError(f"Unknown quantization {self.mode!r}; valid ones are {', '.join(QUANTIZATION_MODES)}.")
        if self.mode in CALIBRATED_MODES and self.representative_data is None:
            make = "int8(" if self.mode == "int8" else f"litert({self.mode!r}, "
            raise ValueError(
                f"{self.mode} quantization needs representative_data: Quantization.{make}dataset, num_samples=100)."
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
    def litert(cls, recipe, representative_data=None, num_samples=100, *, seed=0):
        """A LiteRT Quantizer recipe (one of `QUANTIZER_RECIPES`); the static ones calibrate on
        `num_samples` examples of `representative_data`, drawn across all classes as for int8."""
        if recipe not in QUANTIZER_RECIPES:
            raise ValueError(
                f"Unknown LiteRT Quantizer recipe {recipe!r}; valid ones are {', '.join(QUANTIZER_RECIPES)}."
            )
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
        return cls(recipe, representative_data, int(num_samples), seed)

    @classmethod
    def mixed(cls, int4_layers):
        """Weight-only int8, and int4 for the layers named (their op scopes, `quantizable_layers`)."""
        return cls(MIXED_MODE, int4_layers=tuple(int4_layers))

    @classmethod
    def calibrated(cls, mode, representative_data, num_samples=100, *, seed=0):
        """The `Quantization` of any mode name, calibrated on `representative_data` where the mode needs it."""
        if mode == "int8":
            return cls.int8(representative_data, num_samples, seed=seed)
        if mode in QUANTIZER_RECIPES:
            data = representative_data if mode in CALIBRATED_MODES else None
            return cls.litert(mode, data, num_samples, seed=seed)
        return cls.get(mode)

    @property
    def engine(self):
        """The export engine that writes this quantization: `"litert_quantizer"` for its recipes, else None
        (the model's own: the TFLite converter)."""
        return "litert_quantizer" if self.mode in (*QUANTIZER_RECIPES, MIXED_MODE) else None

    def calibration_samples(self):
        """The examples that calibrate the activation ranges, drawn across all classes (and counted)."""
        samples = representative_samples(self.representative_data, self.num_samples, seed=self.seed)
        # A record of this conversion, not part of the (frozen) value: compare=False.
        object.__setattr__(self, "calibration_examples", len(samples))
        return samples

    @classmethod
    def get(cls, value):
        """A `Quantization` from itself, a mode name or None (float32)."""
        if value is None:
            return cls.none()
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            if value in CALIBRATED_MODES:
                make = "int8(" if value == "int8" else f"litert({value!r}, "
                raise ValueError(
                    f"{value} quantization needs representative data: pass "
                    f"Quantization.{make}dataset, num_samples=100), not the string {value!r}."
                )
            return cls(value)
        raise TypeError(f"quantization must be a Quantization or a mode name, not {value!r}.")

    def get_config(self):
        if self.mode in CALIBRATED_MODES:
            config = {"mode": self.mode, "num_samples": self.num_samples, "seed": self.seed, "io_dtype": self.io_dtype}
            if self.calibration_examples is not None:
                config["calibration_examples"] = self.calibration_examples
            return config
        if self.mode == MIXED_MODE:
            return {"mode": self.mode, "int4_layers": list(self.int4_layers)}
        return {"mode": self.mode}

    @classmethod
    def from_config(cls, config, representative_data=None):
        config = {key: value for key, value in config.items() if key != "calibration_examples"}
        return cls(representative_data=representative_data, **config)

    def converter_options(self, input_dtypes):
        """Keyword arguments for Keras' LiteRT exporter (TFLiteConverter attributes).

        Args:
            input_dtypes: `{input name: numpy dtype}` of the exported signature.
        """
        if self.mode not in CONVERTER_MODES:
            raise ValueError(f"{self.mode} is a LiteRT Quantizer recipe: the TFLite converter does not write it.")
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
            samples = self.calibration_samples()
            options["representative_dataset"] = lambda: (
                {
                    name: value.astype(input_dtypes[name])
                    for name, value in litert.named_inputs(sample, list(input_dtypes)).items()
                }
                for sample in samples
            )
            if self.io_dtype != "float32":
                options["inference_input_type"] = tf.as_dtype(self.io_dtype)
                options["inference_output_type"] = tf.as_dtype(self.io_dtype)
        return options


@contextlib.contextmanager
def bounded_attention_masks(quantization):
    """Within it, a model traced for a calibrated `quantization` masks attention scores with
    `CALIBRATION_MASK_VALUE` instead of Keras' -1e9.

    The masked and the real scores pass through one tensor whose range calibration measures, so -1e9 sets
    a step of about 4e6 per int8 value (3e4 per int16 value) and every real score rounds to zero: attention
    turns uniform. all-MiniLM-L6-v2 on SST-2 fell from 0.83 to 0.65 accuracy in int8 and to 0.76 with int16
    activations (0.77 and 0.82 with the bounded mask); a tiny BERT to chance. Models without masked softmax
    (images) trace the same graph either way.
    """
    from keras.src.layers.activations import softmax

    original = getattr(softmax, "_large_negative_number", None)
    if quantization.mode not in CALIBRATED_MODES or original is None:
        yield
        return
    softmax._large_negative_number = lambda dtype: CALIBRATION_MASK_VALUE
    try:
        yield
    finally:
        softmax._large_negative_number = original


KERAS_QUANTIZATION_MODES = ("int8", "float8", "int4")


@dataclasses.dataclass
class KerasQuantization:
    """What Keras' own `model.quantize(mode)` did to a copy of a model."""

    mode: str
    quantized_layers: list
    skipped_layers: list
    quantized_parameter_fraction: float

    def __str__(self):
        return (
            f"Keras {self.mode} quantization: {len(self.quantized_layers)} layers quantized "
            f"({self.quantized_parameter_fraction:.1%} of the parameters), "
            f"{len(self.skipped_layers)} layers with weights left in float "
            f"({', '.join(self.skipped_layers[:5])}{' ...' if len(self.skipped_layers) > 5 else ''})."
        )


def keras_quantize(model, mode="int8"):
    """A copy of `model` quantized by Keras 3 (`model.quantize(mode)`), and what it covered.

    Keras quantizes the weights of Dense, EinsumDense and Embedding layers
    (e.g. a transformer's projections) and leaves Conv layers in float, so
    this suits Dense-heavy models such as text classifiers; for a CNN use
    TFLite `Quantization.int8`. The copy runs and saves in Keras and exports
    as a SavedModel; TFLite's builtin ops cannot run its int8 matmuls, so
    a `.tflite` export refuses it (use `quantization="dynamic"` for int8
    weights in TFLite).

    Args:
        model: a built Keras 3 model; it is not changed.
        mode: `"int8"`, `"float8"` or `"int4"`.

    Returns:
        `(quantized copy, KerasQuantization)`.
    """
    if mode not in KERAS_QUANTIZATION_MODES:
        raise ValueError(f"Keras quantizes to {', '.join(KERAS_QUANTIZATION_MODES)}, not {mode!r}.")
    with tempfile.TemporaryDirectory(prefix="keras-transfer-quantize-") as folder:
        copy_path = os.path.join(folder, "copy.keras")
        model.save(copy_path)
        copy = keras.saving.load_model(copy_path, compile=False)
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


def keras_quantized_layers(model):
    """Names of the layers of `model` that Keras' `model.quantize` quantized."""
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
    for x, y in iterate_batches(data):
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
