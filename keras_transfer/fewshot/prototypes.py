"""Prototype classifiers: class means of frozen backbone features in a cosine head, no training.

Each class is the mean of its few examples' features (its prototype), and an
example belongs to the class whose prototype is nearest in angle: the nearest
class mean of "Prototypical Networks for Few-shot Learning" (Snell et al.,
2017) with cosine similarity, as "A Closer Look at Few-shot Classification"
(Chen et al., 2019) scores it. A `Head.cosine` holds the prototypes as the
kernel columns of its last Dense layer (`TransferModel.set_class_vectors`),
so the result is an ordinary `ImageClassifier` or `TextClassifier`: predict,
evaluate, save, load and export it as any other, or fine-tune it from there
(`finetune_from_prototypes`), the head starting where the prototypes are.
"""

import numpy as np

from keras_transfer import data as data_lib
from keras_transfer.errors import DataError
from keras_transfer.fewshot.recipes import PROTOTYPE_FINETUNE_RECIPE
from keras_transfer.finetune.progress import announce, counted
from keras_transfer.finetune.weight_transfer import extract_features
from keras_transfer.models.heads import DEFAULT_COSINE_SCALE, Head

TASKS = ("image", "text")


def class_means(model, data, *, num_classes=None):
    """The mean of each class's `model.feature_extractor()` features: `(num_classes, features)`.

    Args:
        model: a keras_transfer task (its features are those its head sees).
        data: labelled data as `fit` takes it: a dataset of `(inputs, labels)`
            or an `(inputs, labels)` tuple (raw sentences for a text model).
        num_classes: rows of the result; by default the head's classes.

    Raises:
        DataError: a class has no examples in `data`, or the labels are not
            class indices.
    """
    features, labels = extract_features(model, data, verbose=0)
    if labels is None:
        raise DataError("Class means need labelled data: (inputs, labels) or a dataset of them.")
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"Class means need one class index per example, got labels of shape {labels.shape}.")
    num_classes = num_classes or model.head.num_outputs
    counts = np.bincount(labels, minlength=num_classes)
    if len(counts) > num_classes:
        raise DataError(f"The labels run up to {labels.max()}, but there are {num_classes} classes.")
    missing = [_class_name(model, index) for index in np.flatnonzero(counts == 0)]
    if missing:
        raise DataError(f"Class(es) {missing} have no examples: every class needs at least one to have a prototype.")
    sums = np.zeros((num_classes, features.shape[-1]), np.float64)
    np.add.at(sums, labels, features.reshape(len(features), -1))
    return (sums / counts[:, None]).astype(np.float32)


def fit_prototypes(model, data, validation_data=None, *, verbose="auto"):
    """Writes the class means of `data` into `model`'s cosine head; returns the model.

    The model is compiled (with its head's loss and metrics) when it is not,
    so `evaluate` works at once; nothing trains. `validation_data`, when
    given, is only checked as `fine_tune` checks it: the same classes, and
    for a text model its sentences count in choosing the sequence length
    (short training phrases would otherwise cut longer validation sentences).

    Raises:
        ValueError: the head is not a cosine head (`Head.cosine`).
        DataError: the data's classes differ from the model's, or a class has
            no examples.
    """
    if model.head.cosine_scale is None:
        raise ValueError(
            "Prototypes go into a cosine head: build the model with head=Head.cosine(num_classes), "
            "or use prototype_classifier(...)."
        )
    model.check_data(data, validation_data)  # classes, and a text model's sequence length, from the data
    examples = _count_examples(data)
    announce(
        verbose,
        f"Prototypes: the mean features of each of {counted(model.head.num_outputs, 'class', 'classes')}"
        + (f" over {counted(examples, 'example')}" if examples else "")
        + ", from the frozen backbone; nothing trains.",
    )
    model.set_class_vectors(class_means(model, data))
    if not model.compiled:
        model.compile()
        # Built now, the optimizer saves the variables a loaded model expects (no warning on load).
        model.optimizer.build(model.trainable_variables)
    return model


def prototype_classifier(
    data,
    validation_data=None,
    *,
    backbone,
    task="image",
    class_names=None,
    scale=DEFAULT_COSINE_SCALE,
    verbose="auto",
    **model_options,
):
    """A classifier whose classes are the mean features of their examples in `data`: no training.

    Works from one example per class up. Builds an `ImageClassifier` (or a
    `TextClassifier`) with `Head.cosine(num_classes, scale=scale)` and writes
    the class means of the frozen backbone's features into it
    (`fit_prototypes`).

    Args:
        data: labelled examples: a dataset of `keras_transfer.data` (e.g.
            `dataset_shots(...)`) or an `(inputs, labels)` tuple (images, or
            sentences for text).
        validation_data: optional, only checked (`fit_prototypes`).
        backbone: what the task's constructor takes: a registry name or a
            keras-hub preset or folder (`"mobilenet_v2"`, a path to
            all-MiniLM-L6-v2), or a backbone model.
        task: `"image"` or `"text"`.
        class_names: names of the classes; by default the dataset's, or for a
            tuple the label indices.
        scale: the cosine head's scale (logits = scale x cosine similarity).
        verbose: 0 for silence.
        **model_options: more constructor options, e.g. `weights`,
            `image_size`, `preprocessor`, `pooling`, `sequence_length`.

    Returns:
        The `ImageClassifier` or `TextClassifier`, compiled.

    Example:
    >>> shots = kt.dataset_shots(kt.data.image_folder("train/", image_size=160), 5)  # doctest: +SKIP
    >>> model = prototype_classifier(shots, backbone="mobilenet_v2", image_size=160)  # doctest: +SKIP
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}: use one of {', '.join(TASKS)}.")
    class_names = class_names or _data_class_names(data)
    model_class = _model_class(task)
    model = model_class(
        backbone, head=Head.cosine(len(class_names), scale=scale), class_names=class_names, **model_options
    )
    return fit_prototypes(model, data, validation_data, verbose=verbose)


def finetune_from_prototypes(
    data,
    validation_data=None,
    *,
    backbone,
    recipe=None,
    callbacks=(),
    verbose="auto",
    model_options=None,
    **recipe_options,
):
    """An image classifier fine-tuned from its prototypes: `(model, FineTuneHistory)`.

    The cosine head starts at the class means (`prototype_classifier`), so
    training starts where the prototype classifier stands, not from a random
    head; then the top of the backbone and the head fine-tune by
    `PROTOTYPE_FINETUNE_RECIPE` (no head phase: the head needs none).

    Args:
        data: labelled training images (a dataset or an `(images, labels)` tuple).
        validation_data: optional; with it the best epoch's weights are kept.
        backbone: an image backbone (registry name, preset or model).
        recipe: a `Recipe`; `PROTOTYPE_FINETUNE_RECIPE` when None.
        callbacks: more Keras callbacks for the fine-tuning.
        verbose: Keras's `verbose`.
        model_options: `prototype_classifier` options (`weights`, `image_size`,
            `scale`, `class_names`, ...).
        **recipe_options: `Recipe` options for this call, e.g. `finetune_epochs=5`.
    """
    model = prototype_classifier(
        data, validation_data, backbone=backbone, task="image", verbose=verbose, **(model_options or {})
    )
    recipe = (recipe or PROTOTYPE_FINETUNE_RECIPE).replace(**recipe_options)
    history = model.fine_tune(data, validation_data, recipe, callbacks=callbacks, verbose=verbose)
    return model, history


def _model_class(task):
    if task == "text":
        from keras_transfer.models.text_classifier import TextClassifier

        return TextClassifier
    from keras_transfer.models.image_classifier import ImageClassifier

    return ImageClassifier


def _data_class_names(data):
    if isinstance(data, tuple):
        labels = np.asarray(data[1])
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or not len(labels):
            raise DataError("Give int class indices as labels (or a dataset of keras_transfer.data).")
        return [str(index) for index in range(int(labels.max()) + 1)]
    names = data_lib.class_names_of(data)
    if names is None:
        raise DataError("The data carries no class_names: load it with keras_transfer.data, or pass class_names.")
    return list(names)


def _count_examples(data):
    if isinstance(data, tuple):
        return len(data[1])
    return getattr(data, "num_examples", None)


def _class_name(model, index):
    names = getattr(model, "class_names", None)
    return names[index] if names and index < len(names) else int(index)
