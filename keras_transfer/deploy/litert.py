"""Running exported `.tflite` models: predictions, evaluation and latency.

`LiteRTModel` wraps a real LiteRT interpreter (`ai_edge_litert`, or the
deprecated `tf.lite.Interpreter` when that is missing) behind the part of the
Keras model interface that evaluation uses: `predict`, `predict_on_batch`,
`class_names` and `head` (both read from the metadata that `export` writes
beside the file). Quantized inputs and outputs (int8 or uint8) are converted
with the file's own scale and zero point, so callers always pass and receive
float values. A text model's file takes token ids; `LiteRTModel` tokenizes
sentences with the keras-hub preprocessor its export saved beside it (as the
Keras model does), so `predict` and evaluation also take raw sentences.

>>> model = LiteRTModel("model.tflite")                     # doctest: +SKIP
>>> report = evaluation.evaluate_model(model, test_data)     # doctest: +SKIP
>>> model.measure_latency(num_threads=1).median_ms           # doctest: +SKIP
"""

import dataclasses
import json
import os
import statistics
import time
import warnings

import numpy as np

from keras_transfer.errors import ModelFileError, import_extra
from keras_transfer.models.heads import Head
from keras_transfer.quiet import native_output_silenced

# Dtypes of the weights (constants) and activations each quantization mode leaves in the file.
_QUANTIZATION_DTYPES = {
    "none": ("float32", "float32"),
    "dynamic": ("int8", "float32"),
    "float16": ("float16", "float32"),
    "int8": ("int8", "int8"),
    # The LiteRT Quantizer's recipes (`deploy.quantization.QUANTIZER_RECIPES`).
    "weight_only_wi8_afp32": ("int8", "float32"),
    "weight_only_wi4_afp32": ("int4", "float32"),
    "dynamic_wi8_afp32": ("int8", "float32"),
    "dynamic_wi4_afp32": ("int4", "float32"),
    "static_wi8_ai8": ("int8", "int8"),
    "static_wi8_ai16": ("int8", "int16"),
}


def interpreter_class():
    """LiteRT's `Interpreter`, or the deprecated `tf.lite.Interpreter` without ai-edge-litert."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter
    return Interpreter


@dataclasses.dataclass
class Latency:
    """CPU latency of one call at batch size 1, in milliseconds."""

    median_ms: float
    mean_ms: float
    min_ms: float
    repeats: int
    num_threads: int

    def to_dict(self):
        return dataclasses.asdict(self)


class LiteRTModel:
    """A `.tflite` file in a LiteRT interpreter, called like a Keras model.

    Args:
        path: the `.tflite` file, or a LiteRT `Interpreter` already made.
        num_threads: interpreter threads (None lets LiteRT choose).
        metadata: the export metadata; read from `<path>.json` when it exists.

    Attributes:
        class_names: from the metadata, else None.
        head: the `Head` the model was exported with (from the metadata), else None.
        input_details: `{input name: details}` of the serving signature.
        takes_text: whether it is a text model's file (token-id inputs, its
            tokenizer saved beside it by the export).
    """

    def __init__(self, path, *, num_threads=None, metadata=None):
        interpreter = None
        if not isinstance(path, (str, os.PathLike)):
            interpreter, path = path, None
        elif not os.path.isfile(path):
            raise FileNotFoundError(f"No LiteRT model at {os.fspath(path)!r}.")
        self.path = None if path is None else os.fspath(path)
        self.num_threads = num_threads
        if metadata is None and path is not None and os.path.isfile(self.path + ".json"):
            metadata = _read_metadata(self.path + ".json")
        self.metadata = metadata or {}
        self._preprocessor = None
        self.class_names = self.metadata.get("class_names")
        head = self.metadata.get("head")
        try:
            self.head = Head.from_config(head) if head else None
        except (TypeError, ValueError) as error:
            raise ModelFileError(
                f"The metadata {self.path}.json has a head that cannot be read ({error}): export the model again."
            ) from error
        try:
            self._interpreter = interpreter or self._new_interpreter(num_threads)
            self._signature = self._interpreter.get_signature_list() or None
            if self._signature:
                runner = self._interpreter.get_signature_runner()
                self.input_details = runner.get_input_details()
                (self._output,) = runner.get_output_details().values()
            else:  # a file made elsewhere, without signatures: inputs by position
                self.input_details = {detail["name"]: detail for detail in self._interpreter.get_input_details()}
                self._output = self._interpreter.get_output_details()[0]
        except (ValueError, RuntimeError, IndexError) as error:
            if interpreter is not None:
                raise
            # LiteRT says "The model is not a valid Flatbuffer buffer" (truncated or not a .tflite at all).
            raise ModelFileError(
                f"{self.path!r} is not a readable .tflite model ({str(error).strip().splitlines()[0]}): the file "
                "is truncated, corrupted or not a TFLite flatbuffer. Export it again (keras-transfer export, "
                "or keras_transfer.export_model)."
            ) from error

    def _new_interpreter(self, num_threads):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            # Allocating applies the XNNPACK delegate, which prints `INFO: Created TensorFlow Lite XNNPACK ...`.
            with native_output_silenced():
                interpreter = interpreter_class()(model_path=self.path, num_threads=num_threads)
                interpreter.allocate_tensors()
            return interpreter

    @property
    def input_shape(self):
        """The first input's shape, batch dimension None."""
        detail = next(iter(self.input_details.values()))
        return (None, *[int(size) for size in detail["shape_signature"][1:]])

    @property
    def image_size(self):
        """`(height, width)` for an image model (one rank-4 input), else None."""
        shape = self.input_shape
        return tuple(shape[1:3]) if len(self.input_details) == 1 and len(shape) == 4 else None

    @property
    def quantized_io(self):
        """Whether the inputs or the output are integers (int8/uint8) in the file."""
        details = [*self.input_details.values(), self._output]
        return any(np.issubdtype(detail["dtype"], np.integer) and detail["quantization"][0] for detail in details)

    @property
    def quantization(self):
        """What the file was quantized to: `{"mode", "weights", "activations", "inputs", "outputs", "source"}`.

        `mode` is the export metadata's (`none`, `dynamic`, `float16`,
        `int8` or a LiteRT Quantizer recipe; `source` "metadata") or, when the metadata does not say, read
        from the dtypes of the file's tensors (`source` "tensors"; None when
        it cannot be read). `weights` and `activations` are the dtypes of
        the constant tensors and of the computed ones; `inputs` and `outputs`
        those of the signature (e.g. `["float32"]`, or `["int32"]` token ids).
        """
        config = self.metadata.get("quantization")
        mode = config.get("mode") if isinstance(config, dict) else None
        source = "metadata"
        if mode not in _QUANTIZATION_DTYPES:
            mode, source = self._tensor_quantization(), "tensors"
        weights, activations = _QUANTIZATION_DTYPES.get(mode, (None, None))
        return {
            "mode": mode,
            "weights": weights,
            "activations": activations,
            "inputs": sorted({np.dtype(detail["dtype"]).name for detail in self.input_details.values()}),
            "outputs": [np.dtype(self._output["dtype"]).name],
            "source": source,
        }

    def _tensor_quantization(self):
        """The quantization mode read from the tensors: int8 activations, else int8 or float16 constants."""
        interpreter = self._interpreter
        try:
            ops = interpreter._get_ops_details()
            tensors = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
        except (AttributeError, ValueError, RuntimeError):
            return None
        computed = {int(index) for op in ops for index in op["outputs"]}
        inputs = {int(detail["index"]) for detail in self.input_details.values()}
        used = {int(index) for op in ops for index in op["inputs"] if index >= 0}
        constants = used - computed - inputs

        def dtypes(indices):
            return {np.dtype(tensors[index]["dtype"]).name for index in indices if index in tensors}

        if {"int8", "uint8"} & dtypes(computed):
            return "int8"
        if "int8" in dtypes(constants):
            return "dynamic"
        if "float16" in dtypes(constants):
            return "float16"
        return "none"

    # --- text models ------------------------------------------------------

    @property
    def takes_text(self):
        """Whether it is a text model's file: token-id inputs, its tokenizer saved beside it by the export."""
        return "preprocessor" in self.metadata or "token_ids" in self.input_details

    @property
    def sequence_length(self):
        """Tokens per example of a text model's file (fixed in its inputs), else None."""
        return int(self.input_shape[1]) if self.takes_text and len(self.input_shape) == 2 else None

    def preprocessor_folder(self):
        """Where the export saved a text model's tokenizer: `<name>_preprocessor` beside the file."""
        if self.path is None:
            return None
        folder = self.metadata.get("preprocessor") or os.path.basename(self.path)[: -len(".tflite")] + "_preprocessor"
        return os.path.join(os.path.dirname(self.path), folder)

    def text_preprocessor(self):
        """The keras-hub preprocessor (tokenizer and packer) saved beside a text model's file; loaded once.

        Raises:
            ModelFileError: the folder is missing or cannot be loaded.
        """
        if self._preprocessor is not None:
            return self._preprocessor
        folder = self.preprocessor_folder()
        if folder is None or not os.path.isdir(folder):
            raise ModelFileError(
                f"{self.path!r} is a text model's file, but its tokenizer is not beside it (the folder "
                f"{folder!r} that the export writes): copy that folder with the file, or export the model again."
            )
        keras_hub = import_extra("keras_hub", "A text model's tokenizer")
        try:
            preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(folder)
        except Exception as error:  # keras-hub raises many kinds for a broken preset
            raise ModelFileError(
                f"Cannot load the tokenizer saved beside {self.path!r} from {folder!r} "
                f"({type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}): "
                "export the model again."
            ) from error
        if self.sequence_length:
            preprocessor.sequence_length = self.sequence_length  # the file's inputs have this length
        self._preprocessor = preprocessor
        return preprocessor

    def tokenize(self, texts):
        """The file's inputs (`{input name: array}`) for sentences, tokenized as the Keras model did.

        The same keras-hub preprocessor as `TextClassifier.tokenize`, padded
        to the file's sequence length.
        """
        import tensorflow as tf

        if not tf.is_tensor(texts):
            texts = [texts] if isinstance(texts, (str, bytes)) else list(np.asarray(texts, dtype=object).reshape(-1))
            texts = tf.constant([text.decode("utf-8") if isinstance(text, bytes) else str(text) for text in texts])
        tokens = self.text_preprocessor()(texts)
        missing = sorted(set(self.input_details) - set(tokens))
        if missing:
            raise ModelFileError(
                f"The tokenizer saved beside {self.path!r} gives {sorted(tokens)}, not the file's inputs "
                f"{missing}: export the model again."
            )
        return {name: np.asarray(tokens[name]).astype(detail["dtype"]) for name, detail in self.input_details.items()}

    def predict_on_batch(self, x):
        """Float outputs for one batch; `x` is an array or a dict of arrays by input name, or sentences
        for a text model's file (a list, an array or a string tensor)."""
        if self.takes_text and is_text(x):
            x = self.tokenize(x)
        named = named_inputs(x, list(self.input_details))
        quantized = {name: _quantize(value, self.input_details[name]) for name, value in named.items()}
        if self._signature:
            outputs = self._interpreter.get_signature_runner()(**quantized)
            (output,) = outputs.values()
        else:
            output = self._invoke_by_position(quantized)
        return _dequantize(np.asarray(output), self._output)

    def _invoke_by_position(self, named):
        interpreter = self._interpreter
        for name, value in named.items():
            index = self.input_details[name]["index"]
            interpreter.resize_tensor_input(index, value.shape)
        with native_output_silenced():
            interpreter.allocate_tensors()
        for name, value in named.items():
            interpreter.set_tensor(self.input_details[name]["index"], value)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    def predict(self, x, batch_size=32, verbose=0):
        """Float outputs for all rows of `x`, `batch_size` rows per call."""
        del verbose  # for Keras' signature; the interpreter prints nothing
        rows = num_rows(x)
        outputs = [
            self.predict_on_batch(take_rows(x, slice(start, start + batch_size)))
            for start in range(0, rows, batch_size)
        ]
        if not outputs:
            raise ValueError("predict got no rows.")
        return np.concatenate(outputs)

    def measure_latency(self, example=None, *, num_threads=1, repeats=50, warmup=5):
        """Wall-clock latency of one call at batch size 1, in a fresh interpreter.

        Args:
            example: one input row (batch dimension 1), an array or a dict; a
                random one in the input's range when None.
            num_threads: interpreter threads, stated in the result.
            repeats: timed calls; the median is the headline.
            warmup: untimed calls first (allocation, caches).

        Returns:
            A `Latency`.
        """
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}.")
        if self.path is None:
            raise ValueError("measure_latency needs a LiteRTModel made from a file path.")
        timed = LiteRTModel(self.path, num_threads=num_threads, metadata=self.metadata)
        if example is None:
            example = {name: _random_input(detail) for name, detail in self.input_details.items()}
        example = take_rows(example, slice(0, 1))
        for _ in range(warmup):
            timed.predict_on_batch(example)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            timed.predict_on_batch(example)
            seconds.append(time.perf_counter() - start)
        milliseconds = [1000.0 * value for value in seconds]
        return Latency(
            median_ms=statistics.median(milliseconds),
            mean_ms=statistics.fmean(milliseconds),
            min_ms=min(milliseconds),
            repeats=repeats,
            num_threads=num_threads,
        )


def compare_latency(paths, example=None, *, num_threads=1, repeats=50, warmup=5):
    """Latencies of several `.tflite` files measured in turn, call by call.

    Timing one file after another lets a change in the machine's load (other
    jobs, frequency scaling) land on whichever file ran then; interleaving one
    call of each file per round spreads it over all of them, so the ratios
    between files hold even on a busy machine.

    Args:
        paths: the `.tflite` files (same inputs).
        example: one input row; random pixels in the first file's input range when None.
        num_threads, repeats, warmup: as for `LiteRTModel.measure_latency`.

    Returns:
        `{path: Latency}` in the order given.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    models = {os.fspath(path): LiteRTModel(path, num_threads=num_threads) for path in paths}
    if example is None:
        first = next(iter(models.values()))
        example = {name: _random_input(detail) for name, detail in first.input_details.items()}
    example = take_rows(example, slice(0, 1))
    milliseconds = {path: [] for path in models}
    for round_index in range(warmup + repeats):
        for path, model in models.items():
            start = time.perf_counter()
            model.predict_on_batch(example)
            if round_index >= warmup:
                milliseconds[path].append(1000.0 * (time.perf_counter() - start))
    return {
        path: Latency(statistics.median(values), statistics.fmean(values), min(values), repeats, num_threads)
        for path, values in milliseconds.items()
    }


def _read_metadata(path):
    try:
        with open(path, encoding="utf-8") as file:
            metadata = json.load(file)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelFileError(
            f"Cannot read the metadata {path!r} ({error}): export the model again, or remove the file to "
            "run the model without class names."
        ) from error
    if not isinstance(metadata, dict):
        raise ModelFileError(f"The metadata {path!r} is not a JSON object: export the model again.")
    return metadata


def _quantize(value, detail):
    """Float values as the input's dtype, through its scale and zero point when quantized."""
    dtype = detail["dtype"]
    value = np.asarray(value)
    scale, zero_point = detail["quantization"]
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        value = np.clip(np.round(value / scale + zero_point), info.min, info.max)
    return value.astype(dtype)


def _dequantize(value, detail):
    scale, zero_point = detail["quantization"]
    if np.issubdtype(detail["dtype"], np.integer) and scale:
        return (value.astype(np.float32) - zero_point) * scale
    return value.astype(np.float32)


def _random_input(detail):
    shape = [1, *[int(size) for size in detail["shape_signature"][1:]]]
    rng = np.random.default_rng(0)
    if np.issubdtype(detail["dtype"], np.integer) and not detail["quantization"][0]:
        return rng.integers(0, 2, size=shape).astype(detail["dtype"])  # token ids, masks
    return rng.uniform(0, 255, size=shape).astype(np.float32)


def named_inputs(x, names):
    """`x` (an array or a dict) as `{input name: array}` for the exported model."""
    if not isinstance(x, dict):
        if len(names) != 1:
            raise ValueError(f"The exported model takes several inputs {sorted(names)}: pass a dict.")
        return {names[0]: np.asarray(x)}
    if set(x) != set(names):
        raise ValueError(f"Inputs {sorted(x)} do not match the exported inputs {sorted(names)}.")
    return {name: np.asarray(value) for name, value in x.items()}


def num_rows(x):
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def take_rows(x, rows):
    return {name: np.asarray(value)[rows] for name, value in x.items()} if isinstance(x, dict) else np.asarray(x)[rows]


def is_text(x):
    """Whether `x` is sentences: a string, a list or array of them, or a string tensor."""
    if isinstance(x, (str, bytes)):
        return True
    if isinstance(x, dict):
        return False
    dtype = getattr(x, "dtype", None)
    if getattr(dtype, "name", None) == "string":  # a tf.string tensor
        return True
    if isinstance(x, (list, tuple)):
        return bool(x) and all(isinstance(item, (str, bytes)) for item in x)
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "US":
            return True
        return x.dtype == object and x.size > 0 and all(isinstance(item, (str, bytes)) for item in x.reshape(-1))
    return False
