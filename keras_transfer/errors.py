"""Every exception keras_transfer raises on purpose; each message says what is wrong and how to fix it."""


class DataError(ValueError):
    """Bad input data."""


class UnknownBackboneError(ValueError):
    """A backbone name that is neither in the registry nor a keras-hub preset or folder."""


class UnsupportedLayerError(ValueError):
    """The model holds layers that have no tf_keras twin; the message lists them all."""


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


def check_class_count(class_names, where):
    if len(class_names) < 2:
        raise DataError(
            f"need at least 2 classes for classification, but {where} has "
            f"{len(class_names)}: {list(class_names)}. Add examples of at "
            f"least one more class."
        )
