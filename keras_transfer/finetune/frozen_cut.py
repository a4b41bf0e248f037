"""Fine-tuning the top of a backbone without running its frozen bottom every epoch.

When only the top of a backbone fine-tunes (the Keras guide's recipe: the top
30% of MobileNetV2), every epoch still pushes each image through the frozen
layers below it, which give the same output every time. `FrozenCut` splits
the model at the highest point below the trainable layers where one tensor
carries everything upwards (a block boundary: a cut inside a residual block
would need two tensors), so those outputs can be cached once
(`keras_transfer.finetune.feature_cache.FeatureCache`) and fine-tuning trains
only the part above:

- `bottom`: the model's inputs -> the cut tensor (preprocessing and the frozen
  layers);
- `top`: the cut tensor -> the model's outputs (the layers that fine-tune and
  the head), sharing the model's layers, so training it trains the model;
- `to_head_features`: the cut tensor -> the features the head takes, which
  gives the head phase its cached features from the same pass.

Measured on 2 cores (AMD EPYC), ImageNet MobileNetV2 at 224 px, top 30%
trainable, cats_and_dogs_filtered: the cut is `block_11_add` (14x14x96); the
layers below it took 16.1 s over the 2,000 training images, the part above it
3.8 s over their cached outputs, and one fine-tuning epoch on the cache, its
validation included, 12.8 s.
"""

import keras

from keras_transfer.finetune.freezing import select_layers


class FrozenCut:
    """A model split below its trainable backbone layers; see the module's docstring.

    Build it with `FrozenCut.find`.

    Attributes:
        layer_name: the backbone layer whose output is cached.
        bottom, top, to_head_features: `keras.Model`s sharing the model's layers.
    """

    def __init__(self, model, layer):
        backbone = model.backbone
        self.layer_name = layer.name
        backbone_top = keras.Model(layer.output, backbone.output, name=f"{backbone.name}_above_{layer.name}")
        backbone_bottom = keras.Model(backbone.inputs, layer.output, name=f"{backbone.name}_to_{layer.name}")
        inputs = keras.Input(shape=model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
        prepared = model.preprocessor(inputs) if model.preprocessor is not None else inputs
        # training=False: the frozen BatchNormalization layers stay in inference mode, as in the model.
        self.bottom = keras.Model(inputs, backbone_bottom(prepared, training=False), name=f"{model.name}_bottom")
        cut = keras.Input(shape=layer.output.shape[1:], name=layer.name)
        backbone_features = backbone_top(cut, training=False)
        after_backbone = keras.Model(model.backbone_outputs, [model.head_features, *model.outputs])
        head_features, *outputs = after_backbone(backbone_features)
        self.top = keras.Model(cut, outputs if len(outputs) > 1 else outputs[0], name=f"{model.name}_top")
        self.to_head_features = keras.Model(cut, head_features, name=f"{model.name}_to_head_features")

    @classmethod
    def find(cls, model, **selector):
        """The cut below the backbone layers that `unfreeze(**selector)` opens, or None.

        None when there is nothing to gain or no single tensor to cut at: the
        whole backbone trains, the backbone is not a one-input functional
        model (a keras-hub transformer takes token ids and a padding mask at
        every layer), or the model has no single image input.
        """
        backbone = model.backbone
        if len(model.inputs) != 1 or not isinstance(backbone, keras.Model) or len(backbone.inputs) != 1:
            return None
        layers = list(backbone.layers)
        opened = {id(layer) for layer in select_layers(backbone, **selector)}
        # As `unfreeze` opens them: BatchNormalization stays frozen.
        first = next(
            (
                index
                for index, layer in enumerate(layers)
                if id(layer) in opened and layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
            ),
            None,
        )
        if first is None or first == 0:
            return None
        for layer in reversed(layers[1:first]):
            try:
                if not isinstance(layer.output, keras.KerasTensor):
                    continue
                keras.Model(layer.output, backbone.output)
            except (AttributeError, ValueError):  # a layer above also reads a tensor from below this one
                continue
            return cls(model, layer)
        return None
