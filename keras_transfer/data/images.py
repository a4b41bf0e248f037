"""Image classification datasets from folders: one sub-folder of images per class.

Every image loader (`image_folder` here, `from_arrays`, `from_tfds`,
`tfds_image_folder`) returns `tf.data.Dataset` objects that yield batches
`(images, labels)`: images are float32 `(B, H, W, 3)` raw pixels in [0, 255]
(models do their own preprocessing) and labels are int32 class indices `(B,)`.
Like `keras.utils.image_dataset_from_directory`, the datasets carry Python
attributes: `class_names`, `num_classes`, `num_examples` and `skipped_files`.
"""

import os
import warnings
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from keras_transfer.data.checks import check_class_count, check_split_range
from keras_transfer.data.pipeline import finish_image_dataset, image_size_pair, resolve_augment
from keras_transfer.data.splits import split_examples
from keras_transfer.errors import DataError

# The extensions keras.utils.image_dataset_from_directory reads.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


class _FolderScan(NamedTuple):
    class_names: list
    paths: list  # the readable images, class by class
    labels: np.ndarray  # int32 class index per path
    unreadable: list


def _unreadable_images(paths):
    """Return the paths that `tf.io.decode_image` cannot decode.

    Decodes every file in a parallel tf.data pipeline. JPEGs are decoded at
    1/8 scale: libjpeg still reads all the compressed data, so the same files
    fail as with a full decode (checked on hundreds of corrupted JPEGs), at
    about half the cost.
    """
    if not paths:
        return []

    def decode_shape(path):
        contents = tf.io.read_file(path)
        shape = tf.cond(
            tf.io.is_jpeg(contents),
            lambda: tf.shape(tf.io.decode_jpeg(contents, channels=3, ratio=8, dct_method="INTEGER_FAST")),
            lambda: tf.shape(tf.io.decode_image(contents, channels=3, expand_animations=False)),
        )
        # Output something computed from the image, or tf.data prunes the
        # decode away and every file looks readable.
        return path, shape

    readable = (
        tf.data.Dataset.from_tensor_slices(paths)
        .map(decode_shape, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        .ignore_errors()
        .batch(512)  # fewer Python round trips
    )
    good = {os.fsdecode(path) for batch_paths, _ in readable.as_numpy_iterator() for path in batch_paths}
    return [path for path in paths if path not in good]


def _scan_image_folder(directory):
    """List classes and decode-check images, raising DataError on bad layout."""
    if not os.path.exists(directory):
        raise DataError(
            f"image folder {directory!r} does not exist: check the path. It "
            f"should contain one sub-folder per class, e.g. "
            f"{os.path.join(directory, 'cats')}/*.jpg."
        )
    if not os.path.isdir(directory):
        raise DataError(
            f"{directory!r} is a file, not a folder: pass the folder that holds one sub-folder of images per class."
        )
    with os.scandir(directory) as entries:
        class_names = sorted(entry.name for entry in entries if entry.is_dir() and not entry.name.startswith("."))
    if not class_names:
        raise DataError(
            f"found no class sub-folders in {directory!r}: put the images in "
            f"one sub-folder per class, e.g. "
            f"{os.path.join(directory, 'cats')}/*.jpg and "
            f"{os.path.join(directory, 'dogs')}/*.jpg."
        )

    # Walk each class folder like Keras does (nested folders included).
    files_by_class = {}
    for name in class_names:
        files_by_class[name] = [
            os.path.join(root, filename)
            for root, _, filenames in sorted(os.walk(os.path.join(directory, name)))
            for filename in sorted(filenames)
            if filename.lower().endswith(IMAGE_EXTENSIONS)
        ]
    all_files = [path for files in files_by_class.values() for path in files]
    unreadable = _unreadable_images(all_files)

    bad = set(unreadable)
    paths, labels = [], []
    for index, (name, files) in enumerate(files_by_class.items()):
        readable = [path for path in files if path not in bad]
        if not readable:
            found = (
                f"none of its {len(files)} image files could be decoded"
                if files
                else f"it has no {'/'.join(IMAGE_EXTENSIONS)} files"
            )
            raise DataError(
                f"class folder {os.path.join(directory, name)!r} has no readable "
                f"images ({found}): add images to it or remove the folder."
            )
        paths += readable
        labels += [index] * len(readable)
    check_class_count(class_names, f"image folder {directory!r}")
    return _FolderScan(class_names, paths, np.array(labels, np.int32), unreadable)


def _check_same_classes(train_scan, validation_scan, directory, validation_dir):
    train, validation = set(train_scan.class_names), set(validation_scan.class_names)
    if train != validation:
        raise DataError(
            f"train folder {directory!r} and validation folder "
            f"{validation_dir!r} have different classes: missing in "
            f"validation: {sorted(train - validation)}; missing in train: "
            f"{sorted(validation - train)}. Give both folders the same class "
            f"sub-folders."
        )


def _read_images(paths, labels, *, image_size, interpolation, shuffle, seed):
    """Unbatched `(image, label)` pairs, decoded and resized as Keras' directory loader does."""

    def read(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.image.resize(image, image_size, method=interpolation)
        image.set_shape((*image_size, 3))
        return image, label

    dataset = tf.data.Dataset.from_tensor_slices((list(paths), labels))
    if shuffle:
        # Paths are cheap to shuffle whole, every epoch, before decoding.
        dataset = dataset.shuffle(len(paths), seed=seed)
    # A file the decode check passed but a full decode fails is dropped, not fatal.
    return dataset.map(read, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()


def image_folder(
    directory,
    *,
    image_size=224,
    batch_size=32,
    validation_split=None,
    validation_dir=None,
    seed=1337,
    shuffle=True,
    augment=None,
    cache=False,
    interpolation="bilinear",
):
    """Load an image classification dataset from one sub-folder per class.

    Images are decode-checked first; unreadable files are skipped with one
    warning and listed in the `skipped_files` attribute (of the training
    dataset, for files of `directory`).

    Args:
        directory: Folder with one sub-folder of images per class
            (.bmp .gif .jpeg .jpg .png). Class names are the sorted
            sub-folder names.
        image_size: Int (square) or `(height, width)` to resize images to.
        batch_size: Number of images per batch.
        validation_split: Optional fraction in (0, 1) of the images to hold
            out for validation: seeded and stratified by class (see
            `keras_transfer.data.splits.split_train_validation`). With
            `shuffle=False` the last files of each class in sorted order.
        validation_dir: Optional folder with the same class sub-folders,
            used as validation data. Not together with `validation_split`.
        seed: Seed for shuffling, the split and preset augmentation.
        shuffle: Whether to shuffle the training data every epoch.
        augment: Preset name (see `keras_transfer.data.image_augmentation`), a Keras layer,
            or None. Applied to the training data only.
        cache: True caches decoded, resized images in memory; a string is a
            cache file path prefix (`_train` / `_validation` is appended).
        interpolation: Resize method, e.g. "bilinear", "nearest", "bicubic".

    Returns:
        The training dataset, or `(train, validation)` when `validation_split`
        or `validation_dir` is given.

    Raises:
        DataError: for a missing folder, no or empty class folders, a single
            class, different train/validation classes or a bad split.

    Example:
        >>> train, val = image_folder("data/train", validation_dir="data/val",
        ...                           image_size=160, augment="standard")
        >>> train.class_names, train.num_examples
        (['cats', 'dogs'], 2000)
    """
    image_size = image_size_pair(image_size)
    directory = os.fspath(directory)
    if validation_split is not None and validation_dir is not None:
        raise DataError(
            "pass either validation_split or validation_dir, not both: use "
            "validation_split to carve validation images out of the train "
            "folder, or validation_dir for a separate folder."
        )
    if validation_split is not None:
        check_split_range(validation_split)

    train_scan = _scan_image_folder(directory)
    validation_scan = None
    if validation_dir is not None:
        validation_dir = os.fspath(validation_dir)
        validation_scan = _scan_image_folder(validation_dir)
        _check_same_classes(train_scan, validation_scan, directory, validation_dir)
    train_files = (np.array(train_scan.paths, dtype=object), train_scan.labels)
    validation_files = None
    if validation_split is not None:
        train_files, validation_files = split_examples(*train_files, validation_split, seed=seed, shuffle=shuffle)
    elif validation_scan is not None:
        validation_files = (validation_scan.paths, validation_scan.labels)

    unreadable = train_scan.unreadable + (validation_scan.unreadable if validation_scan else [])
    if unreadable:
        warnings.warn(
            f"Skipping {len(unreadable)} unreadable image file(s):\n  " + "\n  ".join(unreadable),
            stacklevel=2,
        )

    def make(files, subset, skipped, **options):
        paths, labels = files
        return finish_image_dataset(
            _read_images(
                paths,
                labels,
                image_size=image_size,
                interpolation=interpolation,
                shuffle=subset == "train" and shuffle,
                seed=seed,
            ),
            class_names=train_scan.class_names,
            num_examples=len(paths),
            batch_size=batch_size,
            cache=f"{cache}_{subset}" if isinstance(cache, str) else cache,
            skipped_files=skipped,
            **options,
        )

    train = make(
        train_files,
        "train",
        train_scan.unreadable,
        # A cache freezes the order of the upstream shuffle, so reshuffle after.
        shuffle_buffer=8 * batch_size if (shuffle and cache) else 0,
        seed=seed,
        augment=resolve_augment(augment, seed),
    )
    if validation_files is None:
        return train
    skipped = validation_scan.unreadable if validation_scan else []
    return train, make(validation_files, "validation", skipped)
