"""Tests for keras_transfer.evaluation.

The models are a single Dense layer with an identity kernel, so each input row
*is* the model's logits: every prediction, and so every metric, is known by hand.
"""

import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.evaluation import (
    EvaluationReport,
    evaluate_model,
    plot_confusion_matrix,
    plot_predictions,
    plot_training_curves,
)
from keras_transfer.models.heads import Head

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASS_NAMES = ["cat", "dog", "bird"]

# Eight examples, three classes. Rows are logits; predictions are
# [0, 0, 1, 1, 1, 2, 2, 2] against the truth [0, 0, 0, 1, 1, 1, 2, 2].
MULTICLASS_LOGITS = np.array(
    [
        [3, 1, 0],
        [3, 0, 1],
        [1, 3, 0],  # cat taken for dog; cat is the runner-up (top-2 hit)
        [1, 3, 0],
        [0, 3, 1],
        [1, 0, 3],  # dog taken for bird; dog is last (top-2 miss)
        [0, 1, 3],
        [1, 0, 3],
    ],
    dtype="float32",
)
MULTICLASS_LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2])
MULTICLASS_MATRIX = [[2, 1, 0], [0, 2, 1], [0, 0, 2]]


def identity_model(width, activation=None, head=None, class_names=None):
    """A model whose output is `activation(inputs)`: the inputs are its logits."""
    model = keras.Sequential(
        [
            keras.Input((width,)),
            keras.layers.Dense(width, activation=activation, use_bias=False, kernel_initializer="identity"),
        ]
    )
    if head is not None:
        model.head = head
    if class_names is not None:
        model.class_names = class_names
    return model


def batched(x, y, batch_size=3):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def assert_plain_json(value):
    """Every value is a plain Python type (json.dumps accepts numpy float64, so check types)."""
    assert type(value) in (dict, list, str, int, float, bool, type(None)), type(value)
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)


def assert_png(path, min_bytes=2000):
    assert os.path.isfile(path)
    with open(path, "rb") as file:
        assert file.read(8) == PNG_SIGNATURE
    assert os.path.getsize(path) > min_bytes
    leftovers = [name for name in os.listdir(os.path.dirname(path)) if name.startswith(".tmp")]
    assert leftovers == []


@pytest.fixture(scope="module")
def multiclass_report():
    dataset = batched(MULTICLASS_LOGITS, MULTICLASS_LABELS)
    dataset.class_names = CLASS_NAMES
    model = identity_model(3, "softmax")
    return evaluate_model(model, dataset, task="multiclass", top_k=(2, 3))


# --- evaluate_model -----------------------------------------------------------


def test_multiclass_softmax_metrics(multiclass_report):
    report = multiclass_report
    assert report.task == "multiclass"
    assert report.num_examples == 8
    assert report.class_names == CLASS_NAMES  # from the dataset's attribute
    assert report.accuracy == 0.75
    assert report.confusion_matrix.tolist() == MULTICLASS_MATRIX
    assert report.y_true.tolist() == MULTICLASS_LABELS.tolist()
    assert report.y_pred.tolist() == [0, 0, 1, 1, 1, 2, 2, 2]
    assert report.y_score.shape == (8, 3)
    assert report.roc_auc is None and report.mse is None and report.subset_accuracy is None


def test_multiclass_top_k_only_below_class_count(multiclass_report):
    assert multiclass_report.top_k_accuracy == {2: 0.875}


def test_multiclass_per_class_and_averages(multiclass_report):
    per_class = multiclass_report.per_class
    assert list(per_class) == CLASS_NAMES
    assert per_class["cat"]["precision"] == pytest.approx(1.0)
    assert per_class["cat"]["recall"] == pytest.approx(2 / 3)
    assert per_class["cat"]["f1"] == pytest.approx(0.8)
    assert per_class["cat"]["support"] == 3
    assert per_class["dog"]["precision"] == pytest.approx(2 / 3)
    assert per_class["dog"]["recall"] == pytest.approx(2 / 3)
    assert per_class["bird"]["precision"] == pytest.approx(2 / 3)
    assert per_class["bird"]["recall"] == pytest.approx(1.0)
    assert per_class["bird"]["support"] == 2
    assert multiclass_report.macro_avg["precision"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert multiclass_report.macro_avg["support"] == 8
    assert multiclass_report.weighted_avg["recall"] == pytest.approx(0.75)


def test_multiclass_logits_from_head_attribute():
    model = identity_model(3, head=Head.multiclass(3, logits=True), class_names=CLASS_NAMES)
    report = evaluate_model(model, (MULTICLASS_LOGITS, MULTICLASS_LABELS), batch_size=4)
    assert report.task == "multiclass"  # taken from model.head
    assert report.class_names == CLASS_NAMES  # taken from model.class_names
    assert report.accuracy == 0.75
    assert report.confusion_matrix.tolist() == MULTICLASS_MATRIX
    # Logits were turned into probabilities.
    np.testing.assert_allclose(report.y_score.sum(axis=1), 1.0, rtol=1e-6)
    assert report.y_score[0].argmax() == 0 and report.y_score[0, 0] > 0.8


def test_logits_are_detected_without_a_head():
    report = evaluate_model(identity_model(3), (MULTICLASS_LOGITS, MULTICLASS_LABELS), task="multiclass")
    assert report.accuracy == 0.75
    np.testing.assert_allclose(report.y_score.sum(axis=1), 1.0, rtol=1e-6)
    assert report.class_names == ["0", "1", "2"]


def test_one_hot_labels_and_absent_class_keeps_its_row():
    # Only classes 0 and 1 occur; class 2 still gets a (zero) row and column.
    logits = MULTICLASS_LOGITS[:4]  # predicted [0, 0, 1, 1]
    one_hot = np.eye(3, dtype="float32")[[0, 0, 0, 1]]
    report = evaluate_model(identity_model(3, "softmax"), batched(logits, one_hot), task="multiclass")
    assert report.y_true.tolist() == [0, 0, 0, 1]
    assert report.confusion_matrix.tolist() == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert report.accuracy == 0.75
    assert report.per_class["2"]["support"] == 0


def test_shuffled_dataset_is_iterated_once_and_stays_paired():
    # A perfect model: any mismatch between labels and predictions lowers accuracy.
    labels = np.arange(64) % 4
    logits = np.eye(4, dtype="float32")[labels] * 5.0
    dataset = tf.data.Dataset.from_tensor_slices((logits, labels)).shuffle(64, reshuffle_each_iteration=True).batch(8)
    report = evaluate_model(identity_model(4, "softmax"), dataset, task="multiclass")
    assert report.accuracy == 1.0
    assert report.confusion_matrix.tolist() == np.diag([16] * 4).tolist()


def test_generator_dataset_is_iterated_exactly_once():
    passes = []
    rng = np.random.default_rng(0)

    def generate():
        passes.append(1)
        for label in rng.permutation(12) % 3:  # a new order on every pass
            yield np.eye(3, dtype="float32")[label] * 4.0, label

    dataset = tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            tf.TensorSpec((3,), tf.float32),
            tf.TensorSpec((), tf.int64),
        ),
    ).batch(5)
    report = evaluate_model(identity_model(3, "softmax"), dataset, task="multiclass")
    assert len(passes) == 1
    assert report.num_examples == 12
    assert report.accuracy == 1.0


# Binary: truth [0, 0, 0, 0, 1, 1, 1, 1]; one false positive (logit 1) and
# one false negative (logit -0.5). Logit 0.3 is positive only once it goes
# through the sigmoid (0.57), so it tells logits from probabilities.
BINARY_LOGITS = np.array([[-3], [-2], [-1], [1], [-0.5], [0.3], [2], [3]], dtype="float32")
BINARY_LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1])


def test_binary_sigmoid():
    model = identity_model(1, "sigmoid")
    dataset = batched(BINARY_LOGITS, BINARY_LABELS)
    report = evaluate_model(model, dataset, task="binary", class_names=["ok", "defect"])
    assert report.task == "binary"
    assert report.class_names == ["ok", "defect"]
    assert report.accuracy == 0.75
    assert report.confusion_matrix.tolist() == [[3, 1], [1, 3]]
    assert report.y_pred.tolist() == [0, 0, 0, 1, 0, 1, 1, 1]
    # Each positive outranks each negative except -0.5 and 0.3 versus 1: 14 of 16 pairs.
    assert report.roc_auc == pytest.approx(14 / 16)
    assert report.per_class["defect"]["recall"] == pytest.approx(0.75)
    assert report.top_k_accuracy is None
    assert report.threshold == 0.5


def test_binary_threshold():
    report = evaluate_model(identity_model(1, "sigmoid"), (BINARY_LOGITS, BINARY_LABELS), task="binary", threshold=0.9)
    # Only sigmoid(3) = 0.95 reaches 0.9: four negatives right plus one positive.
    assert report.y_pred.tolist() == [0, 0, 0, 0, 0, 0, 0, 1]
    assert report.accuracy == 0.625
    assert report.confusion_matrix.tolist() == [[4, 0], [3, 1]]
    assert report.roc_auc == pytest.approx(14 / 16)  # does not depend on the threshold


def test_binary_logit_head_thresholds_at_zero():
    model = identity_model(1, head=Head.binary(logits=True))
    report = evaluate_model(model, batched(BINARY_LOGITS, BINARY_LABELS))
    assert report.task == "binary"
    assert report.y_pred.tolist() == [0, 0, 0, 1, 0, 1, 1, 1]
    assert report.accuracy == 0.75
    assert report.class_names == ["0", "1"]


def test_multilabel():
    truth = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    predicted = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1]])
    logits = np.where(predicted == 1, 2.0, -2.0).astype("float32")
    dataset = batched(logits, truth.astype("float32"), batch_size=2)
    dataset.class_names = ["sky", "tree", "car"]
    report = evaluate_model(identity_model(3, "sigmoid"), dataset, task="multilabel")
    assert report.task == "multilabel"
    assert report.class_names == ["sky", "tree", "car"]
    assert report.subset_accuracy == 0.5
    assert report.hamming_loss == pytest.approx(2 / 12)
    assert report.per_class["sky"]["precision"] == pytest.approx(1.0)
    assert report.per_class["tree"]["recall"] == pytest.approx(0.5)
    assert report.per_class["car"]["precision"] == pytest.approx(2 / 3)
    assert report.per_class["car"]["support"] == 2
    assert report.y_pred.tolist() == predicted.tolist()
    assert report.confusion_matrix is None and report.accuracy is None


def test_regression():
    inputs = np.array([[1.0], [2.0], [3.0], [4.0]], dtype="float32")
    targets = np.array([1.0, 2.0, 3.0, 6.0], dtype="float32")
    report = evaluate_model(identity_model(1), batched(inputs, targets), task="regression")
    assert report.task == "regression"
    assert report.mse == pytest.approx(1.0)
    assert report.mae == pytest.approx(0.5)
    assert report.rmse == pytest.approx(1.0)
    # Residual sum of squares 4, total sum of squares 14.
    assert report.r2 == pytest.approx(1 - 4 / 14)
    assert report.y_pred.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert report.accuracy is None and report.class_names is None
    assert "MSE" in report.format_text() and "R2" in report.format_text()
    assert_plain_json(report.to_dict())


def test_errors():
    with pytest.raises(ValueError, match="task="):
        evaluate_model(identity_model(3), (MULTICLASS_LOGITS, MULTICLASS_LABELS))
    with pytest.raises(ValueError, match="Unknown task"):
        evaluate_model(identity_model(3), (MULTICLASS_LOGITS, MULTICLASS_LABELS), task="ranking")
    with pytest.raises(ValueError, match="class_names"):
        evaluate_model(
            identity_model(3, "softmax"),
            (MULTICLASS_LOGITS, MULTICLASS_LABELS),
            task="multiclass",
            class_names=["a", "b"],
        )
    with pytest.raises(ValueError, match="no examples"):
        empty = batched(MULTICLASS_LOGITS, MULTICLASS_LABELS).take(0)
        evaluate_model(identity_model(3, "softmax"), empty, task="multiclass")


# --- the report ---------------------------------------------------------------


def test_to_dict_is_plain_json(multiclass_report):
    as_dict = multiclass_report.to_dict()
    assert_plain_json(as_dict)
    decoded = json.loads(json.dumps(as_dict))
    assert decoded["accuracy"] == 0.75
    assert decoded["confusion_matrix"] == MULTICLASS_MATRIX
    assert decoded["top_k_accuracy"] == {"2": 0.875}
    assert decoded["per_class"]["dog"]["support"] == 3
    assert "y_true" not in decoded

    with_predictions = multiclass_report.to_dict(include_predictions=True)
    assert_plain_json(with_predictions)
    assert with_predictions["y_pred"] == [0, 0, 1, 1, 1, 2, 2, 2]


def test_format_text(multiclass_report):
    text = multiclass_report.format_text()
    assert str(multiclass_report) == text
    assert "multiclass, 8 examples" in text
    assert re.search(r"accuracy\s+0\.7500", text)
    assert re.search(r"top-2 accuracy\s+0\.8750", text)
    for name in CLASS_NAMES:
        assert name in text
    # The per-class table, columns aligned: every row of it has the same length.
    assert re.search(r"cat\s+1\.0000\s+0\.6667\s+0\.8000\s+3", text)
    table = [line for line in text.splitlines() if re.search(r"\d\.\d{4}\s+\d+$", line)]
    assert len(table) == 5 and len({len(line) for line in table}) == 1
    # The confusion matrix: true classes on rows, predicted on columns.
    assert re.search(r"true \\ pred\s+cat\s+dog\s+bird", text)
    assert re.search(r"cat\s+2\s+1\s+0\n", text)
    assert re.search(r"dog\s+0\s+2\s+1\n", text)
    assert re.search(r"bird\s+0\s+0\s+2$", text)


def test_format_text_truncates_long_names():
    long_names = ["a_very_long_class_name_number_one", "short"]
    report = EvaluationReport(
        task="binary",
        num_examples=3,
        class_names=long_names,
        accuracy=2 / 3,
        confusion_matrix=np.array([[1, 1], [0, 1]]),
    )
    text = report.format_text()
    assert "a_very_long_class_name_number_one" not in text
    assert re.search(r"a_very_lo…\s+1\s+1", text)
    assert "short" in text


# --- plots --------------------------------------------------------------------


def test_plot_confusion_matrix(tmp_path, multiclass_report):
    path = tmp_path / "plots" / "confusion.png"  # the folder is created
    figure = plot_confusion_matrix(multiclass_report.confusion_matrix, multiclass_report.class_names, path)
    assert_png(str(path))
    axes = figure.axes[0]
    assert axes.get_xlabel() == "Predicted" and axes.get_ylabel() == "True"
    assert [label.get_text() for label in axes.get_yticklabels()] == CLASS_NAMES
    cell_texts = [text.get_text() for text in axes.texts]
    assert cell_texts == ["2", "1", "0", "0", "2", "1", "0", "0", "2"]


def test_plot_confusion_matrix_normalized_without_path(tmp_path):
    figure = plot_confusion_matrix(np.array([[3, 1], [0, 0]]), None, normalize=True, title="T")
    axes = figure.axes[0]
    assert axes.get_title() == "T"
    # An empty row (class absent from the data) stays at zero instead of NaN.
    assert [text.get_text() for text in axes.texts] == ["0.75", "0.25", "0.00", "0.00"]
    assert os.listdir(tmp_path) == []


def test_plot_training_curves_two_phases(tmp_path):
    head = keras.callbacks.History()
    head.history = {
        "loss": [1.0, 0.8, 0.7],
        "accuracy": [0.5, 0.6, 0.7],
        "val_loss": [1.1, 0.9, 0.8],
        "val_accuracy": [0.4, 0.5, 0.6],
        "learning_rate": [0.01, 0.01, 0.01],
    }
    finetune = {"loss": [0.5, 0.4], "accuracy": [0.8, 0.9], "val_loss": [0.6, 0.5], "val_accuracy": [0.7, 0.8]}
    path = tmp_path / "curves.png"
    figure = plot_training_curves([head, finetune], path, phase_names=["head", "fine-tune"])
    assert_png(str(path))
    loss_axes, metric_axes = figure.axes
    assert loss_axes.get_title() == "loss" and metric_axes.get_title() == "accuracy"
    train, validation, *phase_lines = metric_axes.lines
    assert train.get_xdata().tolist() == [1, 2, 3, 4, 5]  # epochs continue across phases
    assert train.get_ydata().tolist() == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert validation.get_ydata().tolist() == [0.4, 0.5, 0.6, 0.7, 0.8]
    assert [line.get_xdata()[0] for line in phase_lines] == [3.5]  # fine-tuning starts
    assert phase_lines[0].get_linestyle() == "--"
    assert {text.get_text().strip() for text in metric_axes.texts} == {"head", "fine-tune"}


def test_plot_training_curves_other_metric_and_missing_validation():
    first = {"loss": [0.3, 0.2], "mae": [0.5, 0.4]}
    second = {"loss": [0.1], "mae": [0.3], "val_loss": [0.2], "val_mae": [0.35]}
    figure = plot_training_curves([first, second])
    assert [axes.get_title() for axes in figure.axes] == ["loss", "mae"]
    validation = figure.axes[1].lines[1]
    assert np.isnan(validation.get_ydata()[:2]).all()
    assert validation.get_ydata()[2] == pytest.approx(0.35)
    assert {text.get_text().strip() for text in figure.axes[1].texts} == {"phase 1", "phase 2"}
    with pytest.raises(ValueError, match="phase_names"):
        plot_training_curves([first, second], phase_names=["only one"])


def test_plot_predictions(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(14, 16, 16, 3)).astype("float32")
    truth = [0, 1, 2] * 4 + [0, 1]
    predicted = [0, 1, 1] * 4 + [0, 1]
    path = tmp_path / "predictions.png"
    figure = plot_predictions(images, truth, predicted, CLASS_NAMES, path)
    assert_png(str(path))
    assert len(figure.axes) == 12  # max_images
    titles = [axes.title for axes in figure.axes]
    assert titles[0].get_text() == "cat (cat)"
    assert titles[2].get_text() == "dog (bird)"
    assert titles[2].get_color() == "red"
    assert titles[0].get_color() != "red"


def test_plot_predictions_grayscale_and_index_names():
    images = np.full((2, 8, 8, 1), 128.0)
    figure = plot_predictions(images, [1, 0], [1, 1], None, max_images=5)
    assert [axes.title.get_text() for axes in figure.axes] == ["1 (1)", "1 (0)"]


def test_failed_save_leaves_no_temp_file(tmp_path):
    with pytest.raises(ValueError):
        plot_confusion_matrix(np.eye(2, dtype=int), ["a", "b"], tmp_path / "matrix.notaformat")
    assert os.listdir(tmp_path) == []


def test_save_replaces_existing_file(tmp_path):
    path = tmp_path / "matrix.png"
    path.write_bytes(b"old")
    plot_confusion_matrix(np.eye(2, dtype=int), ["a", "b"], path)
    assert_png(str(path))
