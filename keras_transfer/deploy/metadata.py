"""The JSON metadata written beside every export, and where a task's preprocessing assets go.

Beside a `.tflite` file lies `<path>.json` (`model.tflite.json`); inside a
SavedModel folder, `metadata.json`. It holds the format, inputs,
quantization, class names and head, and the caller's own entries.
"""

import json
import os

import tensorflow as tf

from keras_transfer import atomic_files as files


def metadata_path(path):
    """Where the metadata of the export at `path` lies: `<path>.json`, or `<folder>/metadata.json`."""
    path = os.fspath(path)
    if path.endswith(".tflite"):
        return path + ".json"
    return os.path.join(path, "metadata.json")


ASSETS_FOLDER = "preprocessor"


def assets_path(path):
    """Where a task's preprocessing (e.g. a text model's tokenizer) is saved beside its export."""
    path = os.fspath(path)
    if path.endswith(".tflite"):
        return path[: -len(".tflite")] + "_" + ASSETS_FOLDER
    return os.path.join(path, ASSETS_FOLDER)


def export_assets(model, folder):
    """Lets a keras_transfer task save what its export needs in `folder`; returns metadata entries."""
    write = getattr(model, "export_assets", None)
    if write is None:
        return {}
    with files.atomic_folder(folder, skip_empty=True) as temporary:
        entries = write(temporary)
        wrote = bool(os.listdir(temporary))
    return {**entries, "preprocessor": os.path.basename(folder)} if wrote else entries


def read_metadata(path):
    """The metadata dict saved beside the export at `path`."""
    with open(metadata_path(path)) as file:
        return json.load(file)


def export_metadata(model, format, path, signature, quantization, extra):
    """The metadata dict of an export; TypeError, before anything is written, if `extra` is not JSON."""
    info = {
        "format": format,
        "model": os.path.basename(os.path.normpath(path)),
        "quantization": quantization.get_config(),
        "inputs": [
            {"name": spec.name, "shape": list(spec.shape.as_list()), "dtype": spec.dtype.name}
            for spec in tf.nest.flatten(signature)
        ],
        "output": "output_0",
    }
    class_names = getattr(model, "class_names", None)
    if class_names is not None:
        info["class_names"] = [str(name) for name in class_names]
    head = getattr(model, "head", None)
    if hasattr(head, "get_config"):  # lets evaluation read the task of a bare .tflite file
        info["head"] = head.get_config()
    info.update(extra or {})
    try:
        json.dumps(info)
    except TypeError as error:  # fail before writing anything
        raise TypeError(f"metadata must be JSON-serializable: {error}") from error
    return info
