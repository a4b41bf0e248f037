"""Every exception keras_transfer raises on purpose; each message says what is wrong and how to fix it."""


class DataError(ValueError):
    """Bad input data."""


class UnknownBackboneError(ValueError):
    """A backbone name that is neither in the registry nor a keras-hub preset or folder."""


class UnsupportedLayerError(ValueError):
    """The model holds layers that have no tf_keras twin; the message lists them all."""


class ModelFileError(ValueError):
    """A model file that cannot be read: truncated, corrupted, or not one keras_transfer wrote."""


class WeightsUnavailableError(ValueError):
    """Pretrained weights that could not be downloaded; the message says how to give them instead."""


def is_download_failure(error):
    """Whether `error` (or an exception it was raised from) is a failed download: no network, DNS, HTTP.

    Keras raises a plain `Exception("URL fetch failure on ...")` from the `urllib` error; keras-hub's
    hubs (Kaggle, Hugging Face) raise `requests`/`urllib3` connection errors.
    """
    import socket
    import urllib.error

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (urllib.error.URLError, ConnectionError, TimeoutError, socket.gaierror)):
            return True
        if str(error).startswith(("URL fetch failure", "HTTP failure")):
            return True
        module = type(error).__module__.split(".")[0]
        if module in ("requests", "urllib3") and any(
            word in type(error).__name__ for word in ("Connection", "Timeout", "MaxRetry", "NameResolution")
        ):
            return True
        error = error.__cause__ or error.__context__
    return False
