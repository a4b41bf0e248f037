"""The one train/validation split behind every loader's `validation_split`."""

import numpy as np

from keras_transfer.data.checks import check_split_range, check_split_size
from keras_transfer.errors import DataError


def split_train_validation(labels, validation_split, *, seed, shuffle=True):
    """Split examples into training and validation, stratified by class and seeded.

    Class-index labels (a 1-D integer array) are split class by class: each
    class puts about `validation_split` of its examples into validation, at
    least one when it has two or more, and always keeps at least one for
    training (a class with a single example stays in training). The
    validation set has `int(validation_split * len(labels))` examples, more
    only where a small class needs its one. Other labels (float regression
    targets, multi-hot rows) have no class to stratify by: a seeded random
    `validation_split` of all examples is held out instead.

    Args:
        labels: One label per example.
        validation_split: Fraction in (0, 1) to hold out.
        seed: Seed of the random choice; the same seed gives the same split.
        shuffle: True picks the validation examples at random; False takes
            the last examples (of each class), in order, so no seed matters.

    Returns:
        `(train_indices, validation_indices)`, each in the original order.

    Raises:
        DataError: for a fraction outside (0, 1), or one that leaves no
            validation examples.
    """
    check_split_range(validation_split)
    labels = np.asarray(labels)
    count = len(labels)
    check_split_size(validation_split, count)
    wanted = int(validation_split * count)
    if labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
        groups = [np.flatnonzero(labels == label) for label in np.unique(labels)]
        sizes = _stratified_sizes([len(group) for group in groups], validation_split, wanted)
    else:
        groups, sizes = [np.arange(count)], [wanted]
    if not sum(sizes):
        raise DataError(
            f"validation_split={validation_split} leaves no validation examples: "
            f"every class has a single example, which stays in training. Add "
            f"examples or pass separate validation data."
        )
    rng = np.random.default_rng(seed)
    held_out = []
    for group, size in zip(groups, sizes):
        if shuffle:
            group = rng.permutation(group)
        held_out.append(group[len(group) - size :])
    validation = np.sort(np.concatenate(held_out))
    return np.setdiff1d(np.arange(count), validation), validation


def split_examples(inputs, labels, validation_split, *, seed, shuffle=True):
    """`split_train_validation` applied to numpy arrays of inputs and labels.

    Returns:
        `((train_inputs, train_labels), (validation_inputs, validation_labels))`.
    """
    train, validation = split_train_validation(labels, validation_split, seed=seed, shuffle=shuffle)
    return (inputs[train], labels[train]), (inputs[validation], labels[validation])


def _stratified_sizes(class_sizes, validation_split, wanted):
    """How many examples of each class go to validation (see the caller)."""
    class_sizes = np.asarray(class_sizes)
    share = validation_split * class_sizes
    spare = class_sizes - 1  # every class keeps one training example
    take = np.minimum(np.floor(share).astype(int), spare)
    take = np.where(class_sizes >= 2, np.maximum(take, 1), 0)
    # Rounding down leaves examples over: they go to the classes it cut most.
    left_over = wanted - int(take.sum())
    for index in np.argsort(-(share - take), kind="stable"):
        if left_over <= 0:
            break
        if take[index] < spare[index]:
            take[index] += 1
            left_over -= 1
    return take.tolist()
