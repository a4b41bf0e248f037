"""Layer blocks: a backbone's layers grouped into the units that fine-tuning moves together.

Progressive unfreezing (`keras_transfer.finetune.progressive.ProgressiveUnfreezing`) opens
a backbone one block at a time from the top, and discriminative learning rates
(`keras_transfer.finetune.layerwise.depth_decay`) give each block its own rate. Both
need the same answer to "which layers belong together", read here from the
layer names of Keras Applications and keras-hub:

- MobileNetV2 `block_3_expand`, `block_3_depthwise_BN`... -> block 3;
  its stem (`Conv1`, `bn_Conv1`, `expanded_conv_*`) is the first block and
  `Conv_1`/`Conv_1_bn`/`out_relu` the top block.
- ResNet, ResNetV2 and DenseNet `conv2_block1_*` -> one block per residual
  (or dense) block, not per stage.
- EfficientNet and EfficientNetV2 `block2a_*` -> block 2a; MobileNetV3
  `expanded_conv_3_*`; MobileNet `conv_dw_3`/`conv_pw_3`; VGG and Xception
  `block3_*`; ConvNeXt and RegNet `..._stage_1_block_2_*`.
- keras-hub transformers `transformer_layer_3` (and `decoder_block_3`,
  `transformer_block_3`...), with the embeddings before them as the first block.

A block is one residual unit in every family (ResNet's `conv2_block1`, not its
stage `conv2`) because that is what MobileNetV2 and the transformers number,
and what timm's layer-decay groups use: `depth_decay`'s `decay` and
`ProgressiveUnfreezing`'s `blocks_per_epoch` then mean about the same amount of
network in every family. Merge neighbouring blocks for stage-sized groups.

Only layers with weights decide: a layer with weights that matches no pattern
goes to the first block when it comes before every match (a stem), to a top
block when it comes after every match, and otherwise to the block of the layer
before it (DenseNet's transitions, ConvNeXt's downsampling). Layers without
weights (activations, padding, adds) join the block of the layer before them.
When no convention matches, the layers with weights are cut into `num_blocks`
equal chunks.
"""

import re

# (family, pattern): the pattern's groups name a layer's block. Checked against
# the names of the layers that hold weights; the family matching the most wins.
CONVENTIONS = (
    ("mobilenet_v2", re.compile(r"^block_(\d+)_")),
    ("efficientnet", re.compile(r"^block(\d+)([a-z])_")),
    ("resnet/densenet", re.compile(r"^conv(\d+)_block(\d+)_")),
    ("vgg/xception", re.compile(r"^block(\d+)_")),
    ("mobilenet_v3", re.compile(r"^expanded_conv_(\d+)_")),
    ("mobilenet", re.compile(r"^conv_(?:dw|pw)_(\d+)(?:_|$)")),
    ("convnext/regnet", re.compile(r"_stage_(\d+)_[a-z]*block_(\d+)_", re.IGNORECASE)),
    (
        "keras_hub_transformer",
        re.compile(
            r"^(?:transformer_layer|transformer_block|decoder_block|encoder_block"
            r"|encoder_layer|decoder_layer)_(\d+)(?:_|$)"
        ),
    ),
)

BY = ("auto", "names", "chunks")


def layer_blocks(model, num_blocks=4, *, by="auto"):
    """Returns `model.layers` grouped into blocks, from the bottom (input) to the top.

    Each block is a list of layers in `model.layers` order; together the
    blocks hold every layer once. See the module docstring for the naming
    conventions read. Pass a backbone, not a whole classifier: a backbone
    nested in a model is one layer of that model (use `TransferModel.backbone`).

    Args:
        model: a built `keras.Model` (a backbone).
        num_blocks: how many equal chunks of weighted layers to cut when no
            naming convention matches (fewer when there are fewer such layers).
        by: `"auto"` (naming conventions, else chunks), `"names"` (naming
            conventions only; an error when none matches) or `"chunks"`.

    Returns:
        A list of blocks, each a list of layers.

    Example:
    >>> backbone = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    >>> blocks = layer_blocks(backbone)
    >>> len(blocks), [layer.name for layer in blocks[-1]]
    (18, ['Conv_1', 'Conv_1_bn', 'out_relu'])
    """
    if by not in BY:
        raise ValueError(f"by must be one of {', '.join(map(repr, BY))}, got {by!r}.")
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1:
        raise ValueError(f"num_blocks must be a positive int, got {num_blocks!r}.")
    layers = list(getattr(model, "layers", None) or [])
    weighted = [index for index, layer in enumerate(layers) if layer.weights]
    if not weighted:
        raise ValueError(
            f"{getattr(model, 'name', model)!r} has no layers with weights to group: "
            "build it first (give it an input shape, or call it on a batch)."
        )
    labels = None
    if by != "chunks":
        labels = _labels_by_names(layers, weighted)
        if labels is None and by == "names":
            raise ValueError(
                f"No naming convention matches the layers of {model.name!r} "
                f"(families known: {', '.join(family for family, _ in CONVENTIONS)}): "
                "use by='chunks', or pass your own blocks."
            )
    if labels is None:
        labels = _labels_by_chunks(weighted, num_blocks)
    return _group(layers, weighted, labels)


def _labels_by_names(layers, weighted):
    """`{layer index: block label}` for the weighted layers, or None when no convention fits."""
    best = None
    for _, pattern in CONVENTIONS:
        keys = {}
        for index in weighted:
            match = pattern.search(layers[index].name)
            if match:
                keys[index] = match.groups()
        # One block is no grouping at all; the family naming the most layers wins.
        if len(set(keys.values())) >= 2 and (best is None or len(keys) > len(best)):
            best = keys
    if best is None:
        return None
    first, last = min(best), max(best)
    labels, previous = {}, None
    for index in weighted:
        if index in best:
            labels[index] = ("block", *best[index])
        elif index < first:
            labels[index] = ("stem",)
        elif index > last:
            labels[index] = ("top",)
        else:
            labels[index] = previous
        previous = labels[index]
    return labels


def _labels_by_chunks(weighted, num_blocks):
    count = min(num_blocks, len(weighted))
    base, extra = divmod(len(weighted), count)
    labels, position = {}, 0
    for chunk in range(count):
        # The lower chunks take the remainder, as numpy.array_split does.
        size = base + (chunk < extra)
        for index in weighted[position : position + size]:
            labels[index] = ("chunk", chunk)
        position += size
    return labels


def _group(layers, weighted, labels):
    order = []
    for index in weighted:
        if labels[index] not in order:
            order.append(labels[index])
    blocks = {label: [] for label in order}
    # Weightless layers before the first weighted layer (the inputs) join its block.
    label = labels[weighted[0]]
    for index, layer in enumerate(layers):
        label = labels.get(index, label)
        blocks[label].append(layer)
    return [blocks[label] for label in order]


def block_names(blocks):
    """The layer names of `blocks`, for printing or comparing.

    Example:
    >>> inputs = keras.Input((4,), name="x")
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
    >>> block_names(layer_blocks(model))
    [['x', 'd']]
    """
    return [[layer.name for layer in block] for block in blocks]
