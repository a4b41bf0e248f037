"""AdaBN: BatchNormalization statistics estimated again on the target domain.

A network trained on the source normalises every layer with the source's
means and variances; on a target whose inputs look different those
statistics are wrong. AdaBN (Li et al., 2016) keeps every learned weight and
replaces each BatchNormalization layer's moving mean and variance by the
target's: one pass over the target data with BatchNormalization in training
mode, each layer's moving statistics the average over all batches (the
momentum of batch `k` is `k / (k + 1)`), dropout switched off. Nothing else
changes.
"""

import keras

from keras_transfer.adaptation.domains import check_not_empty, unlabelled_batches
from keras_transfer.finetune.progress import announce, counted


def batch_norm_layers(model):
    """Every `BatchNormalization` layer inside `model`, nested models included."""
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def adapt_batch_norm(model, target, *, batch_size=32, verbose="auto"):
    """Re-estimates every BatchNormalization layer's moving statistics on the target inputs (AdaBN).

    Args:
        model: a keras_transfer task (or any Keras model) with
            BatchNormalization layers.
        target: the target's inputs: an array of images, or a dataset of image
            batches (labels, if it has them, are not read).
        batch_size: batch size for arrays.
        verbose: 0 prints nothing.

    Returns:
        The number of BatchNormalization layers re-estimated.

    Raises:
        ValueError: the model has no BatchNormalization layer.
    """
    from keras_transfer.adaptation.domains import split_target

    layers = batch_norm_layers(model)
    if not layers:
        raise ValueError(
            f"{model.name} has no BatchNormalization layer for AdaBN to re-estimate "
            "(transformers use LayerNormalization): use method='dann' or 'coral'."
        )
    inputs, _ = split_target(target)
    check_not_empty(inputs)
    dropouts = [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, keras.layers.Dropout)]
    saved = [(layer.trainable, layer.momentum) for layer in layers]
    rates = [layer.rate for layer in dropouts]
    examples = 0
    try:
        for layer in dropouts:
            layer.rate = 0.0
        for layer in layers:
            layer.trainable = True  # a frozen BatchNormalization ignores training=True
        for index, batch in enumerate(unlabelled_batches(model, inputs, batch_size, shuffle=False)):
            for layer in layers:
                layer.momentum = index / (index + 1.0)  # the running average of the batches' statistics
            model(batch, training=True)  # eager: each call reads the momentum set above
            examples += int(keras.tree.flatten(batch)[0].shape[0])
    finally:
        for layer, (trainable, momentum) in zip(layers, saved):
            layer.trainable, layer.momentum = trainable, momentum
        for layer, rate in zip(dropouts, rates):
            layer.rate = rate
    announce(
        verbose,
        f"AdaBN: re-estimated {counted(len(layers), 'BatchNormalization layer')} on "
        f"{counted(examples, 'target example')}.",
    )
    return len(layers)
