"""Measuring a model on labelled data: `evaluate_model` and the `EvaluationReport` it returns.

`evaluate_model` runs a model once over a dataset and measures it with
scikit-learn; the report prints as a readable text and converts to JSON.

>>> report = evaluate_model(model, test_data)   # doctest: +SKIP
>>> print(report)                               # doctest: +SKIP
"""

import dataclasses
import math

import numpy as np
from sklearn import metrics as skmetrics

from keras_transfer.models.heads import TASKS
from keras_transfer.models.task_io import as_model_inputs, decode_outputs
from keras_transfer.models.transfer_model import TransferModel

# Beyond this many classes the text confusion matrix is too wide to read.
MAX_TEXT_MATRIX_CLASSES = 30
_NAME_WIDTH = 24
_MATRIX_NAME_WIDTH = 10


@dataclasses.dataclass
class EvaluationReport:
    """The metrics of one evaluation; metrics that do not apply to the task are None.

    Attributes:
        task: `"multiclass"`, `"binary"`, `"multilabel"` or `"regression"`.
        num_examples: how many examples were evaluated.
        class_names: the class (or label) names, `"0"`, `"1"`, ... when none
            were known; None for regression.
        accuracy: fraction of correct predictions (multiclass, binary).
        top_k_accuracy: `{k: accuracy}` for each k below the class count (multiclass).
        roc_auc: area under the ROC curve (binary; None when one class is absent).
        subset_accuracy: fraction of examples with every label right (multilabel).
        hamming_loss: fraction of wrong labels (multilabel).
        per_class: `{name: {"precision", "recall", "f1", "support"}}` (classification).
        macro_avg: the unweighted mean of the per-class metrics.
        weighted_avg: the per-class metrics weighted by support.
        confusion_matrix: int array, rows true and columns predicted classes
            (multiclass, binary).
        mse, mae, rmse, r2: regression errors and the coefficient of determination.
        threshold: the probability threshold used (binary, multilabel).
        y_true: true class indices, multi-hot labels or target values.
        y_pred: predicted class indices, multi-hot labels or values.
        y_score: the model's outputs as probabilities (classification) or values.
    """

    task: str
    num_examples: int
    class_names: list | None = None
    accuracy: float | None = None
    top_k_accuracy: dict | None = None
    roc_auc: float | None = None
    subset_accuracy: float | None = None
    hamming_loss: float | None = None
    per_class: dict | None = None
    macro_avg: dict | None = None
    weighted_avg: dict | None = None
    confusion_matrix: np.ndarray | None = None
    mse: float | None = None
    mae: float | None = None
    rmse: float | None = None
    r2: float | None = None
    threshold: float | None = None
    y_true: np.ndarray | None = dataclasses.field(default=None, repr=False)
    y_pred: np.ndarray | None = dataclasses.field(default=None, repr=False)
    y_score: np.ndarray | None = dataclasses.field(default=None, repr=False)

    _PREDICTION_FIELDS = ("y_true", "y_pred", "y_score")

    def to_dict(self, include_predictions=False):
        """The report as plain Python values, ready for `json.dumps`.

        Args:
            include_predictions: also include `y_true`, `y_pred` and `y_score`
                as lists (one entry per example).

        Example:
        >>> json.dumps(report.to_dict())   # doctest: +SKIP
        """
        return {
            field.name: _to_builtin(getattr(self, field.name))
            for field in dataclasses.fields(self)
            if include_predictions or field.name not in self._PREDICTION_FIELDS
        }

    def headline_metrics(self):
        """`(name, value)` pairs of the single-number metrics that apply."""
        pairs = [("accuracy", self.accuracy)]
        pairs += [(f"top-{k} accuracy", value) for k, value in (self.top_k_accuracy or {}).items()]
        pairs += [
            ("ROC AUC", self.roc_auc),
            ("subset accuracy", self.subset_accuracy),
            ("hamming loss", self.hamming_loss),
            ("MSE", self.mse),
            ("MAE", self.mae),
            ("RMSE", self.rmse),
            ("R2", self.r2),
        ]
        if self.macro_avg:
            pairs.append(("macro F1", self.macro_avg["f1"]))
        return [(name, value) for name, value in pairs if value is not None]

    def format_text(self):
        """A readable multi-line summary: metrics, per-class table, confusion matrix.

        Example:
        >>> print(report.format_text())   # doctest: +SKIP
        """
        lines = [f"Evaluation: {self.task}, {self.num_examples} examples"]
        metrics = self.headline_metrics()
        label_width = max((len(name) for name, _ in metrics), default=0)
        lines += [f"  {name:<{label_width}}  {value:.4f}" for name, value in metrics]
        if self.per_class:
            lines += ["", *_per_class_table(self.per_class, self.macro_avg, self.weighted_avg)]
        if self.confusion_matrix is not None:
            lines += ["", "Confusion matrix (rows: true, columns: predicted):"]
            names = self.class_names or [str(index) for index in range(len(self.confusion_matrix))]
            if len(names) > MAX_TEXT_MATRIX_CLASSES:
                lines.append(f"  ({len(names)} classes: too many to print; use plot_confusion_matrix)")
            else:
                lines += _matrix_table(self.confusion_matrix, names)
        return "\n".join(lines)

    def plot_confusion_matrix(self, path=None, *, normalize=False, title=None):
        """The confusion matrix as a heatmap: `evaluation.plot_confusion_matrix` (classification only)."""
        from keras_transfer.evaluation.plots import plot_confusion_matrix

        if self.confusion_matrix is None:
            raise ValueError(f"a {self.task} evaluation has no confusion matrix to plot.")
        return plot_confusion_matrix(self.confusion_matrix, self.class_names, path, normalize=normalize, title=title)

    def __str__(self):
        return self.format_text()


def evaluate_model(
    model,
    data,
    *,
    task=None,
    class_names=None,
    top_k=(3, 5),
    batch_size=32,
    threshold=0.5,
    from_logits=None,
    predictions=None,
):
    """Runs `model` once over `data` and measures its predictions.

    The labels are collected in the same pass as the predictions, so a
    shuffled dataset still pairs each prediction with its own label.

    Args:
        model: a Keras model. When it has `model.head` (a `Head`) its `task`
            and `from_logits` are used, and `model.class_names` when present.
        data: a `tf.data.Dataset` of `(images, labels)` batches (extra elements
            such as sample weights are ignored), or an `(x, y)` tuple of arrays.
        task: `"multiclass"`, `"binary"`, `"multilabel"` or `"regression"`;
            needed when the model has no `head`.
        class_names: names of the classes; defaults to `data.class_names`,
            then `model.class_names`, then `"0"`, `"1"`, ...
        top_k: the k values for top-k accuracy (multiclass; only k below the
            number of classes).
        batch_size: batch size for array inputs (datasets keep their batches).
        threshold: probability at or above which a binary or multilabel
            output counts as positive.
        from_logits: whether the model outputs logits; defaults to
            `model.head.from_logits`, else it is guessed from the outputs
            (values outside [0, 1], or multiclass rows not summing to 1).
        predictions: `(labels, outputs)` of `model` on `data`, already
            computed (`FineTuneHistory.validation_outputs`, from cached
            features): measured without running the model again.

    Returns:
        An `EvaluationReport`.

    Example:
    >>> report = evaluate_model(model, test_data, task="multiclass")   # doctest: +SKIP
    >>> report.accuracy, report.confusion_matrix                      # doctest: +SKIP
    """
    head = getattr(model, "head", None)
    task = task or getattr(head, "task", None)
    if task is None:
        raise ValueError(f"The model has no `head`: pass task= (one of {', '.join(TASKS)}).")
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}: use one of {', '.join(TASKS)}.")

    y_true, outputs = _predict(model, data, batch_size) if predictions is None else map(np.asarray, predictions)
    if len(outputs) == 0:
        raise ValueError("The data holds no examples to evaluate.")
    if task == "regression":
        return _regression_report(y_true, outputs)

    if from_logits is None:
        from_logits = getattr(head, "from_logits", None)
    if from_logits is None:
        from_logits = _looks_like_logits(outputs, task)
    if task == "binary":
        if outputs.ndim > 1 and outputs.shape[-1] != 1:
            raise ValueError(
                f"A binary model has one output, got {outputs.shape[-1]}: "
                "use task='multiclass' for a softmax over two classes."
            )
        outputs = outputs.reshape(-1)
    decoded = decode_outputs(outputs, task=task, from_logits=from_logits, threshold=threshold)
    scores = decoded.probabilities

    num_classes = 2 if task == "binary" else scores.shape[-1]
    if class_names is None:
        class_names = getattr(data, "class_names", None)
    if class_names is None:
        class_names = getattr(model, "class_names", None)
    if class_names is None:
        class_names = [str(index) for index in range(num_classes)]
    class_names = [str(name) for name in class_names]
    if len(class_names) != num_classes:
        raise ValueError(
            f"The model has {num_classes} {'labels' if task == 'multilabel' else 'classes'} "
            f"but {len(class_names)} class_names were given: {class_names}."
        )

    if task == "multilabel":
        return _multilabel_report(y_true, decoded, class_names, threshold)
    return _single_label_report(y_true, decoded, task, class_names, top_k, threshold)


def _predict(model, data, batch_size):
    """Returns `(labels, outputs)` as numpy arrays from a single pass over `data`."""
    if isinstance(data, (tuple, list)):
        inputs, labels = data[0], data[1]
        outputs = model.predict(inputs, batch_size=batch_size, verbose=0)
        return np.asarray(labels), np.asarray(outputs)
    # Tasks that preprocess outside the graph (a TextClassifier tokenizes raw
    # sentences) turn the dataset into the inputs their graph takes, arranged
    # as in evaluate (text: each batch padded only to its longest example).
    data = (
        model.labelled_dataset(data, batch_size) if isinstance(model, TransferModel) else as_model_inputs(model, data)
    )
    # Predicting batch by batch keeps labels and predictions from the same
    # iteration: a second pass over a shuffled dataset would come in another order.
    labels, outputs = [], []
    for batch in data:
        inputs, batch_labels = batch[0], batch[1]
        outputs.append(np.asarray(model.predict_on_batch(inputs)))
        labels.append(np.asarray(batch_labels))
    if not outputs:
        return np.zeros((0,)), np.zeros((0,))
    return np.concatenate(labels), np.concatenate(outputs)


def _looks_like_logits(outputs, task):
    """Evaluation's guess when no head says: values outside [0, 1], or multiclass rows not summing to 1."""
    if outputs.min() < 0.0 or outputs.max() > 1.0:
        return True
    return task == "multiclass" and not np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3)


def _class_indices(labels, num_classes):
    """Sparse class indices from sparse `(N,)`/`(N, 1)` or one-hot `(N, K)` labels."""
    if labels.ndim == 2 and labels.shape[1] == num_classes and num_classes > 1:
        return labels.argmax(axis=1)
    return labels.reshape(-1).astype(np.int64)


def _single_label_report(y_true, decoded, task, class_names, top_k, threshold):
    num_classes = len(class_names)
    class_ids = list(range(num_classes))
    scores, y_pred = decoded.probabilities, decoded.classes.astype(np.int64)
    if task == "binary":
        y_true = y_true.reshape(-1).astype(np.int64)
    else:
        y_true = _class_indices(y_true, num_classes)

    report = EvaluationReport(
        task=task,
        num_examples=len(y_true),
        class_names=class_names,
        accuracy=float(skmetrics.accuracy_score(y_true, y_pred)),
        confusion_matrix=skmetrics.confusion_matrix(y_true, y_pred, labels=class_ids),
        y_true=y_true,
        y_pred=y_pred,
        y_score=scores,
    )
    _add_class_metrics(report, y_true, y_pred, class_ids)
    if task == "binary":
        report.threshold = float(threshold)
        # ROC AUC is undefined when the data holds only one of the two classes.
        if len(np.unique(y_true)) == 2:
            report.roc_auc = float(skmetrics.roc_auc_score(y_true, scores))
    else:
        ks = [top_k] if isinstance(top_k, int) else (top_k or ())
        report.top_k_accuracy = {
            int(k): float(skmetrics.top_k_accuracy_score(y_true, scores, k=k, labels=class_ids))
            for k in sorted(ks)
            if k < num_classes
        }
    return report


def _multilabel_report(y_true, decoded, class_names, threshold):
    scores, y_pred = decoded.probabilities, decoded.classes.astype(np.int64)
    y_true = y_true.reshape(scores.shape).astype(np.int64)
    report = EvaluationReport(
        task="multilabel",
        num_examples=len(y_true),
        class_names=class_names,
        subset_accuracy=float(skmetrics.accuracy_score(y_true, y_pred)),
        hamming_loss=float(skmetrics.hamming_loss(y_true, y_pred)),
        threshold=float(threshold),
        y_true=y_true,
        y_pred=y_pred,
        y_score=scores,
    )
    _add_class_metrics(report, y_true, y_pred, list(range(len(class_names))))
    return report


def _add_class_metrics(report, y_true, y_pred, class_ids):
    """Fills per_class, macro_avg and weighted_avg from sklearn's classification report."""
    table = skmetrics.classification_report(
        y_true,
        y_pred,
        labels=class_ids,
        target_names=report.class_names,
        output_dict=True,
        zero_division=0,
    )
    report.per_class = {name: _class_row(table[name]) for name in report.class_names}
    report.macro_avg = _class_row(table["macro avg"])
    report.weighted_avg = _class_row(table["weighted avg"])


def _class_row(row):
    return {
        "precision": float(row["precision"]),
        "recall": float(row["recall"]),
        "f1": float(row["f1-score"]),
        "support": int(row["support"]),
    }


def _regression_report(y_true, outputs):
    predictions = outputs.astype(np.float64)
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        predictions = predictions.reshape(-1)
    y_true = y_true.astype(np.float64).reshape(predictions.shape)
    mse = float(skmetrics.mean_squared_error(y_true, predictions))
    return EvaluationReport(
        task="regression",
        num_examples=len(y_true),
        mse=mse,
        mae=float(skmetrics.mean_absolute_error(y_true, predictions)),
        rmse=math.sqrt(mse),
        # R² needs at least two examples to measure the variance against.
        r2=float(skmetrics.r2_score(y_true, predictions)) if len(y_true) > 1 else None,
        y_true=y_true,
        y_pred=predictions,
        y_score=predictions,
    )


def _to_builtin(value):
    """Converts numpy values (and containers of them) to plain Python values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(key): _to_builtin(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_builtin(item) for item in value]
    return value


def truncate(name, width):
    """`name` cut to `width` characters, an ellipsis marking the cut."""
    name = str(name)
    return name if len(name) <= width else name[: width - 1] + "…"


def _per_class_table(per_class, macro_avg, weighted_avg):
    rows = [(truncate(name, _NAME_WIDTH), row) for name, row in per_class.items()]
    rows += [("macro avg", macro_avg), ("weighted avg", weighted_avg)]
    width = max(len("class"), *(len(name) for name, _ in rows))
    header = f"  {'class':<{width}}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>7}"
    lines = [header]
    for name, row in rows:
        lines.append(
            f"  {name:<{width}}  {row['precision']:>9.4f}  {row['recall']:>9.4f}"
            f"  {row['f1']:>9.4f}  {row['support']:>7d}"
        )
    return lines


def _matrix_table(matrix, class_names):
    names = [truncate(name, _MATRIX_NAME_WIDTH) for name in class_names]
    corner = "true \\ pred"
    row_width = max(len(corner), *(len(name) for name in names))
    column_widths = [max(len(name), len(str(matrix[:, column].max()))) for column, name in enumerate(names)]
    lines = [
        "  " + corner.ljust(row_width) + "".join("  " + name.rjust(width) for name, width in zip(names, column_widths))
    ]
    for name, counts in zip(names, matrix):
        lines.append(
            "  "
            + name.ljust(row_width)
            + "".join("  " + str(count).rjust(width) for count, width in zip(counts, column_widths))
        )
    return lines
