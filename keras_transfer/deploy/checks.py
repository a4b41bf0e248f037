"""Checking an export: the exported model and the Keras model run on the same inputs, compared.

A `.tflite` file runs in a real LiteRT interpreter, a SavedModel folder is
loaded with `tf.saved_model.load`; both models' outputs are read as classes
by `keras_transfer.models.task_io.decode_outputs`, as prediction and
evaluation read them.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from keras_transfer.deploy import litert
from keras_transfer.deploy.arrays import collect_examples
from keras_transfer.models.heads import Head
from keras_transfer.models.task_io import as_model_inputs, decode_outputs


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
    top1_agreement: float | None = None
    accuracy_keras: float | None = None
    accuracy_exported: float | None = None

    def problem(self, what="The export"):
        """What is wrong with an export that broke the model (classes agree on under `MIN_AGREEMENT` of the
        rows, or accuracy fell more than `MAX_ACCURACY_DROP`), or None."""
        if self.top1_agreement is None:
            return None
        drop = None
        if self.accuracy_keras is not None and self.accuracy_exported is not None:
            drop = self.accuracy_keras - self.accuracy_exported
        if self.top1_agreement >= MIN_AGREEMENT and (drop is None or drop <= MAX_ACCURACY_DROP):
            return None
        accuracies = (
            f", accuracy {self.accuracy_exported:.3f} against {self.accuracy_keras:.3f}" if drop is not None else ""
        )
        return (
            f"{what} agrees with the Keras model on only {self.top1_agreement:.1%} of {self.num_examples} "
            f"examples{accuracies}: it breaks this model. Keep the Keras model, or choose another quantization."
        )


# Below these an export counts as broken (`ExportCheck.problem`): quantization that costs a point or two of
# agreement is ordinary; one that loses a tenth of the answers is not a trade-off but a failure.
MIN_AGREEMENT = 0.9
MAX_ACCURACY_DROP = 0.1


def check_export(path_or_interpreter, model, inputs, *, labels=None, max_examples=None, batch_size=32, head=None):
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
    >>> path = export(model, "float.tflite").path
    >>> check = check_export(path, model, images, labels=labels)
    >>> check.top1_agreement, check.accuracy_exported, check.max_abs_difference < 1e-5
    (1.0, 1.0, True)
    """
    x, data_labels = collect_examples(as_model_inputs(model, inputs), max_examples)
    labels = data_labels if labels is None else np.asarray(labels)[: litert.num_rows(x)]
    run = _runner(path_or_interpreter)
    keras_outputs = _as_2d(model.predict(x, batch_size=batch_size, verbose=0))
    exported_outputs = _as_2d(
        np.concatenate(
            [
                run(litert.take_rows(x, slice(start, start + batch_size)))
                for start in range(0, litert.num_rows(x), batch_size)
            ]
        )
    )
    check = ExportCheck(
        num_examples=len(keras_outputs),
        max_abs_difference=float(np.max(np.abs(keras_outputs - exported_outputs), initial=0.0)),
    )
    head = head or getattr(model, "head", None)
    task = _task_of_outputs(model, head, keras_outputs.shape[-1])
    if task in ("multiclass", "binary"):
        keras_classes = decode_outputs(keras_outputs, head, task=task).classes
        exported_classes = decode_outputs(exported_outputs, head, task=task).classes
        check.top1_agreement = float(np.mean(keras_classes == exported_classes))
        if labels is not None:
            labels = labels.argmax(-1) if labels.ndim > 1 and labels.shape[-1] > 1 else labels.reshape(-1)
            check.accuracy_keras = float(np.mean(keras_classes == labels))
            check.accuracy_exported = float(np.mean(exported_classes == labels))
    return check


def _task_of_outputs(model, head, num_outputs):
    """The head's task; a plain model's several outputs are compared by their argmax, one by `guess_head`."""
    if head is not None:
        return head.task
    return "multiclass" if num_outputs > 1 else guess_head(model).task


def guess_head(model):
    """`model.head`, or a `Head` read from the output layer of a plain model.

    softmax: multiclass; sigmoid: binary (one unit) or multilabel; anything
    else: regression.
    """
    head = getattr(model, "head", None)
    if head is not None:
        return head
    units = model.outputs[0].shape[-1]
    activation = getattr(getattr(model.layers[-1], "activation", None), "__name__", "linear")
    if activation == "softmax":
        return Head.multiclass(units)
    if activation == "sigmoid":
        return Head.binary() if units == 1 else Head.multilabel(units)
    return Head.regression(units)


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


def _as_2d(outputs):
    outputs = np.asarray(outputs, dtype="float32")
    return outputs.reshape(len(outputs), -1)
