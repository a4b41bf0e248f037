"""Tests for keras_transfer.models.image_backbones (registry, factory, keras-hub) and the preprocessing layer."""

import os

import h5py
import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer.models import image_backbones
from keras_transfer.models.image_backbones import BACKBONES, UnknownBackboneError, build_backbone

EXPECTED_BACKBONES = {
    "VGG": ["vgg16", "vgg19"],
    "ResNet": ["resnet50", "resnet101", "resnet152"],
    "ResNetV2": ["resnet50_v2", "resnet101_v2", "resnet152_v2"],
    "Inception": ["inception_v3", "inception_resnet_v2"],
    "Xception": ["xception"],
    "MobileNet": ["mobilenet", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"],
    "DenseNet": ["densenet121", "densenet169", "densenet201"],
    "NASNet": ["nasnet_mobile", "nasnet_large"],
    "EfficientNet": [f"efficientnet_b{i}" for i in range(8)],
    "EfficientNetV2": [
        *[f"efficientnet_v2_b{i}" for i in range(4)],
        "efficientnet_v2_s",
        "efficientnet_v2_m",
        "efficientnet_v2_l",
    ],
    "ConvNeXt": [f"convnext_{size}" for size in ("tiny", "small", "base", "large", "xlarge")],
}

# The smallest member of each family, built at its smallest input size.
SMALLEST = {
    "VGG": "vgg16",
    "ResNet": "resnet50",
    "ResNetV2": "resnet50_v2",
    "Inception": "inception_v3",
    "Xception": "xception",
    "MobileNet": "mobilenet_v3_small",
    "DenseNet": "densenet121",
    "NASNet": "nasnet_mobile",
    "EfficientNet": "efficientnet_b0",
    "EfficientNetV2": "efficientnet_v2_b0",
    "ConvNeXt": "convnext_tiny",
}


# --- the registry ------------------------------------------------------------


def test_registry_has_every_family_and_member():
    for family, names in EXPECTED_BACKBONES.items():
        assert [spec.name for spec in kt.list_backbones(family)] == names, family
    assert sorted(BACKBONES) == sorted(n for names in EXPECTED_BACKBONES.values() for n in names)
    assert set(SMALLEST) == {spec.family for spec in kt.list_backbones()}


@pytest.mark.parametrize("spec", kt.list_backbones(), ids=lambda spec: spec.name)
def test_spec_points_at_real_keras_applications(spec):
    constructor = getattr(keras.applications, spec.constructor, None)
    assert callable(constructor), f"keras.applications has no {spec.constructor}"
    module = getattr(keras.applications, spec.preprocessing, None)
    assert callable(getattr(module, "preprocess_input", None)), spec.preprocessing
    assert 32 <= spec.min_size <= spec.default_size
    assert kt.get_backbone_spec(spec.name) is spec
    assert kt.get_backbone_spec(spec.constructor) is spec


@pytest.mark.parametrize("family", sorted(SMALLEST))
def test_smallest_of_each_family_builds_and_runs(family):
    spec = kt.get_backbone_spec(SMALLEST[family])
    size = spec.min_size
    built = build_backbone(spec.name, weights=None, image_size=size)
    assert built.image_size == (size, size)
    assert built.model.input_shape == (None, size, size, 3)
    assert built.preprocessor.mode == spec.preprocessing
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    features = np.asarray(built.model(built.preprocessor(images), training=False))
    assert features.ndim == 4 and features.shape[0] == 2
    assert features.shape[1:] == tuple(built.model.output_shape[1:])
    assert np.all(np.isfinite(features))
    # Headless: no ImageNet classifier on top.
    assert features.shape[-1] != 1000


# --- names -------------------------------------------------------------------


@pytest.mark.parametrize(
    "alias, name",
    [
        ("MobileNetV2", "mobilenet_v2"),
        ("mobilenetv2", "mobilenet_v2"),
        ("mobilenet-v2", "mobilenet_v2"),
        ("ResNet50V2", "resnet50_v2"),
        ("EfficientNetV2B0", "efficientnet_v2_b0"),
        ("ConvNeXtTiny", "convnext_tiny"),
        ("InceptionResNetV2", "inception_resnet_v2"),
    ],
)
def test_keras_spellings_find_the_registry_entry(alias, name):
    assert kt.get_backbone_spec(alias).name == name


def test_alias_builds_the_same_backbone():
    built = build_backbone("MobileNetV2", weights=None, image_size=32)
    assert built.name == "mobilenet_v2"
    assert built.model.output_shape == (None, 1, 1, 1280)


@pytest.mark.parametrize("name, close", [("mobilenet_v9", "mobilenet_v2"), ("resnet51", "resnet50")])
def test_unknown_name_lists_close_names(name, close):
    with pytest.raises(UnknownBackboneError, match=f"Unknown backbone '{name}'") as error:
        build_backbone(name, weights=None, image_size=32)
    assert close in str(error.value)
    assert "Closest names" in str(error.value)
    assert isinstance(error.value, ValueError)


# --- sizes and weights ------------------------------------------------------------


@pytest.mark.parametrize(
    "name, size, minimum", [("inception_v3", 74, 75), ("xception", 70, 71), ("mobilenet_v2", 31, 32)]
)
def test_image_size_below_minimum_is_an_error(name, size, minimum):
    with pytest.raises(ValueError, match=f"at least {minimum}x{minimum}.*got {size}x{size}"):
        build_backbone(name, weights=None, image_size=size)


def test_rectangular_image_size():
    built = build_backbone("mobilenet", weights=None, image_size=(32, 64))
    assert built.image_size == (32, 64)
    assert built.model.input_shape == (None, 32, 64, 3)


def test_default_image_size_is_the_specs():
    assert image_backbones.default_image_size("xception") == (299, 299)
    assert image_backbones.default_image_size("nasnet_large") == (331, 331)


def test_nasnet_imagenet_weights_need_their_exact_size():
    with pytest.raises(ValueError, match="only load at 224x224"):
        build_backbone("nasnet_mobile", weights="imagenet", image_size=96)


def test_weights_from_a_local_file(tmp_path):
    original = build_backbone("mobilenet", weights=None, image_size=32).model
    path = str(tmp_path / "backbone.weights.h5")
    original.save_weights(path)

    loaded = build_backbone("mobilenet", weights=path, image_size=32).model
    fresh = build_backbone("mobilenet", weights=None, image_size=32).model
    assert all(np.array_equal(a, b) for a, b in zip(original.get_weights(), loaded.get_weights()))
    # A fresh random build differs, so the equality above came from the file.
    assert not all(np.array_equal(a, b) for a, b in zip(original.get_weights(), fresh.get_weights()))


@pytest.mark.parametrize("weights", [os.path.join("no", "such", "file.weights.h5"), "imagenet21k"])
def test_bad_weights_are_an_error(weights):
    with pytest.raises(ValueError, match="neither 'imagenet', None, nor an existing weights file"):
        build_backbone("mobilenet_v2", weights=weights, image_size=32)


@pytest.mark.integration
def test_imagenet_weights_come_from_the_offline_file(assets_dir):
    path = os.path.join(assets_dir, "keras-models", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")
    with h5py.File(path, "r") as file:
        group = file["Conv1"]
        kernel_path = []
        group.visit(lambda name: kernel_path.append(name) if "kernel" in name else None)
        expected = np.asarray(group[kernel_path[0]])
    built = build_backbone("mobilenet_v2", weights="imagenet", image_size=96)
    np.testing.assert_array_equal(built.model.get_layer("Conv1").kernel.numpy(), expected)


# --- preprocessing ------------------------------------------------------------


@pytest.mark.parametrize(
    "mode",
    ["mobilenet_v2", "resnet", "resnet_v2", "vgg16", "inception_v3", "densenet", "efficientnet", "convnext", "nasnet"],
)
def test_preprocessing_matches_keras_applications(mode):
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = getattr(keras.applications, mode).preprocess_input(images.copy())
    layer = kt.BackbonePreprocessing(mode)
    np.testing.assert_allclose(np.asarray(layer(images)), expected, rtol=1e-5, atol=1e-4)

    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, kt.BackbonePreprocessing) and restored.mode == mode
    np.testing.assert_allclose(np.asarray(restored(images)), expected, rtol=1e-5, atol=1e-4)


def test_preprocessing_unit_and_none_modes():
    images = np.full((1, 4, 4, 3), 255.0, "float32")
    np.testing.assert_allclose(np.asarray(kt.BackbonePreprocessing("unit")(images)), 1.0)
    np.testing.assert_allclose(np.asarray(kt.BackbonePreprocessing("none")(images)), 255.0)


def test_unknown_preprocessing_mode_is_an_error():
    with pytest.raises(ValueError, match="Unknown preprocessing mode 'mobilenet_v7'"):
        kt.BackbonePreprocessing("mobilenet_v7")


def test_preprocessing_inside_a_saved_model(tmp_path):
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, kt.BackbonePreprocessing("mobilenet_v2")(inputs))
    path = str(tmp_path / "pre.keras")
    model.save(path)
    images = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored.predict(images, verbose=0), images / 127.5 - 1, atol=1e-5)


# --- keras-hub through a local preset folder ------------------------------------


@pytest.fixture(scope="module")
def hub_preset(tmp_path_factory):
    """A tiny keras-hub ResNet saved as a local preset with a 32x32 image converter."""
    import keras_hub

    folder = str(tmp_path_factory.mktemp("hub_preset"))
    keras.utils.set_random_seed(7)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(None, None, 3),
    )
    backbone.save_to_preset(folder)
    keras_hub.layers.ImageConverter(image_size=(32, 32), scale=1 / 255).save_to_preset(folder)
    return folder, backbone.get_weights()


def test_keras_hub_preset_folder_builds_with_its_weights(hub_preset):
    folder, saved_weights = hub_preset
    built = build_backbone(folder, weights="imagenet")
    assert built.image_size == (32, 32)
    assert all(np.array_equal(a, b) for a, b in zip(built.model.get_weights(), saved_weights))
    random = build_backbone(folder, weights=None, image_size=48)
    assert random.image_size == (48, 48)
    assert not all(np.array_equal(a, b) for a, b in zip(random.model.get_weights(), saved_weights))


def test_keras_hub_preset_classifier_predicts_trains_and_saves(hub_preset, tmp_path):
    import helpers

    folder, _ = hub_preset
    model = kt.ImageClassifier(folder, num_classes=2, weights=None)
    assert model.image_size == (32, 32)
    images = helpers.image_arrays(4)[0]
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (4, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # The converter sits inside the model: raw pixels in, rescaled before the backbone.
    np.testing.assert_allclose(np.asarray(model.preprocessor(images)), images / 255, atol=1e-5)

    train, _, _ = helpers.image_dataset(16)
    before = model.backbone.get_layer("conv1_conv").kernel.numpy()
    history = model.fine_tune(train, head_epochs=1, finetune_epochs=1, unfreeze="all", verbose=0)
    assert history.finetune.epoch == [1]
    assert np.isfinite(history.merged()["loss"]).all()
    assert not np.array_equal(before, model.backbone.get_layer("conv1_conv").kernel.numpy())

    restored = helpers.run_serialization_test(model, images, tmp_path / "hub.keras")
    assert restored.class_names == ["class_0", "class_1"]

    # keras-hub backbones rebuild from their arguments: the frozen BN layers stay frozen.
    def flags(m):
        return {layer.name: layer.trainable for layer in m.backbone.layers if layer.weights}

    assert not flags(model)["conv1_bn"] and flags(model)["conv1_conv"]
    assert flags(restored) == flags(model)
    assert len(restored.trainable_weights) == len(model.trainable_weights)
