"""The end every loader's pipeline shares: batching, per-batch work and the dataset attributes."""

import numpy as np
import tensorflow as tf

from keras_transfer.data.checks import class_counts
from keras_transfer.data.image_augmentation import augmentation
from keras_transfer.errors import DataError


def finish_dataset(
    dataset,
    *,
    class_names,
    num_examples,
    batch_size,
    num_classes=None,
    cache=False,
    shuffle_buffer=0,
    seed=None,
    map_batches=None,
    skipped_files=(),
    labels=None,
):
    """Turn an unbatched `(inputs, label)` dataset into the dataset a loader returns.

    Caches, shuffles, batches, applies `map_batches` to the inputs of each
    batch, prefetches and attaches `class_names`, `num_classes` (default
    `len(class_names)`), `num_examples`, `skipped_files` and `class_counts`
    (examples per class, from `labels`; None without class labels).
    """
    if cache is True:
        dataset = dataset.cache()
    elif cache:
        dataset = dataset.cache(cache)
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed)
    dataset = dataset.batch(batch_size)
    if dataset.cardinality() == tf.data.UNKNOWN_CARDINALITY and num_examples:
        # Known epoch length gives Keras real progress bars.
        num_batches = -(-int(num_examples) // batch_size)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    if map_batches is not None:
        # Whole batches: one op call per batch, not per example.
        dataset = dataset.map(
            lambda inputs, labels: (map_batches(inputs), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    dataset = dataset.prefetch(tf.data.AUTOTUNE)

    dataset.class_names = list(class_names) if class_names is not None else None
    dataset.num_classes = int(num_classes if num_classes is not None else len(class_names))
    dataset.num_examples = int(num_examples)
    dataset.skipped_files = list(skipped_files)
    counts = class_counts(labels, dataset.num_classes) if labels is not None else None
    dataset.class_counts = None if counts is None else [int(count) for count in counts]
    return dataset


def finish_image_dataset(dataset, *, image_size=None, interpolation="bilinear", augment=None, **finish_options):
    """`finish_dataset` for `(image, label)` examples: float32 RGB images, int32 or float32 labels.

    Resizes when `image_size` is given and applies `augment` (a Keras layer
    or callable) to training batches.
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
    return finish_dataset(
        dataset,
        map_batches=None if augment is None else (lambda images: augment(images, training=True)),
        **finish_options,
    )


def resolve_augment(augment, seed):
    """Accept a preset name, a Keras layer (or any callable), or None."""
    if augment is None or callable(augment):
        return augment
    if isinstance(augment, str):
        return augmentation(augment, seed=seed)
    raise DataError(
        f"augment must be a preset name, a Keras layer or None, got "
        f"{type(augment).__name__}: pass e.g. augment='standard'."
    )


# Images are resized to at most this many pixels a side. Backbones take 224 to
# 600; a batch of 32 RGB float32 images of 2048x2048 is already 1.6 GB.
MAX_IMAGE_SIZE = 2048


def image_size_pair(image_size):
    """Normalize an int or (height, width) into a (height, width) tuple, each side 1 to `MAX_IMAGE_SIZE`."""
    if isinstance(image_size, (int, np.integer)) and image_size > 0:
        pair = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(s, (int, np.integer)) and s > 0 for s in image_size)
    ):
        pair = (int(image_size[0]), int(image_size[1]))
    else:
        raise DataError(
            f"image_size must be a positive int or a (height, width) pair, got "
            f"{image_size!r}: pass e.g. image_size=224 or image_size=(224, 224)."
        )
    if max(pair) > MAX_IMAGE_SIZE:
        gigabytes = 32 * pair[0] * pair[1] * 3 * 4 / 1e9
        raise DataError(
            f"image_size {image_size!r} is over the maximum of {MAX_IMAGE_SIZE} pixels a side: every "
            f"image is resized to it, so a batch of 32 would take {gigabytes:,.1f} GB of memory. "
            f"Pass the size the backbone takes, e.g. image_size=224 (most take 224 to 600)."
        )
    return pair
