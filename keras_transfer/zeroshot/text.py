"""Zero-shot text classification with a sentence-embedding backbone (e.g. all-MiniLM-L6-v2)."""

import os

import keras
import numpy as np

from keras_transfer.finetune import progress
from keras_transfer.models.heads import DEFAULT_COSINE_SCALE, Head
from keras_transfer.models.text_backbones import PRETRAINED
from keras_transfer.models.text_classifier import TextClassifier, sentence_transformers_pooling
from keras_transfer.zeroshot.prompts import DEFAULT_TEMPLATE, class_prompts, class_vectors

# keras-hub's BertTextEmbedder (the all-MiniLM presets) pools this way too.
DEFAULT_SENTENCE_POOLING = "mean"


def zero_shot_classifier(
    class_names,
    *,
    backbone,
    template=DEFAULT_TEMPLATE,
    descriptions=None,
    weights=PRETRAINED,
    preprocessor=None,
    pooling=None,
    sequence_length=None,
    scale=DEFAULT_COSINE_SCALE,
    batch_size=32,
    verbose="auto",
):
    """A `TextClassifier` that assigns each text to the class whose prompt embedding is nearest.

    The classes' prompts (`class_prompts(class_names, template,
    descriptions)`) are embedded by the model's own `feature_extractor()`
    and written into a cosine head (`Head.cosine`, `set_class_vectors`), so
    no example is labelled and nothing trains. The result predicts, reports
    (`evaluate_report`), exports, saves and loads like any `TextClassifier`;
    `fine_tune` on a few labelled texts starts from these class vectors.

    Args:
        class_names: the classes, at least two, in output order.
        backbone: a sentence-embedding backbone: a local folder
            (all-MiniLM-L6-v2 as downloaded from Hugging Face works offline),
            a keras-hub preset name (e.g. `"all_minilm_l6_v2_en"`, which
            needs network the first time), or a keras-hub `Backbone` with
            `preprocessor`.
        template: a string with one `{}` for the class's name or
            description, or a list of them (their embeddings are averaged).
        descriptions: optional `{class name: description or list of
            descriptions}` used instead of the name in the template.
        weights: `"pretrained"`; `None` (random weights) only makes sense in tests.
        preprocessor: the keras-hub preprocessor of a backbone given as a model.
        pooling: how tokens become one sentence vector; None takes what a
            sentence-transformers folder says (`1_Pooling/config.json`),
            else the mean over tokens.
        sequence_length: tokens per text (the preprocessor's default when None).
        scale: the cosine head's scale: softmax(scale * cosine) gives the
            confidences; it does not change which class wins.
        batch_size: prompts embedded per batch.
        verbose: announce what runs (0 for nothing).

    Returns:
        The `TextClassifier`, not compiled (`predict` needs no compiling).

    Raises:
        ValueError: bad class names, templates or descriptions (before the
            backbone loads); see `class_prompts`.

    Example:
    >>> model = zero_shot_classifier(["sports", "politics"], backbone="all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> model.predict_classes(["The match went to extra time."])  # doctest: +SKIP
    """
    prompts = class_prompts(class_names, template, descriptions)  # bad input fails before the backbone loads
    if pooling is None:
        pooling = DEFAULT_SENTENCE_POOLING if preprocessor is not None else sentence_embedding_pooling(backbone)
    model = TextClassifier(
        backbone,
        weights=weights,
        preprocessor=preprocessor,
        sequence_length=sequence_length,
        head=Head.cosine(len(prompts), scale=scale),
        class_names=class_names,
        pooling=pooling,
    )
    return set_class_prompts(model, template, descriptions, batch_size=batch_size, verbose=verbose)


def set_class_prompts(model, template=DEFAULT_TEMPLATE, descriptions=None, *, batch_size=32, verbose="auto"):
    """Points a zero-shot `TextClassifier` at new prompts for its classes; returns the model.

    Embeds `class_prompts(model.class_names, template, descriptions)` with
    the model's own `feature_extractor()` and writes each class's mean
    into its cosine head (`set_class_vectors`). Trying another wording this
    way costs only the prompts' embeddings: the backbone is not built again.

    Example:
    >>> set_class_prompts(model, "A {} movie review.", {"negative": "bad"})  # doctest: +SKIP
    """
    if model.class_names is None:
        raise ValueError("The model has no class_names to put into prompts: build it with class_names=[...].")
    prompts = class_prompts(model.class_names, template, descriptions)
    flat = [prompt for group in prompts for prompt in group]
    announce_prompts(verbose, prompts, f"{model.backbone_name} ({model.pooling} pooling)")
    extractor = model.feature_extractor()
    # A few prompts: called directly, which skips tracing a predict function for them.
    embeddings = np.concatenate(
        [
            keras.ops.convert_to_numpy(extractor(model.tokenize(flat[start : start + batch_size]), training=False))
            for start in range(0, len(flat), batch_size)
        ]
    )
    model.set_class_vectors(class_vectors(embeddings, prompts))
    return model


def sentence_embedding_pooling(backbone):
    """The pooling a sentence-embedding `backbone` (folder or preset) was trained with: its folder's, else the mean."""
    if isinstance(backbone, (str, os.PathLike)):
        return sentence_transformers_pooling(backbone) or DEFAULT_SENTENCE_POOLING
    return DEFAULT_SENTENCE_POOLING


def announce_prompts(verbose, prompts, encoder):
    """`Embedding 4 class prompts for 2 classes with ENCODER.`, unless `verbose` is 0."""
    count = sum(len(group) for group in prompts)
    classes = progress.counted(len(prompts), "class", "classes")
    progress.announce(verbose, f"Embedding {progress.counted(count, 'class prompt')} for {classes} with {encoder}.")
