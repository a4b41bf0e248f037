"""Writing files and folders atomically, so that nothing the user had is ever half-overwritten.

Everything is written under a temporary name beside its destination and
renamed into place only once complete; an existing destination is replaced
only when the caller allows it (`refuse_to_overwrite`) and is restored if the
rename fails (`replace`).
"""

import contextlib
import json
import os
import shutil
import tempfile


def refuse_to_overwrite(paths, overwrite):
    """Raises FileExistsError naming the first of `paths` that exists, unless `overwrite`."""
    existing = [os.fspath(path) for path in paths if os.path.lexists(path)]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]!r} already exists: pass overwrite=True to replace it.")


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary file path beside `path`; moves it into place only on success.

    The temporary file keeps `path`'s extension, which Keras needs to pick
    the file format (and matplotlib the image format).
    """
    folder = parent_folder(path)
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


@contextlib.contextmanager
def atomic_folder(path, *, skip_empty=False):
    """Yields an empty temporary folder beside `path`; moves it into place on success.

    An existing `path` is replaced whole (see `replace`). With `skip_empty`, a
    folder left empty is discarded and `path` left as it was.
    """
    temporary = tempfile.mkdtemp(dir=parent_folder(path), prefix=".tmp-")
    try:
        yield temporary
        if not (skip_empty and not os.listdir(temporary)):
            replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            shutil.rmtree(temporary)


def replace(new, path):
    """Moves the file or folder `new` to `path`; what was at `path` is put back if the move fails."""
    if not os.path.lexists(path):
        os.replace(new, path)
        return
    # os.replace cannot put a folder over a non-empty one: move the old one aside first.
    aside = tempfile.mkdtemp(dir=parent_folder(path), prefix=".old-")
    old = os.path.join(aside, "old")
    os.replace(path, old)
    try:
        os.replace(new, path)
    except OSError:
        os.replace(old, path)
        raise
    finally:
        shutil.rmtree(aside)


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


def parent_folder(path):
    """The folder `path` goes in, created if missing."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    return folder


def check_writable(folder):
    """Raises PermissionError now, not after hours of training, when files cannot be created in `folder`.

    `folder` need not exist yet: its nearest existing ancestor must be a
    folder in which a file can be created (probed with a temporary file,
    which also catches read-only file systems that `os.access` misses).
    """
    existing = os.path.abspath(folder)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise PermissionError(f"{folder!r} cannot be created: {existing!r} is a file, not a folder.")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".probe-"):
            pass
    except OSError as error:
        raise PermissionError(f"{folder!r} cannot be written ({error.strerror or error}).") from error
