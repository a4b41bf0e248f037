"""Multi-task learning: one backbone, several named heads (keras_transfer.multitask)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import image_arrays, sentiment_texts, tiny_backbone, tiny_bert

import keras_transfer as kt
from keras_transfer.data import DataError
from keras_transfer.multitask.data import task_batches

FAST = dict(head_epochs=1, finetune_epochs=1, verbose=0)
HEAD_ONLY = dict(head_epochs=1, finetune_epochs=0, verbose=0)


def text_tasks():
    return [
        kt.Task("sentiment", kt.Head.binary(), class_names=["negative", "positive"]),
        kt.Task("topic", kt.Head.multiclass(3), loss_weight=0.5),
    ]


def tiny_text_model(tasks=None):
    backbone, preprocessor = tiny_bert()
    # Fixed-length batches: one traced shape keeps the tests fast.
    return kt.MultiTaskTextModel(
        backbone, tasks or text_tasks(), preprocessor=preprocessor, pooling="mean", bucket_by_length=False
    )


def tiny_image_model(tasks):
    return kt.MultiTaskImageModel(tiny_backbone(32), tasks, preprocessor="unit")


def image_tasks():
    return [kt.Task("kind", kt.Head.multiclass(2)), kt.Task("brightness", kt.Head.regression())]


def test_tasks_are_checked_before_anything_is_built():
    with pytest.raises(ValueError, match="not usable"):
        kt.Task("my task", kt.Head.binary())
    with pytest.raises(ValueError, match="one name per class"):
        kt.Task("topic", kt.Head.multiclass(3), class_names=["a", "b"])
    with pytest.raises(ValueError, match="repeated: a"):
        kt.TaskHeads([kt.Task("a", kt.Head.binary()), kt.Task("a", kt.Head.binary())])
    with pytest.raises(ValueError, match="at least one Task"):
        kt.TaskHeads([])


def test_several_datasets_are_mixed_into_shared_batches_with_their_own_weights():
    tasks = image_tasks()
    images, labels = image_arrays(24, 32, 2)
    data = {"kind": (images[:16], labels[:16]), "brightness": (images[16:], images[16:].mean(axis=(1, 2, 3)))}
    batches, counts = task_batches(tasks, data, batch_size=8, shuffle=True, seed=3)
    assert counts == {"kind": 16, "brightness": 8}
    assert int(batches.cardinality()) == 3
    weights = [batch[2] for batch in batches]
    kind = np.concatenate([w["kind"].numpy() for w in weights])
    brightness = np.concatenate([w["brightness"].numpy() for w in weights])
    # Every example counts for exactly one task, and the tasks share batches.
    assert kind.sum() == 16 and brightness.sum() == 8 and np.all(kind + brightness == 1)
    assert any(0 < w["kind"].numpy().sum() < 8 for w in weights)


def test_examples_of_another_task_leave_a_tasks_loss_and_metrics_alone():
    """The placeholder labels (0) of the other task's examples must not count: here they would all be wrong."""
    model = tiny_image_model(image_tasks())
    model.compile()
    images, labels = image_arrays(16, 32, 2)
    kind_labels = np.ones(4, "int32")  # only 4 examples of "kind", all class 1
    data = {"kind": (images[:4], kind_labels), "brightness": (images[4:], np.zeros(12, "float32"))}
    batches, _ = task_batches(model.tasks, data, batch_size=16)
    scores = model.evaluate(batches, return_dict=True, verbose=0)
    probabilities = model.predict(images[:4], verbose=0)["kind"]
    own_loss = float(np.mean(-np.log(probabilities[:, 1])))
    own_accuracy = float(np.mean(probabilities.argmax(-1) == 1))
    np.testing.assert_allclose(scores["kind_loss"], own_loss, rtol=1e-4)
    np.testing.assert_allclose(scores["kind_accuracy"], own_accuracy)


def test_a_batch_without_a_tasks_examples_does_not_train_its_head():
    model = tiny_image_model(image_tasks())
    model.freeze_backbone()
    model.compile(learning_rate=0.1)
    images, _ = image_arrays(8, 32, 2)
    before = {name: [w.copy() for w in model.get_layer(name).get_weights()] for name in model.task_names}
    batches, _ = model.task_data({"brightness": (images, np.full(8, 3.0))}, batch_size=8)
    model.fit(batches, epochs=2, shuffle=False, verbose=0)
    after = {name: model.get_layer(name).get_weights() for name in model.task_names}
    assert all(np.array_equal(a, b) for a, b in zip(before["kind"], after["kind"]))
    assert not all(np.array_equal(a, b) for a, b in zip(before["brightness"], after["brightness"]))


def test_bad_multitask_data_is_refused_before_training():
    model = tiny_image_model(image_tasks())
    images, labels = image_arrays(8, 32, 2)
    with pytest.raises(DataError, match="missing: brightness"):
        model.fine_tune((images, {"kind": labels}), **FAST)
    with pytest.raises(DataError, match="labels run from 4 to 5"):
        model.fine_tune((images, {"kind": labels + 4, "brightness": labels}), **FAST)
    with pytest.raises(DataError, match="brightness has no training data"):
        model.fine_tune({"kind": (images, labels)}, **FAST)
    with pytest.raises(DataError, match="No task named colour"):
        model.fine_tune({"kind": (images, labels), "brightness": (images, labels), "colour": (images, labels)})
    with pytest.raises(ValueError, match="cache_features"):
        model.fine_tune((images, {"kind": labels, "brightness": labels}), cache_features=True, **FAST)


def test_datasets_per_task_train_and_evaluate_per_task(tmp_path):
    """Form 2 with keras_transfer.data datasets; one evaluation report per task; one task exported alone."""
    tasks = [kt.Task("kind", kt.Head.multiclass(2), class_names=["cat", "dog"]), kt.Task("tags", kt.Head.multilabel(3))]
    model = tiny_image_model(tasks)
    images, labels = image_arrays(16, 32, 2)
    tags = np.eye(3, dtype="float32")[labels % 3]
    kind_data = kt.data.from_arrays(images, labels, batch_size=8)
    history = model.fine_tune(
        {"kind": kind_data, "tags": (images[:8], tags[:8])}, validation_data={"kind": kind_data}, **FAST
    )
    assert "val_kind_accuracy" in history.merged()
    reports = model.evaluate_report({"kind": (images, labels), "tags": (images, tags)})
    assert set(reports) == {"kind", "tags"}
    assert reports["kind"].class_names == ["cat", "dog"]
    assert reports["kind"].confusion_matrix.sum() == 16
    # One task alone exports as a single-task model: its classes, and checked in the interpreter.
    result = model.export_model(tmp_path / "kind.tflite", task="kind", check_data=(images, labels))
    assert result.check.top1_agreement == 1.0
    with open(result.metadata_path) as file:
        assert json.load(file)["class_names"] == ["cat", "dog"]


def test_text_tasks_from_one_dataset_train_save_load_and_export(tmp_path):
    """Form 1 (a dict of labels) on raw sentences; saved and loaded with every head; all tasks in one export."""
    model = tiny_text_model()
    texts, labels = sentiment_texts(repeats=2)
    labelled = (texts, {"sentiment": labels, "topic": labels % 3})
    history = model.fine_tune(labelled, **HEAD_ONLY)
    assert {"sentiment_accuracy", "sentiment_auc", "topic_accuracy", "sentiment_loss", "topic_loss"} <= set(
        history.merged()
    )
    outputs = model.predict(texts, verbose=0)
    assert {name: value.shape for name, value in outputs.items()} == {"sentiment": (24, 1), "topic": (24, 3)}
    # The total loss is the weighted sum of the tasks' losses (topic counts half), in one batch.
    scores = model.evaluate(*labelled, batch_size=len(texts), return_dict=True, verbose=0)
    np.testing.assert_allclose(scores["loss"], scores["sentiment_loss"] + 0.5 * scores["topic_loss"], rtol=1e-4)

    model.save(tmp_path / "multitask.keras")
    restored = keras.saving.load_model(tmp_path / "multitask.keras")
    assert type(restored) is kt.MultiTaskTextModel
    assert restored.head == model.head and restored.tasks[1].loss_weight == 0.5
    assert restored.sequence_length == model.sequence_length and restored.compiled
    for name, expected in outputs.items():
        np.testing.assert_allclose(restored.predict(texts, verbose=0)[name], expected, atol=1e-6)

    single = model.task_model("sentiment")
    assert type(single) is kt.TextClassifier and single.class_names == ["negative", "positive"]
    np.testing.assert_allclose(single.predict(texts, verbose=0), outputs["sentiment"], atol=1e-6)

    together = model.export_model(tmp_path / "all.tflite", check_data=labelled)
    assert set(together.check) == {"sentiment", "topic"}
    for check in together.check.values():
        assert check.top1_agreement == 1.0 and check.max_abs_difference < 1e-4
    with open(together.metadata_path) as file:
        metadata = json.load(file)
    assert [task["name"] for task in metadata["tasks"]] == ["sentiment", "topic"]
    assert os.listdir(tmp_path / metadata["preprocessor"])  # the tokenizer, beside the file


def test_create_builds_and_trains_and_predict_classes_decodes_each_task():
    images, labels = image_arrays(16, 32, 2)
    model, history = kt.MultiTaskImageModel.create(
        (images, {"kind": labels, "brightness": images.mean(axis=(1, 2, 3)) / 255}),
        backbone=tiny_backbone(32),
        tasks=image_tasks(),
        preprocessor="unit",
        batch_size=8,
        **FAST,
    )
    assert history.head is not None and history.finetune is not None
    predictions = model.predict_classes(images[:5])
    assert set(predictions) == {"kind"}  # regression tasks have no classes
    classes, confidence = predictions["kind"]
    assert classes.shape == (5,) and np.all((confidence >= 0.5) & (confidence <= 1))


def test_dataset_of_dict_labels_is_the_first_form():
    model = tiny_image_model(image_tasks())
    images, labels = image_arrays(16, 32, 2)
    dataset = tf.data.Dataset.from_tensor_slices((images, {"kind": labels, "brightness": labels * 1.0})).batch(8)
    history = model.fine_tune(dataset, **FAST)
    assert "brightness_mae" in history.merged()


# --- the command line --------------------------------------------------------


def _cli_files(root):
    """A tiny BERT saved as a keras-hub preset folder, an SST-2-style CSV and an SMS-style headerless TSV."""
    backbone, preprocessor = tiny_bert()
    backbone.save_to_preset(str(root / "preset"))
    preprocessor.save_to_preset(str(root / "preset"))
    texts, labels = sentiment_texts(repeats=2)
    names = ["negative", "positive"]
    (root / "sentiment.csv").write_text(
        "text,label\n" + "".join(f"{text},{names[label]}\n" for text, label in zip(texts, labels))
    )
    (root / "spam.tsv").write_text("".join(f"{['ham', 'spam'][label]}\t{text}\n" for text, label in zip(texts, labels)))
    return root


def test_train_multitask_command_trains_saves_and_reports_every_task(tmp_path, capsys):
    from keras_transfer.cli import main

    files = _cli_files(tmp_path)
    output = tmp_path / "run"
    code = main(
        [
            "train-multitask",
            "--task",
            f"sentiment={files / 'sentiment.csv'}",
            "--task",
            f"spam={files / 'spam.tsv'},1,0",
            "--task-weight",
            "spam=0.5",
            "--backbone",
            str(files / "preset"),
            "--weights",
            "none",
            "--val-split",
            "0.25",
            "--head-epochs",
            "1",
            "--epochs",
            "0",
            "--batch-size",
            "8",
            "--output",
            str(output),
            "--json",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out.strip().splitlines()[-1])
    assert [task["name"] for task in summary["tasks"]] == ["sentiment", "spam"]
    assert summary["tasks"][1]["loss_weight"] == 0.5 and summary["tasks"][1]["class_names"] == ["ham", "spam"]
    assert set(summary["val_accuracy"]) == {"sentiment", "spam"}
    assert "Task spam:" in out and "validation accuracy sentiment" in out
    for name in ("model.keras", "report.json", "confusion_matrix_sentiment.png", "confusion_matrix_spam.png"):
        assert (output / name).is_file(), name
    restored = keras.saving.load_model(output / "model.keras")
    assert restored.task_names == ["sentiment", "spam"]


def test_train_multitask_examples_parse():
    import shlex

    from keras_transfer.cli import build_parser, train_multitask

    for example in train_multitask.EXAMPLES:
        args = build_parser().parse_args(shlex.split(example)[1:])
        tasks, _ = train_multitask.parse_tasks(args)
        assert len(tasks) == 2 and train_multitask.multitask_recipe(args).finetune_epochs >= 1


@pytest.mark.parametrize(
    "options, message",
    [
        (["--task", "my task=a.csv"], "write NAME=FILE"),
        (["--task", "a=a.csv", "--task", "a=b.csv"], "given twice"),
        (["--task", "a=a.csv", "--task-weight", "b=2"], "no --task named 'b'"),
        (["--task", "a=a.csv", "--task-weight", "a=heavy"], "must be a number"),
    ],
)
def test_train_multitask_refuses_bad_options_in_one_line(tmp_path, capsys, options, message):
    from keras_transfer.cli import main

    code = main(["train-multitask", *options, "--backbone", "b", "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


@pytest.mark.integration
def test_minilm_learns_sentiment_and_spam_as_two_tasks_of_one_backbone(assets_dir):
    """The real all-MiniLM-L6-v2 with SST-2 and SMS spam sentences, each task on its own examples."""
    import csv

    def rows(path, text_column, label_column, count, seed):
        with open(path, encoding="utf-8", newline="") as file:
            table = list(csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE))
        chosen = np.random.default_rng(seed).choice(len(table), count, replace=False)
        return [table[i][text_column] for i in chosen], [table[i][label_column] for i in chosen]

    text = os.path.join(assets_dir, "text")
    reviews, stars = rows(os.path.join(text, "sst2", "train.tsv"), "sentence", "label", 256, 0)
    messages, kinds = rows(os.path.join(text, "sms_spam", "SMSSpamCollection"), "SMS", "Label", 256, 0)
    stars, kinds = np.array(stars, dtype="int32"), np.array([kind == "spam" for kind in kinds], dtype="int32")
    tasks = [kt.Task("sentiment", kt.Head.binary()), kt.Task("spam", kt.Head.binary())]
    folder = os.path.join(assets_dir, "keras-hub", "all-MiniLM-L6-v2")
    model = kt.MultiTaskTextModel(folder, tasks, pooling="mean", sequence_length=32)
    model.fine_tune(
        {"sentiment": (reviews[:128], stars[:128]), "spam": (messages[:128], kinds[:128])},
        head_epochs=3,
        finetune_epochs=0,
        head_learning_rate=1e-2,
        schedule=None,
        batch_size=16,
        verbose=0,
    )
    reports = model.evaluate_report({"sentiment": (reviews[128:], stars[128:]), "spam": (messages[128:], kinds[128:])})
    # A few hundred examples and 3 head epochs: far from converged, but both heads already rank
    # their classes well above chance (the spam head's threshold is not yet right: AUC, not accuracy).
    assert reports["sentiment"].accuracy >= 0.65, reports["sentiment"].accuracy
    assert reports["spam"].roc_auc >= 0.85, reports["spam"].roc_auc
