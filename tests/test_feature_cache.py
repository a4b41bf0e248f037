"""Feature caching for the frozen-backbone phase: same head, one forward pass."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    image_arrays,
    image_dataset,
    sentiment_texts,
    tiny_classifier,
    tiny_text_classifier,
    weights_by_layer,
)

import keras_transfer as kt


def twin_classifiers():
    first = tiny_classifier()
    second = tiny_classifier()
    second.set_weights(first.get_weights())
    return first, second


def test_head_trained_on_cached_features_equals_the_uncached_head_for_the_same_order():
    dataset, _, _ = image_dataset(n=24, batch_size=8)
    uncached, cached = twin_classifiers()
    for model in (uncached, cached):
        model.freeze_backbone()
        model.compile("sgd", learning_rate=0.05)
    uncached.fit(dataset, epochs=3, verbose=0)

    extractor = keras.Model(cached.inputs, cached.head_features)
    cache = kt.FeatureCache.compute(extractor, dataset, verbose=0)
    head = cached.head_model()
    head.compile(optimizer=cached.optimizer, loss=cached.loss)
    head.fit(cache.dataset(8, shuffle=False), steps_per_epoch=cache.steps(8), epochs=3, verbose=0)

    for name in ("predictions",):
        for a, b in zip(weights_by_layer(uncached)[name], weights_by_layer(cached)[name]):
            np.testing.assert_allclose(a, b, atol=1e-5)
    # The head is the model's own: the full model predicts with the trained head.
    images, _ = image_arrays(4)
    np.testing.assert_allclose(uncached.predict(images, verbose=0), cached.predict(images, verbose=0), atol=1e-5)


def augmenting(dataset):
    # A Keras random layer keeps its seed state across passes (a plain tf.random
    # op under the tests' global seed would repeat the same values every pass).
    brightness = keras.layers.RandomBrightness(0.3, value_range=(0, 255), seed=1)
    return dataset.map(lambda images, labels: (brightness(images, training=True), labels))


def test_each_pass_is_an_augmented_copy_and_epochs_cycle_through_them():
    dataset, _, labels = image_dataset(n=12, batch_size=4)
    model = tiny_classifier()
    extractor = keras.Model(model.inputs, model.head_features)
    cache = kt.FeatureCache.compute(extractor, augmenting(dataset), copies=3, verbose=0)
    assert cache.features.shape == (3, 12, 16) and cache.copies == 3 and cache.batch_size == 4
    np.testing.assert_array_equal(cache.labels, labels)
    assert not np.allclose(cache.features[0], cache.features[1])

    batches = iter(cache.dataset(4, shuffle=False))
    for epoch in range(4):
        seen = np.concatenate([next(batches)[0].numpy() for _ in range(cache.steps(4))])
        np.testing.assert_allclose(seen, cache.features[epoch % 3])


def test_disk_cache_is_a_memmap_in_the_folder_with_the_same_features(tmp_path):
    dataset, _, _ = image_dataset(n=10, batch_size=4)
    model = tiny_classifier()
    extractor = keras.Model(model.inputs, model.head_features)
    in_memory = kt.FeatureCache.compute(extractor, dataset, verbose=0)
    on_disk = kt.FeatureCache.compute(extractor, dataset, directory=str(tmp_path / "cache"), verbose=0)
    assert isinstance(on_disk.features, np.memmap)
    assert len(os.listdir(tmp_path / "cache")) == 1
    np.testing.assert_allclose(np.asarray(on_disk.features), in_memory.features)
    features, labels = next(iter(on_disk.dataset(10, shuffle=False)))
    np.testing.assert_allclose(features.numpy(), in_memory.features[0])


def test_fine_tune_with_cached_features_trains_only_the_head(tmp_path):
    train, _, _ = image_dataset(n=16, batch_size=8, shuffle=True)
    validation, _, _ = image_dataset(n=8, batch_size=8, seed=1)
    model = tiny_classifier()
    before = weights_by_layer(model)
    history = model.fine_tune(
        train,
        validation,
        head_epochs=2,
        finetune_epochs=0,
        cache_features=True,
        cached_copies=2,
        checkpoint_dir=str(tmp_path),
        verbose=0,
    )
    after = weights_by_layer(model)
    assert all(
        np.array_equal(a, b) for name in before if name != "predictions" for a, b in zip(before[name], after[name])
    )
    assert not np.array_equal(before["predictions"][0], after["predictions"][0])
    assert len(history.head.history["val_accuracy"]) == 2
    assert 0 < history.seconds["head_features"] <= history.seconds["head"]
    saved = keras.saving.load_model(tmp_path / "best_head.keras")
    images, _ = image_arrays(4)
    np.testing.assert_allclose(saved.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


def test_fine_tune_caches_array_data_and_continues_with_fine_tuning():
    images, labels = image_arrays(16)
    model = tiny_classifier()
    history = model.fine_tune(
        (images, labels), head_epochs=1, finetune_epochs=1, unfreeze="all", cache_features=True, batch_size=8, verbose=0
    )
    assert history.finetune.epoch == [1]
    assert model.get_layer("tiny_backbone").get_layer("conv1").trainable


def test_text_classifier_head_trains_on_cached_token_features():
    model = tiny_text_classifier()
    texts, labels = sentiment_texts(2)
    before = weights_by_layer(model.backbone)
    history = model.fine_tune(
        (texts, labels), head_epochs=2, finetune_epochs=0, cache_features=True, head_learning_rate=1e-2, verbose=0
    )
    assert len(history.head.history["loss"]) == 2
    after = weights_by_layer(model.backbone)
    assert all(np.array_equal(a, b) for name in before for a, b in zip(before[name], after[name]))


def test_bad_cache_requests_fail_before_any_work():
    dataset, images, labels = image_dataset(n=8, batch_size=4)
    model = tiny_classifier()
    extractor = keras.Model(model.inputs, model.head_features)
    with pytest.raises(ValueError, match="copies must be >= 1"):
        kt.FeatureCache.compute(extractor, dataset, copies=0)
    with pytest.raises(ValueError, match="repeats forever"):
        kt.FeatureCache.compute(extractor, dataset.repeat())
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        kt.FeatureCache.compute(extractor, (images, labels))
    with pytest.raises(ValueError, match="labelled data"):
        kt.FeatureCache.compute(extractor, dataset.map(lambda x, y: x), verbose=0)


def test_copies_of_a_dataset_that_reshuffles_keep_their_own_labels():
    # Each example's input is its label, so a feature paired with the wrong label shows at once.
    labels = np.arange(12) % 3
    data = (
        tf.data.Dataset.from_tensor_slices((labels.astype("float32")[:, None], labels))
        .shuffle(12, seed=0, reshuffle_each_iteration=True)
        .batch(4)
    )
    inputs = keras.Input((1,))
    identity = keras.Model(inputs, keras.layers.Identity()(inputs))
    cache = kt.FeatureCache.compute(identity, data, copies=3, verbose=0)
    assert cache.copy_labels is not None and cache.copy_labels.shape == (3, 12)
    for copy in range(3):
        np.testing.assert_array_equal(cache.features[copy][:, 0], cache.copy_labels[copy])
    batches = iter(cache.dataset(4, seed=1))
    for _ in range(3 * cache.steps(4)):  # three epochs: every copy
        features, batch_labels = next(batches)
        np.testing.assert_array_equal(features.numpy()[:, 0], batch_labels.numpy())
    # A transformed cache keeps each copy's labels.
    np.testing.assert_array_equal(cache.transform(identity, verbose=0).copy_labels, cache.copy_labels)
