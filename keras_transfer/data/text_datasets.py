"""From rows to datasets: the steps `text_file`, `from_texts` and `from_pandas` share.

Every text loader returns `tf.data.Dataset` objects that yield batches
`(texts, labels)`: texts are tf.string `(B,)` and labels are

- int32 class indices `(B,)` for `label_mode="int"` (classification),
- float32 multi-hot `(B, K)` for `label_mode="multi_label"`,
- float32 `(B,)` or `(B, K)` for `label_mode="regression"`.

Like the image loaders, the datasets carry `class_names`, `num_classes`,
`num_examples` and `skipped_files` (always empty: bad rows raise `DataError`
instead).
"""

import numpy as np
import tensorflow as tf

from keras_transfer.data.checks import check_class_coverage, check_split_range
from keras_transfer.data.pipeline import finish_dataset
from keras_transfer.data.splits import split_examples
from keras_transfer.data.text_cleaning import resolve_cleaner
from keras_transfer.data.text_labels import LABEL_MODES, encode_labels
from keras_transfer.data.text_rows import check_texts, present, subset_indices
from keras_transfer.errors import DataError


def label_columns_of(label_column, label_mode):
    """The label column(s) as a list; several only make sense for regression."""
    if not isinstance(label_column, (list, tuple)):
        return [label_column]
    if label_mode != "regression":
        raise DataError(
            f"label_column may be a list only for label_mode='regression', got "
            f"{label_column!r}: pass one column (or label_mode='regression')."
        )
    return list(label_column)


def _check_options(label_mode, label_separator, validation_split, has_validation_source, max_examples):
    if label_mode not in LABEL_MODES:
        raise DataError(f"label_mode must be one of {', '.join(map(repr, LABEL_MODES))}, got {label_mode!r}.")
    if label_separator is not None and label_mode != "multi_label":
        raise DataError(
            f"label_separator only applies to label_mode='multi_label' (got "
            f"label_mode={label_mode!r}): drop it or pass label_mode='multi_label'."
        )
    if validation_split is not None:
        if has_validation_source:
            raise DataError(
                "pass either validation_split or separate validation data, not "
                "both: use validation_split to carve validation examples out of "
                "the training data."
            )
        check_split_range(validation_split)
    if max_examples is not None and not (isinstance(max_examples, (int, np.integer)) and max_examples > 0):
        raise DataError(f"max_examples must be a positive int or None, got {max_examples!r}.")


def load_text(
    read_rows,
    *,
    has_validation_source,
    label_mode,
    label_separator,
    class_names,
    clean,
    max_examples,
    batch_size,
    shuffle,
    seed,
    validation_split,
):
    """Check the options, read the rows, encode, subset and split them, and build the datasets.

    `read_rows()` returns the `(train, validation)` rows (validation None
    without a validation source); it runs only once the options are valid,
    so bad options fail before any file is read. The options mean what the
    public loaders' docstrings say.
    """
    _check_options(label_mode, label_separator, validation_split, has_validation_source, max_examples)
    cleaner = resolve_cleaner(clean)  # unknown step names fail before reading files
    train, validation = read_rows()
    for rows in present(train, validation):
        check_texts(rows)
    train_labels, validation_labels, class_names, num_classes = encode_labels(
        train,
        validation,
        label_mode=label_mode,
        label_separator=label_separator,
        class_names=class_names,
    )

    def keep(rows, labels, indices):
        return np.asarray(rows.texts, dtype=object)[indices], labels[indices]

    train_texts, train_labels = keep(train, train_labels, subset_indices(len(train.texts), max_examples, seed))
    if validation is not None:
        validation_texts, validation_labels = keep(
            validation,
            validation_labels,
            subset_indices(len(validation.texts), max_examples, seed),
        )
    elif validation_split is not None:
        (train_texts, train_labels), (validation_texts, validation_labels) = split_examples(
            train_texts, train_labels, validation_split, seed=seed, shuffle=shuffle
        )

    has_validation = validation is not None or validation_split is not None
    if label_mode != "regression":
        check_class_coverage(
            class_names,
            train_labels,
            validation_labels if has_validation else None,
            where=train.source,
            split=validation_split is not None,
            stacklevel=4,  # the caller of text_file / from_texts / from_pandas
        )

    def make(texts, labels, shuffle_buffer):
        return finish_dataset(
            tf.data.Dataset.from_tensor_slices((tf.constant(texts.tolist(), tf.string), labels)),
            class_names=class_names,
            num_classes=num_classes,
            num_examples=len(texts),
            batch_size=batch_size,
            map_batches=cleaner,
            shuffle_buffer=shuffle_buffer,
            seed=seed,
            labels=labels,
        )

    train_dataset = make(train_texts, train_labels, len(train_texts) if shuffle else 0)
    if validation is None and validation_split is None:
        return train_dataset
    return train_dataset, make(validation_texts, validation_labels, 0)
