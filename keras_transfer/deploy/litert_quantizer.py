"""The LiteRT Quantizer (PyPI `litert-quantizer`, formerly `ai-edge-quantizer`) behind the `"litert_quantizer"`
export engine: a float `.tflite` in, one of its recipes applied, a quantized `.tflite` out.

Its recipes (`QUANTIZER_RECIPES`, by the names the library gives them) quantize
weights to int8 or int4 per channel, with float activations (weight-only:
dequantized before each op; dynamic: quantized on the fly) or with int8 or
int16 activations calibrated on representative data (static), drawn across all
classes as the converter's int8 is. The export engine (`deploy.export`)
writes the float file with Keras, quantizes it here, and checks the result in
the LiteRT interpreter like any export.
"""

import os
import warnings

from keras_transfer.deploy import litert
from keras_transfer.errors import import_extra
from keras_transfer.quiet import native_output_silenced

# The TFLite signature every export has (`deploy.signatures`).
SIGNATURE_KEY = "serving_default"


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
    from litert_quantizer import recipe as recipes

    quantizer = quantizer_lib.Quantizer(os.fspath(float_path), getattr(recipes, quantization.mode)())
    with warnings.catch_warnings(), native_output_silenced():
        # Calibration keeps every tensor of the interpreter (its warning says so) and draws a progress bar.
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
        calibration = None
        if quantizer.need_calibration:
            samples = quantization.calibration_samples()
            names = list(input_dtypes)
            examples = [
                {name: value.astype(input_dtypes[name]) for name, value in litert.named_inputs(sample, names).items()}
                for sample in samples
            ]
            calibration = quantizer.calibrate({SIGNATURE_KEY: examples})
        result = quantizer.quantize(calibration, enable_progress_report=False)
    with open(path, "wb") as file:
        file.write(bytes(result.quantized_model))
