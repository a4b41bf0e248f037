"""Scoring a model on labelled data: metrics, reports and plots."""

from keras_transfer.evaluation.metrics import EvaluationReport, evaluate_model
from keras_transfer.evaluation.plots import plot_confusion_matrix, plot_predictions, plot_training_curves
