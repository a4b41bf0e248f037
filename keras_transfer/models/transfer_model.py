"""`TransferModel`: what every keras_transfer task shares (backbone + head, freezing, fine-tuning).

`ImageClassifier` and `TextClassifier` are functional Keras models built from a
backbone and a `Head`; this base class gives them the same answers to the
transfer-learning questions: compile with the head's loss, freeze and unfreeze
the backbone, two-phase fine-tuning, LoRA, class predictions.
"""

import keras
import numpy as np

from keras_transfer import data as data_lib
from keras_transfer.finetune import two_phase
from keras_transfer.finetune.freezing import freeze, parameter_counts, recompile, unfreeze
from keras_transfer.finetune.optimizers import make_optimizer
from keras_transfer.finetune.recipes import IMAGE_RECIPE
from keras_transfer.models.heads import Head

# Layers keras-hub and the Keras guides put LoRA on: the attention projections.
DEFAULT_LORA_TARGETS = ("query_dense", "value_dense", "query", "value")


class TransferModel(keras.Model):
    """Base class of the keras_transfer tasks; subclasses build the graph.

    Subclasses set `self.backbone`, `self.head` and `self.class_names` after
    building their functional graph, and may change `RECIPE`.
    """

    # What `fine_tune` does when given no recipe.
    RECIPE = IMAGE_RECIPE

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
        self.train_lora_only()
        self._recompile()
        return [layer.name for layer in adaptable]

    def train_lora_only(self):
        """Trains the LoRA adapters and the head; everything else in the backbone is frozen."""
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

    def fine_tune(self, train, validation_data=None, recipe=None, *, checkpoint_dir=None, callbacks=(),
                  batch_size=None, verbose="auto", **options):
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
            **options: `Recipe` options that change the recipe for this call,
                e.g. `head_epochs=3, unfreeze=0.5` (see `Recipe` for all);
                `unfreeze` also takes a `ProgressiveUnfreezing` callback.

        Returns:
            A `FineTuneHistory` with both phases' histories and seconds.
        """
        recipe = (recipe or self.RECIPE).replace(**options)
        return two_phase.fine_tune(self, train, validation_data, recipe, checkpoint_dir=checkpoint_dir,
                                   callbacks=callbacks, batch_size=batch_size, verbose=verbose)

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

    def labelled_dataset(self, data, batch_size):
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
