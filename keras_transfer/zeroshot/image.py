"""Zero-shot image classification with a CLIP or SigLIP keras-hub backbone.

The image encoder (vision tower and projection) becomes the backbone of an
`ImageClassifier`; the text encoder embeds each class's prompts ("a photo of
a {}.") into the same space, and those embeddings are the cosine head's
class vectors. Useful accuracy needs the pretrained weights of a keras-hub
preset (e.g. `"clip_vit_base_patch16"`, `"siglip_base_patch16_224"`), which
are downloaded the first time (or given as a local preset folder); a randomly
initialised backbone runs the same code but guesses.
"""

import keras
import numpy as np

from keras_transfer.errors import import_extra
from keras_transfer.models.heads import Head
from keras_transfer.models.image_backbones import load_from_hub
from keras_transfer.models.image_classifier import ImageClassifier
from keras_transfer.zeroshot.prompts import DEFAULT_IMAGE_TEMPLATE, class_prompts, class_vectors
from keras_transfer.zeroshot.text import announce_prompts

# keras-hub's image-text backbones and the preprocessors (tokenizer + image converter) that feed them.
IMAGE_TEXT_PREPROCESSORS = {
    "CLIPBackbone": "CLIPPreprocessor",
    "SigLIPBackbone": "SigLIPPreprocessor",
}


def zero_shot_image_classifier(
    class_names,
    *,
    backbone,
    preprocessor=None,
    template=DEFAULT_IMAGE_TEMPLATE,
    descriptions=None,
    weights="pretrained",
    scale=None,
    verbose="auto",
):
    """An `ImageClassifier` that assigns each image to the class whose prompt embedding is nearest.

    Args:
        class_names: the classes, at least two, in output order.
        backbone: a keras-hub CLIP or SigLIP preset name (e.g.
            `"clip_vit_base_patch16"`; downloaded the first time), a local
            preset folder, or a `keras_hub.models.CLIPBackbone` /
            `SigLIPBackbone` with its `preprocessor`.
        preprocessor: the `CLIPPreprocessor` / `SigLIPPreprocessor` of a
            backbone given as a model (its tokenizer embeds the prompts, its
            image converter resizes and scales the pixels).
        template: a string with one `{}` for the class's name or
            description, or a list of them (their embeddings are averaged).
        descriptions: optional `{class name: description or list of descriptions}`.
        weights: `"pretrained"` for the preset's weights, None for random
            ones (tests only: the predictions are then guesses).
        scale: the cosine head's scale; None takes the backbone's own learned
            temperature (CLIP's is about 100).
        verbose: announce what runs (0 for nothing).

    Returns:
        The `ImageClassifier` (raw pixels in [0, 255] in, class probabilities out).

    Example:
    >>> model = zero_shot_image_classifier(["cat", "dog"], backbone="clip_vit_base_patch16")  # doctest: +SKIP
    """
    prompts = class_prompts(class_names, template, descriptions)  # bad input fails before the backbone loads
    keras_hub = import_extra("keras_hub", "Zero-shot image classification")
    if isinstance(backbone, keras.Model):
        if preprocessor is None:
            raise ValueError(
                "A backbone given as a model needs its preprocessor: pass e.g. "
                "preprocessor=keras_hub.models.CLIPPreprocessor(tokenizer, image_converter)."
            )
        source = backbone.name
    else:
        source = str(backbone)
        backbone = load_from_hub(
            lambda: keras_hub.models.Backbone.from_preset(source, load_weights=weights == "pretrained"), source
        )
        preprocessor = load_from_hub(lambda: _preprocessor_class(keras_hub, backbone).from_preset(source), source)
    _check_image_text_backbone(backbone)

    images = keras.Input(shape=backbone.vision_encoder.image_shape, name="images")
    image_encoder = keras.Model(images, backbone.get_vision_embeddings(images), name=f"{backbone.name}_image_encoder")
    model = ImageClassifier(
        image_encoder,
        head=Head.cosine(len(prompts), scale=scale or _learned_scale(backbone)),
        class_names=class_names,
        preprocessor=preprocessor.image_converter,
    )
    model.backbone_name = source

    flat = [prompt for group in prompts for prompt in group]
    announce_prompts(verbose, prompts, f"the text encoder of {source}")
    model.set_class_vectors(class_vectors(_text_embeddings(backbone, preprocessor, flat), prompts))
    return model


def _preprocessor_class(keras_hub, backbone):
    name = IMAGE_TEXT_PREPROCESSORS.get(type(backbone).__name__)
    if name is None or not hasattr(keras_hub.models, name):
        _check_image_text_backbone(backbone)
    return getattr(keras_hub.models, name)


def _check_image_text_backbone(backbone):
    if type(backbone).__name__ not in IMAGE_TEXT_PREPROCESSORS or not hasattr(backbone, "get_text_embeddings"):
        raise ValueError(
            f"Zero-shot image classification needs an image-text backbone ({', '.join(IMAGE_TEXT_PREPROCESSORS)}), "
            f"got a {type(backbone).__name__}: pass a CLIP or SigLIP keras-hub preset."
        )


def _text_embeddings(backbone, preprocessor, prompts):
    """The prompts through the backbone's text encoder and projection, in the image embeddings' space."""
    import tensorflow as tf

    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    text_encoder = keras.Model(token_ids, backbone.get_text_embeddings(token_ids))
    tokens = preprocessor({"prompts": tf.constant(prompts), "images": None})["token_ids"]
    return keras.ops.convert_to_numpy(text_encoder(tokens, training=False))  # a few prompts: no predict tracing


def _learned_scale(backbone):
    """exp(logit_scale) of the backbone's contrastive head: the temperature it was trained with."""
    for layer in backbone._flatten_layers(include_self=False):
        variable = getattr(layer, "logit_scale", None)
        if variable is not None:
            return float(np.exp(keras.ops.convert_to_numpy(variable)).reshape(-1)[0])
    raise ValueError(f"{type(backbone).__name__} has no learned logit scale: pass scale=.")
