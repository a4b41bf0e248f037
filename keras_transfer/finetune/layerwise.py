"""Discriminative (layer-wise) learning rates, built into the optimizer.

Fine-tuning moves the top of a pretrained network more than its bottom: ULMFiT's
discriminative rates, fastai's `slice(lr / 100, lr)`, BEiT/timm's layer-wise
decay. PyTorch does it with parameter groups; Keras 3 has none, so the rate is
scaled where Keras uses it: `update_step(gradient, variable, learning_rate)`,
which the TensorFlow backend calls once per variable
(`TFOptimizer._backend_update_step` -> `_distributed_tf_update_step`). The
learning rate is scaled, not the gradient: Adam, RMSprop and their kin divide
the gradient by its own running magnitude, so a scaled gradient would change
nothing.

`layerwise_learning_rates(optimizer, model, multipliers)` returns a copy of
`optimizer` of a subclass of its own class (an `Adam` stays an `Adam`, with
its settings, schedule and clipping) whose rate is multiplied per variable.
Multipliers are kept by variable path (`variable.path`, stable through
`model.save` and loading) and matched to the optimizer's own variable index
when it is built, the index Keras's `update_step`s use: under
`tf.distribute` the variable `update_step` sees is one replica's copy, which
only that index (`_var_key` -> `_distributed_container`) relates to the model's
variable.

Decoupled weight decay (AdamW, or any optimizer's `weight_decay`) is scaled
with the rate, as a PyTorch parameter group would do it: otherwise the nearly
frozen bottom layers of `depth_decay` would still shrink at the full rate.
"""

import collections.abc
import difflib
import functools
import math

import keras

from keras_transfer.finetune.layer_blocks import layer_blocks
from keras_transfer.finetune.optimizers import make_optimizer

# The one name every layer-wise optimizer is saved under; `from_config` reads the
# class it extends from the config, so any saved optimizer loads again.
REGISTERED_NAME = "LayerwiseLearningRates"


@keras.saving.register_keras_serializable(package="keras_transfer", name=REGISTERED_NAME)
class LayerwiseLearningRates:
    """Mixin of the layer-wise optimizers: the rate of each variable times its multiplier.

    Not used directly: `layerwise_learning_rates` builds the subclass of an
    optimizer's class (`LayerwiseAdam`, `LayerwiseSGD`...), and
    `isinstance(optimizer, LayerwiseLearningRates)` tells such optimizers apart.

    Args:
        variable_multipliers: `{variable path: factor}`; variables not listed
            train at the optimizer's rate.
        **kwargs: the arguments of the optimizer class extended.
    """

    _base = None  # the optimizer class extended, set on each subclass

    def __init__(self, *args, variable_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.variable_multipliers = {
            path: _checked_factor(path, factor) for path, factor in (variable_multipliers or {}).items()
        }
        self._factors_by_index = {}

    def build(self, variables):
        super().build(variables)
        # Resolved from the list the optimizer keeps, so that the indices are
        # those Keras's own update_step uses, whatever this call returned early.
        paths = collections.Counter(variable.path for variable in self._trainable_variables)
        ambiguous = sorted(path for path in self.variable_multipliers if paths[path] > 1)
        if ambiguous:
            raise ValueError(
                f"Several variables have the path {', '.join(map(repr, ambiguous))}, so their "
                "learning-rate multipliers are ambiguous: give the layers unique names."
            )
        self._factors_by_index = {
            self._get_variable_index(variable): self.variable_multipliers[variable.path]
            for variable in self._trainable_variables
            if variable.path in self.variable_multipliers
        }

    def learning_rate_factor(self, variable):
        """The multiplier of `variable`'s learning rate (1.0 when none was given), once built."""
        return self._factors_by_index.get(self._get_variable_index(variable), 1.0)

    def update_step(self, gradient, variable, learning_rate):
        factor = self.learning_rate_factor(variable)
        if factor != 1.0:
            learning_rate = keras.ops.multiply(learning_rate, factor)
        return super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):
        if (
            self.weight_decay is None
            or not self._factors_by_index
            # An optimizer with its own weight decay (Muon) keeps it, unscaled.
            or self._base._apply_weight_decay is not keras.optimizers.Optimizer._apply_weight_decay
        ):
            return super()._apply_weight_decay(variables)
        decayed = [
            (variable, self.learning_rate_factor(variable))
            for variable in variables
            if self._use_weight_decay(variable)
        ]

        def decay(variable, factor):
            dtype = keras.backend.standardize_dtype(variable.dtype)
            rate = keras.ops.cast(self.learning_rate, dtype) * factor
            variable.assign_sub(variable * keras.ops.cast(self.weight_decay, dtype) * rate)

        if keras.backend.backend() != "tensorflow":
            for variable, factor in decayed:
                decay(variable, factor)
            return
        import tensorflow as tf

        # As TFOptimizer._apply_weight_decay: mirrored variables are updated
        # from the cross-replica context, one component per device.
        def decay_all(distribution, decayed):
            for variable, factor in decayed:
                distribution.extended.update(variable.value, functools.partial(decay, factor=factor), group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(decay_all, self._distribution_strategy, decayed)

    def get_config(self):
        config = super().get_config()
        config["base_optimizer"] = keras.saving.get_registered_name(self._base)
        config["variable_multipliers"] = dict(self.variable_multipliers)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        base_name = config.pop("base_optimizer", None)
        if cls is LayerwiseLearningRates:
            # Loading a saved optimizer: find the subclass from the class it extends.
            cls = layerwise_class(_optimizer_class(base_name, custom_objects))
        return super().from_config(config, custom_objects=custom_objects)


@functools.cache
def layerwise_class(base):
    """Returns the layer-wise subclass of the optimizer class `base` (made once per class).

    Example:
    >>> layerwise_class(keras.optimizers.Adam).__name__
    'LayerwiseAdam'
    """
    if not (isinstance(base, type) and issubclass(base, keras.optimizers.Optimizer)):
        raise TypeError(f"Expected a keras.optimizers.Optimizer class, got {base!r}.")
    if issubclass(base, LayerwiseLearningRates):
        return base
    if issubclass(base, keras.optimizers.LossScaleOptimizer):
        raise TypeError(
            "A LossScaleOptimizer wraps another optimizer: make that one layer-wise; "
            "Keras wraps it again for mixed precision."
        )
    cls = type(
        f"Layerwise{base.__name__}",
        (LayerwiseLearningRates, base),
        {"__module__": __name__, "__doc__": f"`{base.__name__}` with layer-wise learning rates.", "_base": base},
    )
    # Serialized under the mixin's name (whose from_config dispatches on the
    # config's "base_optimizer"); registering the mixin again keeps that name
    # pointing at it rather than at this subclass.
    register = keras.saving.register_keras_serializable(package="keras_transfer", name=REGISTERED_NAME)
    register(cls)
    register(LayerwiseLearningRates)
    return cls


def _optimizer_class(name, custom_objects=None):
    found = (
        keras.saving.get_registered_object(name, custom_objects=custom_objects, module_objects=vars(keras.optimizers))
        if name
        else None
    )
    if not (isinstance(found, type) and issubclass(found, keras.optimizers.Optimizer)):
        raise ValueError(
            f"Cannot find the optimizer class {name!r} that this layer-wise optimizer extends: "
            "register it with @keras.saving.register_keras_serializable(), or pass it in "
            "custom_objects."
        )
    return found


def layerwise_learning_rates(optimizer, model, multipliers):
    """Returns a copy of `optimizer` that scales the learning rate of each layer.

    The copy is of a subclass of the optimizer's class (`Adam` ->
    `LayerwiseAdam`, still an `Adam`) with the same settings, learning rate or
    schedule, and no state. Each variable of a layer in `multipliers` trains at
    the optimizer's current rate times the layer's factor (its decoupled
    weight decay too); every other variable at the rate itself. It survives
    `get_config`/`from_config` and `model.save` + `keras.saving.load_model`.

    Args:
        optimizer: a `keras.optimizers.Optimizer` (copied; it is not changed),
            or a name `keras_transfer.finetune.training.make_optimizer` knows (`"adam"`).
        model: the model whose layers `multipliers` names.
        multipliers: `{layer or layer name: factor}`, factors >= 0; names are
            looked up in nested models too. A layer given inside another one
            that is also given (a block inside its backbone) takes its own
            factor. `depth_decay(model)` makes one.

    Returns:
        The layer-wise optimizer, to pass to `model.compile`.

    Example:
    >>> model = kt.ImageClassifier("mobilenet_v2", num_classes=2, weights=None, image_size=32)
    >>> optimizer = layerwise_learning_rates(keras.optimizers.Adam(1e-4), model, depth_decay(model, 0.5))
    >>> model.compile(optimizer)
    >>> isinstance(optimizer, keras.optimizers.Adam), type(optimizer).__name__
    (True, 'LayerwiseAdam')
    """
    if not isinstance(optimizer, (str, keras.optimizers.Optimizer)):
        raise TypeError(f"optimizer must be a keras.optimizers.Optimizer or a name, got {optimizer!r}.")
    variable_multipliers = _variable_multipliers(model, multipliers)
    optimizer = make_optimizer(optimizer) if isinstance(optimizer, str) else optimizer
    cls = layerwise_class(type(optimizer))
    config = optimizer.get_config()
    config.pop("base_optimizer", None)
    config["variable_multipliers"] = variable_multipliers
    return cls.from_config(config)


def depth_decay(model, decay=0.5, *, blocks=None, backbone=None):
    """Multipliers that shrink by `decay` per block below the top of the backbone.

    The top block of the backbone gets 1.0, the one below `decay`, then
    `decay**2` and so on down to the stem (ULMFiT's discriminative rates,
    timm's layer-wise decay); the layers outside the backbone (the head) are
    left out, so they train at the optimizer's rate.

    Args:
        model: a `TransferModel` (its `.backbone` is used) or any model.
        decay: factor between neighbouring blocks, in (0, 1].
        blocks: the backbone's blocks, bottom to top; by default
            `keras_transfer.finetune.layer_blocks.layer_blocks(backbone)`.
        backbone: the part of `model` to decay; by default `model.backbone`
            where there is one, else `model` itself.

    Returns:
        `{layer name: factor}` for the backbone's layers with weights, for
        `layerwise_learning_rates`.

    Example:
    >>> inputs = keras.Input((4,), name="x")
    >>> outputs = keras.layers.Dense(2, name="top")(keras.layers.Dense(4, name="bottom")(inputs))
    >>> depth_decay(keras.Model(inputs, outputs), 0.5)
    {'bottom': 0.5, 'top': 1.0}
    """
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay <= 1:
        raise ValueError(f"decay must be a number in (0, 1], got {decay!r}: e.g. 0.5 halves the rate per block.")
    if backbone is None:
        backbone = getattr(model, "backbone", None)
        backbone = model if backbone is None else backbone
    blocks = layer_blocks(backbone) if blocks is None else blocks
    top = len(blocks) - 1
    return {
        layer.name: float(decay) ** (top - depth)
        for depth, block in enumerate(blocks)
        for layer in block
        if layer.weights
    }


def _checked_factor(key, factor):
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor < 0:
        raise ValueError(
            f"The learning-rate multiplier of {key!r} is {factor!r}: multipliers must be "
            "finite numbers >= 0 (1.0 keeps the optimizer's rate, 0 stops the layer)."
        )
    return float(factor)


def _variable_multipliers(model, multipliers):
    """`{variable path: factor}` from `{layer or layer name: factor}`, without the 1.0s."""
    if not isinstance(multipliers, collections.abc.Mapping):
        raise TypeError(
            f"multipliers must be a dict {{layer or layer name: factor}}, got {type(multipliers).__name__}: "
            "e.g. {'block_16_project': 0.5} or depth_decay(model)."
        )
    if not model.weights:
        raise ValueError(f"{model.name} has no weights yet: build it (call it on a batch) first.")
    layers = list(model._flatten_layers(include_self=False))
    by_name = collections.defaultdict(list)
    for layer in layers:
        by_name[layer.name].append(layer)
    known = {id(layer) for layer in layers}
    chosen, unknown, ambiguous = [], [], []
    for key, factor in multipliers.items():
        factor = _checked_factor(key if isinstance(key, str) else getattr(key, "name", key), factor)
        if isinstance(key, str):
            found = by_name.get(key, [])
            if len(found) > 1:
                ambiguous.append(key)
            elif not found:
                unknown.append(key)
            else:
                chosen.append((found[0], factor))
        elif isinstance(key, keras.layers.Layer):
            if id(key) not in known:
                raise ValueError(f"Layer {key.name!r} is not part of {model.name}: pass layers of that model.")
            chosen.append((key, factor))
        else:
            raise TypeError(f"multipliers keys must be layers or layer names, got {key!r}.")
    if unknown:
        detail = "; ".join(
            f"{name!r} (closest: {', '.join(difflib.get_close_matches(name, by_name, n=3)) or 'none'})"
            for name in unknown
        )
        raise ValueError(
            f"{model.name} has no layer named {detail}. "
            "List the names with [layer.name for layer in model._flatten_layers()]."
        )
    if ambiguous:
        raise ValueError(
            f"Several layers of {model.name} are named {', '.join(map(repr, ambiguous))}: "
            "pass the layer objects instead of their names."
        )
    # Containers first, so that a layer inside one (a block inside its backbone) keeps its own factor.
    chosen.sort(key=lambda item: -len(list(item[0]._flatten_layers())))
    factors = {}
    for layer, factor in chosen:
        for variable in layer.weights:
            factors[variable.path] = factor
    counts = collections.Counter(variable.path for variable in model.weights)
    ambiguous = sorted(path for path in factors if counts[path] > 1)
    if ambiguous:
        raise ValueError(
            f"Several variables of {model.name} have the path {', '.join(map(repr, ambiguous[:5]))}, "
            "so multipliers kept by path would be ambiguous: give the layers unique names."
        )
    return {path: factor for path, factor in factors.items() if factor != 1.0}
