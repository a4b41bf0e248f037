"""Datasets for transfer learning: image folders, numpy arrays and TFDS.

The text loaders (`text_file`, `from_texts`, `from_pandas`, `from_tfds_text`,
`TextCleaner`, `choose_sequence_length`) live in `keras_transfer.data.text`
and are re-exported here.

Every loader returns `tf.data.Dataset` objects that yield batches
`(images, labels)`: images are float32 `(B, H, W, 3)` raw pixels in [0, 255]
(models do their own preprocessing) and labels are int32 class indices `(B,)`.
Like `keras.utils.image_dataset_from_directory`, the datasets carry Python
attributes: `class_names`, `num_classes`, `num_examples` and `skipped_files`.
"""

import functools
import os
import warnings
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.data.augmentation import augmentation
from keras_transfer.errors import DataError
from keras_transfer.errors import check_class_count as _check_class_count
from keras_transfer.errors import check_split_range as _check_split_range
from keras_transfer.errors import check_split_size as _check_split_size

# The extensions keras.utils.image_dataset_from_directory reads.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


# --------------------------------------------------------------------------
# Shared pipeline tail used by every loader.


def _finalize(
    dataset,
    *,
    class_names,
    num_examples,
    batch_size,
    image_size=None,
    interpolation="bilinear",
    cache=False,
    shuffle_buffer=0,
    seed=None,
    augment=None,
    skipped_files=(),
    num_classes=None,
):
    """Turn an unbatched `(image, label)` dataset into the returned dataset.

    Resizes (when `image_size` is given), converts dtypes, caches, shuffles,
    batches, augments, prefetches and attaches the metadata attributes.
    `num_classes` defaults to `len(class_names)`.
    """

    def to_model_inputs(image, label):
        image = tf.cast(image, tf.float32)
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        if image_size is not None:
            image = tf.image.resize(image, image_size, method=interpolation)
        label_dtype = tf.float32 if label.dtype.is_floating else tf.int32
        return image, tf.cast(label, label_dtype)

    dataset = dataset.map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    if cache is True:
        dataset = dataset.cache()
    elif cache:
        dataset = dataset.cache(cache)
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed)
    dataset = dataset.batch(batch_size)
    if dataset.cardinality() == tf.data.UNKNOWN_CARDINALITY and num_examples:
        # Known epoch length gives Keras real progress bars; the pre-scan counted the good files.
        num_batches = -(-int(num_examples) // batch_size)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    if augment is not None:
        dataset = dataset.map(
            lambda images, labels: (augment(images, training=True), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    dataset = dataset.prefetch(tf.data.AUTOTUNE)

    dataset.class_names = list(class_names) if class_names is not None else None
    dataset.num_classes = num_classes if num_classes is not None else len(class_names)
    dataset.num_examples = int(num_examples)
    dataset.skipped_files = list(skipped_files)
    return dataset


def _resolve_augment(augment, seed):
    """Accept a preset name, a Keras layer (or any callable), or None."""
    if augment is None or callable(augment):
        return augment
    if isinstance(augment, str):
        return augmentation(augment, seed=seed)
    raise DataError(
        f"augment must be a preset name, a Keras layer or None, got "
        f"{type(augment).__name__}: pass e.g. augment='standard'."
    )


def _image_size(image_size):
    """Normalize an int or (height, width) into a (height, width) tuple."""
    if isinstance(image_size, (int, np.integer)) and image_size > 0:
        return (int(image_size), int(image_size))
    if (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(s, (int, np.integer)) and s > 0 for s in image_size)
    ):
        return (int(image_size[0]), int(image_size[1]))
    raise DataError(
        f"image_size must be a positive int or a (height, width) pair, got "
        f"{image_size!r}: pass e.g. image_size=224 or image_size=(224, 224)."
    )


# --------------------------------------------------------------------------
# Image folders.


class _FolderScan(NamedTuple):
    class_names: list
    num_files: int
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
            lambda: tf.shape(
                tf.io.decode_jpeg(
                    contents, channels=3, ratio=8, dct_method="INTEGER_FAST"
                )
            ),
            lambda: tf.shape(
                tf.io.decode_image(contents, channels=3, expand_animations=False)
            ),
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
    good = {
        os.fsdecode(path)
        for batch_paths, _ in readable.as_numpy_iterator()
        for path in batch_paths
    }
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
            f"{directory!r} is a file, not a folder: pass the folder that "
            f"holds one sub-folder of images per class."
        )
    with os.scandir(directory) as entries:
        class_names = sorted(
            entry.name
            for entry in entries
            if entry.is_dir() and not entry.name.startswith(".")
        )
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
    for name, files in files_by_class.items():
        if all(path in bad for path in files):
            found = (
                f"none of its {len(files)} image files could be decoded"
                if files
                else f"it has no {'/'.join(IMAGE_EXTENSIONS)} files"
            )
            raise DataError(
                f"class folder {os.path.join(directory, name)!r} has no readable "
                f"images ({found}): add images to it or remove the folder."
            )
    _check_class_count(class_names, f"image folder {directory!r}")
    return _FolderScan(class_names, len(all_files), unreadable)


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


def _finalize_folder(raw, *, bad, **kwargs):
    """Drop unreadable files from a Keras directory dataset and finalize it."""
    skipped = [path for path in raw.file_paths if os.path.normpath(path) in bad]
    return _finalize(
        # Unreadable files fail at decode time; ignore_errors drops exactly those
        # elements, so it must come before batching.
        raw.ignore_errors(),
        class_names=raw.class_names,
        num_examples=len(raw.file_paths) - len(skipped),
        skipped_files=skipped,
        **kwargs,
    )


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
    warning and listed in the `skipped_files` attribute.

    Args:
        directory: Folder with one sub-folder of images per class
            (.bmp .gif .jpeg .jpg .png). Class names are the sorted
            sub-folder names.
        image_size: Int (square) or `(height, width)` to resize images to.
        batch_size: Number of images per batch.
        validation_split: Optional fraction in (0, 1) of the images to hold
            out for validation (Keras' own seeded split). With
            `shuffle=False` Keras takes the last files in sorted order.
        validation_dir: Optional folder with the same class sub-folders,
            used as validation data. Not together with `validation_split`.
        seed: Seed for shuffling, the split and preset augmentation.
        shuffle: Whether to shuffle the training data every epoch.
        augment: Preset name (see `keras_transfer.data.augmentation`), a Keras layer,
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
    image_size = _image_size(image_size)
    directory = os.fspath(directory)
    if validation_split is not None and validation_dir is not None:
        raise DataError(
            "pass either validation_split or validation_dir, not both: use "
            "validation_split to carve validation images out of the train "
            "folder, or validation_dir for a separate folder."
        )
    if validation_split is not None:
        _check_split_range(validation_split)

    train_scan = _scan_image_folder(directory)
    validation_scan = None
    if validation_dir is not None:
        validation_dir = os.fspath(validation_dir)
        validation_scan = _scan_image_folder(validation_dir)
        _check_same_classes(train_scan, validation_scan, directory, validation_dir)
    if validation_split is not None:
        _check_split_size(validation_split, train_scan.num_files)

    unreadable = train_scan.unreadable + (
        validation_scan.unreadable if validation_scan else []
    )
    if unreadable:
        warnings.warn(
            f"Skipping {len(unreadable)} unreadable image file(s):\n  "
            + "\n  ".join(unreadable),
            stacklevel=2,
        )

    load = functools.partial(
        keras.utils.image_dataset_from_directory,
        label_mode="int",
        batch_size=None,  # batched after ignore_errors() drops bad files
        image_size=image_size,
        interpolation=interpolation,
        verbose=False,
    )
    if validation_split is not None:
        # A single call with subset="both" keeps the two subsets disjoint.
        train_raw, validation_raw = load(
            directory,
            shuffle=shuffle,
            seed=seed if seed is not None else int(np.random.randint(1e6)),
            validation_split=validation_split,
            subset="both",
        )
    else:
        train_raw = load(directory, shuffle=shuffle, seed=seed)
        validation_raw = (
            load(validation_dir, shuffle=False) if validation_dir is not None else None
        )

    def cache_for(subset):
        return f"{cache}_{subset}" if isinstance(cache, str) else cache

    finalize = functools.partial(
        _finalize_folder,
        bad={os.path.normpath(path) for path in unreadable},
        batch_size=batch_size,
    )
    train = finalize(
        train_raw,
        cache=cache_for("train"),
        # A cache freezes the order of the upstream shuffle, so reshuffle after.
        shuffle_buffer=8 * batch_size if (shuffle and cache) else 0,
        seed=seed,
        augment=_resolve_augment(augment, seed),
    )
    if validation_raw is None:
        return train
    return train, finalize(validation_raw, cache=cache_for("validation"))


# --------------------------------------------------------------------------
# Numpy arrays.


def _array_labels(labels, class_names):
    """Validate labels; return (labels, class_names)."""
    if labels.ndim not in (1, 2):
        raise DataError(
            f"labels must have shape (N,) with class indices or (N, K) with "
            f"multi-hot targets, got shape {labels.shape}."
        )
    if labels.ndim == 2 or not np.issubdtype(labels.dtype, np.integer):
        num_targets = labels.shape[1] if labels.ndim == 2 else 1
        names_mismatch = class_names is not None and len(class_names) != num_targets
        if labels.ndim == 2 and names_mismatch:
            raise DataError(
                f"labels have {num_targets} columns but class_names has "
                f"{len(class_names)} names: pass one name per label column."
            )
        return labels.astype(np.float32), class_names

    present = np.unique(labels)
    if class_names is None:
        if not np.array_equal(present, np.arange(len(present))):
            raise DataError(
                f"labels must be class indices 0..K-1, got values "
                f"{present.tolist()[:20]}: remap them with "
                f"np.unique(labels, return_inverse=True)[1], or pass class_names."
            )
        class_names = [str(i) for i in present]
    else:
        class_names = list(class_names)
        outside = present[(present < 0) | (present >= len(class_names))]
        if outside.size:
            raise DataError(
                f"labels {outside.tolist()[:20]} are outside range(0, "
                f"{len(class_names)}) for class_names {class_names}: labels must "
                f"index into class_names."
            )
    _check_class_count(class_names, "the labels")
    return labels.astype(np.int32), class_names


def from_arrays(
    images,
    labels,
    *,
    class_names=None,
    batch_size=32,
    shuffle=True,
    seed=1337,
    augment=None,
    validation_split=None,
):
    """Build datasets from in-memory numpy arrays.

    Args:
        images: Array `(N, H, W, C)` with C = 1 (grayscale, repeated to 3
            channels) or 3, any numeric dtype, pixel values in [0, 255].
        labels: Int class indices `(N,)` in 0..K-1, or float / multi-hot
            targets `(N,)` / `(N, K)` (kept as float32).
        class_names: Optional names, one per class. Defaults to the label
            values as strings for int labels, None for float labels.
        batch_size: Number of images per batch.
        shuffle: Whether to shuffle the training data (every epoch).
        seed: Seed for shuffling, the split and preset augmentation.
        augment: Preset name, a Keras layer, or None. Training data only.
        validation_split: Optional fraction in (0, 1) held out for validation.

    Returns:
        The training dataset, or `(train, validation)` with `validation_split`.
        For float targets without `class_names`, `num_classes` is the number
        of label columns (1 for `(N,)`).

    Raises:
        DataError: for wrong shapes, mismatched lengths, a single class or
            labels outside the class range.

    Example:
        >>> train = from_arrays(x, y, class_names=["cat", "dog"], batch_size=16)
        >>> images, labels = next(iter(train))
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(
            f"images must have shape (N, height, width, channels) with 1 or 3 "
            f"channels, got shape {images.shape}: add a channel axis to "
            f"grayscale images with images[..., None]."
        )
    if not np.issubdtype(images.dtype, np.number):
        raise DataError(f"images must be numeric, got dtype {images.dtype}.")
    if len(images) != len(labels):
        raise DataError(
            f"got {len(images)} images but {len(labels)} labels: pass one label "
            f"per image."
        )
    labels, class_names = _array_labels(labels, class_names)
    if class_names is not None:
        num_classes = len(class_names)
    else:  # float targets: one output per label column
        num_classes = labels.shape[1] if labels.ndim == 2 else 1

    order = np.arange(len(images))
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(images))
    num_validation = 0
    if validation_split is not None:
        _check_split_range(validation_split)
        _check_split_size(validation_split, len(images))
        num_validation = int(validation_split * len(images))
    train_idx = order[: len(order) - num_validation]
    validation_idx = order[len(order) - num_validation :]

    def make(indices, **kwargs):
        return _finalize(
            tf.data.Dataset.from_tensor_slices((images[indices], labels[indices])),
            class_names=class_names,
            num_classes=num_classes,
            num_examples=len(indices),
            batch_size=batch_size,
            seed=seed,
            **kwargs,
        )

    train = make(
        train_idx,
        shuffle_buffer=len(train_idx) if shuffle else 0,
        augment=_resolve_augment(augment, seed),
    )
    if validation_split is None:
        return train
    return train, make(np.sort(validation_idx))


# --------------------------------------------------------------------------
# TensorFlow Datasets.


def _finalize_splits(
    datasets, split, num_examples, class_names, *, shuffle_buffer, augment, **kwargs
):
    """Finalize one dataset per split; shuffle and augment only the first."""
    finished = [
        _finalize(
            dataset,
            class_names=class_names,
            num_examples=count,
            shuffle_buffer=shuffle_buffer if i == 0 else 0,
            augment=augment if i == 0 else None,
            **kwargs,
        )
        for i, (dataset, count) in enumerate(zip(datasets, num_examples))
    ]
    return finished[0] if isinstance(split, str) else tuple(finished)


def _split_list(split):
    return [split] if isinstance(split, str) else list(split)


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
    import tensorflow_datasets as tfds  # slow to import

    image_size = _image_size(image_size)
    splits = _split_list(split)
    datasets, info = tfds.load(
        name,
        split=splits,
        data_dir=data_dir,
        with_info=True,
        download=download,
        shuffle_files=shuffle,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
    )
    for key in (image_key, label_key):
        if key not in info.features.keys():
            raise DataError(
                f"dataset {name!r} has no feature {key!r}; its features are "
                f"{sorted(info.features.keys())}: pass image_key= / label_key=."
            )
    class_names = getattr(info.features[label_key], "names", None)
    if not class_names:
        raise DataError(
            f"feature {label_key!r} of dataset {name!r} has no class names (it "
            f"is not a ClassLabel): pass the label_key of a ClassLabel feature."
        )
    _check_class_count(class_names, f"dataset {name!r}")
    datasets = [
        dataset.map(lambda example: (example[image_key], example[label_key]))
        for dataset in datasets
    ]
    return _finalize_splits(
        datasets,
        split,
        [info.splits[s].num_examples for s in splits],
        class_names,
        # TFDS shuffles examples when preparing; a small buffer varies epochs.
        shuffle_buffer=8 * batch_size if shuffle else 0,
        augment=_resolve_augment(augment, seed),
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
    import tensorflow_datasets as tfds  # slow to import

    image_size = _image_size(image_size)
    root_dir = os.fspath(root_dir)
    if not os.path.isdir(root_dir):
        raise DataError(
            f"image folder {root_dir!r} does not exist: check the path. It should "
            f"look like {os.path.join(root_dir, 'train', 'cats')}/*.jpg."
        )
    builder = tfds.folder_dataset.ImageFolder(root_dir)
    splits = _split_list(split)
    missing = [s for s in splits if s not in builder.info.splits]
    if missing:
        raise DataError(
            f"split(s) {missing} not found in {root_dir!r}; it has "
            f"{sorted(builder.info.splits.keys())}: pass one of those, or add "
            f"the split sub-folder."
        )
    class_names = builder.info.features["label"].names
    _check_class_count(class_names, f"image folder {root_dir!r}")
    datasets = [
        builder.as_dataset(split=s, as_supervised=True, shuffle_files=shuffle and i == 0)
        for i, s in enumerate(splits)
    ]
    return _finalize_splits(
        datasets,
        split,
        [builder.info.splits[s].num_examples for s in splits],
        class_names,
        shuffle_buffer=0,  # ImageFolder already shuffles all file paths
        augment=_resolve_augment(augment, seed),
        seed=seed,
        image_size=image_size,
        batch_size=batch_size,
    )


# --------------------------------------------------------------------------
# Helpers for code that consumes datasets.


def class_names_of(dataset):
    """Return the `class_names` attribute of a dataset, or None.

    Args:
        dataset: A dataset from this module (or any object).

    Example:
        >>> class_names_of(image_folder("data/train"))
        ['cats', 'dogs']
    """
    return getattr(dataset, "class_names", None)


def check_num_classes(dataset, num_classes):
    """Raise DataError if a dataset's classes do not match a model's outputs.

    Datasets without a `class_names` attribute are not checked.

    Args:
        dataset: A dataset with an optional `class_names` attribute.
        num_classes: Number of classes (outputs) the model predicts.

    Raises:
        DataError: if `len(dataset.class_names) != num_classes`.

    Example:
        >>> check_num_classes(train, model.output_shape[-1])
    """
    class_names = class_names_of(dataset)
    if class_names is not None and len(class_names) != num_classes:
        raise DataError(
            f"the model has {num_classes} outputs but the data has "
            f"{len(class_names)} classes {list(class_names)}: pass "
            f"num_classes={len(class_names)} (or load the data the model was "
            f"built for)."
        )
