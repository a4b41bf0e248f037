"""Evaluation: metrics reports, confusion matrices and plots for trained models.

`evaluate_model` runs a model once over a dataset and measures it with
scikit-learn; the `EvaluationReport` it returns prints as a readable text and
converts to JSON. The plots use matplotlib's object-oriented API (a `Figure`
with an Agg canvas), never pyplot, so they open no windows and keep no global
state.

>>> report = evaluate_model(model, test_data)   # doctest: +SKIP
>>> print(report)                               # doctest: +SKIP
>>> plot_confusion_matrix(report.confusion_matrix, report.class_names, "cm.png")  # doctest: +SKIP
"""

import dataclasses
import math
import os
import tempfile

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn import metrics as skmetrics

from keras_transfer.models.heads import TASKS

# Beyond this many classes the text confusion matrix is too wide to read.
_MAX_TEXT_MATRIX_CLASSES = 30
_NAME_WIDTH = 24
_MATRIX_NAME_WIDTH = 10
# Keys of a Keras history that are not metrics worth plotting.
_NOT_METRICS = ("loss", "learning_rate", "lr")


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
            if len(names) > _MAX_TEXT_MATRIX_CLASSES:
                lines.append(f"  ({len(names)} classes: too many to print; use plot_confusion_matrix)")
            else:
                lines += _matrix_table(self.confusion_matrix, names)
        return "\n".join(lines)

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

    y_true, outputs = _predict(model, data, batch_size)
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
    scores = _probabilities(outputs, task, from_logits)

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
        return _multilabel_report(y_true, scores, class_names, threshold)
    return _single_label_report(y_true, scores, task, class_names, top_k, threshold)


def _predict(model, data, batch_size):
    """Returns `(labels, outputs)` as numpy arrays from a single pass over `data`."""
    if isinstance(data, (tuple, list)):
        inputs, labels = data[0], data[1]
        outputs = model.predict(inputs, batch_size=batch_size, verbose=0)
        return np.asarray(labels), np.asarray(outputs)
    # Tasks that preprocess outside the graph (a TextClassifier tokenizes raw
    # sentences) turn the dataset into the inputs their graph takes.
    to_model_inputs = getattr(model, "model_inputs", None)
    if to_model_inputs is not None:
        data = to_model_inputs(data)
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
    if outputs.min() < 0.0 or outputs.max() > 1.0:
        return True
    return task == "multiclass" and not np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3)


def _probabilities(outputs, task, from_logits):
    outputs = outputs.astype(np.float64)
    if not from_logits:
        return outputs
    if task == "multiclass":
        shifted = np.exp(outputs - outputs.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-outputs))


def _class_indices(labels, num_classes):
    """Sparse class indices from sparse `(N,)`/`(N, 1)` or one-hot `(N, K)` labels."""
    if labels.ndim == 2 and labels.shape[1] == num_classes and num_classes > 1:
        return labels.argmax(axis=1)
    return labels.reshape(-1).astype(np.int64)


def _single_label_report(y_true, scores, task, class_names, top_k, threshold):
    num_classes = len(class_names)
    class_ids = list(range(num_classes))
    if task == "binary":
        y_true = y_true.reshape(-1).astype(np.int64)
        y_pred = (scores >= threshold).astype(np.int64)
    else:
        y_true = _class_indices(y_true, num_classes)
        y_pred = scores.argmax(axis=-1)

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


def _multilabel_report(y_true, scores, class_names, threshold):
    y_true = y_true.reshape(scores.shape).astype(np.int64)
    y_pred = (scores >= threshold).astype(np.int64)
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


def _truncate(name, width):
    name = str(name)
    return name if len(name) <= width else name[: width - 1] + "…"


def _per_class_table(per_class, macro_avg, weighted_avg):
    rows = [(_truncate(name, _NAME_WIDTH), row) for name, row in per_class.items()]
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
    names = [_truncate(name, _MATRIX_NAME_WIDTH) for name in class_names]
    corner = "true \\ pred"
    row_width = max(len(corner), *(len(name) for name in names))
    column_widths = [
        max(len(name), len(str(matrix[:, column].max())))
        for column, name in enumerate(names)
    ]
    lines = ["  " + corner.ljust(row_width) + "".join(
        "  " + name.rjust(width) for name, width in zip(names, column_widths)
    )]
    for name, counts in zip(names, matrix):
        lines.append("  " + name.ljust(row_width) + "".join(
            "  " + str(count).rjust(width) for count, width in zip(counts, column_widths)
        ))
    return lines


def _new_figure(width, height):
    """A Figure with its own Agg canvas: no pyplot, no window, no global state."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _atomic_savefig(figure, path, dpi=100):
    """Saves `figure` to `path` (format from the suffix, PNG by default) atomically.

    The image is written to a temporary file in the same folder and then
    renamed over `path`, so a reader never sees a half-written file.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    image_format = os.path.splitext(path)[1][1:].lower() or "png"
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=f".{image_format}", dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            figure.savefig(file, format=image_format, dpi=dpi)
        # mkstemp makes the file private (0600); a saved plot should be readable.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def plot_confusion_matrix(matrix, class_names, path=None, *, normalize=False, title=None):
    """Draws a confusion matrix as a heatmap with the counts in the cells.

    Args:
        matrix: `(K, K)` counts, rows true and columns predicted classes (as in
            `EvaluationReport.confusion_matrix`).
        class_names: K names for the axes, or None for the indices.
        path: where to save a PNG; nothing is saved when None.
        normalize: divide each row by its total, showing per-class recall.
        title: the title; defaults to "Confusion matrix".

    Returns:
        The matplotlib `Figure`.

    Example:
    >>> plot_confusion_matrix(report.confusion_matrix, report.class_names, "cm.png")  # doctest: +SKIP
    """
    matrix = np.asarray(matrix)
    num_classes = matrix.shape[0]
    names = [_truncate(name, 20) for name in (class_names or range(num_classes))]
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        # Classes absent from the data have an empty row: leave it at zero.
        matrix = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)

    size = max(4.0, 0.5 * num_classes + 2.5)
    figure = _new_figure(size + 1.0, size)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    colorbar = figure.colorbar(image, ax=axes)
    if not normalize:
        colorbar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(
        xticks=range(num_classes),
        yticks=range(num_classes),
        xlabel="Predicted",
        ylabel="True",
        title=title or ("Confusion matrix (normalized)" if normalize else "Confusion matrix"),
    )
    axes.set_xticklabels(names, rotation=45, ha="right", rotation_mode="anchor")
    axes.set_yticklabels(names)
    if num_classes <= _MAX_TEXT_MATRIX_CLASSES:
        # White text on dark cells keeps the numbers readable.
        dark = matrix.max() / 2 if matrix.max() > 0 else 1
        for (row, column), value in np.ndenumerate(matrix):
            axes.text(
                column, row, f"{value:.2f}" if normalize else f"{int(value)}",
                ha="center", va="center", fontsize=8,
                color="white" if value > dark else "black",
            )
    if path is not None:
        _atomic_savefig(figure, path)
    return figure


def _history_phases(histories, phase_names):
    """`(names, [{metric: values}])` from Histories, dicts or a FineTuneHistory."""
    if hasattr(histories, "phases"):  # a FineTuneHistory names its own phases
        names, histories = zip(*histories.phases) if histories.phases else ((), ())
        phase_names = phase_names or list(names)
    elif isinstance(histories, dict) or hasattr(histories, "history"):
        histories = [histories]
    phases = [dict(getattr(history, "history", history)) for history in histories]
    if not phases or not any(phases):
        raise ValueError("No training history to plot.")
    phase_names = list(phase_names or (f"phase {index}" for index in range(1, len(phases) + 1)))
    if len(phase_names) != len(phases):
        raise ValueError(f"{len(phases)} histories but {len(phase_names)} phase_names.")
    return phase_names, phases


def _main_metric(keys):
    if "accuracy" in keys:
        return "accuracy"
    others = [key for key in keys if not key.startswith("val_") and key not in _NOT_METRICS]
    return others[0] if others else None


def plot_training_curves(histories, path=None, *, phase_names=None):
    """Plots loss and the main metric over consecutive training phases.

    Epochs are numbered continuously across phases; a dashed line marks where
    each new phase (e.g. fine-tuning after head training) starts.

    Args:
        histories: a list of `keras.callbacks.History` objects or
            `{metric: [values]}` dicts, one per phase, in order (a single one,
            or a `FineTuneHistory`, also works).
        path: where to save a PNG; nothing is saved when None.
        phase_names: a label per phase; defaults to "phase 1", "phase 2", ...

    Returns:
        The matplotlib `Figure`: a loss panel, and a panel for accuracy (or the
        first other metric) when the history has one.

    Example:
    >>> plot_training_curves([head_history, finetune_history], "curves.png",
    ...                      phase_names=["head", "fine-tune"])  # doctest: +SKIP
    """
    phase_names, phases = _history_phases(histories, phase_names)
    keys = list(dict.fromkeys(key for phase in phases for key in phase))
    plotted = ["loss", _main_metric(keys)] if "loss" in keys else [_main_metric(keys)]
    plotted = [key for key in plotted if key is not None]

    epoch_counts = [max(len(values) for values in phase.values()) if phase else 0 for phase in phases]
    starts = np.cumsum([0, *epoch_counts[:-1]]) + 1
    epochs = np.arange(1, sum(epoch_counts) + 1)

    def series(key):
        # A metric missing from a phase (e.g. no validation) leaves a gap.
        parts = []
        for phase, count in zip(phases, epoch_counts):
            values = np.full(count, np.nan)
            recorded = [float(value) for value in phase.get(key, [])]
            values[: len(recorded)] = recorded
            parts.append(values)
        return np.concatenate(parts)

    figure = _new_figure(5.0 * len(plotted), 4.0)
    for index, key in enumerate(plotted, start=1):
        axes = figure.add_subplot(1, len(plotted), index)
        axes.plot(epochs, series(key), marker="o", markersize=3, label="train")
        if f"val_{key}" in keys:
            axes.plot(epochs, series(f"val_{key}"), marker="o", markersize=3, label="validation")
        if len(phases) > 1:
            for name, start in zip(phase_names, starts):
                if start > 1:
                    axes.axvline(start - 0.5, color="gray", linestyle="--", linewidth=1)
                axes.text(start - 0.5 if start > 1 else start, 0.98, f" {name}", va="top",
                          fontsize=8, color="dimgray", transform=axes.get_xaxis_transform())
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set(xlabel="Epoch", ylabel=key, title=key)
        axes.legend(loc="best")
    if path is not None:
        _atomic_savefig(figure, path)
    return figure


def _label_name(label, class_names):
    if class_names is not None and isinstance(label, (int, np.integer)):
        return str(class_names[label])
    return str(label)


def plot_predictions(images, true_labels, predicted_labels, class_names, path=None, *, max_images=12):
    """Shows a grid of images titled "predicted (true)", in red when wrong.

    Args:
        images: `(N, H, W, C)` (or `(N, H, W)`) pixels in [0, 255].
        true_labels: N true class indices (or names).
        predicted_labels: N predicted class indices (or names), e.g.
            `report.y_pred` for data evaluated in a fixed order.
        class_names: names for the indices, or None to show the indices.
        path: where to save a PNG; nothing is saved when None.
        max_images: show at most this many (the first ones).

    Returns:
        The matplotlib `Figure`.

    Example:
    >>> plot_predictions(x_test, report.y_true, report.y_pred, report.class_names,
    ...                  "predictions.png")  # doctest: +SKIP
    """
    images = np.asarray(images, dtype=float)[:max_images]
    true_labels = np.asarray(true_labels).reshape(-1)[: len(images)]
    predicted_labels = np.asarray(predicted_labels).reshape(-1)[: len(images)]
    if len(images) == 0:
        raise ValueError("No images to plot.")
    if not len(images) == len(true_labels) == len(predicted_labels):
        raise ValueError(
            f"{len(images)} images but {len(true_labels)} true and "
            f"{len(predicted_labels)} predicted labels."
        )

    columns = min(4, len(images))
    rows = math.ceil(len(images) / columns)
    figure = _new_figure(2.5 * columns, 2.7 * rows)
    for index, (image, true, predicted) in enumerate(zip(images, true_labels, predicted_labels)):
        axes = figure.add_subplot(rows, columns, index + 1)
        image = np.clip(image / 255.0, 0.0, 1.0)
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        axes.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0)
        true_name = _truncate(_label_name(true, class_names), 16)
        predicted_name = _truncate(_label_name(predicted, class_names), 16)
        axes.set_title(f"{predicted_name} ({true_name})", fontsize=9,
                       color="black" if true == predicted else "red")
        axes.axis("off")
    if path is not None:
        _atomic_savefig(figure, path)
    return figure
