"""SetFit (`keras_transfer.fewshot.setfit`): sentence pairs, contrastive fine-tuning, the classifier it returns."""

import os

import numpy as np
import pytest
from helpers import run_export_test, run_serialization_test, sentiment_texts, tiny_bert, tiny_text_classifier

import keras_transfer as kt
from keras_transfer.errors import DataError
from keras_transfer.fewshot import setfit

# Rates and pair counts that move a randomly initialised tiny BERT in a few steps.
TINY = dict(pairs_per_example=4, learning_rate=1e-3, batch_size=8, verbose=0)

# --- pairs ----------------------------------------------------------------------


@pytest.mark.parametrize("labels", [[0] * 4 + [1] * 4, [0, 0, 0, 1, 1, 2, 2, 2, 2]])
def test_pairs_are_balanced_per_example_and_never_pair_an_example_with_itself(labels):
    labels = np.array(labels)
    first, second, targets = setfit.setfit_pairs(labels, 6, seed=3)
    assert len(first) == len(second) == len(targets) == 6 * len(labels)
    assert not np.any(first == second)
    np.testing.assert_array_equal(targets, (labels[first] == labels[second]).astype("float32"))
    for index in range(len(labels)):
        started = first == index
        assert started.sum() == 6 and targets[started].sum() == 3  # 3 positive, 3 negative


def test_pairs_use_each_partner_about_equally_often():
    labels = np.array([0] * 3 + [1] * 3)
    first, second, targets = setfit.setfit_pairs(labels, 8, seed=0)
    # Example 0 has 2 same-class partners for 4 positive pairs: each twice; 3 others for 4 negatives: 1 or 2 each.
    positives = np.bincount(second[(first == 0) & (targets == 1)], minlength=6)
    negatives = np.bincount(second[(first == 0) & (targets == 0)], minlength=6)
    assert positives.tolist() == [0, 2, 2, 0, 0, 0]
    assert sorted(negatives[3:].tolist()) == [1, 1, 2]


def test_pairs_are_seeded():
    labels = [0, 0, 0, 1, 1, 1]
    same = [setfit.setfit_pairs(labels, 4, seed=5) for _ in range(2)]
    other = setfit.setfit_pairs(labels, 4, seed=6)
    for a, b in zip(*same):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(same[0], other))


@pytest.mark.parametrize(
    ("labels", "pairs", "error", "message"),
    [
        ([0, 0, 0], 4, DataError, "at least 2 classes"),
        ([0, 0, 1], 4, DataError, "at least 2 examples of each class"),
        ([0, 1, 2, 3], 4, DataError, "at least 2 examples of each class"),
        ([0, 0, 1, 1], 3, ValueError, "even integer"),
        ([0, 0, 1, 1], 0, ValueError, "even integer"),
        (["neg", "neg", "pos", "pos"], 4, DataError, "class indices"),
        ([0, 0, -1, -1], 4, DataError, ">= 0"),
    ],
)
def test_pairs_reject_what_cannot_make_positive_and_negative_pairs(labels, pairs, error, message):
    with pytest.raises(error, match=message):
        setfit.setfit_pairs(labels, pairs)


# --- bad input, before anything is built -----------------------------------------

TEXTS, LABELS = ["good film", "great movie", "bad film", "awful movie"], [1, 1, 0, 0]


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (dict(texts="good film"), DataError, "list of sentences"),
        (dict(texts=["good film", "great", 3, "bad"]), DataError, "text 2 is a int"),
        (dict(labels=[1, 1, 0]), DataError, "4 texts but 3 labels"),
        (dict(labels=[1, 1, 1, 1]), DataError, "at least 2 classes"),
        (dict(labels=[1, 1, 0, 2]), DataError, "at least 2 examples"),
        (dict(labels=[2, 2, 0, 0]), DataError, "Class.es. 1 have no examples"),
        (dict(class_names=["only one"]), DataError, "one name per class"),
        (dict(class_names=["negative", "positive", "neutral"]), DataError, "neutral have no examples"),
        (dict(pairs_per_example=5), ValueError, "even integer"),
        (dict(learning_rate=0), ValueError, "learning_rate"),
        (dict(contrastive_epochs=0), ValueError, "epochs"),
        (dict(head_epochs=-1), ValueError, "head_epochs"),
        (dict(batch_size=0), ValueError, "batch_size"),
    ],
)
def test_setfit_classifier_rejects_bad_input_before_building_a_model(change, error, message):
    # A backbone that does not exist: the input checks must fail first.
    options = {"texts": TEXTS, "labels": LABELS, **change}
    with pytest.raises(error, match=message):
        kt.setfit_classifier("no/such/backbone", options.pop("texts"), options.pop("labels"), **options)


# --- contrastive fine-tuning ------------------------------------------------------


def test_contrastive_fine_tuning_brings_same_class_embeddings_together_and_changes_only_the_backbone():
    model = tiny_text_classifier(pooling="mean")
    texts, labels = sentiment_texts(1)

    def separation():
        """Mean cosine similarity of same-class embeddings minus that of different-class ones."""
        features = kt.extract_features(model, texts, verbose=0)[0]
        features /= np.linalg.norm(features, axis=1, keepdims=True)
        cosine = features @ features.T
        same = labels[:, None] == labels[None, :]
        return cosine[same].mean() - cosine[~same].mean()

    before = separation()
    backbone_before = [np.array(w) for w in model.backbone.weights]
    head_before = np.array(model.get_layer("predictions").kernel)
    history = setfit.contrastive_fine_tune(model, texts, labels, epochs=4, **dict(TINY, learning_rate=3e-3))
    losses = history.history["loss"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert separation() > before + 0.1
    changed = [not np.allclose(a, np.array(b)) for a, b in zip(backbone_before, model.backbone.weights)]
    assert sum(changed) > len(changed) // 2
    np.testing.assert_array_equal(np.array(model.get_layer("predictions").kernel), head_before)
    assert model.backbone.trainable is False


# --- the classifier -----------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_setfit_classifier_predicts_sentences_saves_loads_and_exports(tmp_path):
    backbone, preprocessor = tiny_bert()
    texts, labels = sentiment_texts(1)
    model, history = kt.setfit_classifier(
        backbone, texts, labels, preprocessor=preprocessor, class_names=["negative", "positive"],
        contrastive_epochs=3, seed=1, **TINY,
    )  # fmt: skip
    assert isinstance(model, kt.TextClassifier) and model.class_names == ["negative", "positive"]
    assert model.backbone.trainable is False and model.pooling == "mean"
    assert history.num_pairs == 4 * len(texts) and len(history.contrastive.history["loss"]) == 3
    assert set(history.seconds) == {"contrastive", "prototypes"} and history.head is None
    # The head holds the class means of the fine-tuned embeddings.
    prototypes = model.head.class_vector_kernel(kt.class_means(model, (texts, labels)))
    np.testing.assert_allclose(np.array(model.get_layer("predictions").kernel), prototypes, atol=1e-5)
    probabilities = model.predict(["a great movie", "the worst film"], verbose=0)
    assert probabilities.shape == (2, 2)
    report = model.evaluate_report((texts, labels))
    assert report.accuracy >= 0.9
    restored = run_serialization_test(model, texts, tmp_path / "setfit.keras", atol=1e-5)
    run_export_test(restored, texts, tmp_path / "setfit.tflite", labels=labels, atol=1e-4)


def test_head_epochs_train_the_cosine_head_from_its_prototype_start():
    backbone, preprocessor = tiny_bert()
    texts, labels = sentiment_texts(1)
    options = dict(TINY, pairs_per_example=2)
    model, history = kt.setfit_classifier(backbone, texts, labels, preprocessor=preprocessor, head_epochs=2, **options)
    assert len(history.head.head.history["loss"]) == 2 and "head" in history.seconds
    prototypes = model.head.class_vector_kernel(kt.class_means(model, (texts, labels)))
    assert not np.allclose(np.array(model.get_layer("predictions").kernel), prototypes, atol=1e-3)


# --- real weights -----------------------------------------------------------------


@pytest.mark.integration
def test_setfit_on_all_minilm_beats_frozen_prototypes_on_sms_spam_from_eight_messages_per_class(assets_dir):
    folder = os.path.join(assets_dir, "keras-hub", "all-MiniLM-L6-v2")
    path = os.path.join(assets_dir, "text", "sms_spam", "SMSSpamCollection")
    with open(path, encoding="utf-8") as file:
        rows = [line.rstrip("\n").split("\t", 1) for line in file.readlines()[1:]]
    messages = np.array([text for _, text in rows], dtype=object)
    labels = np.array([label == "spam" for label, _ in rows], dtype="int64")
    texts, shot_labels = kt.draw_shots(list(messages), labels, 8, seed=0)
    rng = np.random.default_rng(1)
    held_out = np.concatenate([rng.choice(np.flatnonzero(labels == c), 50, replace=False) for c in (0, 1)])
    held_out = held_out[~np.isin(messages[held_out], texts)]
    evaluation = (list(messages[held_out]), labels[held_out])
    options = dict(class_names=["ham", "spam"], pooling="mean", sequence_length=64)

    frozen = kt.prototype_classifier((texts, shot_labels), backbone=folder, task="text", verbose=0, **options)
    frozen_accuracy = frozen.evaluate_report(evaluation).accuracy
    model, history = kt.setfit_classifier(folder, texts, shot_labels, verbose=0, **options)
    assert np.isfinite(history.contrastive.history["loss"]).all() and history.num_pairs == 16 * 20
    report = model.evaluate_report(evaluation)
    print(f"SMS spam, 8 per class: frozen prototypes {frozen_accuracy:.3f}, SetFit {report.accuracy:.3f}")
    assert report.accuracy >= frozen_accuracy + 0.05 and report.accuracy >= 0.8, report.format_text()
