"""Every exception keras_transfer raises on purpose; each message says what is wrong and how to fix it."""


class DataError(ValueError):
    """Bad input data."""


class UnknownBackboneError(ValueError):
    """A backbone name that is neither in the registry nor a keras-hub preset or folder."""


class UnsupportedLayerError(ValueError):
    """The model holds layers that have no tf_keras twin; the message lists them all."""
