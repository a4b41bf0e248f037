"""A task's inputs and outputs: raw inputs to model inputs, raw outputs to probabilities and classes.

This is the one place that knows how. Prediction, evaluation, export checks and the TF-MOT path read outputs
through `decode_outputs`, so a sigmoid, a softmax and logits mean the same
thing everywhere.

>>> decoded = decode_outputs(np.array([[2.0, 0.0], [0.0, 1.0]]), task="multiclass", from_logits=True)
>>> decoded.classes.tolist(), decoded.confidence.round(2).tolist()
([0, 1], [0.88, 0.73])
"""

import dataclasses

import numpy as np

CLASSIFICATION_TASKS = ("multiclass", "binary")


@dataclasses.dataclass
class DecodedOutputs:
    """Outputs read as a task's answers.

    Attributes:
        probabilities: `(N, K)` softmax probabilities (multiclass), `(N,)`
            positive-class probabilities (binary), `(N, K)` per-label
            probabilities (multilabel), or the values themselves (regression).
        classes: `(N,)` class indices (multiclass, binary), `(N, K)` 0/1 labels
            (multilabel), None for regression.
        confidence: `(N,)` probability of the chosen class (multiclass,
            binary), None otherwise.
    """

    probabilities: np.ndarray
    classes: np.ndarray | None
    confidence: np.ndarray | None


def decode_outputs(outputs, head=None, *, task=None, from_logits=None, threshold=0.5):
    """Reads raw model outputs as probabilities and classes.

    Args:
        outputs: `(N, K)` or `(N,)` model outputs.
        head: the `Head` that produced them (gives `task` and `from_logits`).
        task: `"multiclass"`, `"binary"`, `"multilabel"` or `"regression"`,
            when there is no head; a single output column means binary.
        from_logits: whether the outputs are logits, when there is no head.
        threshold: probability at or above which a binary or multilabel
            output counts as positive.
    """
    task = task or getattr(head, "task", None)
    from_logits = bool(getattr(head, "from_logits", False) if from_logits is None else from_logits)
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 1:
        outputs = outputs[:, None]
    if task is None:
        task = "binary" if outputs.shape[-1] == 1 else "multiclass"
    if task == "regression":
        return DecodedOutputs(outputs, None, None)
    if task == "multiclass":
        probabilities = _softmax(outputs) if from_logits else outputs
        classes = probabilities.argmax(axis=-1)
        return DecodedOutputs(probabilities, classes, probabilities[np.arange(len(classes)), classes])
    probabilities = 1.0 / (1.0 + np.exp(-outputs)) if from_logits else outputs
    if task == "multilabel":
        return DecodedOutputs(probabilities, (probabilities >= threshold).astype(int), None)
    if task != "binary":
        raise ValueError(f"Unknown task {task!r}: use multiclass, binary, multilabel or regression.")
    positive = probabilities[:, 0]
    classes = (positive >= threshold).astype(int)
    return DecodedOutputs(positive, classes, np.where(classes == 1, positive, 1.0 - positive))


def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def as_model_inputs(model, data):
    """`data` as `model`'s graph takes it: a keras_transfer task converts raw inputs, others take it as is.

    A `TextClassifier` turns sentences (lists, `(texts, labels)` tuples, string
    datasets) into token ids; image tasks and plain Keras models need nothing.
    """
    from keras_transfer.models.transfer_model import TransferModel

    return model.model_inputs(data) if isinstance(model, TransferModel) else data
