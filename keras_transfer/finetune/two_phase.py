"""The two-phase procedure behind `TransferModel.fine_tune`: a head on a frozen backbone, then fine-tuning.

The recipe (`keras_transfer.finetune.recipes.Recipe`) says what to do; this
module does it: BatchNormalization stays in inference mode, the model is
recompiled after every change of `trainable`, the second phase continues the
epoch count of the first, and with LoRA the second phase trains only the
adapters and the head.
"""

import dataclasses
import difflib
import os
import time

import keras
import numpy as np

from keras_transfer.finetune.feature_cache import FeatureCache
from keras_transfer.finetune.freezing import freeze
from keras_transfer.finetune.layerwise import depth_decay, layerwise_learning_rates
from keras_transfer.finetune.progressive import ProgressiveUnfreezing
from keras_transfer.finetune.schedules import OneCycle, warmup_cosine


@dataclasses.dataclass
class FineTuneHistory:
    """The histories of both phases of `fine_tune`.

    `head` is the frozen-backbone phase, `finetune` the unfrozen phase (None
    when it did not run); `seconds` holds each phase's wall time.
    """

    head: keras.callbacks.History | None
    finetune: keras.callbacks.History | None
    seconds: dict

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
    model, train, validation_data, recipe, *, checkpoint_dir=None, callbacks=(), batch_size=None, verbose="auto"
):
    """Runs `recipe` on a `TransferModel`; see `TransferModel.fine_tune`."""
    model.check_data(train, validation_data)
    check_recipe_fits(model, recipe)
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
    if recipe.head_epochs:
        model.freeze_backbone()
        model.compile(
            recipe.optimizer,
            learning_rate=_learning_rate(
                recipe.head_learning_rate, recipe.schedule, steps_per_epoch, recipe.head_epochs
            ),
        )
        start = time.perf_counter()
        if recipe.cache_features:
            head_history = _fit_head_on_cached_features(
                model,
                train,
                validation_data,
                recipe,
                batch_size=batch_size,
                callbacks=callbacks,
                phase_options=phase_options,
                seconds=seconds,
                verbose=verbose,
            )
        else:
            head_history = model.fit(
                x,
                y,
                epochs=recipe.head_epochs,
                callbacks=[*phase_callbacks("head", **phase_options), *callbacks],
                **fit_options,
            )
        seconds["head"] = time.perf_counter() - start
    if recipe.finetune_epochs:
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
        # Continue the epoch count where the head phase stopped (early or not).
        first_epoch = len(head_history.epoch) if head_history is not None else 0
        start = time.perf_counter()
        finetune_history = model.fit(
            x,
            y,
            initial_epoch=first_epoch,
            epochs=first_epoch + recipe.finetune_epochs,
            callbacks=[
                *phase_callbacks("finetune", **phase_options),
                *callbacks,
                *([progressive] if progressive is not None else []),
            ],
            **fit_options,
        )
        seconds["finetune"] = time.perf_counter() - start
    return FineTuneHistory(head_history, finetune_history, seconds)


def _fit_head_on_cached_features(
    model, train, validation_data, recipe, *, batch_size, callbacks, phase_options, seconds, verbose
):
    extractor = model.feature_extractor()
    directory = None if recipe.cache_features is True else os.fspath(recipe.cache_features)
    start = time.perf_counter()
    train_cache = FeatureCache.compute(
        extractor,
        model.labelled_dataset(train, batch_size),
        copies=recipe.cached_copies,
        directory=directory,
        verbose=verbose,
    )
    seconds["head_features"] = time.perf_counter() - start
    validation_cache = None
    if validation_data is not None:
        start = time.perf_counter()
        validation_cache = FeatureCache.compute(
            extractor,
            model.labelled_dataset(validation_data, batch_size),
            directory=directory,
            verbose=verbose,
        )
        seconds["head_validation_features"] = time.perf_counter() - start
    head = model.head_model()
    # The same optimizer and loss: the head's variables are the model's.
    head.compile(optimizer=model.optimizer, loss=model.loss, metrics=model.head.metrics())
    head_batch = batch_size or train_cache.batch_size
    early_stopping_only = dict(phase_options, checkpoint_dir=None)
    history = head.fit(
        train_cache.dataset(head_batch),
        steps_per_epoch=train_cache.steps(head_batch),
        epochs=recipe.head_epochs,
        validation_data=validation_cache.validation_dataset(head_batch) if validation_cache else None,
        callbacks=[*phase_callbacks("head", **early_stopping_only), *callbacks],
        shuffle=False,  # the cache shuffles itself
        verbose=verbose,
    )
    if phase_options["checkpoint_dir"] is not None:
        model.save(os.path.join(phase_options["checkpoint_dir"], "best_head.keras"))
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
