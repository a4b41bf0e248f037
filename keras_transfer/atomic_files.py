"""Writing files and folders atomically, so that nothing the user had is ever half-overwritten.

Everything is written under a temporary name beside its destination and
renamed into place only once complete; an existing destination is replaced
only when the caller allows it (`refuse_to_overwrite`) and is restored if the
rename fails (`replace`, `replace_together`).

A run of the command line that writes an output folder OUT (train,
train-text, optimize) writes into `OUT.partial` (a `RunFolder`) and moves it
to OUT as a whole when everything is written; a manifest in the folder
(`.keras-transfer.json`) names the files keras-transfer wrote, so that
`--overwrite` replaces a previous run whole and never deletes a file it did
not write.
"""

import contextlib
import json
import os
import shutil
import tempfile

# The manifest of a finished run folder: the files keras-transfer wrote there.
RUN_MANIFEST = ".keras-transfer.json"
# Beside OUT while a run writes it; kept after an interruption, to resume from.
PARTIAL_SUFFIX = ".partial"
# The state of a run in progress, inside OUT.partial: its options and the files written so far.
RUN_STATE = "run.json"
# What a run folder without a manifest (written before manifests existed) may hold.
KNOWN_RUN_FILES = (
    "model.keras",
    "report.json",
    "training_curves.png",
    "confusion_matrix.png",
    "lr_finder.png",
    "model.tflite",
    "model.tflite.json",
)
# What a SavedModel export writes in its folder.
SAVED_MODEL_FILES = ("saved_model.pb", "variables", "assets", "fingerprint.pb", "metadata.json", "preprocessor")


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
            os.chmod(temporary, normal_mode(folder=True))  # mkdtemp makes it 0700
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
    except BaseException:  # also Ctrl-C: the old one is never lost
        if not os.path.lexists(path):
            os.replace(old, path)
        raise
    finally:
        shutil.rmtree(aside)


def replace_together(pairs):
    """Moves each `(new, path)` into place, all or none: on failure, every `path` is as it was.

    A `new` that does not exist removes what is at its `path` (a set of
    files is replaced as a set: no stale member stays beside the others).
    """
    pairs = [(os.fspath(new) if new is not None else None, os.fspath(path)) for new, path in pairs]
    if not pairs:
        return
    aside = tempfile.mkdtemp(dir=parent_folder(pairs[0][1]), prefix=".old-")
    moved_aside, moved_in = [], []
    try:
        for index, (_, path) in enumerate(pairs):
            if os.path.lexists(path):
                old = os.path.join(aside, str(index))
                os.replace(path, old)
                moved_aside.append((old, path))
        for new, path in pairs:
            if new is not None and os.path.lexists(new):
                os.replace(new, path)
                moved_in.append(path)
    except BaseException:
        for path in moved_in:
            _remove(path)
        for old, path in moved_aside:
            os.replace(old, path)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def normal_mode(folder=False):
    """The mode a new file (0o666) or folder (0o777) gets under the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


def foreign_files(folder, known=KNOWN_RUN_FILES):
    """The names in `folder` that keras-transfer did not write, sorted (folders end with '/').

    A folder with a manifest (`RUN_MANIFEST`) holds what it lists; one without
    (written before manifests existed) may hold the `known` names.
    """
    ours = set(known)
    manifest = os.path.join(folder, RUN_MANIFEST)
    if os.path.isfile(manifest):
        try:
            with open(manifest) as file:
                ours = set(json.load(file)["files"]) | {RUN_MANIFEST}
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an unreadable manifest: only the known names count as ours
    return sorted(
        name + ("/" if os.path.isdir(os.path.join(folder, name)) else "")
        for name in os.listdir(folder)
        if name not in ours
    )


class OutputError(Exception):
    """An output folder that cannot be written as asked; raised before any work, nothing changed."""


class RunFolder:
    """The output folder of a run, written in `OUT.partial` and moved to OUT whole when complete.

    `check()` (before any work) refuses what would lose data: a non-empty OUT
    without `overwrite`; with `overwrite`, an OUT holding files keras-transfer
    did not write (named in the error); an interrupted run in OUT.partial
    unless `resume` (or `overwrite`, which discards it); `resume` with other
    options than the interrupted run's, or with nothing to resume. `begin()`
    creates OUT.partial (mode as any new folder) with `run.json`, the run's
    options and state; `file(name)` is the path to write an output to;
    `finish()` drops the resume state, writes the manifest and replaces OUT
    with OUT.partial (a previous run stays whole until then). After an
    interruption OUT.partial stays: `backup_dir` holds the training state
    (see `fine_tune(backup_dir=...)`), `checkpoint_dir` the best model so far.

    Args:
        path: OUT.
        overwrite: replace a previous run in OUT (or discard an interrupted one).
        resume: continue the interrupted run in OUT.partial.
        options: the run's options (JSON); `resume` needs the same.
        command: the command's name, for the manifest.
    """

    BACKUP = "backup"
    CHECKPOINTS = "checkpoints"

    def __init__(self, path, *, overwrite=False, resume=False, options=None, command=None):
        self.path = os.path.normpath(os.fspath(path))
        self.partial = self.path + PARTIAL_SUFFIX
        self.overwrite = overwrite
        self.resume = resume
        self.options = json.loads(json.dumps(options or {}))
        self.command = command
        self.state = {}
        self.files = []
        self.discarded = False

    @property
    def backup_dir(self):
        return os.path.join(self.partial, self.BACKUP)

    @property
    def checkpoint_dir(self):
        return os.path.join(self.partial, self.CHECKPOINTS)

    @property
    def resuming(self):
        return self.resume and os.path.isfile(os.path.join(self.partial, RUN_STATE))

    def check(self):
        """Raises OutputError before any work when the run would lose or mix up data; changes nothing."""
        if os.path.lexists(self.path) and not os.path.isdir(self.path):
            raise OutputError(f"--output {self.path!r} is a file: give a folder.")
        state_file = os.path.join(self.partial, RUN_STATE)
        if os.path.lexists(self.partial):
            if not os.path.isfile(state_file):
                raise OutputError(
                    f"{self.partial!r} exists but holds no keras-transfer run: move it away or choose another --output."
                )
            if self.resume:
                self._check_same_options(state_file)
            elif not self.overwrite:
                raise OutputError(
                    f"{self.partial!r} holds an interrupted run: pass --resume to continue it, or --overwrite "
                    "to discard it and start again (or remove it yourself)."
                )
        elif self.resume:
            raise OutputError(f"--resume: there is no interrupted run to continue ({self.partial!r} does not exist).")
        if os.path.isdir(self.path) and os.listdir(self.path):
            if not self.overwrite:
                raise OutputError(
                    f"--output {self.path!r} is not empty; pass --overwrite to replace the run in it, "
                    "or choose a new folder."
                )
            foreign = foreign_files(self.path)
            if foreign:
                raise OutputError(
                    f"--overwrite replaces a previous run as a whole, but --output {self.path!r} holds files "
                    f"keras-transfer did not write: {', '.join(foreign)}. Move them out or choose another folder; "
                    "nothing was changed."
                )

    def _check_same_options(self, state_file):
        with open(state_file) as file:
            saved = json.load(file)
        before = saved.get("options", {})
        names = set(before) | set(self.options)
        differing = sorted(name for name in names if before.get(name) != self.options.get(name))
        if differing:
            changes = ", ".join(
                f"--{name.replace('_', '-')} {before.get(name)!r} -> {self.options.get(name)!r}" for name in differing
            )
            raise OutputError(
                f"--resume continues the interrupted run in {self.partial!r} with its own options, but these "
                f"differ: {changes}. Give the same options, or drop --resume and pass --overwrite to start again."
            )

    def begin(self):
        """Creates OUT.partial, or reopens it to resume; returns self."""
        if self.resuming:
            with open(os.path.join(self.partial, RUN_STATE)) as file:
                saved = json.load(file)
            self.state = saved.get("state", {})
            self.files = saved.get("files", [])
            return self
        if os.path.lexists(self.partial):  # an interrupted run, discarded by --overwrite (see check)
            shutil.rmtree(self.partial)
            self.discarded = True
        parent_folder(self.partial)
        os.mkdir(self.partial)  # the mode of any new folder, unlike mkdtemp's 0700
        self.save_state()
        return self

    def save_state(self):
        """Writes `run.json`: the options, the files written so far and `state` (JSON)."""
        data = {"tool": "keras-transfer", "command": self.command, "options": self.options}
        write_json({**data, "files": self.files, "state": self.state}, os.path.join(self.partial, RUN_STATE))

    def file(self, name):
        """The path to write the output `name` to (in OUT.partial); recorded in the manifest."""
        if name not in self.files:
            self.files.append(name)
            self.save_state()
        return os.path.join(self.partial, name)

    def finish(self):
        """Drops the resume state, writes the manifest and moves OUT.partial to OUT, replacing a previous run whole."""
        if os.path.isdir(self.path) and os.listdir(self.path):
            foreign = foreign_files(self.path)
            if foreign or not self.overwrite:  # someone wrote there while the run went on
                raise OutputError(
                    f"{self.path!r} changed during the run ({', '.join(foreign) or 'files appeared'}): "
                    f"the new run is left in {self.partial!r}; nothing in {self.path!r} was changed."
                )
        for name in (self.BACKUP, self.CHECKPOINTS):
            shutil.rmtree(os.path.join(self.partial, name), ignore_errors=True)
        manifest = {"tool": "keras-transfer", "command": self.command, "files": sorted(self.files)}
        write_json(manifest, os.path.join(self.partial, RUN_MANIFEST))
        os.remove(os.path.join(self.partial, RUN_STATE))
        os.chmod(self.partial, normal_mode(folder=True))
        replace(self.partial, self.path)

    def finished_files(self):
        """The outputs in OUT.partial (for messages after an interruption)."""
        return [name for name in self.files if os.path.exists(os.path.join(self.partial, name))]


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
