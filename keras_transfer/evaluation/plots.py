"""Plots of an evaluation: confusion matrix, training curves, predictions on images.

They use matplotlib's object-oriented API (a `Figure` with an Agg canvas),
never pyplot, so they open no windows and keep no global state; files are
written atomically.

>>> plot_confusion_matrix(report.confusion_matrix, report.class_names, "cm.png")  # doctest: +SKIP
"""

import math
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from keras_transfer import atomic_files as files
from keras_transfer.evaluation.metrics import MAX_TEXT_MATRIX_CLASSES, truncate

# Keys of a Keras history that are not metrics worth plotting.
_NOT_METRICS = ("loss", "learning_rate", "lr")


def _new_figure(width, height):
    """A Figure with its own Agg canvas: no pyplot, no window, no global state."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path, dpi=100):
    """Saves `figure` to `path` atomically; the suffix names the format (PNG when there is none)."""
    image_format = os.path.splitext(os.fspath(path))[1][1:].lower() or "png"
    with files.atomic_path(path) as temporary:
        figure.savefig(temporary, format=image_format, dpi=dpi)


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
    names = [truncate(name, 20) for name in (class_names or range(num_classes))]
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
    if num_classes <= MAX_TEXT_MATRIX_CLASSES:
        # White text on dark cells keeps the numbers readable.
        dark = matrix.max() / 2 if matrix.max() > 0 else 1
        for (row, column), value in np.ndenumerate(matrix):
            axes.text(
                column,
                row,
                f"{value:.2f}" if normalize else f"{int(value)}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if value > dark else "black",
            )
    if path is not None:
        _save(figure, path)
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
                axes.text(
                    start - 0.5 if start > 1 else start,
                    0.98,
                    f" {name}",
                    va="top",
                    fontsize=8,
                    color="dimgray",
                    transform=axes.get_xaxis_transform(),
                )
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set(xlabel="Epoch", ylabel=key, title=key)
        axes.legend(loc="best")
    if path is not None:
        _save(figure, path)
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
            f"{len(images)} images but {len(true_labels)} true and {len(predicted_labels)} predicted labels."
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
        true_name = truncate(_label_name(true, class_names), 16)
        predicted_name = truncate(_label_name(predicted, class_names), 16)
        axes.set_title(f"{predicted_name} ({true_name})", fontsize=9, color="black" if true == predicted else "red")
        axes.axis("off")
    if path is not None:
        _save(figure, path)
    return figure
