"""Exporting models to LiteRT (`.tflite`) and TF SavedModel, checked against Keras: the one entry point.

One call exports with a quantization config and an engine and, given data,
checks the exported model in a real LiteRT interpreter (or the loaded
SavedModel) against the model it came from:

>>> result = export(model, "model.tflite", quantization="dynamic", check_data=(images, labels))
>>> result.check.top1_agreement
1.0

An engine is the converter that writes the file (see `Engine`):

- `"keras"`: Keras 3's own `model.export(format="litert" | "tf_saved_model")`
  (ExportArchive -> SavedModel -> TFLiteConverter); the default for Keras 3 models.
- `"tf_keras"`: TFLiteConverter on a tf_keras model, such as the ones TF-MOT
  makes (`keras_transfer.deploy.tfmot.optimize.OptimizedModel`, whose
  `to_tflite` calls `export`); the default for those.
- `"litert_quantizer"`: the float file Keras writes, quantized by the LiteRT
  Quantizer with one of its recipes (`Quantization.litert(...)`, e.g.
  `"dynamic_wi4_afp32"`); the default for those recipes.

Every file and folder is written atomically (temporary, then renamed), and
nothing that exists is replaced unless `overwrite=True`: a `.tflite` file,
its `.json` and its assets are replaced as a set (or not at all), and a
SavedModel folder as a whole, only when it holds nothing but what an export
writes (a foreign file is named, and the export refused). Beside every export
lies a JSON metadata file (class names, inputs, quantization, your
`metadata`): `<path>.json` next to a `.tflite` file (`model.tflite.json`), and
`metadata.json` inside a SavedModel folder. `read_metadata(path)` reads it.

This module is also `keras_transfer.export`: it offers the export helpers
found in the modules beside it (`Quantization`, `representative_samples`,
`read_metadata`, `check_export`, `export_within_budget`).
"""

import abc
import dataclasses
import os
import tempfile
import warnings

import tensorflow as tf

from keras_transfer import atomic_files as files
from keras_transfer.deploy.budget import export_within_budget
from keras_transfer.deploy.checks import ExportCheck, check_export
from keras_transfer.deploy.metadata import (
    ASSETS_FOLDER,
    assets_path,
    export_assets,
    export_metadata,
    metadata_path,
    read_metadata,
)
from keras_transfer.deploy.quantization import (
    QUANTIZER_RECIPES,
    Quantization,
    bounded_attention_masks,
    keras_quantize,
    keras_quantized_layers,
    representative_samples,
)
from keras_transfer.deploy.signatures import export_signature
from keras_transfer.quiet import native_output_silenced

__all__ = [
    "ENGINES",
    "Engine",
    "ExportCheck",
    "ExportResult",
    "FORMATS",
    "Quantization",
    "check_export",
    "export",
    "export_within_budget",
    "keras_quantize",
    "read_metadata",
    "representative_samples",
]

FORMATS = ("tflite", "saved_model")


@dataclasses.dataclass
class ExportResult:
    """What `export` wrote: the path, its format and size, and the check."""

    path: str
    format: str
    quantization: dict
    size_bytes: int
    metadata_path: str
    check: ExportCheck | None = None

    @property
    def problem(self):
        """Why the export broke the model (its check says so), or None: `ExportCheck.problem`."""
        return None if self.check is None else self.check.problem(f"The {self.quantization['mode']} export")


def export(
    model,
    path,
    *,
    format="tflite",
    quantization="none",
    engine=None,
    check_data=None,
    metadata=None,
    overwrite=False,
    input_signature=None,
    sequence_length=None,
    max_check_examples=None,
):
    """Exports `model` with `engine` and, given `check_data`, checks it against the model.

    Other quantization routes end here too: `keras_quantize` returns a Keras
    model to export with `format="saved_model"`, and TF-MOT's
    `OptimizedModel.to_tflite` exports through the `"tf_keras"` engine.
    `TextClassifier.enable_lora(quantize=...)` is not an export: it
    quantizes the backbone for QLoRA training; merge and export the model
    afterwards.

    Args:
        model: a built Keras 3 model, a tf_keras model, or an `OptimizedModel`.
        path: a `.tflite` file or a SavedModel folder.
        format: `"tflite"` or `"saved_model"`.
        quantization: a `Quantization` or mode name (TFLite only).
        engine: the converter, a name in `ENGINES` or an `Engine`; by
            default `"tf_keras"` for tf_keras models and `"keras"` otherwise.
        check_data: inputs to compare the models on: an array, a dict of
            arrays, an `(x, y)` tuple or a batched `tf.data.Dataset`.
        metadata: a JSON-serializable dict saved beside the model, with the
            model's `class_names`, head, inputs and quantization added.
        overwrite: replace what exists at `path` (and its metadata); otherwise
            an existing one is an error and is left untouched.
        input_signature: shapes and dtypes of the inputs: a `keras.InputSpec`
            or `tf.TensorSpec`, or a dict (or list) of them. Defaults to the
            model's inputs with a dynamic batch size.
        sequence_length: fills the non-batch dimensions that are None, e.g.
            the length of text inputs `(None, None)`; LiteRT needs it fixed
            (defaults to `model.sequence_length` for `.tflite` files).
        max_check_examples: compare at most this many examples.

    Returns:
        An `ExportResult`. A `.tflite` file keeps the Keras input names
        (`token_ids`, `padding_mask`, ...) in its `serving_default`
        signature, with a dynamic batch size; the output is `output_0`.

    Example:
    >>> result = export(model, "checked.tflite", quantization="float16", check_data=(images, labels))
    >>> result.check.top1_agreement, result.check.accuracy_exported
    (1.0, 1.0)
    >>> export(model, "saved_model", format="saved_model").path
    'saved_model'
    >>> read_metadata("saved_model")["format"]
    'saved_model'
    """
    path = os.fspath(path)
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}; valid ones are {', '.join(FORMATS)}.")
    if format == "tflite" and not path.endswith(".tflite"):
        raise ValueError(f"A LiteRT file name must end with '.tflite', got {path!r}.")
    quantization = Quantization.get(quantization)
    if quantization.representative_data is not None and hasattr(model, "model_inputs"):
        # Raw samples (a text model's sentences) calibrate as the graph's inputs (token ids).
        representative = model.model_inputs(quantization.representative_data)
        quantization = dataclasses.replace(quantization, representative_data=representative)
    engine = _engine(engine, model, quantization)
    engine.refuse(model, format, quantization)
    if format == "tflite":
        sequence_length = sequence_length or getattr(model, "sequence_length", None)
    graph = engine.graph_model(model)
    signature = export_signature(graph, input_signature, sequence_length, fixed_shapes=format == "tflite")
    info = export_metadata(model, format, path, signature, quantization, metadata)
    if format == "tflite":
        files.refuse_to_overwrite([path, metadata_path(path), assets_path(path)], overwrite)
        if os.path.isdir(path):
            raise FileExistsError(f"{path!r} is a folder, not a .tflite file: choose another path.")
        # The file, its metadata and its assets are written aside, then replace the old ones as a set.
        with tempfile.TemporaryDirectory(dir=files.parent_folder(path), prefix=".tmp-export-") as work:
            staged = os.path.join(work, os.path.basename(path))
            # native_output_silenced: the converter's C++ log lines (`Reading SavedModel from: ...`).
            with native_output_silenced(), bounded_attention_masks(quantization):
                engine.write(graph, staged, format=format, signature=signature, quantization=quantization)
            if quantization.calibration_examples is not None and isinstance(info.get("quantization"), dict):
                info["quantization"]["calibration_examples"] = quantization.calibration_examples  # really drawn
            info.update(export_assets(model, assets_path(staged)))
            files.write_json(info, metadata_path(staged))
            files.replace_together(
                [
                    (staged, path),
                    (metadata_path(staged), metadata_path(path)),
                    (assets_path(staged), assets_path(path)),
                ]
            )
    else:
        files.refuse_to_overwrite([path], overwrite)
        refuse_foreign_files(path)  # before converting: --overwrite replaces only what an export wrote
        with files.atomic_folder(path) as temporary:
            with native_output_silenced():
                engine.write(graph, temporary, format=format, signature=signature, quantization=quantization)
            info.update(export_assets(model, os.path.join(temporary, ASSETS_FOLDER)))
            files.write_json(info, metadata_path(temporary))
    check = None
    if check_data is not None:
        check = check_export(
            path, graph, check_data, head=getattr(model, "head", None), max_examples=max_check_examples
        )
    result = ExportResult(
        path=path,
        format=format,
        quantization=quantization.get_config(),
        size_bytes=_size_bytes(path),
        metadata_path=metadata_path(path),
        check=check,
    )
    if result.problem:
        warnings.warn(result.problem, stacklevel=2)
    return result


# --------------------------------------------------------------------------
# Engines. A new one is a subclass of `Engine` with its `name`, `formats` and
# `write`, added to `ENGINES`.


class Engine(abc.ABC):
    """A converter that writes a model in some of the `FORMATS`.

    `export` does the rest the same for every engine: the signature, the
    metadata, atomic files, overwriting, assets and the check.
    """

    name = ""
    formats = ()

    def graph_model(self, model):
        """The model whose graph is exported (and checked): `model` itself by default."""
        return model

    def refuse(self, model, format, quantization):
        """Raises ValueError, before anything is written, for what this engine cannot export."""
        if format not in self.formats:
            raise ValueError(f"The {self.name!r} engine writes {', '.join(self.formats)}, not {format!r}.")
        if format != "tflite" and quantization.mode != "none":
            raise ValueError("Quantization applies to TFLite exports; use format='tflite'.")

    @abc.abstractmethod
    def write(self, model, path, *, format, signature, quantization):
        """Writes `model` to `path` (a file for tflite, a folder for saved_model) with the input `signature`."""


class KerasEngine(Engine):
    """Keras 3's `model.export`, with the TFLite converter's quantization options."""

    name = "keras"
    formats = FORMATS

    def refuse(self, model, format, quantization):
        super().refuse(model, format, quantization)
        keras_quantized = keras_quantized_layers(model)
        if format == "tflite" and keras_quantized:
            raise ValueError(
                f"Layers {keras_quantized[:5]} were quantized by Keras (model.quantize), whose integer "
                "matmuls TFLite's builtin ops cannot run: export the float model with "
                "quantization='dynamic' (int8 weights) or Quantization.int8(data), or export this one "
                "with format='saved_model'."
            )

    def write(self, model, path, *, format, signature, quantization):
        if format == "saved_model":
            model.export(path, format="tf_saved_model", input_signature=signature, verbose=False)
            return
        # Named tf.TensorSpecs keep dict inputs and their names in the signature,
        # and the batch dimension dynamic.
        options = quantization.converter_options(_input_dtypes(signature))
        with warnings.catch_warnings():
            # TF's own int8 calibrator still runs the deprecated tf.lite.Interpreter.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            model.export(path, format="litert", input_signature=signature, verbose=False, **options)


class LiteRTQuantizerEngine(Engine):
    """The LiteRT Quantizer's recipes (`deploy.litert_quantizer`) on the float file Keras writes."""

    name = "litert_quantizer"
    formats = ("tflite",)

    def refuse(self, model, format, quantization):
        super().refuse(model, format, quantization)
        if quantization.engine != self.name:
            raise ValueError(
                f"The {self.name!r} engine applies LiteRT Quantizer recipes ({', '.join(QUANTIZER_RECIPES)}), "
                f"not {quantization.mode!r}: leave engine unset for the TFLite converter's modes."
            )
        _float_engine(model).refuse(model, format, Quantization.none())

    def graph_model(self, model):
        return _float_engine(model).graph_model(model)

    def write(self, model, path, *, format, signature, quantization):
        from keras_transfer.deploy.litert_quantizer import quantize_file

        float_path = path + ".float.tflite"
        _float_engine(model).write(
            model, float_path, format=format, signature=signature, quantization=Quantization.none()
        )
        try:
            quantize_file(float_path, path, quantization, _input_dtypes(signature))
        finally:
            os.remove(float_path)


class TFKerasEngine(Engine):
    """TFLiteConverter on a tf_keras model (TF-MOT's quantization-aware, pruned or clustered models).

    A quantization-aware model becomes real int8 with any quantization but
    `"none"` (the converter's `Optimize.DEFAULT` reads its fake-quant ranges).
    """

    name = "tf_keras"
    formats = ("tflite",)

    def graph_model(self, model):
        return model if _is_tf_keras(model) else model.model  # an OptimizedModel holds its tf_keras model

    def write(self, model, path, *, format, signature, quantization):
        @tf.function(input_signature=signature)
        def serve(inputs):
            return model(inputs, training=False)

        converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)
        for name, value in quantization.converter_options(_input_dtypes(signature)).items():
            if name == "target_spec":
                for spec_name, spec_value in value.items():
                    setattr(converter.target_spec, spec_name, spec_value)
            else:
                setattr(converter, name, value)
        flatbuffer = converter.convert()
        with open(path, "wb") as file:
            file.write(flatbuffer)


ENGINES = {engine.name: engine for engine in (KerasEngine(), TFKerasEngine(), LiteRTQuantizerEngine())}


def refuse_foreign_files(path):
    """Raises FileExistsError when the existing `path` is not a SavedModel folder an export wrote.

    Overwriting replaces the folder as a whole, so it must hold only what an
    export writes (`atomic_files.SAVED_MODEL_FILES`): a file of the user's is
    named, never deleted.
    """
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path):
        raise FileExistsError(f"{path!r} is a file, not a SavedModel folder: choose another path.")
    foreign = files.foreign_files(path, files.SAVED_MODEL_FILES)
    if foreign:
        raise FileExistsError(
            f"{path!r} holds files an export did not write: {', '.join(foreign)}. Overwriting replaces the "
            "whole folder, so it is refused: move them out or choose another path; nothing was changed."
        )


def _engine(engine, model, quantization):
    if isinstance(engine, Engine):
        return engine
    if engine is None and quantization.engine is not None:
        engine = quantization.engine
    if engine is None:
        engine = _float_engine(model).name
    if engine not in ENGINES:
        raise ValueError(f"Unknown export engine {engine!r}; valid ones are {', '.join(ENGINES)}.")
    return ENGINES[engine]


def _float_engine(model):
    """The engine that writes `model` as float: the TFLite converter on tf_keras models (and TF-MOT's), else Keras."""
    tf_keras_model = _is_tf_keras(model) or _is_tf_keras(getattr(model, "model", None))
    return ENGINES[TFKerasEngine.name if tf_keras_model else KerasEngine.name]


def _is_tf_keras(model):
    return type(model).__module__.startswith("tf_keras")


def _input_dtypes(signature):
    return {spec.name: spec.dtype.as_numpy_dtype for spec in tf.nest.flatten(signature)}


def _size_bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(path) for name in names)
