"""Freezing and unfreezing layers, and recompiling so that the change takes effect.

Layers are chosen the way the Keras guides count them, in `model.layers`:
the last `top` layers, layers by `names`, every layer `up_to` a named one
(inclusive, from the bottom), or every layer `from_layer` a named one upwards.
BatchNormalization layers are never unfrozen by default: a frozen BN layer runs
in inference mode, so its statistics are not wrecked by small fine-tuning
batches (the Keras transfer-learning guide's rule).
"""

import keras


def select_layers(model, *, top=None, names=None, up_to=None, from_layer=None):
    """Returns the layers of `model.layers` a selector picks; all when none is given.

    Args:
        top: the last `top` layers (an int), or that fraction of the layers (a
            float in (0, 1]).
        names: layer names.
        up_to: every layer from the bottom up to and including this one.
        from_layer: this layer and every layer above it.
    """
    layers = list(model.layers)
    given = [
        key
        for key, value in dict(top=top, names=names, up_to=up_to, from_layer=from_layer).items()
        if value is not None
    ]
    if len(given) > 1:
        raise ValueError(f"Choose layers one way at a time; got {', '.join(given)}.")
    if top is not None:
        if isinstance(top, float):
            if not 0.0 < top <= 1.0:
                raise ValueError(f"A fraction of layers must be in (0, 1], got {top}.")
            top = round(top * len(layers))
        if top < 0:
            raise ValueError(f"top must be >= 0, got {top}.")
        return layers[len(layers) - top :] if top else []
    if names is not None:
        names = [names] if isinstance(names, str) else list(names)
        by_name = {layer.name: layer for layer in layers}
        return [by_name[name] for name in _known_names(model, names)]
    if up_to is not None:
        return layers[: _layer_index(model, up_to) + 1]
    if from_layer is not None:
        return layers[_layer_index(model, from_layer) :]
    return layers


def _known_names(model, names):
    known = [layer.name for layer in model.layers]
    missing = [name for name in names if name not in known]
    if missing:
        import difflib

        hints = {name: difflib.get_close_matches(name, known, n=3) for name in missing}
        detail = "; ".join(f"{name!r} (closest: {', '.join(close) or 'none'})" for name, close in hints.items())
        raise ValueError(
            f"{model.name} has no layer named {detail}. List the names with [layer.name for layer in model.layers]."
        )
    return names


def _layer_index(model, name):
    _known_names(model, [name])
    return [layer.name for layer in model.layers].index(name)


def _is_batchnorm(layer):
    return isinstance(layer, keras.layers.BatchNormalization)


def freeze(model, **selector):
    """Makes the selected layers (all when no selector) non-trainable.

    Recompiles `model` when it is compiled, keeping its optimizer settings.
    Returns the names of the layers frozen.

    Example:
    >>> backbone = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    >>> frozen = freeze(backbone, up_to="block_12_add")
    >>> backbone.get_layer("block_12_add").trainable, backbone.get_layer("block_13_expand").trainable
    (False, True)
    """
    chosen = select_layers(model, **selector)
    if len(chosen) == len(model.layers):
        model.trainable = False
    else:
        for layer in chosen:
            layer.trainable = False
    _recompile_if_compiled(model)
    return [layer.name for layer in chosen]


def unfreeze(model, *, include_batchnorm=False, **selector):
    """Makes the selected layers (all when no selector) trainable.

    Layers unfrozen earlier stay unfrozen, so calling it repeatedly unfreezes
    progressively. BatchNormalization layers stay frozen, in inference mode,
    unless `include_batchnorm=True`. Recompiles `model` when it is compiled,
    keeping its optimizer settings. Returns the names of the layers unfrozen.
    """
    chosen = {id(layer) for layer in select_layers(model, **selector)}
    was_trainable = {id(layer): layer.trainable for layer in model.layers}
    # A frozen container hides its children's weights, so open it first and
    # then put back every child's own state.
    model.trainable = True
    unfrozen = []
    for layer in model.layers:
        trainable = was_trainable[id(layer)] or id(layer) in chosen
        if _is_batchnorm(layer) and not include_batchnorm and not was_trainable[id(layer)]:
            trainable = False
        layer.trainable = trainable
        if trainable and not was_trainable[id(layer)] and layer.weights:
            unfrozen.append(layer.name)
    _recompile_if_compiled(model)
    return unfrozen


def recompile(model, *, learning_rate=None, optimizer=None):
    """Compiles `model` again with its own loss and metrics.

    A change of `trainable` only takes effect after compiling. The optimizer is
    a fresh copy of the current one, with the same settings (momentum, clipping,
    schedule...) and, if given, a new `learning_rate`; pass `optimizer` to
    replace it instead.
    """
    if not model.compiled:
        raise ValueError(f"{model.name} was never compiled: call model.compile(...) first.")
    # Deserializing gives fresh loss and metric objects, as a first compile would.
    config = keras.saving.deserialize_keras_object(model.get_compile_config())
    optimizer = optimizer or model.optimizer
    optimizer_config = optimizer.get_config()
    if learning_rate is not None:
        optimizer_config["learning_rate"] = learning_rate
    with model.distribute_strategy.scope():
        config["optimizer"] = type(optimizer).from_config(optimizer_config)
        model.compile(**config)
    return model


def _recompile_if_compiled(model):
    if isinstance(model, keras.Model) and model.compiled:
        recompile(model)


def parameter_counts(model):
    """Returns `(trainable, total)` parameter counts."""
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    total = sum(int(keras.ops.size(w)) for w in model.weights)
    return trainable, total
