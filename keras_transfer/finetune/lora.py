"""LoRA on a backbone through Keras 3's own `layer.enable_lora`: which layers, what trains, merging.

`TransferModel.enable_lora`, `train_lora_only`, `lora_layers` and `merge_lora`
call these; they work on any Keras model whose Dense/EinsumDense layers take
`enable_lora` (keras-hub transformers do).
"""

import os
import tempfile

import keras

from keras_transfer.finetune.recipes import DEFAULT_LORA_RANK

# Layers keras-hub and the Keras guides put LoRA on: the attention projections.
DEFAULT_LORA_TARGETS = ("query_dense", "value_dense", "query", "value")


def lora_layers(backbone):
    """The layers of `backbone` that train through LoRA adapters."""
    return [layer for layer in backbone._flatten_layers(include_self=False) if getattr(layer, "lora_enabled", False)]


def enable_lora(backbone, rank=DEFAULT_LORA_RANK, *, target_layers=DEFAULT_LORA_TARGETS, alpha=None, quantize=None):
    """Puts rank-`rank` adapters on the layers of `backbone` named in `target_layers`; returns their names.

    With `quantize="int8"` the backbone is quantized first (QLoRA: int8 base
    weights, float adapters). Fails, naming the layers that could take LoRA,
    when none of `target_layers` can.
    """
    if lora_layers(backbone):
        raise ValueError("LoRA is already enabled on this model: enable it once.")
    if quantize is not None:
        backbone.quantize(quantize)
    layers = backbone._flatten_layers(include_self=False)
    adaptable = [layer for layer in layers if layer.name in set(target_layers) and hasattr(layer, "enable_lora")]
    if not adaptable:
        names = sorted({layer.name for layer in layers if hasattr(layer, "enable_lora")})
        raise ValueError(
            f"No backbone layer named {sorted(set(target_layers))} can take LoRA. Layers "
            f"that can: {', '.join(names[:20]) or 'none'}."
        )
    for layer in adaptable:
        layer.enable_lora(rank, lora_alpha=alpha)
    train_lora_only(backbone)
    return [layer.name for layer in adaptable]


def train_lora_only(backbone):
    """Freezes everything in `backbone` but its LoRA adapters."""
    # A trainable flag cascades to sublayers and variables, so set the
    # whole backbone first, then open the adapted layers, then close their
    # base kernels again (what Keras's own enable_lora does).
    backbone.trainable = True
    for layer in backbone._flatten_layers(include_self=False):
        layer.trainable = False
    for layer in lora_layers(backbone):
        layer.trainable = True
        layer._kernel.trainable = False


def merged_copy(model):
    """A copy of `model` with the adapters folded into the kernels, not compiled.

    Keras merges adapters into the base kernels when it saves a model, so the
    copy goes through a `.keras` round trip: it predicts the same and exports
    without the extra low-rank matmuls.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "merged.keras")
        model.save(path)
        return keras.saving.load_model(path, compile=False)
