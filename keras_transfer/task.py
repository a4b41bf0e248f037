"""`TransferModel`: what every keras_transfer task shares (backbone + head, freezing, fine-tuning).

`ImageClassifier` and `TextClassifier` are functional Keras models built from a
backbone and a `Head`; this base class gives them the same answers to the
transfer-learning questions: compile with the head's loss, freeze and unfreeze
the backbone, two-phase fine-tuning, LoRA, class predictions.
"""

import os
import time

import keras
import numpy as np

from keras_transfer import data as data_lib
from keras_transfer.callbacks import ProgressiveUnfreezing
from keras_transfer.feature_cache import FeatureCache
from keras_transfer.layerwise import depth_decay, layerwise_learning_rates
from keras_transfer.schedules import OneCycle, warmup_cosine
from keras_transfer.heads import Head
from keras_transfer.freezing import freeze, parameter_counts, recompile, unfreeze
from keras_transfer.training import FineTuneHistory, make_optimizer, phase_callbacks

SCHEDULES = ("one_cycle", "warmup_cosine")

# Layers keras-hub and the Keras guides put LoRA on: the attention projections.
DEFAULT_LORA_TARGETS = ("query_dense", "value_dense", "query", "value")


class TransferModel(keras.Model):
    """Base class of the keras_transfer tasks; subclasses build the graph.

    Subclasses set `self.backbone`, `self.head` and `self.class_names` after
    building their functional graph, and may change `FINE_TUNE_DEFAULTS`.
    """

    # The recipe of the Keras transfer-learning guide: Adam for the head, then
    # RMSprop at a 100x lower rate on the top 30% of the backbone.
    FINE_TUNE_DEFAULTS = dict(
        unfreeze=0.3,
        optimizer="adam",
        finetune_optimizer="rmsprop",
        head_learning_rate=1e-3,
        finetune_learning_rate=1e-5,
    )

    # --- compiling -------------------------------------------------------

    def compile(self, optimizer="adam", loss="auto", metrics="auto", *, learning_rate=None, **kwargs):
        """Like `keras.Model.compile`, with the head's loss and metrics by default.

        Args:
            optimizer: `"adam"`, `"rmsprop"`, `"sgd"` or an optimizer instance.
            loss: `"auto"` for the head's loss, or any Keras loss.
            metrics: `"auto"` for the head's metrics, or any Keras metrics.
            learning_rate: learning rate for a named optimizer (default 1e-3).
        """
        with self.distribute_strategy.scope():
            if isinstance(optimizer, str) or learning_rate is not None:
                optimizer = make_optimizer(optimizer, learning_rate)
            super().compile(
                optimizer=optimizer,
                loss=self.head.loss() if loss == "auto" else loss,
                metrics=self.head.metrics() if metrics == "auto" else metrics,
                **kwargs,
            )

    def compile_from_config(self, config):
        # Keras skips this for models with a custom compile(); ours takes the same arguments.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # --- freezing --------------------------------------------------------

    def freeze_backbone(self, **selector):
        """Freezes the backbone (or the selected layers of it) and recompiles.

        Takes the selectors of `keras_transfer.freezing.select_layers`: `top`,
        `names`, `up_to`, `from_layer`.
        """
        frozen = freeze(self.backbone, **selector)
        self._recompile()
        return frozen

    def unfreeze_backbone(self, **selector):
        """Unfreezes the backbone (or the selected layers of it) and recompiles.

        BatchNormalization layers stay frozen and in inference mode unless the
        model trains them (`train_batch_norm=True`, for training from scratch).
        Takes `top` (count or fraction from the top), `names`, `up_to`, `from_layer`.
        """
        unfrozen = unfreeze(self.backbone, include_batchnorm=getattr(self, "train_batch_norm", False),
                            **selector)
        self._recompile()
        return unfrozen

    def _recompile(self, **options):
        if self.compiled:
            recompile(self, **options)

    def parameter_counts(self):
        """`(trainable, total)` parameter counts."""
        return parameter_counts(self)

    # --- LoRA --------------------------------------------------------------

    @property
    def lora_layers(self):
        """The backbone layers that train through LoRA adapters."""
        return [layer for layer in self.backbone._flatten_layers(include_self=False)
                if getattr(layer, "lora_enabled", False)]

    def enable_lora(self, rank=8, *, target_layers=DEFAULT_LORA_TARGETS, alpha=None, quantize=None):
        """Freezes the backbone and trains low-rank adapters on `target_layers`.

        Keras 3's own `layer.enable_lora` does the work (through keras-hub's
        `Backbone.enable_lora` where the backbone has it); the head stays
        trainable. With `quantize="int8"` the backbone is quantized first
        (QLoRA: int8 base weights, float adapters).

        Args:
            rank: rank of the adapters.
            target_layers: names of the Dense/EinsumDense layers to adapt.
            alpha: LoRA scale numerator (Keras's default: `rank`).
            quantize: None, or `"int8"` to quantize the backbone first.

        Returns:
            The names of the adapted layers.
        """
        if self.lora_layers:
            raise ValueError("LoRA is already enabled on this model: enable it once.")
        if quantize is not None:
            self.backbone.quantize(quantize)
        target_layers = set(target_layers)
        candidates = [layer for layer in self.backbone._flatten_layers(include_self=False)
                      if layer.name in target_layers]
        adaptable = [layer for layer in candidates if hasattr(layer, "enable_lora")]
        if not adaptable:
            names = sorted({layer.name for layer in self.backbone._flatten_layers(include_self=False)
                            if hasattr(layer, "enable_lora")})
            raise ValueError(
                f"No backbone layer named {sorted(target_layers)} can take LoRA. Layers "
                f"that can: {', '.join(names[:20]) or 'none'}."
            )
        for layer in adaptable:
            layer.enable_lora(rank, lora_alpha=alpha)
        self._train_lora_only()
        self._recompile()
        return [layer.name for layer in adaptable]

    def _train_lora_only(self):
        # A trainable flag cascades to sublayers and variables, so set the
        # whole backbone first, then open the adapted layers, then close their
        # base kernels again (what Keras's own enable_lora does).
        self.backbone.trainable = True
        for layer in self.backbone._flatten_layers(include_self=False):
            layer.trainable = False
        for layer in self.lora_layers:
            layer.trainable = True
            layer._kernel.trainable = False

    def lora_summary(self):
        """`{"trainable_params", "total_params", "trainable_percent", "lora_layers"}`."""
        trainable, total = self.parameter_counts()
        return {
            "trainable_params": trainable,
            "total_params": total,
            "trainable_percent": 100.0 * trainable / total,
            "lora_layers": len(self.lora_layers),
        }

    def merge_lora(self):
        """Returns a copy of this model with the LoRA adapters folded into the kernels.

        Keras merges adapters into the base kernels when it saves a model, so
        the copy goes through a `.keras` round trip: it predicts the same and
        exports without the extra low-rank matmuls. The copy is not compiled.
        """
        import os
        import tempfile

        if not self.lora_layers:
            raise ValueError("This model has no LoRA adapters: call enable_lora(rank) first.")
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "merged.keras")
            self.save(path)
            return keras.saving.load_model(path, compile=False)

    # --- training --------------------------------------------------------

    def fine_tune(
        self,
        train,
        validation_data=None,
        *,
        head_epochs=5,
        finetune_epochs=5,
        unfreeze=None,
        optimizer=None,
        finetune_optimizer=None,
        head_learning_rate=None,
        finetune_learning_rate=None,
        early_stopping=None,
        checkpoint_dir=None,
        callbacks=(),
        batch_size=None,
        cache_features=False,
        cached_copies=1,
        schedule=None,
        layer_decay=None,
        verbose="auto",
    ):
        """Trains the head on a frozen backbone, then fine-tunes the top of the backbone.

        The two-phase recipe of the Keras transfer-learning guide, with the
        details done for you: BatchNormalization stays in inference mode, the
        model is recompiled after every change of `trainable`, and the second
        phase continues the epoch count of the first. With LoRA enabled, the
        second phase trains the adapters and the head, nothing else.
        Defaults not given here come from the class's `FINE_TUNE_DEFAULTS`.

        Args:
            train: a `tf.data.Dataset` (e.g. from `keras_transfer.data`) or an
                `(inputs, labels)` tuple.
            validation_data: the same kinds, or None.
            head_epochs: epochs of the frozen-backbone phase (0 to skip it).
            finetune_epochs: epochs of the fine-tuning phase (0 to skip it).
            unfreeze: how much of the backbone to unfreeze: a count of layers
                from the top (int), a fraction of its layers (float), a layer
                name (that layer and all above it), `"all"`, or a
                `ProgressiveUnfreezing` callback, which starts the phase with
                the backbone frozen and opens it block by block per epoch.
            optimizer: optimizer of the head phase (`"adam"`, `"rmsprop"`,
                `"sgd"` or an instance).
            finetune_optimizer: optimizer of the fine-tuning phase.
            head_learning_rate: learning rate of the head phase.
            finetune_learning_rate: learning rate of the fine-tuning phase.
            early_stopping: patience in epochs (restoring the best weights), or None.
            checkpoint_dir: folder for `best_head.keras` and `best_finetune.keras`.
            callbacks: more Keras callbacks, used in both phases (with cached
                features the head phase runs them on `head_model()`).
            batch_size: for array inputs.
            cache_features: run the frozen backbone over the data once and
                train the head on its cached features (`FeatureCache`): True
                keeps them in memory, a folder path on disk. The head phase's
                checkpoint is then written once, at the end of the phase.
            cached_copies: passes over `train` to cache; with augmenting data
                each pass is another augmented copy, and epoch `e` of the head
                phase trains on copy `e % cached_copies`.
            schedule: None for constant learning rates, `"one_cycle"`
                (`OneCycle`, peaking at the phase's rate) or `"warmup_cosine"`
                (10% linear warmup to the phase's rate, then cosine decay to
                0), one cycle per phase; needs data of known length.
            layer_decay: discriminative learning rates for the fine-tuning
                phase: each backbone block below the top trains at
                `layer_decay` times the rate of the block above it
                (`depth_decay`); the head at the full rate. None for one rate.
            verbose: Keras's `verbose` (progress bars by default).

        Returns:
            A `FineTuneHistory` with both phases' histories and seconds.
        """
        given = dict(unfreeze=unfreeze, optimizer=optimizer, finetune_optimizer=finetune_optimizer,
                     head_learning_rate=head_learning_rate, finetune_learning_rate=finetune_learning_rate)
        options = {key: self.FINE_TUNE_DEFAULTS[key] if value is None else value
                   for key, value in given.items()}
        self.check_data(train, validation_data)
        progressive = options["unfreeze"] if isinstance(options["unfreeze"], ProgressiveUnfreezing) else None
        if schedule is not None and schedule not in SCHEDULES:
            raise ValueError(f"Unknown schedule {schedule!r}: use None, {', '.join(map(repr, SCHEDULES))}.")
        if layer_decay is not None and not 0.0 < float(layer_decay) <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}.")
        steps_per_epoch = _steps_per_epoch(train, batch_size) if schedule else None
        fit_kwargs = dict(
            validation_data=_as_fit_data(validation_data),
            batch_size=batch_size if isinstance(train, tuple) else None,
            # A dataset shuffles itself; Keras only warns about shuffle=True there.
            shuffle=isinstance(train, tuple),
            verbose=verbose,
        )
        x, y = _split_xy(train)
        phase_options = dict(
            has_validation=validation_data is not None,
            early_stopping=early_stopping,
            checkpoint_dir=checkpoint_dir,
        )
        seconds = {}
        head_history = finetune_history = None
        uses_lora = bool(self.lora_layers)
        if head_epochs:
            self.freeze_backbone()
            self.compile(options["optimizer"], learning_rate=_learning_rate(
                options["head_learning_rate"], schedule, steps_per_epoch, head_epochs))
            start = time.perf_counter()
            if cache_features:
                head_history = self._fit_head_on_cached_features(
                    train, validation_data, epochs=head_epochs, copies=cached_copies,
                    directory=None if cache_features is True else os.fspath(cache_features),
                    batch_size=batch_size, callbacks=callbacks, phase_options=phase_options,
                    seconds=seconds, verbose=verbose,
                )
            else:
                head_history = self.fit(
                    x, y, epochs=head_epochs,
                    callbacks=[*phase_callbacks("head", **phase_options), *callbacks],
                    **fit_kwargs,
                )
            seconds["head"] = time.perf_counter() - start
        if finetune_epochs:
            if uses_lora:
                self._train_lora_only()
            else:
                # Exactly the chosen top part trains, whatever the state before.
                freeze(self.backbone)
                if progressive is None:
                    self.unfreeze_backbone(**_unfreeze_selector(options["unfreeze"]))
            self.compile(options["finetune_optimizer"], learning_rate=_learning_rate(
                options["finetune_learning_rate"], schedule, steps_per_epoch, finetune_epochs))
            if layer_decay is not None:
                self.compile(layerwise_learning_rates(
                    self.optimizer, self, depth_decay(self, float(layer_decay))))
            # Continue the epoch count where the head phase stopped (early or not).
            first_epoch = len(head_history.epoch) if head_history is not None else 0
            start = time.perf_counter()
            finetune_history = self.fit(
                x, y, initial_epoch=first_epoch, epochs=first_epoch + finetune_epochs,
                callbacks=[*phase_callbacks("finetune", **phase_options), *callbacks,
                           *([progressive] if progressive is not None else [])],
                **fit_kwargs,
            )
            seconds["finetune"] = time.perf_counter() - start
        return FineTuneHistory(head_history, finetune_history, seconds)

    @property
    def head_input(self):
        """The tensor the head starts from: the pooled backbone features."""
        names = [layer.name for layer in self.layers]
        if "head_pooling" in names:
            return self.get_layer("head_pooling").output
        # Otherwise the features are already pooled (by the backbone or a
        # pooling layer outside the head): the head's first layer takes them.
        first = next(name for name in names if name.startswith("head_") or name == "predictions")
        return self.get_layer(first).input

    def head_model(self):
        """The head alone, from `head_input` to the outputs, sharing this model's layers.

        Training it trains this model's head: that is how a head learns from
        cached features and is already in place on the backbone afterwards.
        """
        return keras.Model(self.head_input, self.outputs, name=f"{self.name}_head")

    def feature_extractor(self):
        """A model from this model's inputs to the pooled features the head sees."""
        return keras.Model(self.inputs, self.head_input, name=f"{self.name}_features")

    def _fit_head_on_cached_features(self, train, validation_data, *, epochs, copies, directory,
                                     batch_size, callbacks, phase_options, seconds, verbose):
        extractor = self.feature_extractor()
        start = time.perf_counter()
        train_cache = FeatureCache.compute(
            extractor, self._labelled_dataset(train, batch_size), copies=copies,
            directory=directory, verbose=verbose,
        )
        seconds["head_features"] = time.perf_counter() - start
        validation_cache = None
        if validation_data is not None:
            start = time.perf_counter()
            validation_cache = FeatureCache.compute(
                extractor, self._labelled_dataset(validation_data, batch_size),
                directory=directory, verbose=verbose,
            )
            seconds["head_validation_features"] = time.perf_counter() - start
        head = self.head_model()
        # The same optimizer and loss: the head's variables are this model's.
        head.compile(optimizer=self.optimizer, loss=self.loss, metrics=self.head.metrics())
        head_batch = batch_size or train_cache.batch_size
        early_stopping_only = dict(phase_options, checkpoint_dir=None)
        history = head.fit(
            train_cache.dataset(head_batch),
            steps_per_epoch=train_cache.steps(head_batch),
            epochs=epochs,
            validation_data=validation_cache.validation_dataset(head_batch) if validation_cache else None,
            callbacks=[*phase_callbacks("head", **early_stopping_only), *callbacks],
            shuffle=False,  # the cache shuffles itself
            verbose=verbose,
        )
        if phase_options["checkpoint_dir"] is not None:
            self.save(os.path.join(phase_options["checkpoint_dir"], "best_head.keras"))
        return history

    def _labelled_dataset(self, data, batch_size):
        """`(model inputs, labels)` batches of a dataset or an `(inputs, labels)` tuple."""
        import tensorflow as tf

        if isinstance(data, tf.data.Dataset):
            return self.model_inputs(data)
        inputs, labels = data
        converted = self.model_inputs((inputs, labels))
        if isinstance(converted, tf.data.Dataset):
            return converted
        return tf.data.Dataset.from_tensor_slices((inputs, np.asarray(labels))).batch(batch_size or 32)

    def check_data(self, train, validation_data):
        """Fails before any training on data whose classes cannot fit this model."""
        if self.head.task == "multiclass":
            for dataset in (train, validation_data):
                if dataset is not None and not isinstance(dataset, tuple):
                    data_lib.check_num_classes(dataset, self.head.num_outputs)
        train_names = data_lib.class_names_of(train) if not isinstance(train, tuple) else None
        if validation_data is not None and not isinstance(validation_data, tuple):
            val_names = data_lib.class_names_of(validation_data)
            if train_names and val_names and list(train_names) != list(val_names):
                raise data_lib.DataError(
                    f"Training classes {train_names} differ from validation classes "
                    f"{val_names}: load both with the same classes."
                )
        if self.class_names and train_names and list(train_names) != self.class_names:
            raise data_lib.DataError(
                f"The model's classes {self.class_names} differ from the data's "
                f"{train_names}: train on data with the same classes, in the same order."
            )
        if train_names and self.class_names is None and self.head.task == "multiclass":
            self.class_names = list(train_names)

    # --- inference -------------------------------------------------------

    def predict_classes(self, inputs, *, batch_size=32):
        """Returns `(class indices, probabilities)` for a batch of raw inputs.

        Probabilities are those of the predicted class (softmax applied when
        the head outputs logits).
        """
        if self.head.task not in ("multiclass", "binary"):
            raise ValueError(f"predict_classes needs a classification head, not {self.head.task!r}.")
        outputs = np.asarray(self.predict(inputs, batch_size=batch_size, verbose=0))
        if self.head.task == "binary":
            scores = 1 / (1 + np.exp(-outputs[:, 0])) if self.head.from_logits else outputs[:, 0]
            indices = (scores >= 0.5).astype(int)
            return indices, np.where(indices == 1, scores, 1 - scores)
        if self.head.from_logits:
            outputs = np.exp(outputs - outputs.max(axis=1, keepdims=True))
            outputs /= outputs.sum(axis=1, keepdims=True)
        indices = outputs.argmax(axis=1)
        return indices, outputs[np.arange(len(indices)), indices]

    def model_inputs(self, data):
        """`data` in the form the Keras graph takes (tasks with outside preprocessing convert it)."""
        return data

    def export_assets(self, folder):
        """Writes what a deployed model needs beside it into `folder`; returns metadata entries."""
        return {}

    # --- saving ----------------------------------------------------------

    def _backbone_state(self):
        # keras-hub backbones rebuild from constructor arguments, which
        # forgets which of their layers were frozen: keep that in the config.
        return {
            "backbone_trainable": self.backbone.trainable,
            "backbone_layers_trainable": {layer.name: layer.trainable for layer in self.backbone.layers},
        }

    @staticmethod
    def _restore_backbone(config):
        """Pops the backbone and its trainable flags from a config; returns the backbone."""
        backbone = keras.saving.deserialize_keras_object(config.pop("backbone"))
        backbone_trainable = config.pop("backbone_trainable", None)
        layers_trainable = config.pop("backbone_layers_trainable", None) or {}
        if backbone_trainable is not None:
            backbone.trainable = backbone_trainable
        for layer in backbone.layers:
            if layer.name in layers_trainable:
                layer.trainable = layers_trainable[layer.name]
        return backbone


def resolve_head(head, num_classes, class_names):
    """The task's head and class names from whichever of the three were given."""
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        if num_classes is not None and num_classes != len(class_names):
            raise ValueError(
                f"num_classes={num_classes} but {len(class_names)} class_names were given."
            )
        num_classes = num_classes or len(class_names)
    if head is None:
        if num_classes is None:
            raise ValueError("Pass num_classes (or class_names, or a head) to size the head.")
        head = Head.multiclass(num_classes)
    return head, class_names


def _steps_per_epoch(data, batch_size):
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
