"""TensorFlow Datasets: image and text classification datasets, through one loader.

tensorflow-datasets is optional (`pip install "keras-transfer[tfds]"`); without it each loader raises
`MissingExtraError` saying so.
"""

import os
from typing import NamedTuple

import tensorflow as tf

from keras_transfer.data.checks import check_class_count
from keras_transfer.data.pipeline import (
    finish_dataset,
    finish_image_dataset,
    image_size_pair,
    resolve_augment,
)
from keras_transfer.data.text_cleaning import resolve_cleaner
from keras_transfer.errors import DataError, import_extra


class _Loaded(NamedTuple):
    datasets: list  # one unbatched (inputs, int32 label) dataset per split
    num_examples: list  # per split
    class_names: list
    features: object  # the TFDS FeaturesDict, for loader-specific checks


def _tfds(loader):
    """The `tensorflow_datasets` module (slow to import), or an error naming the `tfds` extra for `loader`."""
    return import_extra("tensorflow_datasets", loader)


def _split_names(split):
    return [split] if isinstance(split, str) else list(split)


def _one_or_tuple(split, finished):
    """One dataset for a split name, a tuple for a list of splits."""
    return finished[0] if isinstance(split, str) else tuple(finished)


def _load_classification(tfds, name, *, split, data_dir, download, shuffle, seed, input_key, input_arg, label_key):
    """Load `(example[input_key], class index)` pairs of every split with `tfds.load`.

    `tfds` is the `tensorflow_datasets` module; `input_arg` names the loader's argument for `input_key` in messages.

    Raises:
        DataError: for a missing feature, a label without class names or a
            single class.
    """
    splits = _split_names(split)
    datasets, info = tfds.load(
        name,
        split=splits,
        data_dir=data_dir,
        with_info=True,
        download=download,
        shuffle_files=shuffle,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
    )
    features = info.features
    for key in (input_key, label_key):
        if key not in features.keys():
            raise DataError(
                f"dataset {name!r} has no feature {key!r}; its features are "
                f"{sorted(features.keys())}: pass {input_arg}= / label_key=."
            )
    class_names = getattr(features[label_key], "names", None)
    if not class_names:
        raise DataError(
            f"feature {label_key!r} of dataset {name!r} has no class names (it "
            f"is not a ClassLabel): pass the label_key of a ClassLabel feature."
        )
    check_class_count(class_names, f"dataset {name!r}")
    pairs = [
        dataset.map(lambda example: (example[input_key], tf.cast(example[label_key], tf.int32))) for dataset in datasets
    ]
    num_examples = [info.splits[s].num_examples for s in splits]
    return _Loaded(pairs, num_examples, class_names, features)


def _finish_image_splits(datasets, split, num_examples, class_names, *, shuffle_buffer, augment, **options):
    """Finish one image dataset per split; shuffle and augment only the first."""
    finished = [
        finish_image_dataset(
            dataset,
            class_names=class_names,
            num_examples=count,
            shuffle_buffer=shuffle_buffer if i == 0 else 0,
            augment=augment if i == 0 else None,
            **options,
        )
        for i, (dataset, count) in enumerate(zip(datasets, num_examples))
    ]
    return _one_or_tuple(split, finished)


def from_tfds(
    name,
    *,
    split="train",
    data_dir=None,
    image_size=224,
    batch_size=32,
    shuffle=True,
    seed=1337,
    augment=None,
    download=True,
    image_key="image",
    label_key="label",
):
    """Load an image classification dataset from TensorFlow Datasets.

    Args:
        name: TFDS dataset name, e.g. "tf_flowers" or "cats_vs_dogs".
        split: A split ("train", "train[:80%]") or a list of splits; a list
            returns a tuple of datasets, and only the first one is shuffled
            and augmented.
        data_dir: Where TFDS stores data (TFDS default when None).
        image_size: Int (square) or `(height, width)` to resize images to.
        batch_size: Number of images per batch.
        shuffle: Whether to shuffle the first split.
        seed: Seed for shuffling and preset augmentation.
        augment: Preset name, a Keras layer, or None. First split only.
        download: Whether TFDS may download and prepare the data.
        image_key: Feature holding the image.
        label_key: Feature holding the label (a `tfds.features.ClassLabel`).

    Returns:
        One dataset, or a tuple with one dataset per split.

    Raises:
        DataError: if the features lack `image_key` / `label_key`, the label
            feature has no class names, or there is a single class.

    Example:
        >>> train, val = from_tfds("tf_flowers",
        ...                        split=["train[:80%]", "train[80%:]"])
    """
    tfds = _tfds("from_tfds")
    image_size = image_size_pair(image_size)
    loaded = _load_classification(
        tfds,
        name,
        split=split,
        data_dir=data_dir,
        download=download,
        shuffle=shuffle,
        seed=seed,
        input_key=image_key,
        input_arg="image_key",
        label_key=label_key,
    )
    return _finish_image_splits(
        loaded.datasets,
        split,
        loaded.num_examples,
        loaded.class_names,
        # TFDS shuffles examples when preparing; a small buffer varies epochs.
        shuffle_buffer=8 * batch_size if shuffle else 0,
        augment=resolve_augment(augment, seed),
        seed=seed,
        image_size=image_size,
        batch_size=batch_size,
    )


def tfds_image_folder(
    root_dir,
    *,
    split="train",
    image_size=224,
    batch_size=32,
    shuffle=True,
    seed=1337,
    augment=None,
):
    """Load a `root_dir/split/label/image.jpg` folder with TFDS' ImageFolder.

    Args:
        root_dir: Folder with one sub-folder per split, each with one
            sub-folder per class (.jpg .jpeg .png).
        split: A split name or a list of names; a list returns a tuple of
            datasets, and only the first one is shuffled and augmented.
        image_size: Int (square) or `(height, width)` to resize images to.
        batch_size: Number of images per batch.
        shuffle: Whether to shuffle the first split's files every epoch
            (TFDS' ImageFolder shuffle is not seeded).
        seed: Seed for preset augmentation.
        augment: Preset name, a Keras layer, or None. First split only.

    Returns:
        One dataset, or a tuple with one dataset per split.

    Raises:
        DataError: if `root_dir` does not exist, a split is missing, or
            there is a single class.

    Example:
        >>> train, test = tfds_image_folder("data", split=["train", "test"])
    """
    tfds = _tfds("tfds_image_folder")

    image_size = image_size_pair(image_size)
    root_dir = os.fspath(root_dir)
    if not os.path.isdir(root_dir):
        raise DataError(
            f"image folder {root_dir!r} does not exist: check the path. It should "
            f"look like {os.path.join(root_dir, 'train', 'cats')}/*.jpg."
        )
    builder = tfds.folder_dataset.ImageFolder(root_dir)
    splits = _split_names(split)
    missing = [s for s in splits if s not in builder.info.splits]
    if missing:
        raise DataError(
            f"split(s) {missing} not found in {root_dir!r}; it has "
            f"{sorted(builder.info.splits.keys())}: pass one of those, or add "
            f"the split sub-folder."
        )
    class_names = builder.info.features["label"].names
    check_class_count(class_names, f"image folder {root_dir!r}")
    datasets = [
        builder.as_dataset(split=s, as_supervised=True, shuffle_files=shuffle and i == 0) for i, s in enumerate(splits)
    ]
    return _finish_image_splits(
        datasets,
        split,
        [builder.info.splits[s].num_examples for s in splits],
        class_names,
        shuffle_buffer=0,  # ImageFolder already shuffles all file paths
        augment=resolve_augment(augment, seed),
        seed=seed,
        image_size=image_size,
        batch_size=batch_size,
    )


def from_tfds_text(
    name,
    *,
    split="train",
    data_dir=None,
    text_key="text",
    label_key="label",
    download=True,
    clean=None,
    batch_size=32,
    shuffle=True,
    seed=1337,
):
    """Load a text classification dataset from TensorFlow Datasets.

    Args:
        name: TFDS dataset name, e.g. "imdb_reviews" or "glue/sst2" (whose
            text key is "sentence").
        split: A split ("train", "train[:90%]") or a list of splits; a list
            returns a tuple of datasets, and only the first one is shuffled.
        data_dir: Where TFDS stores data (TFDS default when None).
        text_key: Feature holding the text (a `tfds.features.Text`).
        label_key: Feature holding the label (a `tfds.features.ClassLabel`).
        download: Whether TFDS may download and prepare the data.
        clean: None, cleaning step names, a `TextCleaner` or a function on
            tf.string tensors, applied to every split.
        batch_size: Number of texts per batch.
        shuffle: Whether to shuffle the first split.
        seed: Seed for shuffling.

    Returns:
        One dataset, or a tuple with one dataset per split.

    Raises:
        DataError: if the features lack `text_key` / `label_key`, the text
            feature is not text, the label feature has no class names, or
            there is a single class.

    Example:
        >>> train, val = from_tfds_text("glue/sst2", text_key="sentence",
        ...                             split=["train", "validation"])
    """
    tfds = _tfds("from_tfds_text")

    cleaner = resolve_cleaner(clean)
    loaded = _load_classification(
        tfds,
        name,
        split=split,
        data_dir=data_dir,
        download=download,
        shuffle=shuffle,
        seed=seed,
        input_key=text_key,
        input_arg="text_key",
        label_key=label_key,
    )
    text_feature = loaded.features[text_key]
    if not isinstance(text_feature, tfds.features.Text):
        raise DataError(
            f"feature {text_key!r} of dataset {name!r} is not text (it is a "
            f"{type(text_feature).__name__}): pass the text_key of a Text feature."
        )
    finished = [
        finish_dataset(
            dataset,
            class_names=loaded.class_names,
            num_examples=count,
            batch_size=batch_size,
            map_batches=cleaner,
            # TFDS shuffles when preparing; a buffer of short strings is cheap.
            shuffle_buffer=min(count, 10_000) if shuffle and i == 0 else 0,
            seed=seed,
        )
        for i, (dataset, count) in enumerate(zip(loaded.datasets, loaded.num_examples))
    ]
    return _one_or_tuple(split, finished)
