"""Text datasets from CSV or TSV files, one example per row."""

import csv
import os
import warnings

import numpy as np

from keras_transfer.data.text_datasets import label_columns_of, load_text
from keras_transfer.data.text_rows import Rows, check_texts
from keras_transfer.errors import DataError


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
            if rows and quoting != csv.QUOTE_NONE and reader.line_num > lines[-1]:
                _check_last_row_closed(path, file, delimiter, lines[-1])
    except UnicodeDecodeError as error:
        raise DataError(
            f"text file {path!r} is not UTF-8 text ({error.reason} at byte {error.start}): save it as UTF-8."
        ) from None
    except csv.Error as error:
        raise DataError(f"text file {path!r} is not valid CSV: {error}.") from None
    return rows, lines, delimiter


def _check_last_row_closed(path, file, delimiter, first_line):
    """Raise when the last row runs to the end of the file inside a quote: csv reads it all as one field."""
    file.seek(0)
    tail = "".join(line for number, line in enumerate(file, start=1) if number >= first_line)
    try:
        for _ in csv.reader(tail.splitlines(keepends=True), delimiter=delimiter, strict=True):
            pass
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise DataError(
                f'line {first_line} of {path!r} opens a quote (") that is never closed: csv reads '
                f"everything after it, to the end of the file, as one text. Close the quote, or "
                f'double it ("") inside a quoted text.'
            ) from None


def _is_number(value):
    try:
        float(value)
    except ValueError:
        return False
    return True


def _header_reason(rows, label_indexes):
    """Why the first of `rows` looks like a header row (with int columns), or None.

    Its label cell is no label (not a number where every other row's label
    is one), or it names a class no other row has while the other rows'
    labels are a small set of classes.
    """
    if len(rows) < 3 or any(index >= len(rows[0]) for index in label_indexes):
        return None
    if any(len(cell.strip()) > 64 for cell in rows[0]):
        return None  # column names are short
    reasons = []
    for index in label_indexes:
        first = rows[0][index].strip()
        others = [row[index].strip() for row in rows[1:] if index < len(row)]
        if not first or not others or _is_number(first):
            return None
        if all(_is_number(value) for value in others):
            reasons.append(f"its label {first!r} is not a number, unlike every other row's")
        elif first not in set(others) and len(set(others)) <= max(2, len(others) // 2):
            reasons.append(f"its label {first!r} is in no other row, whose labels are {len(set(others))} classes")
        else:
            return None
    return "; ".join(reasons)


def _read_text_file(path, text_column, label_columns, header, delimiter, what):
    """Read one CSV/TSV file into `Rows`."""
    path = os.fspath(path)
    _check_file(path)
    rows, lines, delimiter = _read_table(path, delimiter)
    source = f"{what} {path!r}"
    if not rows:
        raise DataError(f"{source} is empty: it needs one row per example with a text and a label.")
    columns = [text_column, *label_columns]
    named = [column for column in columns if isinstance(column, str)]
    first_row = [field.strip() for field in rows[0]]
    missing = [name for name in named if name not in first_row]
    if named and header is False:
        raise DataError(
            f"column names {named} need a header row, but header=False for {source}: pass 0-based int column indexes."
        )
    if missing:
        raise DataError(
            f"column(s) {missing} not found in the header of {source}; available "
            f"columns: {first_row}. If the file has no header row, pass "
            f"header=False and 0-based int column indexes."
        )
    skip_header = header is True or (header == "auto" and bool(named))
    if header == "auto" and not named:
        reason = _header_reason(rows, [column for column in label_columns if not isinstance(column, str)])
        if reason:
            skip_header = True
            warnings.warn(
                f"reading the first row of {source} ({', '.join(map(repr, first_row))}) as a header: "
                f"{reason}. Pass header=False (--header no) to read it as an example.",
                stacklevel=6,
            )
    if skip_header:
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
    return Rows(texts, labels, locate, source)


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
            takes the first row for a header (with a warning) when its label
            is not a number while all others are, or is a label no other row
            has while theirs are a few classes; pass header=True or False to
            decide.
        delimiter: Field separator, or "auto": tab for .tsv, comma for .csv,
            otherwise tab when the first line has one, else sniffed from
            ",;|". Tab-separated files are read without quote handling
            (texts may start with quotes); other files use CSV quoting.
        validation_file: Optional second file, read with the same columns
            and options. Each file detects its own header, so an int column
            works when the two headers name the text column differently.
        validation_split: Optional fraction in (0, 1) of the rows to hold out
            for validation: seeded, stratified by class for "int" labels and
            random for the others (see
            `keras_transfer.data.splits.split_train_validation`); the last
            rows of each class when `shuffle=False`. Not together with
            `validation_file`.
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
    label_columns = label_columns_of(label_column, label_mode)
    if header not in (True, False, "auto"):
        raise DataError(f"header must be True, False or 'auto', got {header!r}.")
    for column in [text_column, *label_columns]:
        if (
            not isinstance(column, (str, int, np.integer))
            or isinstance(column, bool)
            or (not isinstance(column, str) and column < 0)
        ):
            raise DataError(f"columns must be header names or 0-based int indexes, got {column!r}.")

    def read(file, what):
        return _read_text_file(file, text_column, label_columns, header, delimiter, what)

    def read_rows():
        train = read(path, "file")
        if validation_file is None:
            return train, None
        return train, read(validation_file, "validation file")

    return load_text(
        read_rows,
        has_validation_source=validation_file is not None,
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


def read_column(path, column, *, header="auto", delimiter="auto"):
    """One column of a CSV or TSV file as a list of str (e.g. labels to look at before loading).

    Reads the file as `text_file` does (the same `header` and `delimiter` rules).

    Raises:
        DataError: as `text_file`, for a missing file or column, or a short row.
    """
    return list(_read_text_file(path, column, [], header, delimiter, "file").texts)


def read_texts(path, *, text_column, header="auto", delimiter="auto"):
    """The texts of a CSV or TSV file's `text_column`, as a list of str, for unlabelled data.

    Reads the file as `text_file` does and checks every text as it does, without a label column.

    Raises:
        DataError: as `text_file`, for a missing file or column, or an empty text.
    """
    rows = _read_text_file(path, text_column, [], header, delimiter, "file")
    check_texts(rows)
    return list(rows.texts)
