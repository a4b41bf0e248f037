"""Feature-alignment losses between a batch of source and a batch of target features.

Both take `(n, d)` and `(m, d)` feature batches and return a scalar that is 0
when the two batches' statistics agree; added to the classification loss
while fine-tuning, they pull the backbone's features of the two domains
together.

>>> import numpy as np
>>> same = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
>>> float(coral_loss(same, same)), round(float(mmd_loss(same, same)), 6)
(0.0, 0.0)
"""

import tensorflow as tf

from keras_transfer.adaptation.methods import MMD_BANDWIDTHS


def _covariance(features):
    features = tf.cast(features, tf.float32)
    count = tf.cast(tf.shape(features)[0], tf.float32)
    centred = features - tf.reduce_mean(features, axis=0, keepdims=True)
    return tf.matmul(centred, centred, transpose_a=True) / tf.maximum(count - 1.0, 1.0)


def coral_loss(source, target):
    """Deep CORAL: `||C_source - C_target||_F^2 / (4 d^2)`, the distance between the feature covariances."""
    dimensions = tf.cast(tf.shape(source)[-1], tf.float32)
    difference = _covariance(source) - _covariance(target)
    return tf.reduce_sum(tf.square(difference)) / (4.0 * dimensions * dimensions)


def _squared_distances(first, second):
    first_norms = tf.reduce_sum(tf.square(first), axis=1, keepdims=True)
    second_norms = tf.reduce_sum(tf.square(second), axis=1, keepdims=True)
    distances = first_norms - 2.0 * tf.matmul(first, second, transpose_b=True) + tf.transpose(second_norms)
    return tf.maximum(distances, 0.0)


def mmd_loss(source, target, bandwidths=MMD_BANDWIDTHS):
    """The squared maximum mean discrepancy (biased estimate) with a sum of Gaussian kernels.

    `k(x, y) = sum_b exp(-||x - y||^2 / (b * s))`, where `s` is the mean
    squared distance between distinct points of both batches (not
    differentiated) and `b` runs over `bandwidths`; the loss is
    `mean k(S, S) + mean k(T, T) - 2 mean k(S, T)`.
    """
    source, target = tf.cast(source, tf.float32), tf.cast(target, tf.float32)
    both = tf.concat([source, target], axis=0)
    distances = _squared_distances(both, both)
    count = tf.cast(tf.shape(both)[0], tf.float32)
    scale = tf.stop_gradient(tf.reduce_sum(distances) / tf.maximum(count * count - count, 1.0))
    scale = tf.maximum(scale, 1e-12)
    kernel = tf.add_n([tf.exp(-distances / (float(bandwidth) * scale)) for bandwidth in bandwidths])
    n = tf.shape(source)[0]
    source_source = tf.reduce_mean(kernel[:n, :n])
    target_target = tf.reduce_mean(kernel[n:, n:])
    source_target = tf.reduce_mean(kernel[:n, n:])
    return source_source + target_target - 2.0 * source_target
