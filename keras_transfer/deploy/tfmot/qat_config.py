"""What quantization-aware training needs beyond TF-MOT's defaults.

An output-only `QuantizeConfig` (float math, int8 output: the preprocessing
layer before an int8 backbone), and activation ranges calibrated on real data
before training, where TF-MOT starts at [-6, 6] and follows a slow moving average.
"""

import contextlib

import tensorflow as tf

from keras_transfer.deploy.tfmot.bridge import tfmot


def output_quantize_config():
    """A TF-MOT QuantizeConfig that keeps a layer's math float and quantizes its output."""
    quantize = tfmot().quantization.keras

    class OutputOnlyQuantizeConfig(quantize.QuantizeConfig):
        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [
                quantize.quantizers.MovingAverageQuantizer(
                    num_bits=8, per_axis=False, symmetric=False, narrow_range=False
                )
            ]

        def get_config(self):
            return {}

    return OutputOnlyQuantizeConfig()


@contextlib.contextmanager
def _range_decay(decay):
    """Makes TF-MOT's moving-average range quantizers use `decay` instead of 0.999.

    TF-MOT hard-codes the decay, so the function it calls is swapped for the
    duration (only graphs traced inside see it).
    """
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    original = quant_ops.MovingAvgQuantize

    def with_decay(*args, **kwargs):
        kwargs["ema_decay"] = decay
        return original(*args, **kwargs)

    quant_ops.MovingAvgQuantize = with_decay
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = original


def calibrate_ranges(quantized, train_data, num_batches, batch_size):
    """Sets every quantizer's range from real data before training moves a weight.

    Forward passes in training mode (where quantizers update their ranges)
    with a decay of k/(k+1) at batch k: each activation range becomes the
    mean of the batches' min and max, and each weight range its kernel's.
    """
    decay = tf.Variable(0.0, trainable=False, dtype=tf.float32)
    batches = (
        (train_data[0][start : start + batch_size] for start in range(0, len(train_data[0]), batch_size))
        if isinstance(train_data, tuple)
        else (batch[0] for batch in train_data)
    )
    with _range_decay(decay):

        @tf.function
        def observe(inputs):
            quantized(inputs, training=True)

        for index, inputs in enumerate(batches):
            if index >= num_batches:
                break
            decay.assign(index / (index + 1))
            observe(tf.convert_to_tensor(inputs))
