"""`ImageClassifier`: preprocessing + pretrained backbone + new head, as one Keras model."""

import time

import keras
import numpy as np

from keras_transfer import data as data_lib
from keras_transfer.backbones import BackbonePreprocessing, build_backbone
from keras_transfer.freezing import freeze, parameter_counts, recompile, unfreeze
from keras_transfer.heads import Head
from keras_transfer.training import FineTuneHistory, make_optimizer, phase_callbacks


@keras.saving.register_keras_serializable(package="keras_transfer")
class ImageClassifier(keras.Model):
    """A pretrained backbone with a new head, ready for transfer learning.

    The model takes raw pixels in [0, 255]: the backbone's own preprocessing
    sits inside it, so saved and exported models need no outside code. The
    backbone is always called with `training=False`, which keeps its
    BatchNormalization layers in inference mode even after unfreezing.

    Args:
        backbone: a registry name (see `list_backbones()`), a keras-hub preset
            or folder, or a headless `keras.Model`.
        num_classes: number of classes for the default multiclass head.
        weights: `"imagenet"`, `None` or a weights file (for named backbones).
        image_size: int or (height, width); defaults to the backbone's own.
        head: a `Head`; defaults to `Head.multiclass(num_classes)`.
        class_names: names of the classes, kept with the saved model.
        preprocessor: for a `keras.Model` backbone, the preprocessing in front
            of it: a layer, a `BackbonePreprocessing` mode name (e.g. `"unit"`
            or `"mobilenet_v2"`), or None for none.

    Example:
    >>> model = ImageClassifier("mobilenet_v2", num_classes=3, weights=None, image_size=32)
    >>> model.output_shape
    (None, 3)
    """

    def __init__(
        self,
        backbone="mobilenet_v2",
        num_classes=None,
        *,
        weights="imagenet",
        image_size=None,
        head=None,
        class_names=None,
        preprocessor=None,
        **kwargs,
    ):
        channels = 3
        if isinstance(backbone, keras.Model):
            backbone_name = backbone.name
            channels = backbone.input_shape[-1] or 3
            if image_size is None:
                image_size = tuple(backbone.input_shape[1:3])
            elif isinstance(image_size, int):
                image_size = (image_size, image_size)
            if isinstance(preprocessor, str):
                preprocessor = BackbonePreprocessing(preprocessor, name="preprocessing")
        else:
            built = build_backbone(backbone, weights=weights, image_size=image_size)
            backbone, preprocessor, image_size = built.model, built.preprocessor, built.image_size
            backbone_name = built.name
        if None in tuple(image_size):
            raise ValueError(
                f"The backbone {backbone_name!r} has no fixed input size: pass image_size."
            )
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

        inputs = keras.Input(shape=(*image_size, channels), name="image")
        x = preprocessor(inputs) if preprocessor is not None else inputs
        features = backbone(x, training=False)
        outputs = head.build(features)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        self.backbone = backbone
        self.preprocessor = preprocessor
        self.head = head
        self.class_names = class_names
        self.image_size = tuple(int(size) for size in image_size)
        self.backbone_name = backbone_name

    @classmethod
    def create(
        cls,
        train,
        validation_data=None,
        *,
        backbone="mobilenet_v2",
        weights="imagenet",
        image_size=None,
        head=None,
        strategy=None,
        **fine_tune_options,
    ):
        """Builds a classifier for `train` and fine-tunes it, inside `strategy`'s scope.

        The number of classes and their names come from the data. Any
        `tf.distribute.Strategy` works; the model is built and compiled in its
        scope. Other keyword arguments go to `fine_tune`.

        Returns:
            `(model, FineTuneHistory)`.
        """
        import tensorflow as tf

        class_names = data_lib.class_names_of(train)
        if head is None and class_names is None:
            raise ValueError(
                "The training data carries no class_names: load it with "
                "keras_transfer.data, or pass head=Head.multiclass(num_classes)."
            )
        strategy = strategy or tf.distribute.get_strategy()
        with strategy.scope():
            model = cls(
                backbone,
                weights=weights,
                image_size=image_size,
                head=head,
                class_names=class_names,
            )
        history = model.fine_tune(train, validation_data, **fine_tune_options)
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

        Takes the selectors of `keras_transfer.freezing.select_layers`: `top`,
        `names`, `up_to`, `from_layer`.
        """
        frozen = freeze(self.backbone, **selector)
        self._recompile()
        return frozen

    def unfreeze_backbone(self, **selector):
        """Unfreezes the backbone (or the selected layers of it) and recompiles.

        BatchNormalization layers stay frozen and in inference mode. Takes
        `top` (count or fraction from the top), `names`, `up_to`, `from_layer`.
        """
        unfrozen = unfreeze(self.backbone, **selector)
        self._recompile()
        return unfrozen

    def _recompile(self, **options):
        if self.compiled:
            recompile(self, **options)

    def parameter_counts(self):
        """`(trainable, total)` parameter counts."""
        return parameter_counts(self)

    # --- training --------------------------------------------------------

    def fine_tune(
        self,
        train,
        validation_data=None,
        *,
        head_epochs=5,
        finetune_epochs=5,
        unfreeze=0.3,
        optimizer="adam",
        finetune_optimizer="rmsprop",
        head_learning_rate=1e-3,
        finetune_learning_rate=1e-5,
        early_stopping=None,
        checkpoint_dir=None,
        callbacks=(),
        batch_size=None,
        verbose="auto",
    ):
        """Trains the head on a frozen backbone, then fine-tunes the top of the backbone.

        The two-phase recipe of the Keras transfer-learning guide, with the
        details done for you: BatchNormalization stays in inference mode, the
        model is recompiled after every change of `trainable`, and the second
        phase continues the epoch count of the first.

        Args:
            train: a `tf.data.Dataset` of `(images, labels)` (e.g. from
                `keras_transfer.data`) or an `(images, labels)` tuple of arrays.
            validation_data: the same kinds, or None.
            head_epochs: epochs of the frozen-backbone phase (0 to skip it).
            finetune_epochs: epochs of the fine-tuning phase (0 to skip it).
            unfreeze: how much of the backbone to unfreeze: a count of layers
                from the top (int), a fraction of its layers (float), a layer
                name (that layer and all above it), or `"all"`.
            optimizer: optimizer of the head phase (`"adam"`, `"rmsprop"`,
                `"sgd"` or an instance).
            finetune_optimizer: optimizer of the fine-tuning phase.
            head_learning_rate: learning rate of the head phase.
            finetune_learning_rate: learning rate of the fine-tuning phase.
            early_stopping: patience in epochs (restoring the best weights), or None.
            checkpoint_dir: folder for `best_head.keras` and `best_finetune.keras`.
            callbacks: more Keras callbacks, used in both phases.
            batch_size: for array inputs.
            verbose: Keras's `verbose` (progress bars by default).

        Returns:
            A `FineTuneHistory` with both phases' histories and seconds.
        """
        self.check_data(train, validation_data)
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
        if head_epochs:
            self.freeze_backbone()
            self.compile(optimizer, learning_rate=head_learning_rate)
            start = time.perf_counter()
            head_history = self.fit(
                x, y, epochs=head_epochs,
                callbacks=[*phase_callbacks("head", **phase_options), *callbacks],
                **fit_kwargs,
            )
            seconds["head"] = time.perf_counter() - start
        if finetune_epochs:
            # Exactly the chosen top part trains, whatever the state before.
            freeze(self.backbone)
            self.unfreeze_backbone(**_unfreeze_selector(unfreeze))
            self.compile(finetune_optimizer, learning_rate=finetune_learning_rate)
            # Continue the epoch count where the head phase stopped (early or not).
            first_epoch = len(head_history.epoch) if head_history is not None else 0
            start = time.perf_counter()
            finetune_history = self.fit(
                x, y, initial_epoch=first_epoch, epochs=first_epoch + finetune_epochs,
                callbacks=[*phase_callbacks("finetune", **phase_options), *callbacks],
                **fit_kwargs,
            )
            seconds["finetune"] = time.perf_counter() - start
        return FineTuneHistory(head_history, finetune_history, seconds)

    def check_data(self, train, validation_data):
        """Fails before any training on data that cannot fit this model."""
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
                    f"{val_names}: use folders with the same class sub-folders."
                )
        if self.class_names and train_names and list(train_names) != self.class_names:
            raise data_lib.DataError(
                f"The model's classes {self.class_names} differ from the data's "
                f"{train_names}: train on data with the same classes, in the same order."
            )
        if train_names and self.class_names is None and self.head.task == "multiclass":
            self.class_names = list(train_names)
        for dataset in (train, validation_data):
            shape = _image_shape(dataset)
            if shape is not None and None not in shape and tuple(shape) != self.image_size:
                raise data_lib.DataError(
                    f"The data's images are {shape[0]}x{shape[1]} but the model takes "
                    f"{self.image_size[0]}x{self.image_size[1]}: load the data with "
                    f"image_size={self.image_size[0]}."
                )

    # --- inference -------------------------------------------------------

    def feature_extractor(self, pooling=None):
        """A model from raw pixels to pooled backbone features (the head's pooling by default)."""
        pooling = pooling or self.head.pooling
        x = self.preprocessor(self.inputs[0]) if self.preprocessor is not None else self.inputs[0]
        features = self.backbone(x, training=False)
        if len(features.shape) > 2:
            features = Head.regression(pooling=pooling).pool(features)
        return keras.Model(self.inputs[0], features, name=f"{self.name}_features")

    def predict_classes(self, images, *, batch_size=32):
        """Returns `(class indices, probabilities)` for a batch of raw images.

        Probabilities are those of the predicted class (softmax applied when
        the head outputs logits).
        """
        outputs = np.asarray(self.predict(images, batch_size=batch_size, verbose=0))
        if self.head.task != "multiclass" and self.head.task != "binary":
            raise ValueError(f"predict_classes needs a classification head, not {self.head.task!r}.")
        if self.head.task == "binary":
            scores = 1 / (1 + np.exp(-outputs[:, 0])) if self.head.from_logits else outputs[:, 0]
            indices = (scores >= 0.5).astype(int)
            return indices, np.where(indices == 1, scores, 1 - scores)
        if self.head.from_logits:
            outputs = np.exp(outputs - outputs.max(axis=1, keepdims=True))
            outputs /= outputs.sum(axis=1, keepdims=True)
        indices = outputs.argmax(axis=1)
        return indices, outputs[np.arange(len(indices)), indices]

    # --- saving ----------------------------------------------------------

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
            "head": self.head.get_config(),
            "class_names": self.class_names,
            "image_size": list(self.image_size),
            "name": self.name,
            "trainable": self.trainable,
            "backbone_name": self.backbone_name,
            # keras-hub backbones rebuild from constructor arguments, which
            # forgets which of their layers were frozen: keep that here.
            "backbone_trainable": self.backbone.trainable,
            "backbone_layers_trainable": {layer.name: layer.trainable for layer in self.backbone.layers},
        }

    @classmethod
    def from_config(cls, config):
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
        preprocessor = config.pop("preprocessor")
        model = cls(
            backbone,
            preprocessor=keras.saving.deserialize_keras_object(preprocessor) if preprocessor else None,
            head=Head.from_config(config.pop("head")),
            image_size=tuple(config.pop("image_size")),
            **config,
        )
        model.backbone_name = backbone_name or model.backbone_name
        return model


def _unfreeze_selector(unfreeze):
    if unfreeze == "all":
        return {}
    if isinstance(unfreeze, str):
        return {"from_layer": unfreeze}
    return {"top": unfreeze}


def _split_xy(data):
    if isinstance(data, tuple):
        images, labels = data
        return np.asarray(images), np.asarray(labels)
    return data, None


def _as_fit_data(data):
    if isinstance(data, tuple):
        return tuple(np.asarray(part) for part in data)
    return data


def _image_shape(data):
    if data is None:
        return None
    if isinstance(data, tuple):
        return np.asarray(data[0]).shape[1:3]
    spec = data.element_spec
    image_spec = spec[0] if isinstance(spec, tuple) else spec
    return tuple(image_spec.shape[1:3])
