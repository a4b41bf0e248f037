"""`TransferModel`: what every keras_transfer task shares (backbone + head, freezing, fine-tuning).

`ImageClassifier` and `TextClassifier` are functional Keras models built from a
backbone and a `Head`; this base class gives them the same answers to the
transfer-learning questions: compile with the head's loss, freeze and unfreeze
the backbone, two-phase fine-tuning, LoRA, features, class predictions, and
raw inputs (sentences) turned into graph inputs in one place.
"""

import dataclasses
import inspect

import keras
import numpy as np
import tensorflow as tf

from keras_transfer import data as data_lib
from keras_transfer.distribute import sharding
from keras_transfer.distribute.keras_fixes import in_multi_worker_mode
from keras_transfer.finetune import lora, two_phase
from keras_transfer.finetune.freezing import freeze, parameter_counts, recompile, unfreeze
from keras_transfer.finetune.optimizers import make_optimizer
from keras_transfer.finetune.recipes import DEFAULT_LORA_RANK, IMAGE_RECIPE, Recipe
from keras_transfer.models import task_io
from keras_transfer.models.heads import Head


class TransferModel(keras.Model):
    """Base class of the keras_transfer tasks; subclasses build the graph.

    A task builds its functional graph and hands it to `__init__` with the
    parts the base class works on:

    - `backbone`: the backbone model in the graph;
    - `head`: the `Head` whose layers end the graph;
    - `head_features`: the symbolic tensor the head's layers start from (after
      the head's own pooling): `feature_extractor()` ends and `head_model()`
      starts there;
    - `backbone_outputs`: the backbone's symbolic output(s), which
      `pooled_features` pools another way;
    - `preprocessor`, `class_names`, `backbone_name` and `train_batch_norm`.

    Tasks whose graph does not take raw inputs (a `TextClassifier` takes token
    ids, not sentences) override two hooks: `raw_inputs` (which inputs are
    raw) and `preprocess_samples` (one batch of them -> graph inputs, inside
    `tf.data`). `fit`, `evaluate`, `predict`, `predict_on_batch` and
    `model_inputs` go through them; nothing else converts. A task may also
    change `RECIPE`, what `fine_tune` and `create` do when given no recipe.
    """

    RECIPE = IMAGE_RECIPE

    def __init__(
        self,
        inputs,
        outputs,
        *,
        backbone,
        head,
        head_features,
        backbone_outputs,
        preprocessor=None,
        class_names=None,
        backbone_name=None,
        train_batch_norm=False,
        **kwargs,
    ):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.backbone = backbone
        self.head = head
        self.head_features = head_features
        self.backbone_outputs = backbone_outputs
        self.preprocessor = preprocessor
        self.class_names = class_names
        self.backbone_name = backbone_name or backbone.name
        # False for pretrained weights: BatchNormalization stays frozen, in inference mode.
        self.train_batch_norm = bool(train_batch_norm)

    @classmethod
    def create(cls, train, validation_data=None, *, recipe=None, strategy=None, **options):
        """Builds a model for `train` and fine-tunes it, inside `strategy`'s scope.

        The classes come from the data. Options the constructor takes (e.g.
        `backbone`, `weights`, `head`) build the model; the others go to
        `fine_tune` (`checkpoint_dir`, `callbacks`, `batch_size`, `verbose`,
        and `Recipe` options that change `recipe`). Any
        `tf.distribute.Strategy` works: the model is built, compiled and given
        its LoRA adapters (a recipe's `lora_rank`) in its scope; a backbone
        given as a model must have been built there too.

        Returns:
            `(model, FineTuneHistory)`.
        """
        class_names = data_lib.class_names_of(train)
        if options.get("head") is None and class_names is None:
            raise ValueError(
                "The training data carries no class_names: load it with "
                "keras_transfer.data, or pass head=Head.multiclass(num_classes)."
            )
        build_names = set(inspect.signature(cls.__init__).parameters) - {"self", "class_names", "kwargs"}
        build_options = {name: options.pop(name) for name in list(options) if name in build_names}
        recipe_names = {field.name for field in dataclasses.fields(Recipe)}
        recipe = (recipe or cls.RECIPE).replace(
            **{name: options.pop(name) for name in list(options) if name in recipe_names}
        )
        strategy = strategy or tf.distribute.get_strategy()
        with strategy.scope():
            model = cls(class_names=class_names, **build_options)
            if recipe.lora_rank:
                model.enable_lora(recipe.lora_rank)
        history = model.fine_tune(train, validation_data, recipe, **options)
        return model, history

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

        Takes the selectors of `keras_transfer.finetune.freezing.select_layers`: `top`,
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
        unfrozen = unfreeze(self.backbone, include_batchnorm=self.train_batch_norm, **selector)
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
        return lora.lora_layers(self.backbone)

    def enable_lora(
        self, rank=DEFAULT_LORA_RANK, *, target_layers=lora.DEFAULT_LORA_TARGETS, alpha=None, quantize=None
    ):
        """Freezes the backbone and trains low-rank adapters on `target_layers`; the head stays trainable.

        Keras 3's own `layer.enable_lora` does the work (`finetune.lora`).

        Args:
            rank: rank of the adapters.
            target_layers: names of the Dense/EinsumDense layers to adapt.
            alpha: LoRA scale numerator (Keras's default: `rank`).
            quantize: None, or `"int8"` to quantize the backbone first (QLoRA).

        Returns:
            The names of the adapted layers.
        """
        names = lora.enable_lora(self.backbone, rank, target_layers=target_layers, alpha=alpha, quantize=quantize)
        self._recompile()
        return names

    def train_lora_only(self):
        """Trains the LoRA adapters and the head; everything else in the backbone is frozen."""
        lora.train_lora_only(self.backbone)

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
        """A copy of this model with the LoRA adapters folded into the kernels (not compiled)."""
        if not self.lora_layers:
            raise ValueError("This model has no LoRA adapters: call enable_lora(rank) first.")
        return lora.merged_copy(self)

    # --- training --------------------------------------------------------

    def fine_tune(
        self,
        train,
        validation_data=None,
        recipe=None,
        *,
        checkpoint_dir=None,
        callbacks=(),
        batch_size=None,
        verbose="auto",
        backup_dir=None,
        **options,
    ):
        """Trains the head on a frozen backbone, then fine-tunes the top of the backbone.

        The two-phase recipe of the Keras transfer-learning guide, with the
        details done for you: BatchNormalization stays in inference mode, the
        model is recompiled after every change of `trainable`, and the second
        phase continues the epoch count of the first. With LoRA enabled (or a
        recipe with a `lora_rank`), the second phase trains the adapters and
        the head, nothing else.

        Args:
            train: a `tf.data.Dataset` (e.g. from `keras_transfer.data`) or an
                `(inputs, labels)` tuple.
            validation_data: the same kinds, or None.
            recipe: a `keras_transfer.finetune.recipes.Recipe`; the class's
                `RECIPE` when None.
            checkpoint_dir: folder for `best_head.keras` and `best_finetune.keras`.
            callbacks: more Keras callbacks, used in both phases (with cached
                features the head phase runs them on `head_model()`).
            batch_size: for array inputs.
            verbose: Keras's `verbose` (progress bars by default).
            backup_dir: a folder that makes an interrupted call resumable:
                each phase runs with `keras.callbacks.BackupAndRestore`, and a
                finished phase leaves its weights and history there. Call
                again with the same model, data, recipe and `backup_dir` after
                an interruption (Ctrl-C) to skip what finished and go on from
                the last completed epoch; with a fixed data order the result
                equals an uninterrupted run's. The folder is kept afterwards
                (a later call returns the finished result): remove it to
                start again.
            **options: `Recipe` options that change the recipe for this call,
                e.g. `head_epochs=3, unfreeze=0.5` (see `Recipe` for all);
                `unfreeze` also takes a `ProgressiveUnfreezing` callback.

        Returns:
            A `FineTuneHistory` with both phases' histories and seconds.
        """
        recipe = (recipe or self.RECIPE).replace(**options)
        return two_phase.fine_tune(
            self,
            train,
            validation_data,
            recipe,
            checkpoint_dir=checkpoint_dir,
            callbacks=callbacks,
            batch_size=batch_size,
            verbose=verbose,
            backup_dir=backup_dir,
        )

    # --- features ----------------------------------------------------------

    @property
    def head_input(self):
        """The tensor the head starts from: `head_features` (the name of keras_transfer 0.1.0)."""
        return self.head_features

    def head_model(self):
        """The head alone, from `head_features` to the outputs, sharing this model's layers.

        Training it trains this model's head: that is how a head learns from
        cached features and is already in place on the backbone afterwards.
        """
        return keras.Model(self.head_features, self.outputs, name=f"{self.name}_head")

    def set_class_vectors(self, class_vectors):
        """Writes one vector per class into a cosine head (`Head.cosine`): prototypes or embedded class names.

        Args:
            class_vectors: `(num_classes, features)`, in the space of the
                features the head sees (`feature_extractor()`); only their
                directions count.
        """
        kernel = self.head.class_vector_kernel(class_vectors)
        layer = self.get_layer("predictions")
        if tuple(layer.kernel.shape) != kernel.shape:
            raise ValueError(
                f"The class vectors have {kernel.shape[0]} features, the head takes {layer.kernel.shape[0]}: "
                "compute them with this model's feature_extractor()."
            )
        layer.kernel.assign(kernel)

    def feature_extractor(self, pooling=None):
        """A model from this model's inputs to one feature vector per example.

        Args:
            pooling: None for the features the head sees; else a pooling of
                the backbone's output that the task knows (`pooled_features`):
                `"mean"`, `"max"` or `"flatten"` for images, `"mean"`,
                `"max"`, `"cls"` or `"pooled"` for text.
        """
        features = self.head_features if pooling is None else self.pooled_features(pooling)
        return keras.Model(self.inputs, features, name=f"{self.name}_features")

    def pooled_features(self, pooling):
        """The symbolic features of `backbone_outputs` pooled with `pooling`; tasks with pooling choices override it."""
        raise ValueError(f"{type(self).__name__} has no pooling choices: call feature_extractor() without pooling.")

    def labelled_dataset(self, data, batch_size):
        """`(model inputs, labels)` batches of a dataset or an `(inputs, labels)` tuple."""
        if isinstance(data, tf.data.Dataset):
            converted = self._graph_batches(data)
            return self.model_inputs(data) if converted is None else converted
        inputs, labels = data
        converted = self._graph_batches(inputs, labels, batch_size=batch_size)
        if converted is not None:
            return converted
        return tf.data.Dataset.from_tensor_slices((inputs, np.asarray(labels))).batch(batch_size or 32)

    def check_data(self, train, validation_data):
        """Fails before any training on data whose classes or values cannot fit this model."""
        for name, data in (("training", train), ("validation", validation_data)):
            if isinstance(data, tuple):
                self._check_arrays(*data, name)
            elif isinstance(data, tf.data.Dataset):
                self._check_dataset_sample(data, name)
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

    def _check_dataset_sample(self, dataset, name, batches=3):
        """NaN or Inf in the first `batches` batches of a dataset (numbers only; texts are skipped)."""
        if getattr(dataset, "_keras_transfer_sample_checked", False):
            return
        if not any(spec.dtype.is_floating for spec in keras.tree.flatten(dataset.element_spec)):
            return  # texts, int ids and int labels cannot be NaN
        for index, batch in enumerate(dataset.take(batches)):
            parts = batch if isinstance(batch, tuple) else (batch,)
            for part, what in zip(parts, ("inputs", "labels", "sample weights")):
                for value in keras.tree.flatten(part):
                    if value.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(value))):
                        where = f"The {name} {what} in batch {index + 1} (of the first {batches})"
                        data_lib.check_finite(value.numpy(), where)
        try:
            dataset._keras_transfer_sample_checked = True  # each dataset once: fine_tune runs check_data again
        except AttributeError:
            pass

    def _check_arrays(self, inputs, labels, name):
        """`(inputs, labels)` arrays: finite numbers, and class indices the head has."""
        if self.raw_inputs(inputs) is None:
            for value in keras.tree.flatten(inputs):
                data_lib.check_finite(value, f"The {name} inputs")
        labels = np.asarray(labels)
        data_lib.check_finite(labels, f"The {name} labels")
        if self.head.task == "multiclass" and labels.ndim == 1 and len(labels):
            low, high = labels.min(), labels.max()
            if low < 0 or high >= self.head.num_outputs:
                raise data_lib.DataError(
                    f"The {name} labels run from {low} to {high}, but the model has {self.head.num_outputs} "
                    f"classes (0 to {self.head.num_outputs - 1}): pass num_classes={int(high) + 1} or fix the labels."
                )

    # --- inference -------------------------------------------------------

    def predict_classes(self, inputs, *, batch_size=32):
        """Returns `(class indices, probabilities)` for a batch of raw inputs.

        Probabilities are those of the predicted class (softmax applied when
        the head outputs logits).
        """
        if self.head.task not in task_io.CLASSIFICATION_TASKS:
            raise ValueError(f"predict_classes needs a classification head, not {self.head.task!r}.")
        decoded = task_io.decode_outputs(self.predict(inputs, batch_size=batch_size, verbose=0), self.head)
        return decoded.classes, decoded.confidence

    # --- raw inputs -> graph inputs ------------------------------------------

    def raw_inputs(self, x):
        """`x` as raw samples that `preprocess_samples` converts, or None when the graph takes `x` as is.

        Raw samples are an array (one per example) or a `tf.data.Dataset`
        that yields batches of them (with labels or not). The graph of an
        image task takes pixels as they come: always None.
        """
        return None

    def preprocess_samples(self, x, y=None, sample_weight=None):
        """One batch of raw samples -> the graph's inputs, run inside `tf.data` (keras-hub's name)."""
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    def model_inputs(self, data):
        """`data` in the form the Keras graph takes; anything not raw is returned as is.

        Raw samples (e.g. a list of sentences) become the graph's inputs as
        numpy arrays; an `(inputs, labels)` tuple or a dataset of raw samples
        becomes a dataset of batches of graph inputs.
        """
        if isinstance(data, tuple):
            converted = self._full_graph_batches(*data)
            return data if converted is None else converted
        raw = self.raw_inputs(data)
        if raw is None:
            return data
        if isinstance(raw, tf.data.Dataset):
            return raw.map(self.preprocess_samples, num_parallel_calls=tf.data.AUTOTUNE)
        inputs = self.preprocess_samples(tf.constant(raw))
        return keras.tree.map_structure(lambda value: np.asarray(value), inputs)

    def arrange_batches(self, batches, *, training=False):
        """Hook: the graph-input batches of raw samples as `fit`, `evaluate` and `predict` use them.

        As they come here; a `TextClassifier` pads each batch only to its
        longest sentence and, in training, groups sentences by length.
        """
        return batches

    def _graph_batches(self, x, y=None, sample_weight=None, *, batch_size=None, shuffle=False, training=False):
        """Graph-input batches of raw `x` (labelled by `y`), arranged by `arrange_batches`; None when not raw."""
        batches = self._full_graph_batches(x, y, sample_weight, batch_size=batch_size, shuffle=shuffle)
        return None if batches is None else self.arrange_batches(batches, training=training)

    def _full_graph_batches(self, x, y=None, sample_weight=None, *, batch_size=None, shuffle=False):
        """Graph-input batches of the full shape the graph was built for (exports need it), or None."""
        raw = self.raw_inputs(x)
        if raw is None:
            return None
        if isinstance(raw, tf.data.Dataset):
            return raw.map(self.preprocess_samples, num_parallel_calls=tf.data.AUTOTUNE)
        labels = None if y is None else np.asarray(y)
        weights = None if sample_weight is None else np.asarray(sample_weight)
        dataset = tf.data.Dataset.from_tensor_slices(keras.utils.pack_x_y_sample_weight(raw, labels, weights))
        if shuffle:
            dataset = dataset.shuffle(len(raw), reshuffle_each_iteration=True)
        dataset = dataset.batch(batch_size or 32).map(self.preprocess_samples, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.prefetch(tf.data.AUTOTUNE)

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        shuffle=True,
        **kwargs,
    ):
        """`keras.Model.fit` that also takes raw inputs (e.g. sentences, as lists or string datasets).

        Under `MultiWorkerMirroredStrategy` each worker trains on its part of
        every global batch (`keras_transfer.distribute.sharding`).
        """
        if in_multi_worker_mode(self.distribute_strategy):
            if validation_split:
                raise ValueError(
                    "validation_split is not available in multi-worker training (every worker would hold out its "
                    "own rows): split the data first and pass validation_data."
                )
            x = self._worker_batches(x, y, batch_size=batch_size, shuffle=shuffle, training=True)
            if validation_data is not None:
                validation_data = self._worker_batches(*_as_tuple(validation_data))
            return super().fit(
                x, epochs=epochs, verbose=verbose, callbacks=callbacks, validation_data=validation_data, **kwargs
            )
        batches = self._graph_batches(x, y, batch_size=batch_size, shuffle=shuffle, training=True)
        if batches is not None:
            # The dataset is batched and shuffled already.
            x, y, batch_size, shuffle = batches, None, None, False
        return super().fit(
            x,
            y,
            batch_size=batch_size,
            epochs=epochs,
            verbose=verbose,
            callbacks=callbacks,
            validation_split=validation_split,
            validation_data=self._validation_batches(validation_data),
            shuffle=shuffle,
            **kwargs,
        )

    def _worker_batches(self, x, y=None, sample_weight=None, *, batch_size=None, shuffle=False, training=False):
        """`x` as the distributed dataset of each worker's graph-input batches (split before preprocessing)."""
        if isinstance(x, tf.distribute.DistributedDataset):  # fit's own validation pass: split already
            return x
        if not isinstance(x, tf.data.Dataset):
            x = sharding.array_batches(x, y, sample_weight, batch_size=batch_size, shuffle=shuffle)

        def graph_batches(part):
            converted = self._graph_batches(part, training=training)
            return part if converted is None else converted

        return sharding.distribute(x, self.distribute_strategy, graph_batches, key=(id(self), training))

    def _validation_batches(self, data):
        if isinstance(data, tuple):
            converted = self._graph_batches(*data)
        else:
            converted = None if data is None else self._graph_batches(data)
        return data if converted is None else converted

    def evaluate(self, x=None, y=None, batch_size=None, *args, **kwargs):
        """`keras.Model.evaluate` that also takes raw inputs; under multi-worker training, each worker its part."""
        if in_multi_worker_mode(self.distribute_strategy):
            return super().evaluate(self._worker_batches(x, y, batch_size=batch_size), *args, **kwargs)
        batches = self._graph_batches(x, y, batch_size=batch_size)
        if batches is not None:
            x, y, batch_size = batches, None, None
        return super().evaluate(x, y, batch_size, *args, **kwargs)

    def predict(self, x, batch_size=None, *args, **kwargs):
        """`keras.Model.predict` that also takes raw inputs.

        Under multi-worker training each worker computes every row itself
        (`sharding.predict_locally`): rows in order, no other worker needed.
        """
        batches = self._graph_batches(x, batch_size=batch_size)
        if batches is not None:
            x, batch_size = batches, None
        if in_multi_worker_mode(self.distribute_strategy):
            return sharding.predict_locally(self, x, batch_size)
        return super().predict(x, batch_size, *args, **kwargs)

    def predict_on_batch(self, x):
        """`keras.Model.predict_on_batch` that also takes raw inputs (computed locally in multi-worker training)."""
        if in_multi_worker_mode(self.distribute_strategy):
            return sharding.predict_locally(self, [self.model_inputs(x)])
        return super().predict_on_batch(self.model_inputs(x))

    # The evaluation and export functions as methods (the module functions stay).

    def evaluate_report(self, data, **options):
        """An `EvaluationReport` of this model on labelled `data`: `keras_transfer.evaluation.evaluate_model`.

        Accuracy, per-class precision/recall/F1 and the confusion matrix
        (`report.format_text()`, `report.plot_confusion_matrix()`).
        """
        from keras_transfer.evaluation.metrics import evaluate_model

        return evaluate_model(self, data, **options)

    def export_model(self, path, **options):
        """A checked TFLite/LiteRT (or SavedModel) export: `keras_transfer.export_model(self, path, ...)`.

        Not Keras's `Model.export`, which this keeps as it is: this one adds
        quantization (`quantization="dynamic"`, `Quantization.int8(data)`),
        the class names and head beside the file, and, given `check_data`, a
        comparison of the export with this model in the LiteRT interpreter.
        """
        from keras_transfer.deploy.export import export

        return export(self, path, **options)

    def export_assets(self, folder):
        """Writes what a deployed model needs beside it into `folder`; returns metadata entries."""
        return {}

    # --- saving ----------------------------------------------------------

    def get_config(self):
        """What every task saves; tasks add their own constructor arguments."""
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
            "head": self.head.get_config(),
            "class_names": self.class_names,
            "name": self.name,
            "trainable": self.trainable,
            "backbone_name": self.backbone_name,
            # keras-hub backbones rebuild from constructor arguments, which
            # forgets which of their layers were frozen: keep that in the config.
            "backbone_trainable": self.backbone.trainable,
            "backbone_layers_trainable": {layer.name: layer.trainable for layer in self.backbone.layers},
        }

    @classmethod
    def from_config(cls, config):
        # The constructor builds the graph again, so the contract's tensors
        # (head_features, backbone_outputs) are those of the loaded model.
        config = dict(config)
        backbone_name = config.pop("backbone_name", None)
        backbone = keras.saving.deserialize_keras_object(config.pop("backbone"))
        backbone_trainable = config.pop("backbone_trainable", None)
        layers_trainable = config.pop("backbone_layers_trainable", None) or {}
        if backbone_trainable is not None:
            backbone.trainable = backbone_trainable
        for layer in backbone.layers:
            if layer.name in layers_trainable:
                layer.trainable = layers_trainable[layer.name]
        preprocessor = config.pop("preprocessor", None)
        model = cls(
            backbone,
            preprocessor=keras.saving.deserialize_keras_object(preprocessor) if preprocessor else None,
            head=cls.head_from_config(config.pop("head")),
            **config,
        )
        model.backbone_name = backbone_name or model.backbone_name
        return model

    @classmethod
    def head_from_config(cls, config):
        """The head of a saved model from its config: a `Head` (a multi-task model's is a `TaskHeads`)."""
        return Head.from_config(config)


def resolve_head(head, num_classes, class_names):
    """The task's head and class names from whichever of the three were given."""
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        if num_classes is not None and num_classes != len(class_names):
            raise ValueError(f"num_classes={num_classes} but {len(class_names)} class_names were given.")
        num_classes = num_classes or len(class_names)
    if head is None:
        if num_classes is None:
            raise ValueError("Pass num_classes (or class_names, or a head) to size the head.")
        head = Head.multiclass(num_classes)
    return head, class_names


def _as_tuple(data):
    """`validation_data` as `(x, y, sample_weight)` arguments: a tuple of arrays spread out, a dataset alone."""
    return data if isinstance(data, tuple) else (data,)
