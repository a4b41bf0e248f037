"""The input signatures given to the exporters: the model's inputs as named `tf.TensorSpec`s."""

import keras
import tensorflow as tf


def export_signature(model, input_signature=None, sequence_length=None, *, fixed_shapes=True):
    """The `[inputs]` signature given to Keras' exporters, as named `tf.TensorSpec`s.

    Naming every spec after its input (the dict key, or the Keras input's
    name) is what keeps those names in the exported signatures.

    Args:
        model: the Keras model.
        input_signature: None (the model's inputs), a spec, or a dict or
            list of `keras.InputSpec` / `tf.TensorSpec`.
        sequence_length: fills the non-batch dimensions that are None.
        fixed_shapes: require every non-batch dimension to be known.
    """
    inputs = _model_inputs(model, required=input_signature is None)
    structure = inputs if input_signature is None else input_signature
    if isinstance(structure, (list, tuple)) and len(structure) == 1 and not isinstance(inputs, (list, tuple)):
        structure = structure[0]  # Keras' style: a list of positional arguments
    model_inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]

    def spec(value, name, from_model):
        shape = list(value.shape)
        if from_model:
            shape[0] = None  # a dynamic batch size
        shape[1:] = [sequence_length if size is None else size for size in shape[1:]]
        if fixed_shapes and None in shape[1:]:
            raise ValueError(
                f"Input {name!r} has shape {tuple(shape)}, but LiteRT needs every size but the "
                "batch fixed: pass sequence_length=... (text models) or an input_signature "
                "with fixed shapes."
            )
        return tf.TensorSpec(shape, tf.as_dtype(keras.backend.standardize_dtype(value.dtype)), name=name)

    from_model = input_signature is None
    if isinstance(structure, dict):
        return [{name: spec(value, name, from_model) for name, value in structure.items()}]
    if isinstance(structure, (list, tuple)):
        return [[spec(value, _name(value, model_inputs, i), from_model) for i, value in enumerate(structure)]]
    return [spec(structure, _name(structure, model_inputs, 0), from_model)]


def _model_inputs(model, required=True):
    """The model's inputs: a dict, a list or one tensor; None if unknown and not required."""
    try:
        return model.input  # the nested structure of functional models
    except (AttributeError, ValueError):
        pass
    try:
        inputs = model.inputs  # a Sequential has only this list
    except AttributeError:
        inputs = None
    if inputs:
        return inputs[0] if len(inputs) == 1 else list(inputs)
    if required:
        raise ValueError("The model has no known inputs (a subclassed model?): pass input_signature.")
    return None


def _name(spec, model_inputs, index):
    """The spec's own name, else the Keras input's, else `input_<index>`."""
    model_input = model_inputs[index] if index < len(model_inputs) else None
    return getattr(spec, "name", None) or getattr(model_input, "name", None) or f"input_{index}"
