"""Tests for keras_transfer.data and keras_transfer.data.image_augmentation (small generated data)."""

import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from keras_transfer import data
from keras_transfer.data import AUGMENTATION_PRESETS, DataError, augmentation
from keras_transfer.data.splits import split_train_validation

# --------------------------------------------------------------------------
# Helpers that write tiny image folders.

_rng = np.random.default_rng(0)


def write_image(path, size=40, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = _rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return str(path)


def make_folder(root, classes=("cats", "dogs"), per_class=3):
    """root/<class>/<i>.jpg|png with random pixels; returns root as str."""
    for name in classes:
        for i in range(per_class):
            extension = "png" if i % 2 else "jpg"
            write_image(os.path.join(root, name, f"{i}.{extension}"))
    return str(root)


def write_corrupt_files(root):
    """A text file renamed to .jpg and a truncated JPEG; returns their paths."""
    text = os.path.join(root, "cats", "not_an_image.jpg")
    with open(text, "w") as f:
        f.write("this is not a JPEG")
    whole = write_image(os.path.join(root, "dogs", "whole.jpg"))
    truncated = os.path.join(root, "dogs", "truncated.jpg")
    with open(whole, "rb") as f:
        contents = f.read()
    with open(truncated, "wb") as f:
        f.write(contents[: len(contents) // 2])
    os.remove(whole)
    return [text, truncated]


def all_batches(dataset):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(labels)


# --------------------------------------------------------------------------
# image_folder


def test_image_folder_batches_and_attributes(tmp_path):
    root = make_folder(tmp_path / "train", per_class=3)
    dataset = data.image_folder(root, image_size=32, batch_size=4)

    assert isinstance(dataset, tf.data.Dataset)
    images, labels = next(iter(dataset))
    assert images.shape == (4, 32, 32, 3) and images.dtype == tf.float32
    assert labels.shape == (4,) and labels.dtype == tf.int32
    assert dataset.class_names == ["cats", "dogs"]
    assert dataset.num_classes == 2
    assert dataset.num_examples == 6
    assert dataset.skipped_files == []

    images, labels = all_batches(dataset)
    assert len(images) == 6 and images.min() >= 0 and images.max() <= 255
    assert images.max() > 1  # raw pixels, not rescaled
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]


def test_image_folder_rectangular_size(tmp_path):
    dataset = data.image_folder(make_folder(tmp_path), image_size=(24, 32), batch_size=2)
    assert next(iter(dataset))[0].shape == (2, 24, 32, 3)


def test_validation_split_is_disjoint(tmp_path):
    root = make_folder(tmp_path, classes=("a", "b", "c"), per_class=4)
    train, validation = data.image_folder(root, image_size=16, batch_size=4, validation_split=0.25)
    assert (train.num_examples, validation.num_examples) == (9, 3)
    assert train.class_names == validation.class_names == ["a", "b", "c"]
    train_images, _ = all_batches(train)
    validation_images, _ = all_batches(validation)
    assert len(train_images) == 9 and len(validation_images) == 3
    train_keys = {image.tobytes() for image in train_images}
    assert not any(image.tobytes() in train_keys for image in validation_images)


def test_validation_dir(tmp_path):
    train_dir = make_folder(tmp_path / "train", per_class=3)
    validation_dir = make_folder(tmp_path / "val", per_class=2)
    train, validation = data.image_folder(train_dir, validation_dir=validation_dir, image_size=16, batch_size=8)
    assert (train.num_examples, validation.num_examples) == (6, 4)
    assert validation.class_names == ["cats", "dogs"]
    _, labels = all_batches(validation)
    assert labels.tolist() == [0, 0, 1, 1]  # validation is never shuffled


def test_augmentation_changes_train_only(tmp_path):
    train_dir = make_folder(tmp_path / "train")
    validation_dir = make_folder(tmp_path / "val")
    options = dict(validation_dir=validation_dir, image_size=32, shuffle=False)
    plain_train, plain_validation = data.image_folder(train_dir, **options)
    train, validation = data.image_folder(train_dir, augment="standard", **options)

    plain_images, plain_labels = all_batches(plain_train)
    images, labels = all_batches(train)
    assert np.array_equal(labels, plain_labels)
    assert not np.allclose(images, plain_images)
    assert images.dtype == np.float32 and images.shape == plain_images.shape
    # No augmentation by default: the same images on every pass.
    assert np.array_equal(all_batches(plain_train)[0], plain_images)
    assert np.array_equal(all_batches(validation)[0], all_batches(plain_validation)[0])


def test_augment_accepts_a_keras_layer(tmp_path):
    to_seven = keras.layers.Rescaling(0.0, offset=7.0)
    train, validation = data.image_folder(make_folder(tmp_path), image_size=16, validation_split=0.5, augment=to_seven)
    assert np.all(all_batches(train)[0] == 7.0)
    assert not np.all(all_batches(validation)[0] == 7.0)


def test_unreadable_images_are_skipped_with_one_warning(tmp_path):
    root = make_folder(tmp_path, per_class=3)
    bad_files = write_corrupt_files(root)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = data.image_folder(root, image_size=16, batch_size=2)
    messages = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(messages) == 1
    assert all(path in messages[0] for path in bad_files)

    assert sorted(dataset.skipped_files) == sorted(bad_files)
    assert dataset.num_examples == 6
    for _ in range(2):  # full epochs, no decode error
        images, _ = all_batches(dataset)
        assert len(images) == 6


def test_unreadable_images_with_validation_split(tmp_path):
    root = make_folder(tmp_path, per_class=5)
    bad_files = write_corrupt_files(root)
    with pytest.warns(UserWarning, match="truncated.jpg"):
        train, validation = data.image_folder(root, image_size=16, batch_size=3, validation_split=0.5)
    assert sorted(train.skipped_files + validation.skipped_files) == sorted(bad_files)
    assert train.num_examples + validation.num_examples == 10
    assert len(all_batches(train)[0]) == train.num_examples
    assert len(all_batches(validation)[0]) == validation.num_examples


def test_cache_in_memory_and_on_disk(tmp_path):
    root = make_folder(tmp_path / "train", per_class=6)
    in_memory = data.image_folder(root, image_size=16, batch_size=4, cache=True)
    first, second = all_batches(in_memory)[0], all_batches(in_memory)[0]
    assert len(first) == len(second) == 12
    # The cache keeps the images but the order still changes between epochs.
    assert not np.array_equal(first, second)
    assert sorted(first.sum(axis=(1, 2, 3))) == sorted(second.sum(axis=(1, 2, 3)))

    prefix = str(tmp_path / "cache" / "images")
    os.makedirs(os.path.dirname(prefix))
    train, validation = data.image_folder(root, image_size=16, validation_split=0.25, cache=prefix)
    assert len(all_batches(train)[0]) == 9 and len(all_batches(validation)[0]) == 3
    cache_files = os.listdir(os.path.dirname(prefix))
    assert any(name.startswith("images_train") for name in cache_files)
    assert any(name.startswith("images_validation") for name in cache_files)


# --------------------------------------------------------------------------
# image_folder errors


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist: check the path"):
        data.image_folder(tmp_path / "nope")


def test_no_class_folders(tmp_path):
    write_image(tmp_path / "loose.jpg")
    with pytest.raises(DataError, match="no class sub-folders.*one sub-folder per class"):
        data.image_folder(tmp_path)


def test_empty_class_folder(tmp_path):
    make_folder(tmp_path, classes=("cats",))
    os.makedirs(tmp_path / "dogs")
    with pytest.raises(DataError, match=r"dogs' has no readable images.*add images"):
        data.image_folder(tmp_path)


def test_class_folder_with_only_unreadable_images(tmp_path):
    make_folder(tmp_path, classes=("cats",))
    os.makedirs(tmp_path / "dogs")
    (tmp_path / "dogs" / "broken.png").write_text("not a png")
    with pytest.raises(DataError, match="none of its 1 image files could be decoded"):
        data.image_folder(tmp_path)


def test_single_class(tmp_path):
    make_folder(tmp_path, classes=("cats",))
    with pytest.raises(DataError, match="need at least 2 classes for classification"):
        data.image_folder(tmp_path)


def test_train_and_validation_classes_differ(tmp_path):
    train_dir = make_folder(tmp_path / "train", classes=("cats", "dogs"))
    validation_dir = make_folder(tmp_path / "val", classes=("birds", "cats"))
    # A validation class the train folder lacks cannot be learned: an error.
    with pytest.raises(DataError, match=r"class folder\(s\) \['birds'\] that train folder .* lacks"):
        data.image_folder(train_dir, validation_dir=validation_dir)
    # A training class the validation folder lacks is only not scored: a warning.
    only_cats = make_folder(tmp_path / "val_cats", classes=("cats",))
    with pytest.warns(UserWarning, match=r"\['dogs'\] .* have no validation examples"):
        train, validation = data.image_folder(train_dir, validation_dir=only_cats)
    assert validation.class_names == ["cats", "dogs"] and set(all_batches(validation)[1]) == {0}


@pytest.mark.parametrize("split", [0, 1, 1.5, -0.2])
def test_validation_split_out_of_range(tmp_path, split):
    # Checked before the folder is even scanned.
    with pytest.raises(DataError, match="between 0 and 1.*validation_split=0.2"):
        data.image_folder(tmp_path / "nope", validation_split=split)


def test_validation_split_and_dir_together(tmp_path):
    root = make_folder(tmp_path)
    with pytest.raises(DataError, match="either validation_split or validation_dir"):
        data.image_folder(root, validation_split=0.2, validation_dir=root)


def test_bad_image_size(tmp_path):
    with pytest.raises(DataError, match=r"image_size=\(224, 224\)"):
        data.image_folder(make_folder(tmp_path), image_size=(224,))


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


# --------------------------------------------------------------------------
# from_arrays


def test_from_arrays_int_labels():
    images = _rng.integers(0, 256, (10, 12, 12, 3), dtype=np.uint8)
    labels = np.array([0, 1] * 5)
    dataset = data.from_arrays(images, labels, batch_size=4)
    x, y = next(iter(dataset))
    assert x.shape == (4, 12, 12, 3) and x.dtype == tf.float32
    assert y.dtype == tf.int32
    assert dataset.class_names == ["0", "1"] and dataset.num_classes == 2
    assert dataset.num_examples == 10 and dataset.skipped_files == []
    all_images, all_labels = all_batches(dataset)
    assert sorted(all_labels.tolist()) == sorted(labels.tolist())
    assert sorted(all_images.sum(axis=(1, 2, 3))) == sorted(images.astype(np.float32).sum(axis=(1, 2, 3)))


def test_from_arrays_grayscale_and_split():
    images = np.arange(8 * 5 * 5, dtype=np.float64).reshape(8, 5, 5, 1) % 256
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    train, validation = data.from_arrays(images, labels, class_names=["x", "y", "z"], validation_split=0.25)
    # Stratified: every class with 2 or more images gives one to validation.
    assert (train.num_examples, validation.num_examples) == (5, 3)
    assert sorted(all_batches(validation)[1].tolist()) == [0, 1, 2]
    assert validation.class_names == ["x", "y", "z"]
    x, _ = all_batches(train)
    assert x.shape == (5, 5, 5, 3) and x.dtype == np.float32
    assert np.array_equal(x[..., 0], x[..., 2])


def test_from_arrays_multi_hot_labels():
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    dataset = data.from_arrays(np.zeros((4, 6, 6, 3)), labels, batch_size=4)
    _, y = next(iter(dataset))
    assert y.dtype == tf.float32 and y.shape == (4, 3)
    assert dataset.class_names is None and dataset.num_classes == 3


@pytest.mark.parametrize(
    "images, labels, kwargs, message",
    [
        (np.zeros((4, 6, 6, 3)), np.array([0, 1, 0]), {}, "got 4 images but 3 labels"),
        (np.zeros((4, 6, 6)), np.array([0, 1, 0, 1]), {}, r"images\[\.\.\., None\]"),
        (np.zeros((4, 6, 6, 3)), np.zeros((4, 1, 1)), {}, "labels must have shape"),
        (np.zeros((4, 6, 6, 3)), np.array([0, 0, 0, 0]), {}, "need at least 2 classes"),
        (np.zeros((4, 6, 6, 3)), np.array([1, 2, 1, 2]), {}, "class indices 0..K-1"),
        (
            np.zeros((4, 6, 6, 3)),
            np.array([0, 1, 2, 1]),
            {"class_names": ["a", "b"]},
            r"labels \[2\] are outside range\(0, 2\)",
        ),
    ],
)
def test_from_arrays_errors(images, labels, kwargs, message):
    with pytest.raises(DataError, match=message):
        data.from_arrays(images, labels, **kwargs)


# --------------------------------------------------------------------------
# check_num_classes / class_names_of


def test_check_num_classes(tmp_path):
    dataset = data.image_folder(make_folder(tmp_path), image_size=8)
    data.check_num_classes(dataset, 2)
    with pytest.raises(
        DataError,
        match=r"the model has 3 outputs but the data has 2 classes "
        r"\['cats', 'dogs'\]: pass num_classes=2",
    ):
        data.check_num_classes(dataset, 3)
    plain = tf.data.Dataset.range(3)
    data.check_num_classes(plain, 5)  # nothing to check against
    assert data.class_names_of(dataset) == ["cats", "dogs"]
    assert data.class_names_of(plain) is None


# --------------------------------------------------------------------------
# The one train/validation split


def test_split_is_stratified_on_an_imbalanced_set():
    labels = np.array([0] * 90 + [1] * 8 + [2] * 2)
    train, validation = split_train_validation(labels, 0.2, seed=0)
    assert len(validation) == 20 and len(train) == 80
    assert np.bincount(labels[validation]).tolist() == [18, 1, 1]
    assert sorted(train.tolist() + validation.tolist()) == list(range(100))
    # Each class keeps about the same fraction, and at least one in each subset.
    labels = np.array([0] * 6 + [1] * 2)
    train, validation = split_train_validation(labels, 0.25, seed=0)
    assert np.bincount(labels[validation]).tolist() == [1, 1]
    assert np.bincount(labels[train]).tolist() == [5, 1]


def test_split_small_classes_get_one_and_singletons_stay_in_training():
    labels = np.array([0] * 10 + [1] * 2 + [2])
    _, validation = split_train_validation(labels, 0.1, seed=0)
    assert np.bincount(labels[validation], minlength=3).tolist() == [1, 1, 0]
    with pytest.raises(DataError, match="every class has a single example"):
        split_train_validation(np.arange(5), 0.5, seed=0)


def test_split_is_deterministic_for_a_seed():
    labels = np.repeat(np.arange(4), 25)
    first = split_train_validation(labels, 0.2, seed=3)
    again = split_train_validation(labels, 0.2, seed=3)
    other = split_train_validation(labels, 0.2, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[1], other[1])
    assert np.all(np.diff(first[1]) > 0)  # in the original order
    # shuffle=False: the last examples of each class, whatever the seed.
    _, last = split_train_validation(labels, 0.2, seed=None, shuffle=False)
    assert last.tolist() == [i for start in range(0, 100, 25) for i in range(start + 20, start + 25)]


def test_split_falls_back_to_a_seeded_random_split_for_targets():
    targets = np.linspace(0, 1, 50, dtype=np.float32)  # regression
    _, validation = split_train_validation(targets, 0.2, seed=5)
    assert np.array_equal(validation, np.sort(np.random.default_rng(5).permutation(50)[-10:]))
    multi_hot = np.eye(5, dtype=np.float32)[np.arange(50) % 5]
    _, validation = split_train_validation(multi_hot, 0.2, seed=5)
    assert len(validation) == 10


@pytest.mark.parametrize("split", [0, 1, 1.5, -0.2])
def test_split_keeps_the_bad_fraction_messages(split):
    with pytest.raises(DataError, match="between 0 and 1.*validation_split=0.2"):
        split_train_validation(np.array([0, 1] * 5), split, seed=0)


def test_split_too_small_message():
    with pytest.raises(DataError, match="of 4 examples leaves no validation examples"):
        split_train_validation(np.array([0, 0, 1, 1]), 0.2, seed=0)


def test_images_and_text_loaders_use_the_same_split(tmp_path):
    # 6 cats and 2 dogs: the folder split once gave a validation set of only dogs.
    labels = np.array([0] * 6 + [1] * 2)
    for i, label in enumerate(labels):
        name = ("cats", "dogs")[label]
        pixels = np.full((8, 8, 3), 10 * i, np.uint8)  # the value names the file
        path = tmp_path / "folder" / name / f"{i}.png"
        os.makedirs(path.parent, exist_ok=True)
        Image.fromarray(pixels).save(path)
    _, expected = split_train_validation(labels, 0.25, seed=11)
    assert np.bincount(labels[expected]).tolist() == [1, 1]

    _, folder_validation = data.image_folder(tmp_path / "folder", image_size=8, validation_split=0.25, seed=11)
    folder_images, _ = all_batches(folder_validation)
    assert sorted(folder_images[:, 0, 0, 0].astype(int) // 10) == expected.tolist()

    images = np.arange(8, dtype=np.float32)[:, None, None, None] * np.ones((8, 2, 2, 3))
    _, array_validation = data.from_arrays(images, labels, validation_split=0.25, seed=11)
    assert sorted(all_batches(array_validation)[0][:, 0, 0, 0].astype(int)) == expected.tolist()

    texts = [f"text {i}" for i in range(8)]
    _, text_validation = data.from_texts(texts, labels, validation_split=0.25, seed=11)
    held_out = [int(text.numpy().decode().split()[1]) for text, _ in text_validation.unbatch()]
    assert held_out == expected.tolist()


# --------------------------------------------------------------------------
# augmentation presets


@pytest.mark.parametrize("preset", ["flip", "standard", "strong", "randaugment"])
def test_augmentation_presets_keep_shape_and_range(preset):
    images = _rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    layer = augmentation(preset, seed=1)
    assert isinstance(layer, keras.Sequential)
    out = keras.ops.convert_to_numpy(layer(images, training=True))
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= -1e-3 and out.max() <= 255 + 1e-3


def test_augmentation_none_and_unknown():
    assert augmentation("none") is None
    assert set(AUGMENTATION_PRESETS) == {"none", "flip", "standard", "strong", "randaugment"}
    with pytest.raises(ValueError, match="Valid presets: none, flip, standard"):
        augmentation("wild")


# --------------------------------------------------------------------------
# TFDS


def test_tfds_image_folder(tmp_path):
    make_folder(tmp_path / "train", classes=("ants", "bees"), per_class=3)
    make_folder(tmp_path / "test", classes=("ants", "bees"), per_class=1)
    train = data.tfds_image_folder(tmp_path, image_size=16, batch_size=4)
    x, y = next(iter(train))
    assert x.shape == (4, 16, 16, 3) and x.dtype == tf.float32 and y.dtype == tf.int32
    assert train.class_names == ["ants", "bees"] and train.num_examples == 6

    train, test = data.tfds_image_folder(tmp_path, split=["train", "test"], image_size=16, augment="flip")
    assert (train.num_examples, test.num_examples) == (6, 2)
    assert len(all_batches(test)[0]) == 2
    with pytest.raises(DataError, match=r"split\(s\) \['valid'\] not found"):
        data.tfds_image_folder(tmp_path, split="valid")


class KerasTransferTinyShapes(tfds.core.GeneratorBasedBuilder):
    """A three-class image dataset generated in memory, for offline tests."""

    VERSION = tfds.core.Version("1.0.0")
    # tfds infers a metadata folder from the module's package; tests is not one.
    pkg_dir_path = epath.Path(os.path.dirname(__file__))

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=["circle", "square", "star"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(9), "test": self._generate_examples(3)}

    def _generate_examples(self, count):
        for i in range(count):
            image = np.full((20, 24, 3), 20 * i, dtype=np.uint8)
            yield i, {"image": image, "label": i % 3}


@pytest.fixture(scope="module")
def tiny_tfds_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    KerasTransferTinyShapes(data_dir=data_dir).download_and_prepare()
    return data_dir


def test_from_tfds_offline(tiny_tfds_dir, monkeypatch):
    load_calls = []
    real_load = tfds.load

    def spy_load(*args, **kwargs):
        load_calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(tfds, "load", spy_load)
    train, test = data.from_tfds(
        "keras_transfer_tiny_shapes",
        split=["train", "test"],
        data_dir=tiny_tfds_dir,
        download=False,
        image_size=16,
        batch_size=4,
    )
    assert load_calls and load_calls[0]["download"] is False
    assert train.class_names == ["circle", "square", "star"] and train.num_classes == 3
    assert (train.num_examples, test.num_examples) == (9, 3)
    x, y = next(iter(train))
    assert x.shape == (4, 16, 16, 3) and x.dtype == tf.float32 and y.dtype == tf.int32
    _, test_labels = all_batches(test)
    assert sorted(test_labels.tolist()) == [0, 1, 2]

    single = data.from_tfds("keras_transfer_tiny_shapes", data_dir=tiny_tfds_dir, download=False, image_size=8)
    assert isinstance(single, tf.data.Dataset) and single.num_examples == 9


def test_from_tfds_unknown_label_key(tiny_tfds_dir):
    with pytest.raises(DataError, match="no feature 'category'.*label_key="):
        data.from_tfds(
            "keras_transfer_tiny_shapes",
            data_dir=tiny_tfds_dir,
            download=False,
            label_key="category",
        )


# --------------------------------------------------------------------------
# Real data


def assets_dir():
    default = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "assets")
    return os.environ.get("KERAS_TRANSFER_ASSETS", default)


@pytest.mark.integration
def test_cats_and_dogs_folder():
    root = os.path.join(assets_dir(), "images", "cats_and_dogs_filtered")
    train, validation = data.image_folder(
        os.path.join(root, "train"),
        validation_dir=os.path.join(root, "validation"),
        image_size=160,
    )
    assert train.class_names == validation.class_names == ["cats", "dogs"]
    assert (train.num_examples, validation.num_examples) == (2000, 1000)
    assert train.skipped_files == [] and validation.skipped_files == []
    images, labels = next(iter(train))
    assert images.shape == (32, 160, 160, 3) and labels.shape == (32,)
