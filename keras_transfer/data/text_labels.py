"""Label encoding for the text loaders: class indices, multi-hot rows or regression targets."""

import numpy as np

from keras_transfer.data.checks import check_class_count
from keras_transfer.data.text_rows import is_missing, present
from keras_transfer.errors import DataError

LABEL_MODES = ("int", "multi_label", "regression")


def encode_labels(train, validation, *, label_mode, label_separator, class_names):
    """Encode both sources' raw labels for `label_mode`.

    Classes come from all training rows, so a later subset keeps the same
    classes. Returns `(train_labels, validation_labels, class_names,
    num_classes)`; `validation_labels` is None without a validation source.
    """
    if label_mode == "int":
        train_labels, validation_labels, class_names = _encode_int(train, validation, class_names)
        return train_labels, validation_labels, class_names, len(class_names)
    if label_mode == "multi_label":
        train_labels, validation_labels, class_names = _encode_multi_label(
            train, validation, class_names, label_separator
        )
        return train_labels, validation_labels, class_names, train_labels.shape[1]

    train_labels = _encode_regression(train)
    validation_labels = _encode_regression(validation) if validation is not None else None
    if validation is not None and validation_labels.shape[1:] != train_labels.shape[1:]:
        raise DataError(
            f"the validation targets have shape {validation_labels.shape[1:]} "
            f"per example but the training targets {train_labels.shape[1:]}."
        )
    num_classes = train_labels.shape[1] if train_labels.ndim == 2 else 1
    if class_names is not None and len(class_names) != num_classes:
        raise DataError(
            f"the regression targets have {num_classes} column(s) but "
            f"class_names has {len(class_names)} names: pass one name per target."
        )
    return train_labels, validation_labels, class_names, num_classes


def _is_int_like(label):
    if isinstance(label, (bool, np.bool_)):
        return False
    if isinstance(label, (int, np.integer)):
        return True
    return isinstance(label, str) and label.strip().lstrip("-").isdigit()


def _sorted_names(values):
    """Distinct labels as strings, sorted numerically when all are integers."""
    names = {str(value) for value in values}
    if all(_is_int_like(name) for name in names):
        return sorted(names, key=int)
    return sorted(names)


def _label_names(rows, label_separator):
    """Per row, the list of label names (multi-label) from a string or a list."""
    names = []
    for i, label in enumerate(rows.labels):
        if isinstance(label, str):
            if label_separator is None:
                raise DataError(
                    f"label_mode='multi_label' needs label_separator to split text "
                    f"labels such as {label!r} ({rows.locate(i)}): pass e.g. "
                    f"label_separator='|'."
                )
            names.append([part.strip() for part in label.split(label_separator) if part.strip()])
        elif isinstance(label, (list, tuple, np.ndarray)):
            names.append([str(part) for part in label])
        else:
            raise DataError(
                f"{rows.locate(i)} has label {label!r}; multi-label labels must be "
                f"strings split by label_separator or lists of class names."
            )
    return names


def _check_known(row_labels, known, rows, class_names, is_validation):
    """Raise for the first `(row, label)` pair whose label is not known."""
    for i, label in row_labels:
        if label not in known:
            where = "the training classes" if is_validation else "class_names"
            fix = (
                "fix the label, or pass class_names= listing every class"
                if is_validation
                else "add it to class_names or fix the label"
            )
            raise DataError(f"{rows.locate(i)} has label {label!r}, which is not in {where} {class_names}: {fix}.")


def _encode_int(train, validation, class_names):
    """Class indices for both sources; returns (train, validation, class_names)."""
    for rows in present(train, validation):
        for i, label in enumerate(rows.labels):
            if is_missing(label) or (isinstance(label, str) and not label.strip()):
                raise DataError(f"{rows.locate(i)} has no label: fill it in or drop the row.")
            if not isinstance(label, (str, int)):
                raise DataError(
                    f"{rows.locate(i)} has the {type(label).__name__} label "
                    f"{label!r}: class labels must be strings or ints; pass "
                    f"label_mode='regression' for numeric targets."
                )

    def keys(rows):
        return [label.strip() if isinstance(label, str) else label for label in rows.labels]

    train_keys = keys(train)
    if class_names is None:
        class_names = _sorted_names(train_keys)
        lookup = {name: index for index, name in enumerate(class_names)}
        to_key = str
    else:
        class_names = [str(name) for name in class_names]
        lookup = {name: index for index, name in enumerate(class_names)}
        # Int labels (or "0"/"1" strings) that are not class names index class_names.
        by_index = all(_is_int_like(key) for key in train_keys) and not any(str(key) in lookup for key in train_keys)
        if by_index:
            lookup = {index: index for index in range(len(class_names))}

            def to_key(key):  # a validation label may still be a name
                return int(key) if _is_int_like(key) else key

        else:
            to_key = str
        _check_known(enumerate(map(to_key, train_keys)), lookup, train, class_names, False)
    check_class_count(class_names, train.source)

    def encode(rows, rows_keys, is_validation):
        converted = [to_key(key) for key in rows_keys]
        _check_known(enumerate(converted), lookup, rows, class_names, is_validation)
        return np.array([lookup[key] for key in converted], dtype=np.int32)

    encoded_validation = encode(validation, keys(validation), True) if validation is not None else None
    return encode(train, train_keys, False), encoded_validation, class_names


def _is_multi_hot(labels):
    first = labels[0]
    return isinstance(first, (list, tuple, np.ndarray)) and (
        len(first) > 0 and all(isinstance(value, (int, float, np.number)) for value in first)
    )


def _multi_hot_array(rows, width=None):
    try:
        multi_hot = np.asarray(rows.labels, dtype=np.float32)
    except ValueError:
        multi_hot = None
    if multi_hot is None or multi_hot.ndim != 2 or width not in (None, multi_hot.shape[1]):
        raise DataError(
            f"the multi-hot labels of {rows.source} must all have the same "
            f"length{f' ({width}, as in training)' if width else ''}."
        )
    return multi_hot


def _encode_multi_label(train, validation, class_names, label_separator):
    if _is_multi_hot(train.labels):
        train_labels = _multi_hot_array(train)
        width = train_labels.shape[1]
        if class_names is not None and len(class_names) != width:
            raise DataError(
                f"labels have {width} columns but class_names has "
                f"{len(class_names)} names: pass one name per label column."
            )
        validation_labels = _multi_hot_array(validation, width) if validation is not None else None
        return train_labels, validation_labels, class_names

    train_names = _label_names(train, label_separator)
    if class_names is None:
        class_names = sorted({name for names in train_names for name in names})
    class_names = [str(name) for name in class_names]
    if not class_names:
        raise DataError(f"no labels found in {train.source}: every row has an empty label.")
    column = {name: index for index, name in enumerate(class_names)}

    def encode(rows, names_per_row, is_validation):
        multi_hot = np.zeros((len(names_per_row), len(class_names)), np.float32)
        for i, names in enumerate(names_per_row):
            _check_known(((i, name) for name in names), column, rows, class_names, is_validation)
            multi_hot[i, [column[name] for name in names]] = 1.0
        return multi_hot

    encoded_validation = (
        encode(validation, _label_names(validation, label_separator), True) if validation is not None else None
    )
    return encode(train, train_names, False), encoded_validation, class_names


def _encode_regression(rows):
    targets = []
    for i, label in enumerate(rows.labels):
        try:
            value = np.asarray(label, dtype=np.float32)
        except (TypeError, ValueError):
            value = None
        if value is None or not np.all(np.isfinite(value)):
            raise DataError(
                f"{rows.locate(i)} has label {label!r}, which is not a number: "
                f"label_mode='regression' needs numeric targets."
            )
        targets.append(value)
    return np.stack(targets).astype(np.float32)
