"""Keras layers the tasks put inside their models, and the one pooling vocabulary they share.

`BackbonePreprocessing` turns raw pixels into what an image backbone expects;
`TokenPooling` reduces a token sequence to one vector. Poolings are spelled
the same for images and text: `"mean"` and `"max"` (plus `"flatten"` for
feature maps, `"cls"` and `"pooled"` for token sequences); `"avg"`, the
spelling of keras_transfer 0.1.0's image heads, is read as `"mean"`.
"""

import keras

# Older spellings, still accepted (saved 0.1.0 models say "avg").
POOLING_ALIASES = {"avg": "mean"}
TOKEN_POOLINGS = ("cls", "mean", "max")


def canonical_pooling(pooling):
    """The one spelling of a pooling name: `"avg"` -> `"mean"`, others unchanged."""
    return POOLING_ALIASES.get(pooling, pooling)


def global_pooling(pooling, rank, name):
    """A layer that pools a rank-3 token sequence or a rank-4 feature map with `"mean"`, `"max"` or `"flatten"`."""
    pooling = canonical_pooling(pooling)
    if pooling == "flatten":
        return keras.layers.Flatten(name=name)
    return {
        ("mean", 3): keras.layers.GlobalAveragePooling1D,
        ("max", 3): keras.layers.GlobalMaxPooling1D,
        ("mean", 4): keras.layers.GlobalAveragePooling2D,
        ("max", 4): keras.layers.GlobalMaxPooling2D,
    }[(pooling, rank)](name=name)


@keras.saving.register_keras_serializable(package="keras_transfer")
class BackbonePreprocessing(keras.layers.Layer):
    """Turns raw pixels in [0, 255] into the backbone's expected input.

    Lives inside the model so that a saved or exported model takes raw pixels.

    Args:
        mode: a `keras.applications` module name whose `preprocess_input` to
            apply (e.g. `"mobilenet_v2"`), `"unit"` to scale to [0, 1], or
            `"none"` for no change.
    """

    def __init__(self, mode="none", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("none", "unit") and not hasattr(getattr(keras.applications, mode, None), "preprocess_input"):
            raise ValueError(
                f"Unknown preprocessing mode {mode!r}: use 'none', 'unit' or a "
                "keras.applications module name such as 'mobilenet_v2'."
            )
        self.mode = mode

    def call(self, images):
        images = keras.ops.cast(images, self.compute_dtype)
        if self.mode == "none":
            return images
        if self.mode == "unit":
            return images / 255.0
        return getattr(keras.applications, self.mode).preprocess_input(images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="keras_transfer")
class TokenPooling(keras.layers.Layer):
    """Reduces a token sequence to one vector, ignoring padding.

    Args:
        mode: `"mean"` (masked mean, what sentence-transformers use), `"max"`
            (masked max) or `"cls"` (the first token).
    """

    def __init__(self, mode="mean", **kwargs):
        super().__init__(**kwargs)
        mode = canonical_pooling(mode)
        if mode not in TOKEN_POOLINGS:
            raise ValueError(f"Unknown token pooling {mode!r}: use 'mean', 'max' or 'cls'.")
        self.mode = mode

    def call(self, sequence, padding_mask):
        if self.mode == "cls":
            return sequence[:, 0, :]
        mask = keras.ops.cast(keras.ops.expand_dims(padding_mask, -1), sequence.dtype)
        if self.mode == "max":
            return keras.ops.max(sequence + (mask - 1.0) * 1e9, axis=1)
        total = keras.ops.sum(sequence * mask, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)

    def compute_output_shape(self, sequence_shape, padding_mask_shape):
        return (sequence_shape[0], sequence_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
