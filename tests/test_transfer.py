"""Tests for keras_transfer.finetune.weight_transfer: weight transfer and feature extraction."""

import keras
import numpy as np
import pytest
from helpers import image_arrays, image_dataset, sentiment_texts, tiny_classifier, tiny_text_classifier
from sklearn.linear_model import LogisticRegression

import keras_transfer as kt


def backbone_with_extra_layer():
    """tiny_backbone's layers plus one of its own; conv3 is wider."""
    inputs = keras.Input((32, 32, 3))
    x = inputs
    for index, (filters, strides) in enumerate([(8, 2), (8, 2), (32, 1)], start=1):
        x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", name=f"conv{index}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{index}")(x)
        x = keras.layers.ReLU(name=f"relu{index}")(x)
    x = keras.layers.Conv2D(4, 1, name="extra_conv")(x)
    return keras.Model(inputs, x, name="target_backbone")


def weights_of(model, name):
    return [w.numpy() for w in model.get_layer(name).weights]


def test_transfer_weights_copies_matching_layers_and_reports_the_rest():
    source = tiny_classifier(3)
    target = kt.ImageClassifier(backbone_with_extra_layer(), num_classes=2, preprocessor="unit")

    target_head = weights_of(target, "predictions")
    target_conv3 = weights_of(target.backbone, "conv3")
    report = kt.transfer_weights(source, target)

    assert sorted(name for name, _ in report.copied) == ["bn1", "bn2", "conv1", "conv2"]
    for name in ("conv1", "bn1", "conv2", "bn2"):
        for a, b in zip(weights_of(source.backbone, name), weights_of(target.backbone, name)):
            np.testing.assert_array_equal(a, b)
    skipped = dict(report.skipped)
    assert "shapes differ" in skipped["conv3"] and "shapes differ" in skipped["bn3"]
    assert "shapes differ" in skipped["predictions"]  # 3 classes -> 2 classes
    assert skipped["extra_conv"] == "no layer of this name in the source"
    assert set(report.unused_source) == {"conv3", "bn3", "predictions"}
    assert report.copied_parameters == sum(
        w.size for name in ("conv1", "bn1", "conv2", "bn2") for w in weights_of(target.backbone, name)
    )
    # The target's own, unmatched layers are left as they were.
    for before, after in [
        (target_head, weights_of(target, "predictions")),
        (target_conv3, weights_of(target.backbone, "conv3")),
    ]:
        assert all(np.array_equal(a, b) for a, b in zip(before, after))
    text = str(report)
    assert text.startswith("Copied 4 layers") and "skipped  extra_conv" in text


def test_transfer_weights_changes_the_target_outputs_to_match():
    source, target = tiny_classifier(2), tiny_classifier(2)
    images = image_arrays(4)[0]
    assert not np.allclose(source.predict(images, verbose=0), target.predict(images, verbose=0))
    report = kt.transfer_weights(source, target)
    assert len(report.copied) == 7 and report.skipped == [] and report.unused_source == []
    np.testing.assert_array_equal(source.predict(images, verbose=0), target.predict(images, verbose=0))


def test_transfer_weights_restricted_to_some_layers():
    source, target = tiny_classifier(2), tiny_classifier(2)
    before = weights_of(target.backbone, "conv2")
    report = kt.transfer_weights(source.backbone, target.backbone, layer_names=["conv1", "bn1"])
    assert sorted(name for name, _ in report.copied) == ["bn1", "conv1"]
    np.testing.assert_array_equal(weights_of(target.backbone, "conv1")[0], weights_of(source.backbone, "conv1")[0])
    np.testing.assert_array_equal(weights_of(target.backbone, "conv2")[0], before[0])
    assert "conv2" in report.unused_source

    with pytest.raises(ValueError, match=r"no layers with weights named \['conv9', 'relu1'\]"):
        kt.transfer_weights(source, target, layer_names=["conv1", "conv9", "relu1"])


def test_transfer_weights_reports_ambiguous_source_names():
    inputs = keras.Input((4,))
    inner = keras.Sequential([keras.layers.Dense(3, name="dense")], name="inner")
    source = keras.Model(inputs, keras.layers.Dense(3, name="dense")(inner(inputs)))
    target_inputs = keras.Input((4,))
    target = keras.Model(target_inputs, keras.layers.Dense(3, name="dense")(target_inputs))
    report = kt.transfer_weights(source, target)
    assert report.copied == [] and report.skipped == [("dense", "2 source layers share this name")]


def test_extract_features_pairs_features_with_labels_and_fits_sklearn():
    train, images, labels = image_dataset(24, batch_size=5, shuffle=True)
    model = tiny_classifier()

    features, feature_labels = kt.extract_features(model, train, verbose=0)
    assert features.shape == (24, 16) and feature_labels.shape == (24,)
    assert sorted(feature_labels.tolist()) == sorted(labels.tolist())

    # Each returned row is the feature of an image of the returned label, even though
    # the dataset shuffles: find every row among the features of the unshuffled images.
    reference = model.feature_extractor().predict(images, verbose=0)
    distances = ((features[:, None, :] - reference[None, :, :]) ** 2).sum(-1)
    match = distances.argmin(axis=1)
    assert np.all(distances[np.arange(24), match] < 1e-6)
    assert sorted(match.tolist()) == list(range(24))
    np.testing.assert_array_equal(labels[match], feature_labels)

    classifier = LogisticRegression(max_iter=1000).fit(features, feature_labels)
    assert classifier.score(features, feature_labels) >= 0.9


def test_extract_features_from_arrays_and_plain_models():
    model = tiny_classifier()
    images = image_arrays(6)[0]
    features, labels = kt.extract_features(model, images, pooling="max")
    assert labels is None
    np.testing.assert_allclose(features, model.feature_extractor("max").predict(images, verbose=0), atol=1e-6)

    extractor = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D()])
    import tensorflow as tf

    unlabelled = tf.data.Dataset.from_tensor_slices(images).batch(4)
    features, labels = kt.extract_features(extractor, unlabelled, verbose=0)
    assert labels is None
    np.testing.assert_allclose(features, images.mean(axis=(1, 2)), rtol=1e-5)


def test_extract_features_of_a_text_classifier_takes_raw_sentences():
    import tensorflow as tf

    model = tiny_text_classifier(pooling="mean")
    texts, labels = sentiment_texts(1)
    reference = model.feature_extractor().predict(model.tokenize(texts), verbose=0)
    assert reference.shape == (len(texts), 32)

    features, none = kt.extract_features(model, texts, verbose=0)
    assert none is None and features.shape == (len(texts), 32)
    np.testing.assert_allclose(features, reference, atol=1e-6)
    # Labelled sentences, as a tuple and as a string dataset: the labels come back paired.
    features, feature_labels = kt.extract_features(model, (texts, labels), verbose=0)
    np.testing.assert_allclose(features, reference, atol=1e-6)
    np.testing.assert_array_equal(feature_labels, labels)
    dataset = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(5)
    features, feature_labels = kt.extract_features(model, dataset, verbose=0)
    np.testing.assert_allclose(features, reference, atol=1e-6)
    np.testing.assert_array_equal(feature_labels, labels)
    # Other poolings of the same tokens, and the backbone's pooler.
    for pooling in ("max", "cls", "pooled"):
        features, _ = kt.extract_features(model, texts, pooling=pooling, verbose=0)
        expected = model.feature_extractor(pooling).predict(model.tokenize(texts), verbose=0)
        assert features.shape == (len(texts), 32)
        np.testing.assert_allclose(features, expected, atol=1e-6)
    assert not np.allclose(kt.extract_features(model, texts, pooling="max")[0], reference)
