"""Length bucketing of text batches: shorter padding, same predictions, input order, bounded shapes."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import sentiment_texts, tiny_text_classifier

from keras_transfer.data import length_buckets


def _texts(count=48):
    """Sentences of 2 to 13 words (4 to 15 tokens with [CLS] and [SEP]): lengths that vary."""
    texts, labels = sentiment_texts(4)
    texts = [text + " good" * (index % 11) for index, text in enumerate(texts)][:count]
    return texts, labels[:count]


def _token_batches(model, texts, labels, batch_size=5):
    dataset = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(batch_size)
    return dataset.map(model.preprocess_samples)


def test_bucket_lengths_end_at_the_sequence_length():
    assert length_buckets.bucket_lengths(16) == (8, 16)
    assert length_buckets.bucket_lengths(66) == (8, 16, 24, 32, 48, 64, 66)
    assert length_buckets.bucket_lengths(128, boundaries=(16, 32, 64)) == (16, 32, 64, 128)


def test_trimmed_batches_pad_to_the_bucket_of_their_longest_example():
    model = tiny_text_classifier()
    texts, labels = _texts()
    fixed = _token_batches(model, texts, labels)
    trimmed = length_buckets.trim_batches(fixed, (8, 16))
    for fixed_batch, trimmed_batch in zip(fixed, trimmed):
        longest = int(length_buckets.example_lengths(fixed_batch[0]).numpy().max())
        width = trimmed_batch[0]["token_ids"].shape[1]
        assert width == (8 if longest <= 8 else 16)
        for name, value in trimmed_batch[0].items():
            np.testing.assert_array_equal(value, fixed_batch[0][name][:, :width])
            assert not fixed_batch[0]["padding_mask"][:, width:].numpy().any()
        np.testing.assert_array_equal(trimmed_batch[1], fixed_batch[1])  # same examples, same order


def test_grouping_keeps_the_examples_and_batch_count_and_pads_less():
    model = tiny_text_classifier()
    texts, labels = _texts()
    fixed = _token_batches(model, texts, labels)
    grouped = length_buckets.bucket_batches(fixed, (8, 16), group=True, window=4)
    assert int(grouped.cardinality()) == int(fixed.cardinality()) == 10
    # The batches of a window are shuffled, the short last one too.
    assert sorted(len(batch[1]) for batch in grouped) == sorted(len(batch[1]) for batch in fixed)

    def examples(dataset):
        rows = []
        for tokens, batch_labels in dataset:
            for ids, mask, label in zip(tokens["token_ids"].numpy(), tokens["padding_mask"].numpy(), batch_labels):
                rows.append((tuple(ids[mask.astype(bool)]), int(label)))
        return sorted(rows)

    assert examples(grouped) == examples(fixed)
    real, padded_fixed = length_buckets.padded_tokens(fixed)
    real_trimmed, padded_trimmed = length_buckets.padded_tokens(length_buckets.bucket_batches(fixed, (8, 16)))
    real_grouped, padded_grouped = length_buckets.padded_tokens(grouped)
    assert real == real_trimmed == real_grouped
    assert padded_grouped <= padded_trimmed < padded_fixed
    # The same input order gives the same batches (a resumed run sees the same data).
    again = length_buckets.bucket_batches(fixed, (8, 16), group=True, window=4)
    for first, second in zip(grouped, again):
        np.testing.assert_array_equal(first[0]["token_ids"], second[0]["token_ids"])


def test_predictions_equal_fixed_padding_in_input_order():
    model = tiny_text_classifier(pooling="mean")
    texts, _ = _texts()
    bucketed = model.predict(texts, batch_size=5, verbose=0)
    model.bucket_by_length = False
    fixed = model.predict(texts, batch_size=5, verbose=0)
    np.testing.assert_allclose(bucketed, fixed, atol=1e-5)
    # One by one (each alone in its batch) gives the same row: predict kept the input order.
    model.bucket_by_length = True
    singles = np.concatenate([model.predict_on_batch([text]) for text in texts[:6]])
    np.testing.assert_allclose(singles, fixed[:6], atol=1e-5)


def test_datasets_are_bucketed_in_evaluate_and_labelled_dataset():
    model = tiny_text_classifier()
    model.compile()
    texts, labels = _texts()
    order = np.argsort([len(text) for text in texts], kind="stable")  # short batches first, then long ones
    texts, labels = [texts[index] for index in order], labels[order]
    dataset = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(6)
    widths = {batch[0]["token_ids"].shape[1] for batch in model.labelled_dataset(dataset, None)}
    assert widths <= set(model.bucket_lengths) and min(widths) < model.sequence_length
    bucketed = model.evaluate(dataset, return_dict=True, verbose=0)
    model.bucket_by_length = False
    assert {batch[0]["token_ids"].shape[1] for batch in model.labelled_dataset(dataset, None)} == {16}
    fixed = model.evaluate(dataset, return_dict=True, verbose=0)
    assert bucketed["loss"] == pytest.approx(fixed["loss"], abs=1e-5)
    # What exports take keeps the full length.
    assert model.tokenize(texts[:3])["token_ids"].shape == (3, 16)


def test_fit_traces_a_bounded_number_of_shapes():
    model = tiny_text_classifier()
    model.compile(learning_rate=1e-2)
    traced = []
    train_step = model.train_step

    def counting_step(data):
        traced.append(tuple(data[0]["token_ids"].shape))
        return train_step(data)

    model.train_step = counting_step
    texts, labels = _texts()
    history = model.fit(texts, labels, batch_size=5, epochs=2, validation_data=(texts, labels), verbose=0)
    assert np.isfinite(history.history["loss"]).all() and "val_loss" in history.history
    assert 1 <= len(set(traced)) <= len(model.bucket_lengths)


def test_turning_it_off_pads_to_the_sequence_length(tmp_path):
    import keras

    texts, labels = _texts()
    model = tiny_text_classifier()
    model.bucket_by_length = False
    batches = model._graph_batches(texts, labels, batch_size=5, training=True)
    assert {batch[0]["token_ids"].shape[1] for batch in batches} == {16}
    path = tmp_path / "model.keras"
    model.save(path)
    assert keras.saving.load_model(path).bucket_by_length is False
