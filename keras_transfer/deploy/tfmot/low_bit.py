"""Weights with fewer than 8 bits, trained: binary, ternary and int4 kernels through TF-MOT's QuantizeConfig.

Post-training, 4 bits on every layer breaks a MobileNetV2 (accuracy at chance)
and 1 or 2 bits are out of reach. Training with the quantized kernel in the
forward pass and the float ("latent") kernel receiving the gradient as if
quantization were the identity (the straight-through estimator) lets the
other weights make up for it. Each scheme quantizes a kernel per output
channel (its last axis) with a scale alpha:

- `"binary"`: sign(w) * alpha, alpha = mean |w| (XNOR-Net's least-squares scale);
- `"ternary"`: {-alpha, 0, +alpha}: w = 0 where |w| <= 0.7 mean |w|, alpha = mean
  |w| above that threshold (Ternary Weight Networks);
- `"int4"`: round(w / s) * s in [-8, 7] * s, s = max |w| / 7: exactly the
  LiteRT Quantizer's symmetric per-channel int4 grid, so storing the trained
  kernel in int4 loses nothing more.

Every scheme's values lie on that int4 grid (+-alpha maps to +-7), so the
exported file stores the chosen kernels in int4 and the others in int8
(weight-only, `Quantization.mixed`). TFLite has no 1- or 2-bit storage:
`bit_packed_size_bytes` says what the file would weigh with the binary or
ternary kernels packed at 1 or 2 bits per weight.
"""

import tensorflow as tf

from keras_transfer.deploy.tfmot.bridge import tfmot

# Bits per weight of each scheme when packed (ternary's three values take two bits; five per byte would take 1.6).
SCHEMES = {"binary": 1, "ternary": 2, "int4": 4}
# TWN's threshold: weights within this fraction of the mean |w| become 0.
TERNARY_THRESHOLD = 0.7
# TFLite stores the kernels in int4 (two per byte): the packed size replaces those bytes.
STORED_BITS = 4


def check_scheme(scheme):
    if scheme not in SCHEMES:
        raise ValueError(f"Unknown low-bit scheme {scheme!r}; valid ones are {', '.join(SCHEMES)}.")
    return scheme


def quantize_kernel(kernel, scheme):
    """`kernel` with each output channel (last axis) on `scheme`'s values; works on tensors and arrays."""
    kernel = tf.convert_to_tensor(kernel, tf.float32)
    axes = list(range(len(kernel.shape) - 1))
    magnitude = tf.abs(kernel)
    if scheme == "binary":
        alpha = tf.reduce_mean(magnitude, axis=axes, keepdims=True)
        # sign(0) would be a third value: zeros go to +alpha.
        return tf.where(kernel >= 0, alpha, -alpha)
    if scheme == "ternary":
        kept = magnitude > TERNARY_THRESHOLD * tf.reduce_mean(magnitude, axis=axes, keepdims=True)
        kept_count = tf.reduce_sum(tf.cast(kept, tf.float32), axis=axes, keepdims=True)
        alpha = tf.math.divide_no_nan(
            tf.reduce_sum(tf.where(kept, magnitude, 0.0), axis=axes, keepdims=True), kept_count
        )
        return tf.where(kept, tf.sign(kernel) * alpha, 0.0)
    step = tf.maximum(tf.reduce_max(magnitude, axis=axes, keepdims=True), 1e-12) / 7.0
    return tf.clip_by_value(tf.round(kernel / step), -8.0, 7.0) * step


def straight_through(kernel, scheme):
    """The quantized kernel forward, the identity's gradient backward."""
    return kernel + tf.stop_gradient(quantize_kernel(kernel, scheme) - kernel)


def quantize_config(scheme):
    """A TF-MOT QuantizeConfig that trains a layer's kernel on `scheme` and leaves its activations float."""
    check_scheme(scheme)
    quantize = tfmot().quantization.keras

    class KernelQuantizer(quantize.quantizers.Quantizer):
        def build(self, tensor_shape, name, layer):
            return {}

        def __call__(self, inputs, training, weights, **kwargs):
            return straight_through(inputs, scheme)

        def get_config(self):
            return {}

    class LowBitKernelConfig(quantize.QuantizeConfig):
        def get_weights_and_quantizers(self, layer):
            return [(layer.kernel, KernelQuantizer())]

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            layer.kernel = quantize_weights[0]

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    return LowBitKernelConfig()


def kernels_only_scheme():
    """A TF-MOT QuantizeScheme that wraps only the layers given a config: no layout transforms, and no
    8-bit quantization of the activations flowing into them (which the default scheme adds)."""
    quantize = tfmot().quantization.keras

    class Untransformed(quantize.QuantizeLayoutTransform):
        def apply(self, model, layer_quantize_map):
            return model, layer_quantize_map

    class NoDefaults(quantize.QuantizeRegistry):
        def get_quantize_config(self, layer):
            return None

        def supports(self, layer):
            return False

    class KernelsOnly(quantize.QuantizeScheme):
        def get_layout_transformer(self):
            return Untransformed()

        def get_quantize_registry(self):
            return NoDefaults()

    return KernelsOnly()


def packed_bytes(count, bits):
    """Bytes that `count` values take at `bits` each, packed."""
    return -(-count * bits // 8)


def bit_packed_size_bytes(file_size_bytes, kernel_sizes, scheme):
    """The size of a file holding kernels of `kernel_sizes` weights in int4, with them packed at `scheme`'s
    bits instead (their per-channel scales stay as the file stores them)."""
    saved = sum(packed_bytes(size, STORED_BITS) - packed_bytes(size, SCHEMES[scheme]) for size in kernel_sizes)
    return int(file_size_bytes - saved)
