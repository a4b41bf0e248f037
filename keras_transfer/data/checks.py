"""Checks on class names, split fractions and values, shared by every loader and by the models."""

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
