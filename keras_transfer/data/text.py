"""Text datasets for transfer learning: CSV/TSV files, Python lists, pandas and TFDS.

Every loader returns `tf.data.Dataset` objects that yield batches
`(texts, labels)`: texts are tf.string `(B,)` and labels are

- int32 class indices `(B,)` for `label_mode="int"` (classification),
- float32 multi-hot `(B, K)` for `label_mode="multi_label"`,
- float32 `(B,)` or `(B, K)` for `label_mode="regression"`.

Like the image loaders in `keras_transfer.data` (which re-exports these), the
datasets carry `class_names`, `num_classes`, `num_examples` and
`skipped_files` (always empty: bad rows raise `DataError` instead).
"""

import csv
import math
import os
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from keras_transfer.errors import (
    DataError,
    check_class_count,
    check_split_range,
    check_split_size,
)

LABEL_MODES = ("int", "multi_label", "regression")

# --------------------------------------------------------------------------
# Cleaning with tf.strings ops, so it runs inside the tf.data graph.

# Removal steps put a space where the removed text was, so words never merge;
# "collapse_whitespace" tidies up afterwards.
_REMOVAL_PATTERNS = {
    "remove_urls": r"(?:https?://|www\.)\S+",
    "remove_punctuation": r"[\pP\pS]+",
    "remove_numbers": r"[0-9]+",
}
# Escaped characters are text ("&lt;#&gt;" is SMS spam's "<#>"), so the common
# entities are decoded; other entities become a space. "&amp;" is decoded last,
# through a placeholder, so that "&amp;lt;" stays the literal text "&lt;".
_HTML_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&#39;", "'"),
                  ("&nbsp;", " "))
_AMPERSAND_PLACEHOLDER = "\ue000"  # a private-use character, absent from real text


def _strip_html(texts):
    texts = tf.strings.regex_replace(texts, r"<[^>]*>", " ")
    texts = tf.strings.regex_replace(texts, "&amp;", _AMPERSAND_PLACEHOLDER)
    for entity, character in _HTML_ENTITIES:
        texts = tf.strings.regex_replace(texts, entity, character)
    texts = tf.strings.regex_replace(texts, r"&(?:[a-zA-Z]+|#[0-9]+|#x[0-9a-fA-F]+);", " ")
    return tf.strings.regex_replace(texts, _AMPERSAND_PLACEHOLDER, "&")


CLEANING_STEPS = (
    "lower",
    "strip_html",
    "remove_urls",
    "remove_punctuation",
    "remove_numbers",
    "remove_stopwords",
    "collapse_whitespace",
)


def _stopword_pattern():
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS  # slow to import

    # Longest first, so "others" is removed whole rather than leaving "s".
    words = sorted(ENGLISH_STOP_WORDS, key=lambda word: (-len(word), word))
    return r"(?i)\b(?:" + "|".join(words) + r")\b"


class TextCleaner:
    """Cleans text with `tf.strings` ops, in the order the steps are given.

    Steps: "lower" (Unicode lower case), "strip_html" (tags removed, the
    common entities such as `&lt;` and `&amp;` decoded, others removed),
    "remove_urls", "remove_punctuation" (Unicode punctuation and symbols),
    "remove_numbers", "remove_stopwords" (scikit-learn's English list, any
    case) and "collapse_whitespace" (runs of whitespace become one space, ends
    are stripped). Removal steps leave a space where they removed something,
    so end with "collapse_whitespace" for tidy text.

    Works on a tf.string tensor of any shape (inside `tf.data` or a
    `tf.function` too), a Python string, or a list of Python strings.

    Args:
        steps: A step name or a list of step names.

    Raises:
        ValueError: for an unknown step name.

    Example:
        >>> cleaner = TextCleaner(["strip_html", "lower", "collapse_whitespace"])
        >>> cleaner("<b>Hello</b>  World ")
        'hello world'
    """

    def __init__(self, steps):
        steps = [steps] if isinstance(steps, str) else list(steps)
        unknown = [step for step in steps if step not in CLEANING_STEPS]
        if unknown:
            raise ValueError(
                f"unknown cleaning step(s) {unknown}. Valid steps: "
                f"{', '.join(CLEANING_STEPS)}."
            )
        self.steps = steps
        self._stopwords = _stopword_pattern() if "remove_stopwords" in steps else None

    def _apply(self, texts):
        for step in self.steps:
            if step == "lower":
                texts = tf.strings.lower(texts, encoding="utf-8")
            elif step == "strip_html":
                texts = _strip_html(texts)
            elif step == "collapse_whitespace":
                texts = tf.strings.regex_replace(texts, r"[\s\p{Z}]+", " ")  # NBSP too
                texts = tf.strings.strip(texts)
            else:
                pattern = (
                    self._stopwords
                    if step == "remove_stopwords"
                    else _REMOVAL_PATTERNS[step]
                )
                texts = tf.strings.regex_replace(texts, pattern, " ")
        return texts

    def __call__(self, texts):
        if isinstance(texts, str):
            return self._apply(tf.constant(texts)).numpy().decode("utf-8")
        if isinstance(texts, (list, tuple)):
            cleaned = self._apply(tf.constant(list(texts), dtype=tf.string)).numpy()
            return [text.decode("utf-8") for text in cleaned]
        return self._apply(texts)

    def get_config(self):
        return {"steps": list(self.steps)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"TextCleaner({self.steps!r})"


def _resolve_cleaner(clean):
    """Accept None, a step name, a list of step names or a callable."""
    if clean is None or callable(clean):
        return clean
    return TextCleaner(clean)


# --------------------------------------------------------------------------
# Rows read from a source, before labels are encoded.


class _Rows(NamedTuple):
    texts: list  # one Python str per example
    labels: list  # raw labels: str / int / float / list of names / row of floats
    locate: Callable[[int], str]  # row position -> "line 7 of 'train.csv'"
    source: str  # the whole source, for messages: "file 'train.csv'"


def _is_missing(value):
    """None, NaN or pandas.NA: how pandas and friends mark a missing value."""
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or type(value).__name__ == "NAType"
    )


def _check_texts(rows):
    """Every text must be a non-blank string, and not every text a number."""
    if not rows.texts:
        raise DataError(
            f"{rows.source} has no examples: it needs one row per example with "
            f"a text and a label."
        )
    for i, text in enumerate(rows.texts):
        if _is_missing(text):
            raise DataError(
                f"{rows.locate(i)} has no text (it is missing): fill it in or drop the row."
            )
        if not isinstance(text, str):
            raise DataError(
                f"{rows.locate(i)} has a {type(text).__name__} {text!r} where a "
                f"text belongs: texts must be strings (did you swap the text and "
                f"label columns?)."
            )
        if not text.strip():
            raise DataError(
                f"{rows.locate(i)} has an empty text: remove the row or fill in its text."
            )
    sample = rows.texts[:1000]
    if all(_looks_numeric(text) for text in sample):
        raise DataError(
            f"the texts in {rows.source} are all numbers (e.g. {sample[0]!r}), "
            f"not text: did you swap the text and label columns?"
        )


def _looks_numeric(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _present(*sources):
    return [rows for rows in sources if rows is not None]


def _subset_indices(count, max_examples, seed):
    """A seeded random subset of at most `max_examples` of `count` rows, in order."""
    if max_examples is None or count <= max_examples:
        return np.arange(count)
    return np.sort(
        np.random.default_rng(seed).choice(count, max_examples, replace=False)
    )


# --------------------------------------------------------------------------
# Label encoding.


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
            names.append(
                [part.strip() for part in label.split(label_separator) if part.strip()]
            )
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
            raise DataError(
                f"{rows.locate(i)} has label {label!r}, which is not in {where} "
                f"{class_names}: {fix}."
            )


def _encode_int(train, validation, class_names):
    """Class indices for both sources; returns (train, validation, class_names)."""
    for rows in _present(train, validation):
        for i, label in enumerate(rows.labels):
            if _is_missing(label) or (isinstance(label, str) and not label.strip()):
                raise DataError(
                    f"{rows.locate(i)} has no label: fill it in or drop the row."
                )
            if not isinstance(label, (str, int)):
                raise DataError(
                    f"{rows.locate(i)} has the {type(label).__name__} label "
                    f"{label!r}: class labels must be strings or ints; pass "
                    f"label_mode='regression' for numeric targets."
                )

    def keys(rows):
        return [
            label.strip() if isinstance(label, str) else label for label in rows.labels
        ]

    train_keys = keys(train)
    if class_names is None:
        class_names = _sorted_names(train_keys)
        lookup = {name: index for index, name in enumerate(class_names)}
        to_key = str
    else:
        class_names = [str(name) for name in class_names]
        lookup = {name: index for index, name in enumerate(class_names)}
        # Int labels (or "0"/"1" strings) that are not class names index class_names.
        by_index = all(_is_int_like(key) for key in train_keys) and not any(
            str(key) in lookup for key in train_keys
        )
        if by_index:
            lookup = {index: index for index in range(len(class_names))}

            def to_key(key):  # a validation label may still be a name
                return int(key) if _is_int_like(key) else key

        else:
            to_key = str
        _check_known(
            enumerate(map(to_key, train_keys)), lookup, train, class_names, False
        )
    check_class_count(class_names, train.source)

    def encode(rows, rows_keys, is_validation):
        converted = [to_key(key) for key in rows_keys]
        _check_known(enumerate(converted), lookup, rows, class_names, is_validation)
        return np.array([lookup[key] for key in converted], dtype=np.int32)

    encoded_validation = (
        encode(validation, keys(validation), True) if validation is not None else None
    )
    return encode(train, train_keys, False), encoded_validation, class_names


def _is_multi_hot(labels):
    first = labels[0]
    return isinstance(first, (list, tuple, np.ndarray)) and (
        len(first) > 0
        and all(isinstance(value, (int, float, np.number)) for value in first)
    )


def _multi_hot_array(rows, width=None):
    try:
        multi_hot = np.asarray(rows.labels, dtype=np.float32)
    except ValueError:
        multi_hot = None
    if (
        multi_hot is None
        or multi_hot.ndim != 2
        or width not in (None, multi_hot.shape[1])
    ):
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
        validation_labels = (
            _multi_hot_array(validation, width) if validation is not None else None
        )
        return train_labels, validation_labels, class_names

    train_names = _label_names(train, label_separator)
    if class_names is None:
        class_names = sorted({name for names in train_names for name in names})
    class_names = [str(name) for name in class_names]
    if not class_names:
        raise DataError(
            f"no labels found in {train.source}: every row has an empty label."
        )
    column = {name: index for index, name in enumerate(class_names)}

    def encode(rows, names_per_row, is_validation):
        multi_hot = np.zeros((len(names_per_row), len(class_names)), np.float32)
        for i, names in enumerate(names_per_row):
            _check_known(
                ((i, name) for name in names), column, rows, class_names, is_validation
            )
            multi_hot[i, [column[name] for name in names]] = 1.0
        return multi_hot

    encoded_validation = (
        encode(validation, _label_names(validation, label_separator), True)
        if validation is not None
        else None
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


# --------------------------------------------------------------------------
# Shared pipeline for every text loader.


def _finalize_text(
    dataset,
    *,
    num_examples,
    class_names,
    num_classes,
    batch_size,
    cleaner,
    shuffle_buffer,
    seed,
):
    """Shuffle, batch, clean and prefetch `(text, label)` examples; attach metadata."""
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed)
    dataset = dataset.batch(batch_size)
    if dataset.cardinality() == tf.data.UNKNOWN_CARDINALITY:
        # Known epoch length gives Keras real progress bars.
        num_batches = -(-int(num_examples) // batch_size)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    if cleaner is not None:
        # Cleaning whole batches runs each regex once per batch.
        dataset = dataset.map(
            lambda texts, labels: (cleaner(texts), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    dataset.class_names = list(class_names) if class_names is not None else None
    dataset.num_classes = int(num_classes)
    dataset.num_examples = int(num_examples)
    dataset.skipped_files = []
    return dataset


def _check_options(
    label_mode, label_separator, validation_split, has_validation_source, max_examples
):
    if label_mode not in LABEL_MODES:
        raise DataError(
            f"label_mode must be one of {', '.join(map(repr, LABEL_MODES))}, got "
            f"{label_mode!r}."
        )
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
    if max_examples is not None and not (
        isinstance(max_examples, (int, np.integer)) and max_examples > 0
    ):
        raise DataError(
            f"max_examples must be a positive int or None, got {max_examples!r}."
        )


def _build(
    train,
    validation,
    *,
    label_mode,
    label_separator,
    class_names,
    clean,
    batch_size,
    shuffle,
    seed,
    validation_split,
    max_examples,
):
    """Check and encode the rows, split them and build the datasets."""
    cleaner = _resolve_cleaner(clean)
    for rows in _present(train, validation):
        _check_texts(rows)
    # Classes come from all training rows, so a subset keeps the same classes.
    if label_mode == "int":
        train_labels, validation_labels, class_names = _encode_int(
            train, validation, class_names
        )
        num_classes = len(class_names)
    elif label_mode == "multi_label":
        train_labels, validation_labels, class_names = _encode_multi_label(
            train, validation, class_names, label_separator
        )
        num_classes = train_labels.shape[1]
    else:
        train_labels = _encode_regression(train)
        validation_labels = (
            _encode_regression(validation) if validation is not None else None
        )
        if (
            validation is not None
            and validation_labels.shape[1:] != train_labels.shape[1:]
        ):
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

    def keep(rows, labels, indices):
        return np.asarray(rows.texts, dtype=object)[indices], labels[indices]

    train_texts, train_labels = keep(
        train, train_labels, _subset_indices(len(train.texts), max_examples, seed)
    )
    if validation is not None:
        validation_texts, validation_labels = keep(
            validation,
            validation_labels,
            _subset_indices(len(validation.texts), max_examples, seed),
        )
    elif validation_split is not None:
        check_split_size(validation_split, len(train_texts))
        order = np.arange(len(train_texts))
        if shuffle:
            order = np.random.default_rng(seed).permutation(len(train_texts))
        num_validation = int(validation_split * len(train_texts))
        validation_idx = np.sort(order[len(order) - num_validation :])
        train_idx = order[: len(order) - num_validation]
        validation_texts, validation_labels = (
            train_texts[validation_idx],
            train_labels[validation_idx],
        )
        train_texts, train_labels = train_texts[train_idx], train_labels[train_idx]

    def make(texts, labels, shuffle_buffer):
        return _finalize_text(
            tf.data.Dataset.from_tensor_slices(
                (tf.constant(texts.tolist(), tf.string), labels)
            ),
            num_examples=len(texts),
            class_names=class_names,
            num_classes=num_classes,
            batch_size=batch_size,
            cleaner=cleaner,
            shuffle_buffer=shuffle_buffer,
            seed=seed,
        )

    train_dataset = make(train_texts, train_labels, len(train_texts) if shuffle else 0)
    if validation is None and validation_split is None:
        return train_dataset
    return train_dataset, make(validation_texts, validation_labels, 0)


# --------------------------------------------------------------------------
# CSV / TSV files.


def _sniff_delimiter(path, first_line, sample):
    extension = os.path.splitext(path)[1].lower()
    if extension in (".tsv", ".tab"):
        return "\t"
    if extension == ".csv":
        return ","
    if "\t" in first_line:
        return "\t"
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;|").delimiter
    except csv.Error:
        return ","


def _check_file(path):
    if not os.path.exists(path):
        raise DataError(f"text file {path!r} does not exist: check the path.")
    if os.path.isdir(path):
        raise DataError(f"{path!r} is a folder: pass a CSV or TSV file.")


def _read_table(path, delimiter):
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            sample = file.read(64 * 1024)
            file.seek(0)
            if delimiter == "auto":
                delimiter = _sniff_delimiter(path, sample.split("\n", 1)[0], sample)
            # Tab-separated files rarely quote, and texts start with quotes
            # ('"Hi" he said'): csv quoting would merge rows there.
            quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
            reader = csv.reader(file, delimiter=delimiter, quoting=quoting)
            rows, lines = [], []
            line = 0  # lines read so far: a row starts on the next one
            # Long documents exceed csv's default 128 KiB field limit.
            old_limit = csv.field_size_limit(2**31 - 1)
            try:
                for row in reader:
                    if any(field.strip() for field in row):  # skip blank lines
                        rows.append(row)
                        lines.append(line + 1)
                    line = reader.line_num
            finally:
                csv.field_size_limit(old_limit)
    except UnicodeDecodeError as error:
        raise DataError(
            f"text file {path!r} is not UTF-8 text ({error.reason} at byte "
            f"{error.start}): save it as UTF-8."
        ) from None
    except csv.Error as error:
        raise DataError(f"text file {path!r} is not valid CSV: {error}.") from None
    return rows, lines, delimiter


def _read_text_file(path, text_column, label_columns, header, delimiter, what):
    """Read one CSV/TSV file into `_Rows`."""
    path = os.fspath(path)
    _check_file(path)
    rows, lines, delimiter = _read_table(path, delimiter)
    source = f"{what} {path!r}"
    if not rows:
        raise DataError(
            f"{source} is empty: it needs one row per example with a text and a label."
        )
    columns = [text_column, *label_columns]
    named = [column for column in columns if isinstance(column, str)]
    first_row = [field.strip() for field in rows[0]]
    missing = [name for name in named if name not in first_row]
    if named and header is False:
        raise DataError(
            f"column names {named} need a header row, but header=False for "
            f"{source}: pass 0-based int column indexes."
        )
    if missing:
        raise DataError(
            f"column(s) {missing} not found in the header of {source}; available "
            f"columns: {first_row}. If the file has no header row, pass "
            f"header=False and 0-based int column indexes."
        )
    if header is True or (header == "auto" and named):
        rows, lines = rows[1:], lines[1:]
        if not rows:
            raise DataError(f"{source} has a header but no data rows: add examples.")
    indexes = [first_row.index(c) if isinstance(c, str) else c for c in columns]

    def locate(i):
        return f"line {lines[i]} of {path!r}"

    needed = max(indexes) + 1
    for i, row in enumerate(rows):
        if len(row) < needed:
            raise DataError(
                f"{locate(i)} has {len(row)} field(s) but the columns need "
                f"{needed}: check the delimiter (read as {delimiter!r}) and that "
                f"the row has a text and a label."
            )
    texts = [row[indexes[0]] for row in rows]
    if len(label_columns) == 1:
        labels = [row[indexes[1]].strip() for row in rows]
    else:
        labels = [[row[index] for index in indexes[1:]] for row in rows]
    return _Rows(texts, labels, locate, source)


def text_file(
    path,
    *,
    text_column,
    label_column,
    header="auto",
    delimiter="auto",
    validation_file=None,
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
    """Load a text dataset from a CSV or TSV file, one example per row.

    Args:
        path: The CSV/TSV file (UTF-8). Blank lines are skipped.
        text_column: Column with the text: a header name, or a 0-based int.
        label_column: Column with the label, a name or a 0-based int; for
            `label_mode="regression"` also a list of columns, giving
            `(B, K)` targets.
        header: True, False or "auto": a header is detected when the named
            columns all appear in the first row. With int columns "auto"
            means no header; pass header=True to skip one.
        delimiter: Field separator, or "auto": tab for .tsv, comma for .csv,
            otherwise tab when the first line has one, else sniffed from
            ",;|". Tab-separated files are read without quote handling
            (texts may start with quotes); other files use CSV quoting.
        validation_file: Optional second file, read with the same columns
            and options. Each file detects its own header, so an int column
            works when the two headers name the text column differently.
        validation_split: Optional fraction in (0, 1) of the rows to hold out
            for validation (seeded; the last rows when `shuffle=False`).
            Not together with `validation_file`.
        label_mode: "int" (class indices), "multi_label" (multi-hot, labels
            split by `label_separator`) or "regression" (float targets).
        label_separator: For "multi_label", the separator of the class names
            in a label, e.g. "|" for "sports|politics".
        class_names: Optional list of classes (fixes their order). Labels are
            matched by name; integer labels that are not class names index
            into `class_names` (e.g. 0/1 with ["negative", "positive"]).
            Defaults to the sorted training labels (numerically sorted when
            all are integers).
        clean: None, cleaning step names or a `TextCleaner` (or any function
            on tf.string tensors), applied inside the pipeline to both
            datasets.
        max_examples: Optional cap on the examples taken from each file: a
            seeded random subset (in file order), not the first rows. Classes
            still come from the whole training file.
        batch_size: Number of texts per batch.
        shuffle: Whether to shuffle the training data (every epoch).
        seed: Seed for shuffling, the split and `max_examples`.

    Returns:
        The training dataset, or `(train, validation)` when `validation_file`
        or `validation_split` is given.

    Raises:
        DataError: for a missing or empty file, a missing column, a row with
            an empty text (the message names its line) or a short row, a
            validation label not seen in training, a single class, a text
            column of numbers or a bad split.

    Example:
        >>> train, val = text_file("spam.tsv", text_column="SMS",
        ...                        label_column="Label", validation_split=0.2,
        ...                        clean=["lower", "collapse_whitespace"])
        >>> train.class_names, train.num_examples
        (['ham', 'spam'], 4460)
    """
    label_columns = _label_columns(label_column, label_mode)
    if header not in (True, False, "auto"):
        raise DataError(f"header must be True, False or 'auto', got {header!r}.")
    for column in [text_column, *label_columns]:
        if (
            not isinstance(column, (str, int, np.integer))
            or isinstance(column, bool)
            or (not isinstance(column, str) and column < 0)
        ):
            raise DataError(
                f"columns must be header names or 0-based int indexes, got {column!r}."
            )
    _check_options(
        label_mode,
        label_separator,
        validation_split,
        validation_file is not None,
        max_examples,
    )
    _resolve_cleaner(clean)  # unknown step names fail before reading files

    def read(file, what):
        return _read_text_file(
            file, text_column, label_columns, header, delimiter, what
        )

    train = read(path, "file")
    validation = (
        read(validation_file, "validation file")
        if validation_file is not None
        else None
    )
    return _build(
        train,
        validation,
        label_mode=label_mode,
        label_separator=label_separator,
        class_names=class_names,
        clean=clean,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        validation_split=validation_split,
        max_examples=max_examples,
    )


# --------------------------------------------------------------------------
# Python lists and pandas.


def _label_columns(label_column, label_mode):
    """The label column(s) as a list; several only make sense for regression."""
    if not isinstance(label_column, (list, tuple)):
        return [label_column]
    if label_mode != "regression":
        raise DataError(
            f"label_column may be a list only for label_mode='regression', got "
            f"{label_column!r}: pass one column (or label_mode='regression')."
        )
    return list(label_column)


def _list_rows(texts, labels, name, locate=None, source=None):
    """`_Rows` from in-memory texts and labels, located by 0-based index."""
    if isinstance(texts, str) or np.ndim(texts) != 1:
        raise DataError(
            f"{name} must be a 1-D list or array of strings, got "
            f"{type(texts).__name__} with shape {np.shape(texts)}."
        )
    texts = list(texts)
    labels = list(labels)  # a 2-D array becomes a list of rows
    if len(texts) != len(labels):
        raise DataError(
            f"got {len(texts)} {name} but {len(labels)} labels: pass one label per text."
        )
    # numpy scalars become Python values, so messages and lookups see 'spam', not np.str_.
    labels = [
        label.item() if isinstance(label, np.generic) else label for label in labels
    ]
    texts = [text.item() if isinstance(text, np.generic) else text for text in texts]
    return _Rows(
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
        validation_split: Optional fraction in (0, 1) held out for validation.
        label_mode: "int", "multi_label" or "regression".
        label_separator: For "multi_label" string labels, e.g. "|".
        class_names: Optional list of classes; defaults to the sorted
            training labels.
        clean: None, cleaning step names, a `TextCleaner` or a function on
            tf.string tensors.
        max_examples: Optional cap: a seeded random subset of each source.
        batch_size: Number of texts per batch.
        shuffle: Whether to shuffle the training data (every epoch).
        seed: Seed for shuffling, the split and `max_examples`.

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
    _check_options(
        label_mode,
        label_separator,
        validation_split,
        validation_data is not None,
        max_examples,
    )
    train = _list_rows(texts, labels, "texts")
    validation = None
    if validation_data is not None:
        if not (
            isinstance(validation_data, (tuple, list)) and len(validation_data) == 2
        ):
            raise DataError("validation_data must be a (texts, labels) pair.")
        validation = _list_rows(*validation_data, "validation texts")
    return _build(
        train,
        validation,
        label_mode=label_mode,
        label_separator=label_separator,
        class_names=class_names,
        clean=clean,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        validation_split=validation_split,
        max_examples=max_examples,
    )


def _frame_rows(frame, text_column, label_columns, name, pd):
    if not isinstance(frame, pd.DataFrame):
        raise DataError(
            f"{name} must be a pandas DataFrame, got {type(frame).__name__}."
        )
    missing = [c for c in [text_column, *label_columns] if c not in frame.columns]
    if missing:
        raise DataError(
            f"column(s) {missing} not found in {name}; available columns: "
            f"{list(frame.columns)}."
        )
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
        max_examples, batch_size, shuffle, seed: As for `from_texts`.

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
    label_columns = _label_columns(label_column, label_mode)
    _check_options(
        label_mode,
        label_separator,
        validation_split,
        validation_frame is not None,
        max_examples,
    )
    train = _frame_rows(frame, text_column, label_columns, "frame", pd)
    validation = None
    if validation_frame is not None:
        validation = _frame_rows(
            validation_frame, text_column, label_columns, "validation_frame", pd
        )
    return _build(
        train,
        validation,
        label_mode=label_mode,
        label_separator=label_separator,
        class_names=class_names,
        clean=clean,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        validation_split=validation_split,
        max_examples=max_examples,
    )


# --------------------------------------------------------------------------
# TensorFlow Datasets.


def from_tfds_text(
    name,
    *,
    split="train",
    data_dir=None,
    text_key="text",
    label_key="label",
    download=True,
    clean=None,
    batch_size=32,
    shuffle=True,
    seed=1337,
):
    """Load a text classification dataset from TensorFlow Datasets.

    Args:
        name: TFDS dataset name, e.g. "imdb_reviews" or "glue/sst2" (whose
            text key is "sentence").
        split: A split ("train", "train[:90%]") or a list of splits; a list
            returns a tuple of datasets, and only the first one is shuffled.
        data_dir: Where TFDS stores data (TFDS default when None).
        text_key: Feature holding the text (a `tfds.features.Text`).
        label_key: Feature holding the label (a `tfds.features.ClassLabel`).
        download: Whether TFDS may download and prepare the data.
        clean: None, cleaning step names, a `TextCleaner` or a function on
            tf.string tensors, applied to every split.
        batch_size: Number of texts per batch.
        shuffle: Whether to shuffle the first split.
        seed: Seed for shuffling.

    Returns:
        One dataset, or a tuple with one dataset per split.

    Raises:
        DataError: if the features lack `text_key` / `label_key`, the text
            feature is not text, the label feature has no class names, or
            there is a single class.

    Example:
        >>> train, val = from_tfds_text("glue/sst2", text_key="sentence",
        ...                             split=["train", "validation"])
    """
    import tensorflow_datasets as tfds  # slow to import

    cleaner = _resolve_cleaner(clean)
    splits = [split] if isinstance(split, str) else list(split)
    datasets, info = tfds.load(
        name,
        split=splits,
        data_dir=data_dir,
        with_info=True,
        download=download,
        shuffle_files=shuffle,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
    )
    features = info.features
    for key in (text_key, label_key):
        if key not in features.keys():
            raise DataError(
                f"dataset {name!r} has no feature {key!r}; its features are "
                f"{sorted(features.keys())}: pass text_key= / label_key=."
            )
    if not isinstance(features[text_key], tfds.features.Text):
        raise DataError(
            f"feature {text_key!r} of dataset {name!r} is not text (it is a "
            f"{type(features[text_key]).__name__}): pass the text_key of a Text feature."
        )
    class_names = getattr(features[label_key], "names", None)
    if not class_names:
        raise DataError(
            f"feature {label_key!r} of dataset {name!r} has no class names (it "
            f"is not a ClassLabel): pass the label_key of a ClassLabel feature."
        )
    check_class_count(class_names, f"dataset {name!r}")
    finished = []
    for i, (dataset, split_name) in enumerate(zip(datasets, splits)):
        num_examples = info.splits[split_name].num_examples
        dataset = dataset.map(
            lambda example: (example[text_key], tf.cast(example[label_key], tf.int32))
        )
        finished.append(
            _finalize_text(
                dataset,
                num_examples=num_examples,
                class_names=class_names,
                num_classes=len(class_names),
                batch_size=batch_size,
                cleaner=cleaner,
                # TFDS shuffles when preparing; a buffer of short strings is cheap.
                shuffle_buffer=min(num_examples, 10_000) if shuffle and i == 0 else 0,
                seed=seed,
            )
        )
    return finished[0] if isinstance(split, str) else tuple(finished)


# --------------------------------------------------------------------------
# Sequence length for transformer backbones.


def _collect_texts(texts):
    """A list of Python strings from a list, an array or a (batched) dataset."""
    if not isinstance(texts, tf.data.Dataset):
        return [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts]
    if isinstance(texts.element_spec, tuple):  # (texts, labels) batches
        texts = texts.map(lambda text, *_: text)
    if texts.element_spec.shape.rank == 1:
        texts = texts.unbatch()
    return [
        text.decode("utf-8")
        for batch in texts.batch(1024).as_numpy_iterator()
        for text in batch
    ]


def _token_counts(token_ids):
    if isinstance(token_ids, tf.RaggedTensor):
        return token_ids.row_lengths().numpy()
    if isinstance(token_ids, list):  # keras-hub returns lists when called eagerly
        return np.array([len(ids) for ids in token_ids])
    raise ValueError(
        f"the tokenizer returned a {type(token_ids).__name__}, not ragged token "
        f"ids: use a tokenizer without a fixed sequence_length."
    )


def choose_sequence_length(
    texts, tokenizer, *, percentile=95, maximum=None, sample_size=2000, seed=0
):
    """Pick a sequence length that fits most texts without wasting padding.

    Tokenizes a seeded random sample of the texts and returns the given
    percentile of the token counts, plus 2 for the [CLS] and [SEP] tokens,
    at least 8 and at most `maximum`.

    Args:
        texts: A list or array of strings, or a dataset from these loaders
            (batches of `(texts, labels)`, read to the end) or of strings.
        tokenizer: A keras-hub tokenizer (or any callable mapping a tf.string
            tensor to ragged token ids), e.g.
            `keras_hub.models.BertTokenizer.from_preset(...)`.
        percentile: Percentile of the token counts to cover, in [0, 100].
        maximum: Optional upper bound, e.g. the backbone's
            `max_sequence_length`.
        sample_size: Number of texts to tokenize.
        seed: Seed for the sample.

    Returns:
        The sequence length, an int.

    Example:
        >>> length = choose_sequence_length(train, tokenizer, maximum=512)
        >>> preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        ...     tokenizer, sequence_length=length)
    """
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile!r}.")
    texts = _collect_texts(texts)
    if not texts:
        raise DataError(
            "choose_sequence_length got no texts: pass a non-empty list or dataset."
        )
    if len(texts) > sample_size:
        chosen = np.random.default_rng(seed).choice(
            len(texts), sample_size, replace=False
        )
        texts = [texts[i] for i in chosen]
    counts = _token_counts(tokenizer(tf.constant(texts, dtype=tf.string)))
    special_tokens = 2  # [CLS] and [SEP]
    length = max(int(math.ceil(np.percentile(counts, percentile))) + special_tokens, 8)
    return min(length, int(maximum)) if maximum is not None else length
