"""Rows of texts and raw labels read from a source, and the checks on their texts."""

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from keras_transfer.errors import DataError


class Rows(NamedTuple):
    texts: list  # one Python str per example
    labels: list  # raw labels: str / int / float / list of names / row of floats
    locate: Callable[[int], str]  # row position -> "line 7 of 'train.csv'"
    source: str  # the whole source, for messages: "file 'train.csv'"


def is_missing(value):
    """None, NaN or pandas.NA: how pandas and friends mark a missing value."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType"


def check_texts(rows):
    """Every text must be a non-blank string, and not every text a number."""
    if not rows.texts:
        raise DataError(f"{rows.source} has no examples: it needs one row per example with a text and a label.")
    for i, text in enumerate(rows.texts):
        if is_missing(text):
            raise DataError(f"{rows.locate(i)} has no text (it is missing): fill it in or drop the row.")
        if not isinstance(text, str):
            raise DataError(
                f"{rows.locate(i)} has a {type(text).__name__} {text!r} where a "
                f"text belongs: texts must be strings (did you swap the text and "
                f"label columns?)."
            )
        if not text.strip():
            raise DataError(f"{rows.locate(i)} has an empty text: remove the row or fill in its text.")
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


def present(*sources):
    return [rows for rows in sources if rows is not None]


def subset_indices(count, max_examples, seed):
    """A seeded random subset of at most `max_examples` of `count` rows, in order."""
    if max_examples is None or count <= max_examples:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, max_examples, replace=False))
