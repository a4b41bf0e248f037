"""The two-phase procedure behind `TransferModel.fine_tune`: a head on a frozen backbone, then fine-tuning.

The recipe (`keras_transfer.finetune.recipes.Recipe`) says what to do; this
module does it: BatchNormalization stays in inference mode, the model is
recompiled after every change of `trainable`, the second phase continues the
epoch count of the first, and with LoRA the second phase trains only the
adapters and the head.

With a `backup_dir`, an interrupted `fine_tune` (Ctrl-C, a killed job) can be
called again to continue: each phase runs with Keras's `BackupAndRestore`
(`backup_dir/head`, `backup_dir/finetune`: weights, optimizer state and
epoch after every epoch), every epoch's logs are kept (`<phase>.epochs.json`)
so that the history is whole, and a finished phase leaves its weights and
history (`<phase>.done.npz`, `<phase>.done.json`), so a second call skips it.
The saved state is every variable as it is (LoRA adapters unmerged, the
layers' random-seed states, the optimizer's), so with a fixed data order a
resumed run ends where an uninterrupted one would. Two limits: an
interrupted phase of progressive unfreezing starts again from its beginning,
and early stopping starts counting its patience afresh.
"""

import contextlib
import dataclasses
import difflib
import json
import os
import shutil
import tempfile
import time

import keras
import numpy as np

from keras_transfer import atomic_files as files
from keras_transfer.distribute import sharding
from keras_transfer.distribute.strategy import is_chief, worker_count, worker_index
from keras_transfer.finetune.best_weights import BestWeights, StopWhenNotBest
from keras_transfer.finetune.divergence import StopOnNaN
from keras_transfer.finetune.epoch_log import EpochLogMixin
from keras_transfer.finetune.feature_cache import FeatureCache
from keras_transfer.finetune.freezing import freeze, parameter_counts
from keras_transfer.finetune.frozen_cut import FrozenCut
from keras_transfer.finetune.layerwise import depth_decay, layerwise_learning_rates
from keras_transfer.finetune.linear_probe import fit_linear_probe
from keras_transfer.finetune.progress import PhaseProgress, announce, counted, format_learning_rate
from keras_transfer.finetune.progressive import ProgressiveUnfreezing
from keras_transfer.finetune.schedules import OneCycle, warmup_cosine


@dataclasses.dataclass
class FineTuneHistory:
    """The histories of both phases of `fine_tune`.

    `head` is the frozen-backbone phase, `finetune` the unfrozen phase (None
    when it did not run); `seconds` holds each phase's wall time; `diverged`
    says where the loss turned NaN or infinite (training then stopped with
    the last good weights), or is None. With validation data, `best` is the
    epoch whose weights the model was left with, the best of both phases:
    `{"phase", "epoch", "val_accuracy", "val_loss"}` (epochs counted from 1
    over both phases). `finetune_stopped` says why fine-tuning ended before
    its last epoch (the recipe's `finetune_patience`), or is None.
    `validation_outputs` is `(labels, outputs)` of the model it leaves on the
    validation data, computed from cached features where they still hold
    (for `evaluate_model(..., predictions=...)`), or None.
    """

    head: keras.callbacks.History | None
    finetune: keras.callbacks.History | None
    seconds: dict
    diverged: str | None = None
    best: dict | None = None
    finetune_stopped: str | None = None
    validation_outputs: tuple | None = None

    @property
    def phases(self):
        """`(name, History)` pairs of the phases that ran."""
        return [
            (name, history)
            for name, history in (("head", self.head), ("finetune", self.finetune))
            if history is not None
        ]

    def merged(self):
        """One `{metric: [values]}` dict over both phases, epochs in order."""
        merged = {}
        for _, history in self.phases:
            for key, values in history.history.items():
                merged.setdefault(key, []).extend(float(v) for v in values)
        return merged

    def plot(self, path=None):
        """Loss and accuracy over both phases, fine-tuning's start marked: `evaluation.plot_training_curves`."""
        from keras_transfer.evaluation.plots import plot_training_curves

        return plot_training_curves(self, path)


def _history(epochs):
    """A `keras.callbacks.History` of `{epoch: logs}`, as `fit` returns it."""
    history = keras.callbacks.History()
    history.epoch = sorted(int(epoch) for epoch in epochs)
    history.history = {}
    for epoch in history.epoch:
        for key, value in epochs[str(epoch)].items():
            history.history.setdefault(key, []).append(value)
    return history


class _EpochLog(EpochLogMixin, keras.callbacks.Callback):
    """Keeps every epoch's logs in a JSON file, so that a resumed phase's history starts at its first epoch."""

    def history(self):
        return _history(self.epochs)


class _BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's `BackupAndRestore`, keeping every variable as it is (model and optimizer) in one file.

    Keras's weights file folds LoRA adapters into the kernels and leaves out
    the random-seed states (dropout), from which a resumed run could not go on
    as the interrupted one would have; one `.npz`
    written atomically (weights, optimizer variables and the epoch together)
    also cannot be left half-written.
    """

    def __init__(self, backup_dir, *, write=True):
        # A reader (a non-chief worker) leaves the folder alone at the end too.
        super().__init__(backup_dir, delete_checkpoint=write)
        self.write = bool(write)
        self._state_path = os.path.join(backup_dir, "latest.state.npz")

    def on_train_begin(self, logs=None):
        self._load_model()

    def _load_model(self):
        if not os.path.isfile(self._state_path):
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        variables = _state_variables(self.model)
        with np.load(self._state_path) as saved:
            if int(saved["count"]) != len(variables):
                raise ValueError(
                    f"The backup in {self.backup_dir!r} holds {int(saved['count'])} variables, but the model and "
                    f"optimizer have {len(variables)}: was it made by another model or recipe?"
                )
            for index, variable in enumerate(variables):
                variable.assign(saved[f"v{index}"])
            self.model._initial_epoch = int(saved["epoch"])

    def _save_model(self):
        if not self.write:
            return
        variables = _state_variables(self.model)
        arrays = {f"v{index}": np.asarray(variable) for index, variable in enumerate(variables)}
        os.makedirs(self.backup_dir, exist_ok=True)
        with files.atomic_path(self._state_path) as temporary:
            with open(temporary, "wb") as file:
                np.savez(file, count=len(variables), epoch=self._current_epoch, **arrays)
        files.write_json({"epoch": self._current_epoch}, self._training_metadata_path)


def _state_variables(model, optimizer=True):
    """What a resumed run needs as it was: the model's variables (with its layers' random-seed states,
    e.g. dropout's) and, with `optimizer`, the optimizer's."""
    variables = list(model.variables)
    if optimizer and model.optimizer is not None:
        variables += list(model.optimizer.variables)
    return variables


class _Backup:
    """What `fine_tune(backup_dir=...)` keeps to continue after an interruption (see the module's docstring).

    Without `write` (a non-chief worker of multi-worker training) it reads
    the chief's backup, which must be on a filesystem every worker sees,
    and writes nothing.
    """

    def __init__(self, folder, recipe, *, write=True):
        self.folder = os.fspath(folder)
        self.recipe = _recipe_fingerprint(recipe)
        self.write = bool(write)
        if write:
            os.makedirs(self.folder, exist_ok=True)
        recipe_file = os.path.join(self.folder, "recipe.json")
        if os.path.isfile(recipe_file):
            with open(recipe_file) as file:
                saved = json.load(file)
            if saved != self.recipe:
                keys = set(saved) | set(self.recipe)
                differing = sorted(key for key in keys if saved.get(key) != self.recipe.get(key))
                raise ValueError(
                    f"backup_dir {self.folder!r} holds a run of another recipe (differing: {', '.join(differing)}): "
                    "give the same recipe to continue it, or another (or emptied) backup_dir to start again."
                )
        elif write:
            files.write_json(self.recipe, recipe_file)

    def _path(self, name):
        return os.path.join(self.folder, name)

    def finished(self, phase):
        """`(History, seconds)` of a phase that finished in an earlier call, or None."""
        path = self._path(f"{phase}.done.json")
        if not (os.path.isfile(path) and os.path.isfile(self._path(f"{phase}.done.npz"))):
            return None
        with open(path) as file:
            done = json.load(file)
        return _history(done["epochs"]), done["seconds"]

    def restore(self, model, phase):
        with np.load(self._path(f"{phase}.done.npz")) as saved:
            for index, variable in enumerate(_state_variables(model, optimizer=False)):
                variable.assign(saved[f"arr_{index}"])

    def resumed_epoch(self, phase):
        """The epoch an interrupted `phase` goes on from (0 when none was backed up)."""
        try:
            with open(self._path(os.path.join(phase, "training_metadata.json"))) as file:
                return int(json.load(file)["epoch"])
        except (OSError, ValueError, KeyError):
            return 0

    def callbacks(self, phase, restore=True):
        """The epoch log and Keras's `BackupAndRestore` of `phase` (the log first: an epoch logged
        but not backed up runs again, never the other way round); without `restore`, the log alone:
        an interrupted phase then starts again from its beginning."""
        log = _EpochLog(self._path(f"{phase}.epochs.json"), write=self.write)
        return log, [log, _BackupAndRestore(self._path(phase), write=self.write)] if restore else [log]

    def mark_finished(self, model, phase, log, seconds):
        if not self.write:
            return
        with files.atomic_path(self._path(f"{phase}.done.npz")) as temporary:
            with open(temporary, "wb") as file:
                np.savez(file, *(np.asarray(variable) for variable in _state_variables(model, optimizer=False)))
        files.write_json({"epochs": log.epochs, "seconds": seconds}, self._path(f"{phase}.done.json"))
        os.remove(log.path)
        shutil.rmtree(self._path(phase), ignore_errors=True)  # BackupAndRestore's own state (removed at train end)


def _recipe_fingerprint(recipe):
    """The recipe's fields as JSON (objects by their class name), to compare a resumed run's."""
    fields = {}
    for field in dataclasses.fields(recipe):
        value = getattr(recipe, field.name)
        try:
            fields[field.name] = json.loads(json.dumps(value))
        except TypeError:
            fields[field.name] = type(value).__name__
    return fields


def backup_progress(backup_dir):
    """`(epochs finished, phase)` of an interrupted `fine_tune(backup_dir=...)`: what a resumed call skips."""
    done = 0
    phase = None
    for name in ("head", "finetune"):
        finished = os.path.join(backup_dir, f"{name}.done.json")
        state = os.path.join(backup_dir, name, "training_metadata.json")
        if os.path.isfile(finished):
            with open(finished) as file:
                epochs = json.load(file)["epochs"]
            done, phase = max([done, *(int(epoch) + 1 for epoch in epochs)]), name
        elif os.path.isfile(state):
            try:
                with open(state) as file:
                    done, phase = max(done, int(json.load(file)["epoch"])), name
            except (OSError, ValueError, KeyError):
                pass
    return done, phase


def phase_callbacks(phase, *, has_validation, early_stopping=None, checkpoint_dir=None):
    """Fresh early-stopping and checkpoint callbacks for one training phase.

    Args:
        phase: the phase's name, used in the checkpoint's file name.
        has_validation: monitor `val_loss` when there is validation data.
        early_stopping: patience in epochs, or None for no early stopping.
        checkpoint_dir: where to save `best_<phase>.keras`, or None.
    """
    monitor = "val_loss" if has_validation else "loss"
    callbacks = []
    if early_stopping is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor=monitor, patience=int(early_stopping), restore_best_weights=True)
        )
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                os.path.join(checkpoint_dir, f"best_{phase}.keras"),
                monitor=monitor,
                save_best_only=True,
            )
        )
    return callbacks


def fine_tune(
    model,
    train,
    validation_data,
    recipe,
    *,
    checkpoint_dir=None,
    callbacks=(),
    batch_size=None,
    verbose="auto",
    backup_dir=None,
):
    """Runs `recipe` on a `TransferModel`; see `TransferModel.fine_tune`."""
    # In the model's strategy: the models over cached features, their metrics and the optimizer's
    # variables are made here, and under MirroredStrategy they must be made in its scope.
    with model.distribute_strategy.scope(), _own_checkpoint_dir(model, checkpoint_dir) as checkpoint_dir:
        return _fine_tune(
            model, train, validation_data, recipe, checkpoint_dir, callbacks, batch_size, verbose, backup_dir
        )


@contextlib.contextmanager
def _own_checkpoint_dir(model, checkpoint_dir):
    """`checkpoint_dir`, or in a non-chief worker of multi-worker training a scratch folder removed after.

    Saving a model can make variables, and under MultiWorkerMirroredStrategy
    every worker must make the same ones in the same order: the others save
    as the chief does, where nobody reads it (as tf.keras's ModelCheckpoint did).
    """
    if checkpoint_dir is None or is_chief(model.distribute_strategy):
        yield checkpoint_dir
        return
    scratch = tempfile.mkdtemp(prefix="keras-transfer-worker-checkpoints-")
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _fine_tune(model, train, validation_data, recipe, checkpoint_dir, callbacks, batch_size, verbose, backup_dir):
    model.check_data(train, validation_data)
    check_recipe_fits(model, recipe)
    # In multi-worker training the chief alone writes; the others read its backup to resume alike.
    chief = is_chief(model.distribute_strategy)
    backup = _Backup(backup_dir, recipe, write=chief) if backup_dir is not None else None
    if recipe.lora_rank and not model.lora_layers:
        model.enable_lora(recipe.lora_rank)
    progressive = recipe.unfreeze if isinstance(recipe.unfreeze, ProgressiveUnfreezing) else None
    steps_per_epoch = steps_per_epoch_of(train, batch_size) if recipe.schedule else None
    is_arrays = isinstance(train, tuple)
    fit_options = dict(
        validation_data=_as_fit_data(validation_data),
        batch_size=batch_size if is_arrays else None,
        # A dataset shuffles itself; Keras only warns about shuffle=True there.
        shuffle=is_arrays,
        verbose=verbose,
    )
    x, y = _split_xy(train)
    phase_options = dict(
        has_validation=validation_data is not None,
        early_stopping=recipe.early_stopping,
        checkpoint_dir=checkpoint_dir,
    )
    seconds = {}
    head_history = finetune_history = None
    # A loss that turns NaN stops the phase with the last good weights; nothing trains after it.
    head_guard, finetune_guard = StopOnNaN("head"), StopOnNaN("fine-tuning")
    # The best validation epoch of either phase is the model fine_tune leaves.
    best = None
    if validation_data is not None:
        best_path = os.path.join(os.fspath(backup_dir), "best.npz") if backup_dir is not None else None
        best = BestWeights(model, best_path, write=chief)
    # Fine-tuning goes on only while it beats every earlier epoch on validation.
    gate = StopWhenNotBest(best, recipe.finetune_patience) if best is not None and recipe.finetune_patience else None
    guards = {
        "head": [head_guard, *([best] if best else [])],
        "finetune": [finetune_guard, *([best] if best else []), *([gate] if gate else [])],
    }
    cut = None
    if (
        recipe.cache_features
        and recipe.finetune_epochs
        and progressive is None
        and not model.lora_layers
        and not getattr(model, "train_batch_norm", False)
    ):
        cut = FrozenCut.find(model, **_unfreeze_selector(recipe.unfreeze))
    caches = _Caches(model, train, validation_data, recipe, cut, batch_size=batch_size, verbose=verbose)
    # The cached phases' shuffling seeds, drawn up front from the global seed
    # (keras.utils.set_random_seed): a resumed call that skips the head phase
    # shuffles its fine-tuning epochs as the uninterrupted call did.
    cache_seeds = dict(zip(("head", "finetune"), (int(seed) for seed in np.random.randint(2**31 - 1, size=2))))
    if recipe.head_epochs:
        model.freeze_backbone()
        model.compile(
            recipe.optimizer,
            learning_rate=_learning_rate(
                recipe.head_learning_rate, recipe.schedule, steps_per_epoch, recipe.head_epochs
            ),
        )
        finished = backup.finished("head") if backup is not None else None
        if best is not None:
            best.phase = "head"
        announce(
            verbose,
            _phase_line(
                model,
                recipe,
                "head",
                cached=bool(recipe.cache_features),
                finished=finished,
                stops_early=recipe.early_stopping is not None,
            ),
        )
        if finished is not None:  # an earlier call finished this phase
            backup.restore(model, "head")
            head_history, seconds["head"] = finished
        else:
            log, backup_callbacks = backup.callbacks("head") if backup is not None else (None, [])
            head_progress = PhaseProgress("Head", first_epoch=0, epochs=recipe.head_epochs)
            start = time.perf_counter()
            if recipe.cache_features:
                head_history = _fit_on_cache(
                    model,
                    "head",
                    model.head_model(),
                    *caches.head_features(),
                    epochs=recipe.head_epochs,
                    seed=cache_seeds["head"],
                    before_epochs=_probe_start(model, best, seconds, cache_seeds["head"], verbose)
                    if recipe.probe_start
                    else None,
                    batch_size=batch_size,
                    callbacks=[*guards["head"], *backup_callbacks, head_progress, *callbacks],
                    phase_options=phase_options,
                    verbose=verbose,
                    resumed_epoch=backup.resumed_epoch("head") if backup is not None else 0,
                )
            else:
                try:
                    head_history = model.fit(
                        x,
                        y,
                        epochs=recipe.head_epochs,
                        callbacks=[
                            *guards["head"],
                            *backup_callbacks,
                            *phase_callbacks("head", **phase_options),
                            head_progress,
                            *callbacks,
                        ],
                        **fit_options,
                    )
                finally:
                    model._initial_epoch = None  # set by BackupAndRestore; Keras keeps it for the next fit
            seconds["head"] = time.perf_counter() - start
            if backup is not None:
                head_history = log.history()
                backup.mark_finished(model, "head", log, seconds["head"])
    if recipe.finetune_epochs and not head_guard.stopped:
        if model.lora_layers:
            model.train_lora_only()
        else:
            # Exactly the chosen top part trains, whatever the state before.
            freeze(model.backbone)
            if progressive is None:
                model.unfreeze_backbone(**_unfreeze_selector(recipe.unfreeze))
        model.compile(
            recipe.finetune_optimizer,
            learning_rate=_learning_rate(
                recipe.finetune_learning_rate, recipe.schedule, steps_per_epoch, recipe.finetune_epochs
            ),
        )
        if recipe.layer_decay is not None:
            model.compile(
                layerwise_learning_rates(model.optimizer, model, depth_decay(model, float(recipe.layer_decay)))
            )
        finished = backup.finished("finetune") if backup is not None else None
        if best is not None:
            best.phase = "finetune"
        announce(
            verbose,
            _phase_line(
                model,
                recipe,
                "finetune",
                cached=cut is not None,
                finished=finished,
                stops_early=gate is not None or recipe.early_stopping is not None,
                cut=cut,
            ),
        )
        if finished is not None:
            backup.restore(model, "finetune")
            finetune_history, seconds["finetune"] = finished
        else:
            # Progressive unfreezing builds its optimizer when the phase starts, over the blocks
            # it will open: an interrupted phase of it starts again (from the head phase's end).
            restore = progressive is None
            log, backup_callbacks = backup.callbacks("finetune", restore) if backup is not None else (None, [])
            # Continue the epoch count where the head phase stopped (early or not).
            first_epoch = len(head_history.epoch) if head_history is not None else 0
            finetune_progress = PhaseProgress("Fine-tuning", first_epoch=first_epoch, epochs=recipe.finetune_epochs)
            start = time.perf_counter()
            if cut is not None:
                finetune_history = _fit_on_cache(
                    model,
                    "finetune",
                    cut.top,
                    *caches.below_cut(),
                    epochs=recipe.finetune_epochs,
                    initial_epoch=first_epoch,
                    seed=cache_seeds["finetune"],
                    batch_size=batch_size,
                    callbacks=[*guards["finetune"], *backup_callbacks, finetune_progress, *callbacks],
                    phase_options=phase_options,
                    verbose=verbose,
                    resumed_epoch=backup.resumed_epoch("finetune") if backup is not None else 0,
                )
            else:
                try:
                    finetune_history = model.fit(
                        x,
                        y,
                        initial_epoch=first_epoch,
                        epochs=first_epoch + recipe.finetune_epochs,
                        callbacks=[
                            *guards["finetune"],
                            *backup_callbacks,
                            *phase_callbacks("finetune", **phase_options),
                            finetune_progress,
                            *callbacks,
                            *([progressive] if progressive is not None else []),
                        ],
                        **fit_options,
                    )
                finally:
                    model._initial_epoch = None
            seconds["finetune"] = time.perf_counter() - start
            if backup is not None:
                finetune_history = log.history()
                backup.mark_finished(model, "finetune", log, seconds["finetune"])
    diverged = next((guard.message for guard in (head_guard, finetune_guard) if guard.stopped), None)
    if best is not None:
        best.restore()
    seconds.update(caches.seconds)
    return FineTuneHistory(
        head_history,
        finetune_history,
        seconds,
        diverged,
        best.best if best else None,
        gate.message if gate is not None else None,
        caches.validation_outputs(fine_tuned_uncached=finetune_history is not None and cut is None),
    )


# `FineTuneHistory.seconds` keys of the time spent caching (training data, validation data).
HEAD_FEATURE_SECONDS = ("head_features", "head_validation_features")
BELOW_CUT_SECONDS = ("below_cut", "below_cut_validation")


class _Caches:
    """What the frozen layers give, computed at most once per `fine_tune` call.

    `head_features()`: the features the head takes, for the head phase;
    `below_cut()`: the cut tensor of a `FrozenCut`, for fine-tuning the part
    above it. With a cut, the head's features come from the cut's cache
    (the layers above it run once more), so the data goes through the
    bottom of the network once for both phases. `seconds` holds the time
    each took (`head_features`, `head_validation_features`, `below_cut`).
    """

    def __init__(self, model, train, validation_data, recipe, cut, *, batch_size, verbose):
        self.model, self.train, self.validation_data, self.cut = model, train, validation_data, cut
        self.copies = recipe.cached_copies
        self.directory = None if recipe.cache_features in (True, False) else os.fspath(recipe.cache_features)
        self.batch_size, self.verbose = batch_size, verbose
        self.seconds = {}
        self._below_cut = self._head_features = None

    def _timed(self, key, compute):
        start = time.perf_counter()
        cache = compute()
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start
        return cache

    def _both(self, keys, compute, what):
        """`(train cache, validation cache or None)` of `compute(data, copies)`, timed under `keys`."""
        train = self._timed(keys[0], lambda: compute(self.train, self.copies))
        validation = None
        if self.validation_data is not None:
            validation = self._timed(keys[1], lambda: compute(self.validation_data, 1))
        counts = counted(train.num_examples, "training example")
        if self.copies > 1:
            counts += f" ({self.copies} augmented copies)"
        if validation is not None:
            counts += f" and {counted(validation.num_examples, 'validation example')}"
        seconds = sum(self.seconds.get(key, 0.0) for key in keys)
        announce(self.verbose, f"Cached {what} for {counts} in {seconds:.1f} s (the frozen layers run once).")
        return train, validation

    def _run_over_data(self, extractor):
        """`compute(data, copies)`: `extractor` run over the data."""
        strategy = self.model.distribute_strategy
        workers = worker_count(strategy)

        def compute(data, copies):
            # In multi-worker training each worker runs the frozen layers over its share of the data; all
            # then hold the whole cache (gathered), so the phases over it see what one process would.
            if workers > 1:
                # Arrays become one dataset first, which is then split batch by batch.
                whole = self.model.labelled_dataset(data, self.batch_size) if isinstance(data, tuple) else data
                data = sharding.for_worker(whole, workers, worker_index(strategy))
            batches = self.model.labelled_dataset(data, self.batch_size)
            cache = FeatureCache.compute(
                extractor, batches, copies=copies, directory=self.directory, verbose=self.verbose
            )
            return cache.gather_workers(strategy)

        return compute

    def below_cut(self):
        if self._below_cut is None:
            self._below_cut = self._both(
                BELOW_CUT_SECONDS, self._run_over_data(self.cut.bottom), f"the output of {self.cut.layer_name}"
            )
        return self._below_cut

    def validation_outputs(self, *, fine_tuned_uncached):
        """`(labels, outputs)` of the model on the validation data from a cache that still holds, or None.

        The cut's cache holds for everything above the cut; the head features'
        only while no backbone layer trained outside the cache.
        """
        if self.validation_data is None:
            return None
        if self._below_cut is not None:
            cache, part = self._below_cut[1], self.cut.top
        elif self._head_features is not None and not fine_tuned_uncached:
            cache, part = self._head_features[1], self.model.head_model()
        else:
            return None
        outputs = sharding.predict(part, np.asarray(cache.features[0], dtype="float32"), cache.batch_size)
        return cache.labels, outputs

    def head_features(self):
        if self._head_features is None and self.cut is None:
            self._head_features = self._both(
                HEAD_FEATURE_SECONDS, self._run_over_data(self.model.feature_extractor()), "the backbone's features"
            )
        elif self._head_features is None:
            below = dict(zip(("train", "validation"), self.below_cut()))

            def above_cut(data, copies):
                cache = below["train" if data is self.train else "validation"]
                return cache.transform(self.cut.to_head_features, directory=self.directory, verbose=self.verbose)

            self._head_features = self._both(
                HEAD_FEATURE_SECONDS, above_cut, f"the head's input features (from the {self.cut.layer_name} cache)"
            )
        return self._head_features


def _probe_start(model, best, seconds, seed, verbose):
    """`before_epochs` of a head phase that starts from a logistic regression (`Recipe.probe_start`).

    The start is scored on validation as epoch 0 of the head phase, so `best`
    keeps it when no epoch beats it.
    """

    def start(head, train_cache, validation):
        began = time.perf_counter()
        if not fit_linear_probe(head, model.head.task, train_cache, seed=seed):
            return
        seconds["linear_probe"] = time.perf_counter() - began
        scored = ""
        if best is not None and validation is not None:
            scores = head.evaluate(validation, return_dict=True, verbose=0)
            best.on_epoch_end(-1, {f"val_{name}": value for name, value in scores.items()})
            if "accuracy" in scores:
                scored = f" (validation accuracy {scores['accuracy']:.4f})"
        announce(
            verbose,
            f"Head start: a logistic regression on the cached features{scored}, "
            f"{seconds['linear_probe']:.1f} s; the head's epochs start from it.",
        )

    return start


def _fit_on_cache(
    model,
    phase,
    part,
    train_cache,
    validation_cache,
    *,
    epochs,
    seed,
    batch_size,
    callbacks,
    phase_options,
    verbose,
    initial_epoch=0,
    resumed_epoch=0,
    before_epochs=None,
):
    """Trains `part` (a model over cached features that shares `model`'s layers) for one phase.

    A resumed phase skips the batches of the epochs that finished, so with the
    same `seed` it sees what the uninterrupted phase saw. `before_epochs(part,
    train_cache, validation_dataset)` runs once the part is compiled, before
    its first epoch (not when resuming).
    """
    part_batch = batch_size or train_cache.batch_size
    early_stopping_only = dict(phase_options, checkpoint_dir=None)
    steps = train_cache.steps(part_batch)
    finished_epochs = max(0, resumed_epoch - initial_epoch)
    # The same optimizer and loss: the part's variables are the model's.
    part.compile(optimizer=model.optimizer, loss=model.loss, metrics=model.head.metrics())
    strategy = model.distribute_strategy
    validation = validation_cache.validation_dataset(part_batch) if validation_cache else None
    validation = None if validation is None else sharding.distribute(validation, strategy)
    if before_epochs is not None and not finished_epochs:  # a resumed phase restores its own weights
        before_epochs(part, train_cache, validation)
    history = part.fit(
        sharding.distribute(train_cache.dataset(part_batch, seed=seed).skip(finished_epochs * steps), strategy),
        steps_per_epoch=steps,
        initial_epoch=initial_epoch,
        epochs=initial_epoch + epochs,
        validation_data=validation,
        callbacks=[*phase_callbacks(phase, **early_stopping_only), *callbacks],
        shuffle=False,  # the cache shuffles itself
        verbose=verbose,
    )
    if phase_options["checkpoint_dir"] is not None:
        os.makedirs(phase_options["checkpoint_dir"], exist_ok=True)
        files.save_model(model, os.path.join(phase_options["checkpoint_dir"], f"best_{phase}.keras"))
    return history


def steps_per_epoch_of(data, batch_size=None):
    """Batches per epoch of an `(inputs, labels)` tuple or a dataset of known length."""
    if isinstance(data, tuple):
        return -(-len(data[1]) // (batch_size or 32))
    steps = int(data.cardinality())
    if steps < 0:
        raise ValueError(
            "A learning-rate schedule needs the number of batches per epoch, but this dataset's "
            "length is unknown: use keras_transfer.data loaders, or "
            "dataset.apply(tf.data.experimental.assert_cardinality(n))."
        )
    return steps


def _phase_line(model, recipe, phase, *, cached, finished, stops_early, cut=None):
    """The line that announces a phase: what trains, its parameters, optimizer, learning rate and epochs."""
    trainable, total = parameter_counts(model)
    if phase == "head":
        label, epochs = "Head phase", recipe.head_epochs
        what = "the new head on the frozen backbone"
        optimizer, rate = recipe.optimizer, recipe.head_learning_rate
    else:
        label, epochs = "Fine-tuning", recipe.finetune_epochs
        optimizer, rate = recipe.finetune_optimizer, recipe.finetune_learning_rate
        what = f"{_unfrozen_part(model, recipe)} and the head"
    if finished is not None:
        return f"{label}: finished before the interruption; its weights are restored."
    name = optimizer if isinstance(optimizer, str) else type(optimizer).__name__
    rate_text = f"learning rate {format_learning_rate(rate)}"
    if recipe.schedule:
        rate_text = f"{recipe.schedule} schedule peaking at {format_learning_rate(rate)}"
    if phase == "finetune" and recipe.layer_decay is not None:
        rate_text += f" at the top, x{recipe.layer_decay:g} per block below"
    up_to = "up to " if stops_early else ""
    where = ""
    if cached and phase == "head":
        where = ", on cached features"
    elif cached:
        where = f", on the cached output of {cut.layer_name}"
    return (
        f"{label}: trains {what} ({trainable:,} of {total:,} parameters), "
        f"{name}, {rate_text}, {up_to}{counted(epochs, 'epoch')}{where}."
    )


def _unfrozen_part(model, recipe):
    """`the top 30% of the backbone`, `LoRA adapters (rank 8)`, ... for the fine-tuning line."""
    unfreeze = recipe.unfreeze
    if model.lora_layers:
        rank = recipe.lora_rank or getattr(model.lora_layers[0], "lora_rank", None)
        return f"LoRA adapters (rank {rank})"
    if isinstance(unfreeze, ProgressiveUnfreezing):
        return f"the backbone from the top, {counted(unfreeze.blocks_per_epoch, 'block')} more each epoch,"
    if unfreeze == "all":
        return "the whole backbone"
    if isinstance(unfreeze, str):
        return f"the backbone from layer {unfreeze} up"
    if isinstance(unfreeze, float):
        return f"the top {unfreeze:.0%} of the backbone"
    return f"the top {counted(int(unfreeze), 'layer')} of the backbone"


def _learning_rate(peak, schedule, steps_per_epoch, epochs):
    """A phase's learning rate: constant, or one schedule over all its steps."""
    if schedule is None:
        return peak
    total_steps = max(2, steps_per_epoch * epochs)
    if schedule == "one_cycle":
        return OneCycle(peak, total_steps)
    return warmup_cosine(peak, total_steps)


def check_recipe_fits(model, recipe):
    """Raises ValueError for a recipe that names what `model` lacks: found now, not after the head phase."""
    unfreeze = recipe.unfreeze
    if not recipe.finetune_epochs or not isinstance(unfreeze, str) or unfreeze == "all":
        return
    names = [layer.name for layer in model.backbone.layers]
    if unfreeze not in names:
        close = difflib.get_close_matches(unfreeze, names, n=3)
        raise ValueError(
            f"unfreeze={unfreeze!r} names no layer of the backbone {model.backbone_name!r}"
            + (f"; closest: {', '.join(close)}" if close else "")
            + ". Give a layer name, a count of layers, a fraction or 'all'."
        )


def _unfreeze_selector(unfreeze):
    if unfreeze == "all":
        return {}
    if isinstance(unfreeze, str):
        return {"from_layer": unfreeze}
    return {"top": unfreeze}


def _split_xy(data):
    if isinstance(data, tuple):
        inputs, labels = data
        return np.asarray(inputs), np.asarray(labels)
    return data, None


def _as_fit_data(data):
    if isinstance(data, tuple):
        return tuple(np.asarray(part) for part in data)
    return data
