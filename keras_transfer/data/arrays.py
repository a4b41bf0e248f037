"""Image classification datasets from in-memory numpy arrays."""

import numpy as np
import tensorflow as tf

from keras_transfer.data.checks import check_class_count, check_class_coverage, check_finite
from keras_transfer.data.pipeline import finish_image_dataset, resolve_augment
from keras_transfer.data.splits import split_examples
from keras_transfer.errors import DataError


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
    check_class_count(class_names, "the labels")
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
        validation_split: Optional fraction in (0, 1) held out for
            validation: seeded, and stratified by class for int labels (see
            `keras_transfer.data.splits.split_train_validation`).

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
    check_finite(images, "images")
    if len(images) != len(labels):
        raise DataError(f"got {len(images)} images but {len(labels)} labels: pass one label per image.")
    labels, class_names = _array_labels(labels, class_names)
    if class_names is not None:
        num_classes = len(class_names)
    else:  # float targets: one output per label column
        num_classes = labels.shape[1] if labels.ndim == 2 else 1

    train_examples = (images, labels)
    if validation_split is not None:
        train_examples, validation_examples = split_examples(
            images, labels, validation_split, seed=seed, shuffle=shuffle
        )
        check_class_coverage(class_names, train_examples[1], validation_examples[1], where="the arrays", split=True)

    def make(examples, **options):
        return finish_image_dataset(
            tf.data.Dataset.from_tensor_slices(examples),
            class_names=class_names,
            num_classes=num_classes,
            num_examples=len(examples[0]),
            batch_size=batch_size,
            seed=seed,
            labels=examples[1],
            **options,
        )

    train = make(
        train_examples,
        shuffle_buffer=len(train_examples[0]) if shuffle else 0,
        augment=resolve_augment(augment, seed),
    )
    if validation_split is None:
        return train
    return train, make(validation_examples)
