"""Text datasets from data already in memory: Python lists, numpy arrays or pandas DataFrames."""

import numpy as np

from keras_transfer.data.text_datasets import label_columns_of, load_text
from keras_transfer.data.text_rows import Rows
from keras_transfer.errors import DataError


def _list_rows(texts, labels, name, locate=None, source=None):
    """`Rows` from in-memory texts and labels, located by 0-based index."""
    if isinstance(texts, str) or np.ndim(texts) != 1:
        raise DataError(
            f"{name} must be a 1-D list or array of strings, got {type(texts).__name__} with shape {np.shape(texts)}."
        )
    texts = list(texts)
    labels = list(labels)  # a 2-D array becomes a list of rows
    if len(texts) != len(labels):
        raise DataError(f"got {len(texts)} {name} but {len(labels)} labels: pass one label per text.")
    # numpy scalars become Python values, so messages and lookups see 'spam', not np.str_.
    labels = [label.item() if isinstance(label, np.generic) else label for label in labels]
    texts = [text.item() if isinstance(text, np.generic) else text for text in texts]
    return Rows(
        texts,
        labels,
        locate or (lambda i: f"{name}[{i}]"),
        source or f"the {name} list",
    )


def from_texts(
    texts,
    labels,
    *,
    validation_data=None,
    validation_split=None,
    label_mode="int",
    label_separator=None,
    class_names=None,
    clean=None,
    max_examples=None,
    batch_size=32,
    shuffle=True,
    seed=1337,
):
    """Build text datasets from Python lists or numpy arrays.

    Args:
        texts: 1-D list or array of strings.
        labels: One label per text. "int": strings or ints (ints index
            `class_names` when it is given, otherwise each distinct value is
            a class); "multi_label": lists of class names, strings split by
            `label_separator`, or a `(N, K)` multi-hot array; "regression":
            numbers `(N,)` or `(N, K)`.
        validation_data: Optional `(texts, labels)` pair used as validation
            data. Not together with `validation_split`.
        validation_split, label_mode, label_separator, class_names, clean,
        max_examples, batch_size, shuffle, seed: As for `text_file`, with
            the lists in place of the files.

    Returns:
        The training dataset, or `(train, validation)` with `validation_data`
        or `validation_split`.

    Raises:
        DataError: for mismatched lengths, a missing, empty or non-string
            text (the message names its 0-based index), a validation label
            not seen in training, a single class or a bad split.

    Example:
        >>> train = from_texts(["great film", "dull plot"], ["pos", "neg"],
        ...                    batch_size=2)
        >>> train.class_names
        ['neg', 'pos']
    """

    def read_rows():
        train = _list_rows(texts, labels, "texts")
        if validation_data is None:
            return train, None
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise DataError("validation_data must be a (texts, labels) pair.")
        return train, _list_rows(*validation_data, "validation texts")

    return load_text(
        read_rows,
        has_validation_source=validation_data is not None,
        label_mode=label_mode,
        label_separator=label_separator,
        class_names=class_names,
        clean=clean,
        max_examples=max_examples,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        validation_split=validation_split,
    )


def _frame_rows(frame, text_column, label_columns, name, pd):
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}.")
    missing = [c for c in [text_column, *label_columns] if c not in frame.columns]
    if missing:
        raise DataError(f"column(s) {missing} not found in {name}; available columns: {list(frame.columns)}.")
    if len(label_columns) == 1:
        labels = frame[label_columns[0]].tolist()
    else:
        labels = frame[label_columns].to_numpy()
    index = frame.index.tolist()  # Python values: "row 12", not "row np.int64(12)"
    return _list_rows(
        frame[text_column].tolist(),
        labels,
        "texts",
        locate=lambda i: f"row {index[i]!r} of {name}",
        source=name,
    )


def from_pandas(
    frame,
    *,
    text_column,
    label_column,
    validation_frame=None,
    validation_split=None,
    label_mode="int",
    label_separator=None,
    class_names=None,
    clean=None,
    max_examples=None,
    batch_size=32,
    shuffle=True,
    seed=1337,
):
    """Build text datasets from pandas DataFrames (pandas is optional).

    Args:
        frame: A `pandas.DataFrame` with one example per row.
        text_column: Name of the text column.
        label_column: Name of the label column; for "regression" also a
            list of columns, giving `(B, K)` targets.
        validation_frame: Optional DataFrame with the same columns, used as
            validation data. Not together with `validation_split`.
        validation_split, label_mode, label_separator, class_names, clean,
        max_examples, batch_size, shuffle, seed: As for `text_file`.

    Returns:
        The training dataset, or `(train, validation)` with
        `validation_frame` or `validation_split`.

    Raises:
        ImportError: if pandas is not installed.
        DataError: as for `from_texts`; messages name rows by their index
            label, and a missing column lists the available ones.

    Example:
        >>> frame = pandas.read_csv("reviews.csv")
        >>> train, val = from_pandas(frame, text_column="review",
        ...                          label_column="stars", validation_split=0.1)
    """
    try:
        import pandas as pd
    except ImportError as error:
        raise ImportError(
            "from_pandas needs pandas, which keras-transfer does not install: "
            "run `pip install pandas` (or use from_texts with plain lists)."
        ) from error
    label_columns = label_columns_of(label_column, label_mode)

    def read_rows():
        train = _frame_rows(frame, text_column, label_columns, "frame", pd)
        if validation_frame is None:
            return train, None
        return train, _frame_rows(validation_frame, text_column, label_columns, "validation_frame", pd)

    return load_text(
        read_rows,
        has_validation_source=validation_frame is not None,
        label_mode=label_mode,
        label_separator=label_separator,
        class_names=class_names,
        clean=clean,
        max_examples=max_examples,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        validation_split=validation_split,
    )
