"""Keras 3 models as flat tf_keras models, for tools that only know tf_keras (TF-MOT).

TensorFlow Model Optimization (quantization-aware training, pruning,
clustering) refuses Keras 3 models, and it cannot see inside a model nested in
a model, the usual transfer-learning shape (a pretrained backbone inside a
classifier). `to_tf_keras` rebuilds a Keras 3 functional model as ONE flat
tf_keras functional model with the same layer names and weights, and proves
it by comparing both models' outputs:

>>> bridge = to_tf_keras(model)
>>> bridge.max_abs_difference < 1e-4
True
>>> quantized = tfmot().quantization.keras.quantize_model(bridge.model)

Importing TF-MOT sets `TF_USE_LEGACY_KERAS=1` in the process; `tfmot()` and
`tf_keras()` import it lazily and put the variable back, so Keras 3 keeps
working afterwards. Both are optional (`pip install "keras-transfer[tfmot]"`):
without them, importing this module works and using it raises `MissingExtraError`.
"""

import collections
import dataclasses
import functools
import inspect
import os

import keras
import numpy as np

from keras_transfer.deploy.arrays import collect_examples
from keras_transfer.deploy.tfmot.weights import copy_weights
from keras_transfer.errors import UnsupportedLayerError, import_extra
from keras_transfer.models.layers import BackbonePreprocessing

_LEGACY_KERAS = "TF_USE_LEGACY_KERAS"


# --------------------------------------------------------------------------
# Lazy imports that leave Keras 3 alone.


# What needs the optional `tfmot` extra (TF-MOT and tf-keras), for the error without it.
_TFMOT_FEATURES = "TF-MOT optimization (quantization_aware, prune, cluster, to_tf_keras)"


def _import_keeping_keras_3(module_name):
    # TF-MOT sets TF_USE_LEGACY_KERAS=1 at import, which would make later
    # `tf.keras` lookups (and libraries reading the variable) pick Keras 2.
    previous = os.environ.get(_LEGACY_KERAS)
    try:
        return import_extra(module_name, _TFMOT_FEATURES)
    finally:
        if previous is None:
            os.environ.pop(_LEGACY_KERAS, None)
        else:
            os.environ[_LEGACY_KERAS] = previous


@functools.cache
def tfmot():
    """The `tensorflow_model_optimization` module, imported without switching Keras."""
    return _import_keeping_keras_3("tensorflow_model_optimization")


@functools.cache
def tf_keras():
    """The `tf_keras` (Keras 2) module, imported without switching Keras."""
    return _import_keeping_keras_3("tf_keras")


@functools.cache
def _preprocessing_layer_class():
    """A tf_keras twin of `BackbonePreprocessing`, registered so TF-MOT can clone it."""
    tfk = tf_keras()

    @tfk.utils.register_keras_serializable(package="keras_transfer")
    class ApplicationsPreprocessing(tfk.layers.Layer):
        """Applies `tf_keras.applications.<mode>.preprocess_input` to raw pixels."""

        def __init__(self, mode, **kwargs):
            super().__init__(**kwargs)
            self.mode = mode

        def call(self, images):
            images = tfk.backend.cast(images, self.compute_dtype)
            return getattr(tfk.applications, self.mode).preprocess_input(images)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "mode": self.mode}

    return ApplicationsPreprocessing


# --------------------------------------------------------------------------
# The bridge.


@dataclasses.dataclass
class Bridge:
    """A Keras 3 model rebuilt in tf_keras, and how closely it matches.

    Attributes:
        model: the flat tf_keras functional model.
        max_abs_difference: largest output difference on the check data.
        num_layers: layers of the tf_keras model (inputs included).
        flattened: names of the nested Keras 3 models whose layers were
            inlined into the flat model.
        renamed: `{tf_keras name: original name}` for layers renamed on a clash.
        folded: `{BatchNormalization name: layer it was folded into}`.
        inference_mode: names of the layers kept in inference mode (called
            with `training=False` in Keras 3): frozen BatchNormalization
            layers, and dropped Dropout layers.
    """

    model: object
    max_abs_difference: float
    num_layers: int
    flattened: list = dataclasses.field(default_factory=list)
    renamed: dict = dataclasses.field(default_factory=dict)
    folded: dict = dataclasses.field(default_factory=dict)
    inference_mode: list = dataclasses.field(default_factory=list)


def to_tf_keras(model, *, check_data=None, atol=1e-4, fold_batch_norm=False, seed=0):
    """Rebuilds a Keras 3 functional model as a flat tf_keras model and checks it.

    Nested models (a Keras Applications backbone in a classifier) are inlined
    into one flat graph, so tools such as TF-MOT reach every layer. Layers
    keep their names (prefixed with their model's name on a clash) and their
    weights; calls made with `training=False` stay in inference mode:
    BatchNormalization layers become frozen (`trainable=False`, which is
    inference mode in tf_keras) and Dropout layers, a no-op there, are left out.

    Args:
        model: a built Keras 3 functional (or Sequential) model.
        check_data: inputs to compare both models on: an array, an `(x, y)`
            tuple or a `tf.data.Dataset`; by default 8 random inputs in the
            model's input range (pixels 0..255 for images).
        atol: the largest output difference accepted.
        fold_batch_norm: fold each inference-mode BatchNormalization into the
            Conv/Dense layer before it (exact in inference; what TFLite does
            anyway, and what quantization-aware training should see).
        seed: seed of the random check data.

    Returns:
        A `Bridge`.

    Raises:
        UnsupportedLayerError: before any work, naming every layer that has no
            tf_keras twin.
        ValueError: when the outputs differ by more than `atol`.

    Example:
    >>> bridge = to_tf_keras(kt.ImageClassifier("mobilenet_v2", num_classes=3, weights=None, image_size=32))
    >>> bridge.flattened
    ['mobilenetv2_1.00_32']
    """
    check_model(model)
    _refuse_unsupported(model)
    builder = _GraphBuilder(fold_batch_norm)
    tfk = tf_keras()
    inputs = [
        tfk.Input(batch_shape=tuple(tensor.shape), dtype=tensor.dtype, name=_input_name(tensor))
        for tensor in _graph(model).inputs
    ]
    outputs = builder.run(_graph(model), inputs, inference=False)
    bridged = tfk.Model(_structure_like(model, inputs), outputs[0] if len(outputs) == 1 else outputs, name=model.name)
    copy_weights(bridged, builder.folded)
    difference = _compare(model, bridged, check_data, seed)
    if not difference <= atol:
        raise ValueError(
            f"The tf_keras model differs from the Keras 3 model by up to {difference:.3g} "
            f"(more than atol={atol:g}): a layer does not translate exactly; please report it."
        )
    return Bridge(
        model=bridged,
        max_abs_difference=difference,
        num_layers=len(bridged.layers),
        flattened=builder.flattened,
        renamed=builder.renamed,
        folded=builder.folded,
        inference_mode=builder.inference_mode,
    )


def check_model(model):
    """Raises ValueError unless `model` is a built Keras 3 functional or Sequential model."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"Expected a Keras 3 model (keras.Model), got {type(model).__name__}.")
    if not model.built or not _graph_or_none(model):
        raise ValueError(
            f"The model {model.name!r} has no functional graph (a subclassed or unbuilt "
            "model?): build it from keras.Input, or call it on data, first."
        )


# --------------------------------------------------------------------------
# What can cross the bridge.

# Layers whose behaviour in training differs from inference only by noise:
# in an inference-mode call they are the identity, so the bridge leaves them out.
_NOISE_LAYERS = (
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
)
# Layers whose following BatchNormalization can be folded into their weights.
_FOLDABLE = ("Conv1D", "Conv2D", "DepthwiseConv2D", "Dense")
# Keras 3 config keys that are not layer behaviour (weights are copied anyway).
_IGNORED_KEYS = ("dtype", "name", "trainable")


def _refuse_unsupported(model):
    problems = []
    for layer in _all_layers(model):
        reason = _unsupported_reason(layer)
        if reason:
            problems.append(f"{layer.name} ({type(layer).__module__}.{type(layer).__name__}): {reason}")
    if problems:
        raise UnsupportedLayerError(
            "These layers cannot be rebuilt in tf_keras, which TF-MOT needs:\n  "
            + "\n  ".join(problems)
            + "\nReplace them with built-in Keras layers (or keras_transfer's "
            "BackbonePreprocessing), merge LoRA adapters first (model.merge_lora()), "
            "or quantize the model with keras_transfer.export_model(quantization=...) instead."
        )


def _unsupported_reason(layer):
    if isinstance(layer, keras.Model):
        return None if _graph_or_none(layer) else "a subclassed model has no graph to rebuild"
    if isinstance(layer, BackbonePreprocessing):
        return None
    if getattr(layer, "lora_enabled", False):
        return "LoRA adapters are enabled"
    if getattr(layer, "quantization_mode", None):
        return f"quantized by Keras ({layer.quantization_mode})"
    if not isinstance(layer, keras.layers.Layer):
        return "a Keras operation on tensors (e.g. `x * 2`): use a layer instead"
    if not type(layer).__module__.startswith("keras.src.layers"):
        return "a custom layer with no tf_keras twin"
    twin = getattr(tf_keras().layers, type(layer).__name__, None)
    if twin is None:
        return "tf_keras has no layer of this class"
    try:
        _tf_keras_config(layer, twin)
    except ValueError as error:
        return str(error)
    return None


def _all_layers(model):
    for operation in _graph(model).operations:
        if isinstance(operation, keras.layers.InputLayer):
            continue
        yield operation
        if isinstance(operation, keras.Model):
            yield from _all_layers(operation)


def _graph_or_none(model):
    graph = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    return graph if getattr(graph, "_nodes_by_depth", None) else None


def _graph(model):
    return _graph_or_none(model)


def _tf_keras_config(layer, twin):
    """The Keras 3 layer's config as `twin`'s constructor takes it; ValueError if it cannot."""
    config = layer.get_config()
    accepted = _constructor_parameters(twin)
    defaults = _constructor_defaults(type(layer))
    result = {"name": layer.name, "trainable": layer.trainable, "dtype": _dtype_name(layer)}
    for key, value in config.items():
        if key in _IGNORED_KEYS or key.endswith("_initializer"):
            continue  # initializers are moot: the weights are copied
        if key in accepted:
            result[key] = _plain_value(key, value)
        elif key in defaults and _same(value, defaults[key]):
            continue  # a Keras 3 option left at its default, e.g. lora_rank=None
        else:
            raise ValueError(f"its option {key}={value!r} has no tf_keras equivalent")
    return result


def _constructor_parameters(cls):
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= {name for name in inspect.signature(init).parameters if name not in ("self", "kwargs")}
    return names | {"activity_regularizer"}


def _constructor_defaults(cls):
    defaults = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is not None:
            defaults.update(
                {
                    name: parameter.default
                    for name, parameter in inspect.signature(init).parameters.items()
                    if parameter.default is not inspect.Parameter.empty
                }
            )
    return defaults


def _same(value, default):
    try:
        return bool(value == default) or (isinstance(value, (list, tuple)) and list(value) == list(default))
    except (TypeError, ValueError):
        return False


def _dtype_name(layer):
    # Keras 3 dtype policies are objects; tf_keras takes their name.
    policy = getattr(layer, "dtype_policy", None)
    return getattr(policy, "name", None) or layer.dtype


def _plain_value(key, value):
    """Keras 3 serialized objects (regularizers, constraints) as tf_keras objects."""
    if not isinstance(value, dict) or "class_name" not in value:
        return value
    module = {"regularizer": "regularizers", "constraint": "constraints"}.get(key.rsplit("_", 1)[-1])
    if module is None:
        raise ValueError(f"its option {key}={value!r} has no tf_keras equivalent")
    return getattr(tf_keras(), module).get({"class_name": value["class_name"], "config": value.get("config", {})})


def _input_name(tensor):
    history = getattr(tensor, "_keras_history", None)
    return history.operation.name if history else tensor.name


def _structure_like(model, flat_inputs):
    structure = getattr(_graph(model), "_inputs_struct", None)
    if structure is None:
        return flat_inputs[0] if len(flat_inputs) == 1 else flat_inputs
    by_keras_tensor = {id(tensor): tf_tensor for tensor, tf_tensor in zip(_graph(model).inputs, flat_inputs)}
    return keras.tree.map_structure(lambda tensor: by_keras_tensor[id(tensor)], structure)


# --------------------------------------------------------------------------
# Walking the graph.


class _GraphBuilder:
    """Replays Keras 3 functional graphs with tf_keras layers, inlining nested models."""

    def __init__(self, fold_batch_norm):
        self.fold_batch_norm = fold_batch_norm
        self.layers = {}  # (id(keras layer), inference) -> tf_keras layer
        self.used_names = set()
        self.flattened, self.renamed, self.folded, self.inference_mode = [], {}, {}, []

    def run(self, graph, inputs, *, inference, scope=""):
        """Applies `graph` to the tf_keras tensors `inputs`; returns its flat outputs."""
        tensors = {id(keras_tensor): tensor for keras_tensor, tensor in zip(graph.inputs, inputs)}
        consumers = collections.defaultdict(list)
        nodes = [
            node
            for depth in sorted(graph._nodes_by_depth, reverse=True)
            for node in graph._nodes_by_depth[depth]
            if not node.is_input
        ]
        for node in nodes:
            for keras_tensor in node.input_tensors:
                consumers[id(keras_tensor)].append(node)
        for keras_tensor in graph.outputs:
            consumers[id(keras_tensor)].append(None)
        folds = self._plan_folds(nodes, consumers, inference) if self.fold_batch_norm else {}
        skipped = {id(bn_node) for bn_node in folds.values()}

        for node in nodes:
            layer = node.operation
            args = keras.tree.map_structure(lambda value: self._tf_tensor(value, tensors), node.arguments.args)
            kwargs = dict(node.arguments.kwargs)
            node_inference = inference or kwargs.pop("training", None) is False
            kwargs = {
                key: keras.tree.map_structure(lambda value: self._tf_tensor(value, tensors), value)
                for key, value in kwargs.items()
                if value is not None
            }
            if id(node) in skipped or _is_identity(layer, node_inference):
                outputs = list(keras.tree.flatten(args))[:1]  # folded BN, inference-mode Dropout
                if not isinstance(layer, keras.layers.BatchNormalization):
                    self.inference_mode.append(layer.name)
            elif isinstance(layer, keras.Model):
                self.flattened.append(layer.name)
                outputs = self.run(
                    _graph(layer), keras.tree.flatten(args[0]), inference=node_inference, scope=layer.name
                )
            else:
                tf_layer = self._tf_layer(layer, node_inference, scope, folds.get(id(node)))
                outputs = keras.tree.flatten(tf_layer(*args, **kwargs))
            for keras_tensor, tensor in zip(node.outputs, outputs):
                tensors[id(keras_tensor)] = tensor
        return [tensors[id(keras_tensor)] for keras_tensor in graph.outputs]

    @staticmethod
    def _tf_tensor(value, tensors):
        return tensors[id(value)] if isinstance(value, keras.KerasTensor) else value

    def _plan_folds(self, nodes, consumers, inference):
        """`{id(conv node): its BatchNormalization node}` for the pairs that fold exactly."""
        folds = {}
        for node in nodes:
            layer = node.operation
            if type(layer).__name__ not in _FOLDABLE or len(layer._inbound_nodes) != 1:
                continue
            if layer.get_config().get("activation", "linear") != "linear" or len(node.outputs) != 1:
                continue
            (next_node,) = consumers[id(node.outputs[0])] or [None]
            if len(consumers[id(node.outputs[0])]) != 1 or next_node is None:
                continue
            bn = next_node.operation
            bn_inference = inference or next_node.arguments.kwargs.get("training") is False
            rank = len(node.outputs[0].shape)
            if (
                isinstance(bn, keras.layers.BatchNormalization)
                and bn_inference
                and bn.axis in (-1, rank - 1)
                and len(bn._inbound_nodes) == 1
            ):
                folds[id(node)] = next_node
        return folds

    def _tf_layer(self, layer, inference, scope, bn_node=None):
        key = (id(layer), inference)
        if key in self.layers:
            return self.layers[key]  # a shared layer: one tf_keras layer, shared weights
        if isinstance(layer, BackbonePreprocessing):
            tf_layer = self._preprocessing(layer)
        else:
            twin = getattr(tf_keras().layers, type(layer).__name__)
            config = _tf_keras_config(layer, twin)
            if isinstance(layer, keras.layers.BatchNormalization) and inference:
                config["trainable"] = False  # tf_keras' inference mode for BatchNormalization
                self.inference_mode.append(layer.name)
            if bn_node is not None:
                config["use_bias"] = True
            config["name"] = self._unique_name(layer.name, scope)
            tf_layer = twin.from_config(config)
        tf_layer._keras_transfer_source = (layer, bn_node.operation if bn_node is not None else None)
        self.layers[key] = tf_layer
        return tf_layer

    def _preprocessing(self, layer):
        name = self._unique_name(layer.name, "")
        if layer.mode == "none":
            return tf_keras().layers.Identity(name=name)
        if layer.mode == "unit":
            return tf_keras().layers.Rescaling(1.0 / 255.0, name=name)
        return _preprocessing_layer_class()(layer.mode, name=name)

    def _unique_name(self, name, scope):
        unique = name
        if unique in self.used_names and scope:
            unique = f"{scope}_{name}"
        while unique in self.used_names:
            unique += "_"
        self.used_names.add(unique)
        if unique != name:
            self.renamed[unique] = name
        return unique


def _is_identity(layer, inference):
    return inference and type(layer).__name__ in _NOISE_LAYERS


# --------------------------------------------------------------------------
# Checking.


def _compare(model, bridged, check_data, seed):
    x = _check_inputs(model, check_data, seed)
    expected = keras.tree.flatten(model.predict(x, verbose=0, batch_size=32))
    actual = keras.tree.flatten(bridged.predict(x, verbose=0, batch_size=32))
    return max(
        float(np.max(np.abs(np.asarray(a, "float32") - np.asarray(b, "float32")), initial=0.0))
        for a, b in zip(expected, actual)
    )


def _check_inputs(model, check_data, seed, num_examples=8):
    if check_data is not None:
        x, _ = collect_examples(check_data, max_examples=64)
        return x
    rng = np.random.default_rng(seed)

    def random_input(tensor):
        shape = (num_examples, *[size or 1 for size in tensor.shape[1:]])
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        if "int" in dtype:
            return rng.integers(0, 2, shape).astype(dtype)
        # Images take raw pixels; other inputs, values around 0.
        high = 255.0 if len(shape) == 4 else 1.0
        return rng.uniform(0.0 if len(shape) == 4 else -1.0, high, shape).astype(dtype)

    inputs = [random_input(tensor) for tensor in _graph(model).inputs]
    return inputs[0] if len(inputs) == 1 else inputs
