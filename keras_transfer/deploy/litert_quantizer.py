"""The LiteRT Quantizer (PyPI `litert-quantizer`, formerly `ai-edge-quantizer`) behind the `"litert_quantizer"`
export engine: a float `.tflite` in, one of its recipes applied, a quantized `.tflite` out.

Its recipes (`QUANTIZER_RECIPES`, by the names the library gives them) quantize
weights to int8 or int4 per channel, with float activations (weight-only:
dequantized before each op; dynamic: quantized on the fly) or with int8 or
int16 activations calibrated on representative data (static), drawn across all
classes as the converter's int8 is. The export engine (`deploy.export`)
writes the float file with Keras, quantizes it here, and checks the result in
the LiteRT interpreter like any export.

Keras exports an embedding lookup (a text model's token embeddings) as a GATHER op, which the
weight-only and dynamic recipes leave in float (they quantize EMBEDDING_LOOKUP): those tables
are stored in int8 here, per tensor, as the static recipes and the converter's dynamic mode
store them (LiteRT has no int4 GATHER). Without it all-MiniLM-L6-v2's token table alone, 47 of
its 90 MB, stays float32 and its int4 export is 0.59x the float file instead of 0.2x.
"""

import dataclasses
import os
import re
import warnings

import numpy as np

from keras_transfer.deploy import litert
from keras_transfer.deploy.quantization import CALIBRATED_MODES, MIXED_MODE
from keras_transfer.errors import import_extra
from keras_transfer.quiet import native_output_silenced

# The TFLite signature every export has (`deploy.signatures`).
SIGNATURE_KEY = "serving_default"
# Ops whose constant weights the quantizer can store in int4 (its policy: no int4 depthwise convolution).
INT4_OPS = ("CONV_2D", "FULLY_CONNECTED", "EMBEDDING_LOOKUP")


@dataclasses.dataclass(frozen=True)
class QuantizableLayer:
    """An op with constant weights in a float `.tflite`: its scope (how recipes name it), op and weight count."""

    scope: str
    op: str
    parameters: int

    @property
    def int4_capable(self):
        return self.op in INT4_OPS


def quantizable_layers(float_path):
    """The ops of `float_path` with constant weights, in graph order.

    A scope is the op's output tensor names joined by ";" with a ";" after
    them, as the quantizer names ops; `scope_pattern` matches exactly one.
    """
    interpreter = litert.interpreter_class()(model_path=os.fspath(float_path))
    tensors = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    computed = {int(index) for op in ops for index in op["outputs"]}
    layers = []
    for op in ops:
        weights = [int(index) for index in op["inputs"][1:2] if index >= 0 and int(index) not in computed]
        if op["op_name"] not in (*INT4_OPS, "DEPTHWISE_CONV_2D", "BATCH_MATMUL") or not weights:
            continue
        names = [tensors[int(index)]["name"] for index in op["outputs"] if index >= 0]
        parameters = int(np.prod(tensors[weights[0]]["shape"]))
        layers.append(QuantizableLayer(";".join(names) + ";", op["op_name"], parameters))
    return layers


def scopes_of_layers(float_path, layer_names):
    """`{layer name: op scope}` of the float file's ops that hold those layers' kernels.

    The converter names an op's outputs after the layers fused into it
    (`model/block_1_expand/Conv2D;...`): a layer's op is the one with its
    name as a path component and as many weights as its kernel.
    """
    layers = quantizable_layers(float_path)
    scopes = {}
    for name, kernel_size in layer_names.items():
        found = [
            layer.scope
            for layer in layers
            if layer.parameters == kernel_size and any(name in tensor.split("/") for tensor in layer.scope.split(";"))
        ]
        if len(found) != 1:
            raise ValueError(
                f"Layer {name!r} ({kernel_size} weights) matches {len(found)} ops of {os.fspath(float_path)!r} "
                "instead of one: the converter named its ops otherwise."
            )
        scopes[name] = found[0]
    return scopes


def embedding_tables(float_path):
    """Scopes of the GATHER ops of `float_path` that read a constant float table (embeddings), in graph order."""
    interpreter = litert.interpreter_class()(model_path=os.fspath(float_path))
    tensors = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    not_constant = {int(index) for op in ops for index in op["outputs"]}
    not_constant |= {int(detail["index"]) for detail in interpreter.get_input_details()}
    scopes = []
    for op in ops:
        table = int(op["inputs"][0]) if op["op_name"] == "GATHER" else -1
        if table < 0 or table in not_constant or np.dtype(tensors[table]["dtype"]) != np.float32:
            continue
        scopes.append(";".join(tensors[int(index)]["name"] for index in op["outputs"] if index >= 0) + ";")
    return scopes


def scope_pattern(scope):
    """The recipe regex matching the op of `scope` alone."""
    return "^" + re.escape(scope)


def _recipe(quantization, tables=()):
    """The quantizer's recipe for `quantization`: a named recipe, or weight-only int8 with int4 layers (mixed);
    and the embedding `tables` (GATHER scopes) in int8."""
    from litert_quantizer import qtyping, recipe_manager
    from litert_quantizer import recipe as recipes

    manager = recipe_manager.RecipeManager()
    every_op = qtyping.TFLOperationName.ALL_SUPPORTED
    if quantization.mode == MIXED_MODE:
        manager.add_weight_only_config(".*", every_op, 8)
        for scope in quantization.int4_layers:  # later configs win; an op without int4 keeps int8
            manager.add_weight_only_config(scope_pattern(scope), every_op, 4)
    else:
        manager.load_quantization_recipe(getattr(recipes, quantization.mode)())
    for scope in tables:
        # A static GATHER: its int8 output keeps the table's scale, and is dequantized for the float op after it.
        manager.add_static_config(scope_pattern(scope), qtyping.TFLOperationName.GATHER, 8, 8)
    return manager.get_quantization_recipe()


def quantize_file(float_path, path, quantization, input_dtypes):
    """Writes `float_path` (a float `.tflite`) quantized with `quantization`'s recipe to `path`.

    Args:
        float_path: the float model.
        path: the quantized model to write.
        quantization: a `Quantization` whose mode is one of `QUANTIZER_RECIPES`.
        input_dtypes: `{input name: numpy dtype}` of the signature, for the calibration examples.
    """
    import_extra("litert_quantizer", f"the {quantization.mode} export (LiteRT Quantizer)")
    from litert_quantizer import quantizer as quantizer_lib

    # The static recipes quantize every GATHER already.
    tables = () if quantization.mode in CALIBRATED_MODES else embedding_tables(float_path)
    quantizer = quantizer_lib.Quantizer(os.fspath(float_path), _recipe(quantization, tables))
    with warnings.catch_warnings(), native_output_silenced():
        # Calibration keeps every tensor of the interpreter (its warning says so) and draws a progress bar.
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
        calibration = None
        if quantizer.need_calibration:
            if quantization.mode in CALIBRATED_MODES:
                samples = quantization.calibration_samples()
            else:  # only the tables are static, and their scales are their own: any one input calibrates them
                samples = [_one_input(float_path)]
            names = list(input_dtypes)
            examples = [
                {name: value.astype(input_dtypes[name]) for name, value in litert.named_inputs(sample, names).items()}
                for sample in samples
            ]
            calibration = quantizer.calibrate({SIGNATURE_KEY: examples})
        result = quantizer.quantize(calibration, enable_progress_report=False)
    with open(path, "wb") as file:
        file.write(bytes(result.quantized_model))


def _one_input(float_path):
    """An input of ones for each of the signature's inputs of `float_path`, batch size 1."""
    runner = litert.interpreter_class()(model_path=os.fspath(float_path)).get_signature_runner(SIGNATURE_KEY)
    return {
        name: np.ones([1, *detail["shape_signature"][1:]], detail["dtype"])
        for name, detail in runner.get_input_details().items()
    }
