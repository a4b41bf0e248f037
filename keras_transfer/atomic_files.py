"""Writing files atomically, so that nothing the user had is ever half-overwritten."""

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; moves it into place only on success.

    The temporary file keeps `path`'s extension, which Keras needs to pick
    the file format.
    """
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    _, dot, extensions = os.path.basename(path).partition(".")
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=dot + extensions)
    os.close(handle)
    os.remove(temporary)  # writers such as Keras refuse to replace an existing file
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json(data, path):
    """Writes `data` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w") as file:
            json.dump(data, file, indent=2)
            file.write("\n")


def save_model(model, path):
    """Saves a Keras model to `path` (e.g. `model.keras`), atomically."""
    with atomic_path(path) as temporary:
        model.save(temporary)
