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


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency that is not installed; the message names the extra that installs it."""


# The optional dependencies: module -> (pip package, the keras-transfer extra that installs it).
# The base install (TensorFlow, Keras, LiteRT, numpy, pillow, matplotlib, scikit-learn) covers images.
EXTRAS = {
    "keras_hub": ("keras-hub", "text"),
    "tensorflow_model_optimization": ("tensorflow-model-optimization", "tfmot"),
    "tf_keras": ("tf-keras", "tfmot"),
    "tensorflow_datasets": ("tensorflow-datasets", "tfds"),
    "litert_quantizer": ("litert-quantizer", "quantizer"),
}


def import_extra(module_name, feature):
    """`import module_name` for `feature`, or a `MissingExtraError` naming the extra to install.

    >>> keras_hub = import_extra("keras_hub", "TextClassifier")  # doctest: +SKIP
    MissingExtraError: TextClassifier needs keras-hub (No module named 'keras_hub'): pip install "keras-transfer[text]"
    """
    import importlib

    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:  # the package or one of its own dependencies is missing
        raise _missing_extra(module_name, feature, error) from error


def require_extra(module_name, feature):
    """A `MissingExtraError` now if `module_name` is not installed, without importing it (a check before work)."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module_name) is not None
    except ImportError:
        found = False
    if not found:
        raise _missing_extra(module_name, feature, f"No module named {module_name!r}")


def extra_missing_from(error, feature):
    """A `MissingExtraError` for `feature` if `error` (or one it was raised from) is an optional package
    missing, e.g. Keras loading a saved text model without keras-hub; else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, MissingExtraError):
            return error
        if isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] in EXTRAS:
            return _missing_extra(error.name, feature, error)
        error = error.__cause__ or error.__context__
    return None


def _missing_extra(module_name, feature, reason):
    package, extra = EXTRAS[module_name.split(".")[0]]
    return MissingExtraError(
        f'{feature} needs {package} ({reason}): pip install "keras-transfer[{extra}]"', name=module_name
    )


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
