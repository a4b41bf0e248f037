"""Mixed precision within an accuracy budget: int4 weights where the model can take them, int8 elsewhere.

Every layer at 4 bits breaks most models (MobileNetV2 on cats vs dogs: 0.18x
the float file, accuracy 0.54), while a few of them cost nothing. The search:

1. writes the float `.tflite` and lists its layers with constant weights
   (`litert_quantizer.quantizable_layers`);
2. measures each int4-capable layer's sensitivity: the model weight-only
   int8 with that layer alone at int4, the mean absolute change of its
   outputs against the float file's on `sensitivity_examples` inputs
   (accuracy on a few hundred examples is too coarse to rank layers: one
   layer moves it by a point at most);
3. orders the layers by sensitivity and finds, by bisection, the longest
   prefix whose export stays within `max_accuracy_drop` of the Keras model
   on `selection_data`;
4. exports that choice (`Quantization.mixed`) through `export`, checked on
   `eval_data`: keep the selection and evaluation data apart, or the
   reported accuracy is the one the search was fitted to.
"""

import dataclasses
import os
import tempfile

import numpy as np

from keras_transfer import atomic_files as files
from keras_transfer.deploy import litert
from keras_transfer.deploy.litert_quantizer import quantizable_layers, quantize_file
from keras_transfer.deploy.quantization import Quantization


@dataclasses.dataclass
class MixedPrecisionChoice:
    """What `export_mixed_precision` chose and why.

    Attributes:
        result: the `ExportResult` of the chosen export (checked on `eval_data`).
        int4_layers: the op scopes stored in int4, most tolerant first.
        sensitivities: `{"scope", "op", "parameters", "error"}` per int4-capable layer, sorted by error.
        tried: `{"int4_layers", "size_bytes", "accuracy"}` of each prefix measured on the selection data.
        float_size_bytes: size of the float `.tflite`.
        accuracy_keras: the Keras model's accuracy on the selection data.
        max_accuracy_drop: the budget.
    """

    result: object
    int4_layers: list
    sensitivities: list
    tried: list
    float_size_bytes: int
    accuracy_keras: float
    max_accuracy_drop: float

    def explanation(self):
        chosen = len(self.int4_layers)
        capable = len(self.sensitivities)
        lines = [
            f"Weight-only int8 with {chosen} of {capable} int4-capable layers at int4: "
            f"{self.result.size_bytes / self.float_size_bytes:.3f}x the float32 file "
            f"({self.result.size_bytes / 1e6:.2f} MB)."
        ]
        for step in self.tried:
            lines.append(
                f"  {step['int4_layers']:3d} layers int4: {step['size_bytes'] / self.float_size_bytes:.3f}x, selection "
                f"accuracy {step['accuracy']:.4f} (Keras {self.accuracy_keras:.4f}, budget "
                f"{self.max_accuracy_drop:.4f}: {'within' if step['within'] else 'over'})"
            )
        check = self.result.check
        if check is not None and check.accuracy_exported is not None:
            lines.append(
                f"Checked on the evaluation data: accuracy {check.accuracy_exported:.4f} against Keras "
                f"{check.accuracy_keras:.4f}, top-1 agreement {check.top1_agreement:.4f}."
            )
        return "\n".join(lines)


def export_mixed_precision(
    model,
    path,
    eval_data,
    *,
    selection_data=None,
    max_accuracy_drop=0.01,
    sensitivity_examples=200,
    max_layers=None,
    overwrite=False,
    metadata=None,
):
    """Exports `model` weight-only int8 with as many layers at int4 as `max_accuracy_drop` allows.

    Args:
        model: a classification model (Keras 3).
        path: the `.tflite` file to write.
        eval_data: labelled data the chosen export is checked on (an `(x, y)` tuple or a batched dataset).
        selection_data: labelled data the search measures accuracy on (default `eval_data`; give a
            separate split to report an honest accuracy).
        max_accuracy_drop: how far below the Keras model's accuracy on `selection_data` the export may fall.
        sensitivity_examples: inputs whose outputs rank the layers.
        max_layers: consider only this many int4-capable layers, those holding the most weights (most of
            the size in a few layers: MobileNetV2's 12 largest of 36 hold 85% of their weights); None: all.
            The search quantizes the model once per layer considered, then a few times more.

    Returns:
        A `MixedPrecisionChoice`.
    """
    from keras_transfer.deploy.arrays import collect_examples
    from keras_transfer.deploy.export import export
    from keras_transfer.models.task_io import decode_outputs

    if not 0 <= max_accuracy_drop < 1:
        raise ValueError(f"max_accuracy_drop must be in [0, 1), got {max_accuracy_drop}.")
    if max_layers is not None and not (isinstance(max_layers, int) and max_layers >= 1):
        raise ValueError(f"max_layers must be a positive integer or None, got {max_layers!r}.")
    selection = eval_data if selection_data is None else selection_data
    inputs, labels = collect_examples(selection)
    if labels is None:
        raise ValueError("export_mixed_precision needs labelled data: (inputs, labels) or a dataset of both.")
    head = getattr(model, "head", None)

    def accuracy(outputs):
        return float(np.mean(np.asarray(decode_outputs(outputs, head).classes) == np.asarray(labels).reshape(-1)))

    accuracy_keras = accuracy(model.predict(inputs, verbose=0))
    with tempfile.TemporaryDirectory(prefix=".tmp-mixed-", dir=files.parent_folder(path)) as folder:
        float_path = os.path.join(folder, "float.tflite")
        float_result = export(model, float_path, sequence_length=getattr(model, "sequence_length", None))
        input_dtypes = _input_dtypes(float_path)
        sample = litert.take_rows(inputs, np.arange(min(sensitivity_examples, litert.num_rows(inputs))))
        reference = litert.LiteRTModel(float_path).predict(sample)
        candidate = os.path.join(folder, "candidate.tflite")

        def write(int4_layers):
            quantize_file(float_path, candidate, Quantization.mixed(int4_layers), input_dtypes)
            return litert.LiteRTModel(candidate)

        capable = [layer for layer in quantizable_layers(float_path) if layer.int4_capable]
        if max_layers is not None:
            capable = sorted(capable, key=lambda layer: layer.parameters, reverse=True)[:max_layers]
        sensitivities = []
        for layer in capable:
            error = float(np.mean(np.abs(write([layer.scope]).predict(sample) - reference)))
            sensitivities.append({**dataclasses.asdict(layer), "error": error})
        sensitivities.sort(key=lambda entry: entry["error"])
        order = [entry["scope"] for entry in sensitivities]
        tried = {}

        def within(count):
            if count not in tried:
                exported = write(order[:count])
                measured = accuracy(exported.predict(inputs))
                tried[count] = {
                    "int4_layers": count,
                    "size_bytes": os.path.getsize(candidate),
                    "accuracy": measured,
                    "within": accuracy_keras - measured <= max_accuracy_drop + 1e-9,
                }
            return tried[count]["within"]

        # The longest prefix within budget, by bisection (accuracy falls, roughly, as layers are added).
        low, high = 0, len(order)
        if within(high):
            low = high
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if within(middle) else (low, middle)
        chosen = order[:low]
    result = export(
        model,
        path,
        quantization=Quantization.mixed(chosen),
        check_data=eval_data,
        overwrite=overwrite,
        metadata=metadata,
    )
    return MixedPrecisionChoice(
        result=result,
        int4_layers=chosen,
        sensitivities=sensitivities,
        tried=[tried[count] for count in sorted(tried)],
        float_size_bytes=float_result.size_bytes,
        accuracy_keras=accuracy_keras,
        max_accuracy_drop=max_accuracy_drop,
    )


def _input_dtypes(tflite_path):
    runtime = litert.LiteRTModel(tflite_path)
    return {name: np.dtype(detail["dtype"]) for name, detail in runtime.input_details.items()}
