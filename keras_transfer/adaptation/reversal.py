"""DANN's gradient-reversal layer and the schedule of its weight.

The layer is the identity going forward and multiplies the gradient by
`-weight` going back: the domain classifier above it learns to tell the
domains apart while the backbone below it learns to make that impossible.
The weight starts at 0 (the domain classifier's first guesses would only add
noise) and rises to its maximum along Ganin et al.'s schedule,
`2 / (1 + exp(-10 p)) - 1` over training progress `p` in [0, 1].

>>> [round(reversal_weight(p), 3) for p in (0.0, 0.1, 0.5, 1.0)]
[0.0, 0.462, 0.987, 1.0]
"""

import math

import keras
import tensorflow as tf


def reversal_weight(progress, maximum=1.0, *, gamma=10.0):
    """DANN's reversal weight at training `progress` in [0, 1]: `maximum * (2 / (1 + exp(-gamma p)) - 1)`."""
    progress = min(max(float(progress), 0.0), 1.0)
    return maximum * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)


@tf.custom_gradient
def _reverse(inputs, weight):
    def gradient(upstream):
        return -tf.cast(weight, upstream.dtype) * upstream, tf.zeros_like(weight)

    return tf.identity(inputs), gradient


@keras.saving.register_keras_serializable(package="keras_transfer")
class GradientReversal(keras.layers.Layer):
    """The identity forward; the gradient times `-weight` backward (DANN's gradient-reversal layer).

    `weight` is a non-trainable variable, so a callback (`ReversalSchedule`)
    can change it between steps without retracing.

    Args:
        weight: the starting reversal weight.

    Example:
    >>> layer = GradientReversal(weight=0.5)
    >>> x = tf.constant([[1.0, 2.0]])
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = tf.reduce_sum(layer(x))
    >>> tape.gradient(y, x).numpy().tolist()
    [[-0.5, -0.5]]
    """

    def __init__(self, weight=1.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_weight = float(weight)
        self.weight = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.initial_weight),
            trainable=False,
            name="reversal_weight",
        )

    def call(self, inputs):
        return _reverse(inputs, tf.convert_to_tensor(self.weight))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "weight": self.initial_weight}


class ReversalSchedule(keras.callbacks.Callback):
    """Sets a `GradientReversal` layer's weight before every training step along `reversal_weight`.

    Args:
        layer: the `GradientReversal` layer.
        total_steps: the steps of the whole run (progress 1 at the last).
        maximum: the weight the schedule rises to.
    """

    def __init__(self, layer, total_steps, maximum=1.0):
        super().__init__()
        self.layer, self.total_steps, self.maximum = layer, max(1, int(total_steps)), float(maximum)
        self.step = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.layer.weight.assign(reversal_weight(self.step / self.total_steps, self.maximum))
        self.step += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["reversal_weight"] = float(self.layer.weight.numpy())
