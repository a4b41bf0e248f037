"""Checks on class names, split fractions and values, shared by every loader and by the models."""

import warnings

import numpy as np

from keras_transfer.errors import DataError


def class_names_of(dataset):
    """Return the `class_names` attribute of a dataset, or None.

    Args:
        dataset: A dataset from `keras_transfer.data` (or any object).

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


def check_class_count(class_names, where):
    if len(class_names) < 2:
        raise DataError(
            f"need at least 2 classes for classification, but {where} has "
            f"{len(class_names)}: {list(class_names)}. Add examples of at "
            f"least one more class."
        )


def check_split_range(validation_split):
    if not 0 < validation_split < 1:
        raise DataError(
            f"validation_split must be between 0 and 1 (exclusive), got "
            f"{validation_split!r}: pass e.g. validation_split=0.2 to hold out "
            f"20% of the data."
        )


def check_split_size(validation_split, num_examples):
    if int(validation_split * num_examples) == 0:
        raise DataError(
            f"validation_split={validation_split} of {num_examples} examples "
            f"leaves no validation examples: use a larger validation_split or "
            f"more data."
        )


def check_finite(values, what):
    """Raises DataError when a numeric array holds NaN or Inf: one such value makes every weight NaN."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        return
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.argwhere(bad.reshape(len(values), -1).any(axis=1))[0][0])
        raise DataError(
            f"{what} hold {int(bad.sum())} NaN or infinite values (the first in example {first}): "
            "training on them turns every weight into NaN. Remove or repair those examples first."
        )


# Below this many validation examples, one example moves a class's validation accuracy by more than 20%.
FEW_VALIDATION_EXAMPLES = 5


def class_counts(labels, num_classes):
    """Examples per class of int class indices `(N,)` or multi-hot rows `(N, K)`; None for other labels."""
    labels = np.asarray(labels)
    if labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
        return np.bincount(labels[(labels >= 0) & (labels < num_classes)], minlength=num_classes)
    if labels.ndim == 2 and labels.shape[1] == num_classes:
        return (labels > 0).sum(axis=0)
    return None


def _named(names, counts):
    return ", ".join(f"{name!r} ({int(count)})" for name, count in zip(names, counts))


def check_class_coverage(class_names, train_labels, validation_labels=None, *, where, split=False, stacklevel=3):
    """Fail when a class has no training example; warn when it has no, or few, validation examples.

    Called by the loaders once the examples are split, so a run that cannot
    learn a class says so before any training.

    Args:
        class_names: The classes the labels index.
        train_labels: Training labels: class indices or multi-hot rows (others are not checked).
        validation_labels: Validation labels, or None without validation data.
        where: The data, for messages: "image folder 'data/train'".
        split: Whether the validation examples were split off the training data.
        stacklevel: Of the warnings: 3 names the caller's caller.

    Raises:
        DataError: with validation data, when a class has no training example.
    """
    if class_names is None:
        return
    names = [str(name) for name in class_names]
    train = class_counts(train_labels, len(names))
    if train is None:
        return
    if validation_labels is None:
        empty = [name for name, count in zip(names, train) if not count]
        if empty:
            warnings.warn(
                f"{where} has no examples of class(es) {empty} (of {names}): the model is "
                f"not trained or scored on them.",
                stacklevel=stacklevel,
            )
        return
    validation = class_counts(validation_labels, len(names))
    no_train = [i for i, count in enumerate(train) if not count]
    if no_train:
        fix = ", lower validation_split" if split else ""
        raise DataError(
            f"class(es) {[names[i] for i in no_train]} of {where} have no training examples "
            f"(examples in validation: {_named([names[i] for i in no_train], validation[no_train])}): "
            f"the model cannot learn them. Add examples{fix} or leave the class out."
        )
    no_validation = [i for i, count in enumerate(validation) if not count]
    if no_validation:
        why = (
            "too few examples to hold one out; each keeps its examples (in brackets) for training"
            if split
            else "the validation data has none"
        )
        fix = "add examples of them" if split else "add validation examples of them"
        warnings.warn(
            f"class(es) {[names[i] for i in no_validation]} of {where} have no validation examples ({why}: "
            f"{_named([names[i] for i in no_validation], train[no_validation])}): their validation "
            f"accuracy is not measured; {fix}.",
            stacklevel=stacklevel,
        )
    few = [i for i, count in enumerate(validation) if 0 < count < FEW_VALIDATION_EXAMPLES]
    if few:
        fix = "a larger validation_split or more examples" if split else "more validation examples"
        warnings.warn(
            f"class(es) {[names[i] for i in few]} of {where} have fewer than {FEW_VALIDATION_EXAMPLES} "
            f"validation examples ({_named([names[i] for i in few], validation[few])}): one example moves "
            f"their validation accuracy by {1 / max(validation[few]):.0%} or more, so it says little; "
            f"give {fix}.",
            stacklevel=stacklevel,
        )
