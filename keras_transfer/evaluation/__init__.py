"""Scoring a model on labelled data: metrics, reports and plots."""

from keras_transfer.evaluation.evaluate import (
    EvaluationReport,
    evaluate_model,
    plot_confusion_matrix,
    plot_predictions,
    plot_training_curves,
)
