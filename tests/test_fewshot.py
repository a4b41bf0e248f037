"""Few-shot: drawing K examples per class, prototype classifiers, fine-tuning from prototypes, the CLI."""

import os

import keras
import numpy as np
import pytest
from helpers import (
    image_arrays,
    image_dataset,
    run_export_test,
    run_serialization_test,
    sentiment_texts,
    tiny_backbone,
    tiny_bert,
)

import keras_transfer as kt
from keras_transfer.fewshot.shots import shot_indices

# --- drawing shots ------------------------------------------------------------


def test_draw_shots_takes_exactly_k_of_each_class_and_the_seed_fixes_the_draw():
    images, labels = image_arrays(n=30, num_classes=3)
    drawn, drawn_labels = kt.draw_shots(images, labels, 4, seed=5)
    assert drawn.shape == (12, 32, 32, 3)
    assert np.bincount(drawn_labels).tolist() == [4, 4, 4]
    again, _ = kt.draw_shots(images, labels, 4, seed=5)
    other, _ = kt.draw_shots(images, labels, 4, seed=6)
    assert np.array_equal(drawn, again) and not np.array_equal(drawn, other)
    # Every drawn image is one of the inputs, with its own label.
    chosen = shot_indices(labels, 4, seed=5)
    assert len(set(chosen.tolist())) == 12 and np.array_equal(images[chosen], drawn)


def test_draw_shots_keeps_a_list_of_sentences_a_list():
    texts, labels = sentiment_texts(repeats=1)
    drawn, drawn_labels = kt.draw_shots(texts, labels, 2, seed=0)
    assert isinstance(drawn, list) and len(drawn) == 4 and all(text in texts for text in drawn)
    assert [labels[texts.index(text)] for text in drawn] == drawn_labels.tolist()


def test_draw_shots_errors_say_which_class_is_short_and_what_to_give():
    labels = np.array([0, 0, 0, 1])
    with pytest.raises(kt.DataError, match=r"Class '1' has 1 example\(s\), fewer than shots=2: give at most shots=1"):
        kt.draw_shots(np.zeros((4, 3)), labels, 2)
    with pytest.raises(kt.DataError, match="Class '2' has 0"):
        kt.draw_shots(np.zeros((4, 3)), labels, 1, num_classes=3)
    for shots in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="shots must be an integer >= 1"):
            kt.draw_shots(np.zeros((4, 3)), labels, shots)
    with pytest.raises(kt.DataError, match="one label per example"):
        kt.draw_shots(np.zeros((3, 3)), labels, 1)


def test_dataset_shots_draws_from_image_and_text_datasets_with_their_class_names():
    dataset, images, labels = image_dataset(n=20, class_names=["cat", "dog"], batch_size=6)
    shots = kt.dataset_shots(dataset, 3, seed=1)
    assert shots.class_names == ["cat", "dog"] and shots.num_examples == 6 and shots.class_counts == [3, 3]
    drawn = np.concatenate([batch for batch, _ in shots])
    # Each drawn image is one of the dataset's.
    assert all(np.any(np.all(images == image, axis=(1, 2, 3))) for image in drawn)
    texts, text_labels = sentiment_texts(repeats=2)
    text_data = kt.data.from_texts(texts, text_labels, batch_size=5)
    text_shots = kt.dataset_shots(text_data, 2, seed=0)
    assert text_shots.class_names == text_data.class_names and text_shots.class_counts == [2, 2]
    with pytest.raises(kt.DataError, match="fewer than shots=11"):
        kt.dataset_shots(dataset, 11)


def test_the_docstring_examples_run():
    import doctest

    from keras_transfer.fewshot import recipes, shots

    for module in (shots, recipes):
        assert doctest.testmod(module, verbose=False).failed == 0, module.__name__


# --- prototypes ----------------------------------------------------------------


def _cosine_classifier(num_classes=2, size=32):
    return kt.ImageClassifier(
        tiny_backbone(size), head=kt.Head.cosine(num_classes), preprocessor="unit", class_names=None
    )


def test_class_means_are_the_numpy_means_of_the_extracted_features():
    model = _cosine_classifier(3)
    images, labels = image_arrays(n=12, num_classes=3)
    features, _ = kt.extract_features(model, (images, labels), verbose=0)
    expected = np.stack([features[labels == c].mean(axis=0) for c in range(3)])
    np.testing.assert_allclose(kt.class_means(model, (images, labels)), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(kt.DataError, match=r"Class\(es\) \[2\] have no examples"):
        kt.class_means(model, (images[labels < 2], labels[labels < 2]))


def test_prototypes_classify_each_class_mean_as_its_class_with_no_training(capsys):
    images, labels = image_arrays(n=16, num_classes=2)
    model = kt.prototype_classifier(
        (images, labels), backbone=tiny_backbone(), preprocessor="unit", class_names=["dark", "bright"]
    )
    assert "Prototypes: the mean features of each of 2 classes over 16 examples" in capsys.readouterr().out
    assert model.class_names == ["dark", "bright"] and model.head.cosine_scale == kt.Head.cosine(2).cosine_scale
    means = kt.class_means(model, (images, labels))
    scores = model.head_model().predict(means, verbose=0)
    assert scores.argmax(axis=1).tolist() == [0, 1]
    # The kernel holds the unit class means times the scale: logits are scaled cosines.
    kernel = model.get_layer("predictions").kernel.numpy()
    np.testing.assert_allclose(kernel.T, 10.0 * means / np.linalg.norm(means, axis=1, keepdims=True), rtol=1e-5)
    # Brightness separates the classes even through a random backbone.
    assert model.evaluate_report((images, labels)).accuracy == 1.0


def test_fit_prototypes_needs_a_cosine_head():
    model = kt.ImageClassifier(tiny_backbone(), head=kt.Head.multiclass(2), preprocessor="unit")
    with pytest.raises(ValueError, match=r"head=Head.cosine\(num_classes\)"):
        kt.fit_prototypes(model, image_arrays(n=4))


def test_a_prototype_classifier_saves_loads_and_exports_like_any_model(tmp_path):
    dataset, images, labels = image_dataset(n=8, class_names=["a", "b"])
    model = kt.prototype_classifier(dataset, backbone=tiny_backbone(), preprocessor="unit", verbose=0)
    assert model.class_names == ["a", "b"]
    run_serialization_test(model, images[:4], str(tmp_path / "prototypes.keras"))
    run_export_test(model, images[:4], str(tmp_path / "prototypes.tflite"), labels=labels[:4])


def test_text_prototypes_from_one_sentence_per_class(tmp_path):
    backbone, preprocessor = tiny_bert()
    texts, labels = sentiment_texts(repeats=1)
    shots = kt.draw_shots(texts, labels, 1, seed=0)
    model = kt.prototype_classifier(
        shots, backbone=backbone, preprocessor=preprocessor, task="text", pooling="mean", verbose=0
    )
    assert isinstance(model, kt.TextClassifier) and model.class_names == ["0", "1"]
    # A sentence of the draw is nearest its own class mean (one example: the mean is itself).
    assert model.predict_classes(shots[0])[0].tolist() == shots[1].tolist()
    run_serialization_test(model, texts[:3], str(tmp_path / "text_prototypes.keras"))


def test_prototype_classifier_rejects_an_unknown_task():
    with pytest.raises(ValueError, match="Unknown task 'audio': use one of image, text"):
        kt.prototype_classifier(image_arrays(n=4), backbone=tiny_backbone(), task="audio")


# --- fine-tuning from prototypes ----------------------------------------------------


def test_finetune_from_prototypes_starts_at_the_prototype_predictions():
    images, labels = image_arrays(n=12, num_classes=3)
    prototypes = kt.prototype_classifier((images, labels), backbone=tiny_backbone(), preprocessor="unit", verbose=0)
    start = prototypes.predict(images, verbose=0)

    class FirstOutputs(keras.callbacks.Callback):
        """The model's outputs before its first training step."""

        def on_train_begin(self, logs=None):
            self.outputs = self.model.predict(images, verbose=0) if not hasattr(self, "outputs") else self.outputs

    keras.utils.set_random_seed(1234)
    backbone = tiny_backbone()
    backbone.set_weights(prototypes.backbone.get_weights())
    first = FirstOutputs()
    model, history = kt.finetune_from_prototypes(
        (images, labels),
        backbone=backbone,
        model_options=dict(preprocessor="unit"),
        finetune_epochs=2,
        cache_features=False,
        unfreeze="all",
        callbacks=[first],
        verbose=0,
    )
    assert model.head.cosine_scale is not None
    np.testing.assert_allclose(first.outputs, start, rtol=1e-5, atol=1e-6)
    assert history.head is None and len(history.finetune.history["loss"]) == 2
    # Training moved it.
    assert not np.allclose(model.predict(images, verbose=0), start, atol=1e-6)


# --- the command line -----------------------------------------------------------


def _train(*argv):
    from keras_transfer.cli import main

    return main(["train", *argv])


def test_train_shots_prototypes_writes_a_model_and_says_shots_and_method(make_image_folder, tmp_path, capsys):
    import json

    images = make_image_folder(per_class=6, size=32)
    output = tmp_path / "prototypes"
    tiny = ["--backbone", "mobilenet_v2", "--weights", "none", "--image-size", "32"]
    assert _train(images, "--val-split", "0.5", *tiny, "--shots", "2", "--output", str(output), "--json") == 0
    out = capsys.readouterr().out
    assert "Few-shot: 2 images of each of 2 classes, drawn with seed 1337 from 6 images." in out
    assert "Prototypes: the mean features of each of 2 classes over 4 examples" in out
    assert "mobilenet_v2, prototypes (no training), on 2 classes from 2 images each (4 of 6, seed 1337)" in out
    report = json.loads((output / "report.json").read_text())
    assert report["method"] == "prototypes" and report["shots"] == 2 and report["train_examples"] == 4
    assert report["val_examples"] == 6 and report["data"]["train"]["class_counts"] == {"cats": 2, "dogs": 2}
    assert json.loads(out.strip().splitlines()[-1])["method"] == "prototypes"
    loaded = keras.saving.load_model(output / "model.keras")
    assert loaded.head.cosine_scale is not None and loaded.class_names == ["cats", "dogs"]


def test_train_shots_finetune_fine_tunes_from_the_prototypes(make_image_folder, tmp_path, capsys):
    import json

    images = make_image_folder(per_class=4, size=32)
    output = tmp_path / "finetune"
    tiny = ["--backbone", "mobilenet_v2", "--weights", "none", "--image-size", "32"]
    argv = [images, "--val-split", "0.5", *tiny, "--shots", "1", "--method", "finetune", "--finetune-epochs", "1"]
    assert _train(*argv, "--finetune-patience", "0", "--output", str(output)) == 0
    out = capsys.readouterr().out
    assert "Fine-tuning: trains the top 30% of the backbone and the head" in out and "Head phase" not in out
    assert "fine-tuned from prototypes, on 2 classes from 1 image each" in out
    report = json.loads((output / "report.json").read_text())
    assert report["method"] == "finetune" and report["recipe"]["head_epochs"] == 0
    assert report["recipe"]["finetune_epochs"] == 1 and "training_curves.png" in os.listdir(output)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--shots", "0"], "argument --shots: '0' is not a positive integer"),
        (["--shots", "2", "--method", "setfit"], "argument --method: invalid choice: 'setfit'"),
        (["--method", "finetune"], "--method finetune is a few-shot method: give --shots K"),
        (["--shots", "2", "--head-epochs", "3"], "--shots with --method prototypes does not use --head-epochs"),
        (["--shots", "2", "--method", "finetune", "--lr-find"], "--method finetune does not use --lr-find"),
        (["--shots", "2", "--target-dir", "target/"], "--method prototypes does not use --target-dir"),
        (["--shots", "5"], "Class 'cats' has 3 example(s), fewer than --shots 5: give at most --shots 3"),
    ],
)
def test_train_shots_bad_input_exits_2_before_any_work(make_image_folder, tmp_path, capsys, extra, message):
    images = make_image_folder(per_class=3, size=32)
    output = tmp_path / "run"
    tiny = ["--backbone", "mobilenet_v2", "--weights", "none", "--image-size", "32"]
    try:
        code = _train(images, *tiny, *extra, "--output", str(output))
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    assert code == 2 and message in captured.err, captured.err
    assert "Prototypes" not in captured.out and not output.exists()


# --- the real assets --------------------------------------------------------------


def _sms_file(folder, repeats=3):
    texts, labels = sentiment_texts(repeats)
    path = folder / "reviews.tsv"
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{'pos' if y else 'neg'}\n" for t, y in zip(texts, labels)))
    return str(path)


def test_train_text_shots_setfit_hands_the_drawn_texts_to_setfit(tmp_path, capsys, monkeypatch):
    import json

    from keras_transfer.cli import main
    from keras_transfer.fewshot import setfit

    calls = []

    def fake_setfit(backbone, texts, labels, **options):
        calls.append((backbone, texts, labels, options))
        tiny, preprocessor = tiny_bert()
        model = kt.prototype_classifier(
            (texts, labels),
            backbone=tiny,
            preprocessor=preprocessor,
            task="text",
            verbose=0,
            **{"class_names": options["class_names"]},
        )
        return model, None

    monkeypatch.setattr(setfit, "setfit_classifier", fake_setfit)
    path = _sms_file(tmp_path)
    argv = ["train-text", path, "--val-split", "0.5", "--backbone", "some/backbone", "--shots", "2"]
    assert main([*argv, "--method", "setfit", "--epochs", "2", "--output", str(tmp_path / "setfit")]) == 0
    ((backbone, texts, labels, options),) = calls
    assert backbone == "some/backbone" and len(texts) == 4 and sorted(labels.tolist()) == [0, 0, 1, 1]
    assert options["class_names"] == ["neg", "pos"] and options["contrastive_epochs"] == 2
    assert options["seed"] == 1337 and "learning_rate" not in options
    report = json.loads((tmp_path / "setfit" / "report.json").read_text())
    assert report["method"] == "setfit" and report["train_examples"] == 4 and report["val_examples"] == 18
    assert "SetFit, on 2 classes from 2 texts each (4 of 18, seed 1337)" in capsys.readouterr().out
    code = main([*argv, "--method", "setfit", "--recipe", "lora", "--output", str(tmp_path / "lora")])
    assert code == 2 and "--method setfit does not use --recipe" in capsys.readouterr().err


@pytest.mark.integration
def test_text_prototypes_from_the_cli_on_sms_spam(assets_dir, tmp_path, capsys):
    import json

    from keras_transfer.cli import main

    argv = [
        os.path.join(assets_dir, "text", "sms_spam", "SMSSpamCollection"), "--text-column", "SMS",
        "--label-column", "Label", "--val-split", "0.5", "--max-examples", "240",
        "--backbone", os.path.join(assets_dir, "keras-hub", "all-MiniLM-L6-v2"), "--shots", "4",
    ]  # fmt: skip
    assert main(["train-text", *argv, "--output", str(tmp_path / "prototypes")]) == 0
    report = json.loads((tmp_path / "prototypes" / "report.json").read_text())
    assert report["method"] == "prototypes" and report["train_examples"] == 8 and report["val_examples"] == 120
    assert report["pooling"] == "mean" and report["val_accuracy"] > 0.6
    assert "prototypes (no training), on 2 classes from 4 texts each (8 of 120, seed 1337)" in capsys.readouterr().out


@pytest.mark.integration
def test_image_prototypes_on_cats_and_dogs_from_five_shots(assets_dir):
    folder = os.path.join(assets_dir, "images", "cats_and_dogs_filtered")
    train = kt.data.image_folder(os.path.join(folder, "train"), image_size=96, shuffle=False)
    # Shuffled (seeded) so that the 256 validation images taken hold both classes.
    validation = kt.data.image_folder(os.path.join(folder, "validation"), image_size=96, seed=0)
    shots = kt.dataset_shots(train, 5, seed=0)
    model = kt.prototype_classifier(shots, backbone="mobilenet_v2", image_size=96, verbose=0)
    accuracy = model.evaluate_report(validation.take(8)).accuracy
    assert accuracy > 0.6  # 0.71 measured at 96 px; chance is 0.5
