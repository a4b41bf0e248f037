"""The two domains' data as the adaptation loop takes it: labelled source batches, unlabelled target batches.

The target's labels, when it has any, are split off here, before anything
trains: `split_target` returns the inputs alone for training and the
labelled data for scoring only, and the training loop is only ever given the
former (`tests/test_adaptation.py` checks that the labels change nothing).
"""

import numpy as np
import tensorflow as tf

from keras_transfer.errors import DataError


def split_target(target):
    """`(inputs, labelled)`: the target's inputs for training, and the labelled data (or None) for scoring.

    `target` is a dataset of `(inputs, labels)` or of inputs alone, an
    `(inputs, labels)` tuple, or the inputs alone (images or sentences).
    """
    if isinstance(target, tf.data.Dataset):
        if isinstance(target.element_spec, tuple):
            return target.map(lambda inputs, *labels: inputs), target
        return target, None
    if isinstance(target, tuple):
        if len(target) != 2:
            raise DataError(
                f"The target data is a tuple of {len(target)} parts: give (inputs, labels), or the inputs alone."
            )
        return target[0], target
    return target, None


def check_not_empty(inputs, name="target"):
    """Fails at once on an empty array or list of target inputs (datasets are checked when read)."""
    if not isinstance(inputs, tf.data.Dataset) and len(inputs) == 0:
        raise DataError(f"The {name} data is empty: give at least one {name} example.")


def labelled_batches(model, data, batch_size):
    """Shuffled `(graph inputs, labels)` batches of a labelled dataset or `(inputs, labels)` tuple."""
    if isinstance(data, tf.data.Dataset):
        return model.labelled_dataset(data, batch_size)  # a dataset shuffles itself
    inputs, labels = data
    batches = model._graph_batches(inputs, labels, batch_size=batch_size, shuffle=True, training=True)
    if batches is not None:
        return batches
    labels = np.asarray(labels)
    dataset = tf.data.Dataset.from_tensor_slices((np.asarray(inputs), labels))
    return dataset.shuffle(len(labels), reshuffle_each_iteration=True).batch(batch_size or 32)


def unlabelled_batches(model, inputs, batch_size, *, shuffle=True):
    """Batches of graph inputs (no labels) of target images, sentences or a dataset of them."""
    if isinstance(inputs, tf.data.Dataset):
        batches = model._graph_batches(inputs, training=shuffle)
        return inputs if batches is None else batches
    batches = model._graph_batches(inputs, batch_size=batch_size, shuffle=shuffle, training=shuffle)
    if batches is not None:
        return batches
    inputs = np.asarray(inputs)
    dataset = tf.data.Dataset.from_tensor_slices(inputs)
    if shuffle:
        dataset = dataset.shuffle(len(inputs), reshuffle_each_iteration=True)
    return dataset.batch(batch_size or 32)


def paired_batches(model, source, target_inputs, batch_size):
    """`((source inputs, source labels), target inputs)` batches: an epoch is one pass over the source.

    The target repeats as often as the source needs; it never brings labels.
    """
    source_batches = labelled_batches(model, source, batch_size)
    target_batches = unlabelled_batches(model, target_inputs, batch_size).repeat()
    return tf.data.Dataset.zip((source_batches, target_batches)).prefetch(tf.data.AUTOTUNE)
