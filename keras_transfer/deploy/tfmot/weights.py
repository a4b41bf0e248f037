"""Copying a Keras 3 model's weights into its tf_keras twin, BatchNormalization folded in where planned."""

import keras
import numpy as np


def copy_weights(bridged, folded=None):
    """Copies each Keras 3 layer's weights into its tf_keras twin, checking every one."""
    for tf_layer in bridged.layers:
        source = getattr(tf_layer, "_keras_transfer_source", None)
        if source is None:
            continue
        layer, bn = source
        values = [np.asarray(weight) for weight in layer.weights]
        if bn is not None:
            values = _fold(layer, bn, values)
            if folded is not None:
                folded[bn.name] = tf_layer.name
        targets = tf_layer.weights
        if len(targets) != len(values):
            raise ValueError(
                f"Layer {layer.name!r} has {len(values)} weights in Keras 3 but {len(targets)} in "
                "tf_keras: it does not translate."
            )
        for target, value, weight in zip(targets, values, layer.weights + [None] * len(values)):
            if tuple(target.shape) != value.shape:
                raise ValueError(
                    f"Weight {target.name!r} of layer {layer.name!r} has shape {tuple(target.shape)} "
                    f"in tf_keras but {value.shape} in Keras 3."
                )
            if bn is None and _short_name(target.name) != _short_name(weight.name):
                raise ValueError(
                    f"Layer {layer.name!r}: tf_keras weight {target.name!r} would receive Keras 3 "
                    f"weight {weight.name!r}."
                )
        tf_layer.set_weights(values)


def _short_name(name):
    short = name.split("/")[-1].split(":")[0]
    return {"depthwise_kernel": "kernel"}.get(short, short)


def _fold(layer, bn, values):
    """Weights of `layer` with the inference-mode BatchNormalization `bn` folded in."""
    kernel = values[0]
    bias = (
        values[1]
        if len(values) > 1
        else np.zeros(kernel.shape[-1] if not _depthwise(layer) else kernel.shape[-2] * kernel.shape[-1], "float32")
    )
    bn_weights = {_short_name(weight.name): np.asarray(weight) for weight in bn.weights}
    channels = bn_weights["moving_mean"].shape[0]
    gamma = bn_weights.get("gamma", np.ones(channels, "float32"))
    beta = bn_weights.get("beta", np.zeros(channels, "float32"))
    scale = gamma / np.sqrt(bn_weights["moving_variance"] + bn.epsilon)
    if _depthwise(layer):  # kernel (h, w, in, multiplier): output channel = in * multiplier + m
        kernel = kernel * scale.reshape(kernel.shape[-2], kernel.shape[-1])
    else:
        kernel = kernel * scale
    bias = (bias - bn_weights["moving_mean"]) * scale + beta
    return [kernel.astype("float32"), bias.astype("float32")]


def _depthwise(layer):
    return isinstance(layer, keras.layers.DepthwiseConv2D)
