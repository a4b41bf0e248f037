"""`ImageClassifier`: preprocessing + pretrained backbone + new head, as one Keras model."""

import keras
import numpy as np

from keras_transfer import data as data_lib
from keras_transfer.models.heads import POOLINGS
from keras_transfer.models.image_backbones import build_backbone
from keras_transfer.models.layers import BackbonePreprocessing, canonical_pooling, global_pooling
from keras_transfer.models.transfer_model import TransferModel, resolve_head


@keras.saving.register_keras_serializable(package="keras_transfer")
class ImageClassifier(TransferModel):
    """A pretrained backbone with a new head, ready for transfer learning.

    The model takes raw pixels in [0, 255]: the backbone's own preprocessing
    sits inside it, so saved and exported models need no outside code. A
    pretrained backbone's BatchNormalization layers are frozen, so they stay
    in inference mode (ImageNet statistics) even after unfreezing; a backbone
    trained from scratch needs `train_batch_norm=True`, so that
    BatchNormalization learns its statistics.

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
        train_batch_norm: False (the default, right for pretrained weights)
            keeps BatchNormalization in inference mode and frozen through
            `unfreeze_backbone`; True lets it use batch statistics while
            training and unfreezes it with the layers around it, as training
            from random weights (`weights=None`) needs.

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
        train_batch_norm=False,
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
            raise ValueError(f"The backbone {backbone_name!r} has no fixed input size: pass image_size.")
        head, class_names = resolve_head(head, num_classes, class_names)

        inputs = keras.Input(shape=(*image_size, channels), name="image")
        x = preprocessor(inputs) if preprocessor is not None else inputs
        if not train_batch_norm:
            # Keras 3 lets the outer model's training=True override the
            # training=False below, so only a frozen BatchNormalization is sure
            # to stay in inference mode when the model is fit directly.
            for layer in backbone._flatten_layers(include_self=False):
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        features = backbone(x) if train_batch_norm else backbone(x, training=False)
        head_features = head.pool(features)
        super().__init__(
            inputs=inputs,
            outputs=head.build(head_features),
            backbone=backbone,
            head=head,
            head_features=head_features,
            backbone_outputs=features,
            preprocessor=preprocessor,
            class_names=class_names,
            backbone_name=backbone_name,
            train_batch_norm=train_batch_norm,
            **kwargs,
        )
        self.image_size = tuple(int(size) for size in image_size)

    def check_data(self, train, validation_data):
        """Fails before any training on data that cannot fit this model."""
        super().check_data(train, validation_data)
        channels = self.inputs[0].shape[-1]
        for dataset in (train, validation_data):
            rank = _image_rank(dataset)
            if rank is not None and rank != 4:
                raise data_lib.DataError(
                    f"The images must be a batch of shape (examples, height, width, {channels}), got rank {rank}: "
                    + (
                        "add the channel axis (e.g. np.stack([x] * 3, axis=-1) for grayscale)."
                        if rank == 3
                        else "give one image per example."
                    )
                )
            if rank == 4 and channels is not None and _image_channels(dataset) not in (None, channels):
                raise data_lib.DataError(
                    f"The images have {_image_channels(dataset)} channels but the model takes {channels}: "
                    "convert them (e.g. grayscale to RGB) before training."
                )
            shape = _image_shape(dataset)
            if shape is not None and None not in shape and tuple(shape) != self.image_size:
                raise data_lib.DataError(
                    f"The data's images are {shape[0]}x{shape[1]} but the model takes "
                    f"{self.image_size[0]}x{self.image_size[1]}: load the data with "
                    f"image_size={self.image_size[0]}."
                )

    # --- features ----------------------------------------------------------

    def pooled_features(self, pooling):
        """The backbone's output pooled with `"mean"`, `"max"` or `"flatten"` (`"avg"` means `"mean"`)."""
        pooling = canonical_pooling(pooling)
        if pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}.")
        rank = len(self.backbone_outputs.shape)
        # A backbone that pools itself gives vectors: they are the head's features.
        if pooling == self.head.pooling or rank == 2:
            return self.head_features
        return global_pooling(pooling, rank, name=f"features_{pooling}_pooling")(self.backbone_outputs)

    # --- saving ----------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": list(self.image_size),
            "train_batch_norm": self.train_batch_norm,
        }


def _image_spec_shape(data):
    if data is None:
        return None
    if isinstance(data, tuple):
        return np.shape(data[0])
    spec = data.element_spec
    image_spec = spec[0] if isinstance(spec, tuple) else spec
    return tuple(image_spec.shape) if image_spec.shape.rank is not None else None


def _image_rank(data):
    shape = _image_spec_shape(data)
    return None if shape is None else len(shape)


def _image_channels(data):
    shape = _image_spec_shape(data)
    return None if shape is None else shape[-1]


def _image_shape(data):
    if data is None:
        return None
    if isinstance(data, tuple):
        return np.asarray(data[0]).shape[1:3]
    spec = data.element_spec
    image_spec = spec[0] if isinstance(spec, tuple) else spec
    return tuple(image_spec.shape[1:3])
