"""SetFit: few-shot text classification by contrastive fine-tuning of a sentence-embedding backbone, then a head.

SetFit (Tunstall et al., "Efficient Few-Shot Learning Without Prompts", 2022)
turns K labelled sentences per class into many sentence pairs: a positive pair
is two sentences of the same class, a negative pair two of different classes.
A siamese Keras model (the `TextClassifier`'s own backbone and pooling, used
twice) regresses the cosine similarity of the two pooled embeddings to 1 for
positive pairs and 0 for negative ones, sentence-transformers'
`CosineSimilarityLoss`. That pulls each class's sentences together and pushes
the classes apart, so that a head trained on the fine-tuned, frozen
embeddings separates what a head on the pretrained embeddings could not.

The head is a cosine head (`Head.cosine`) holding each class's mean
fine-tuned embedding (`fit_prototypes`), which needs no training and
classified better than a logistic regression on the same embeddings
(all-MiniLM-L6-v2, seeded draws: SST-2 dev at K = 8, 0.635 against 0.628;
SMS spam at K = 8, 0.891 against 0.853, where the frozen backbone's
prototypes reached 0.716 and its logistic regression 0.641).

`setfit_classifier` does both steps and returns one ordinary `TextClassifier`
(raw sentences in `predict` and `evaluate`, `evaluate_report`,
`export_model`, `save` and loading); `setfit_pairs` and
`contrastive_fine_tune` are its two verbs, for a model built another way.
"""

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.errors import DataError
from keras_transfer.fewshot.prototypes import fit_prototypes
from keras_transfer.finetune.progress import PhaseProgress, announce, counted, format_learning_rate
from keras_transfer.finetune.recipes import TEXT_RECIPES
from keras_transfer.models.heads import Head
from keras_transfer.models.text_classifier import POOLER_LAYER, TextClassifier

# The recipe's defaults: SetFit's paper's rate, epochs and batch. Measured with
# all-MiniLM-L6-v2 on SST-2 dev (K = 8 per class, 3 seeded draws, cosine head):
# 0.635 +- 0.034 at 2e-5, 0.625 at 5e-5; 1e-4 collapsed on one draw (0.53).
# Pairs each training sentence starts, half positive and half negative.
PAIRS_PER_EXAMPLE = 20
CONTRASTIVE_EPOCHS = 1
LEARNING_RATE = 2e-5
BATCH_SIZE = 16
# Epochs of the cosine head after its prototype start (0: the prototypes as they are).
HEAD_EPOCHS = 0
# A handful of training sentences says little about the length of the
# sentences predicted later: keep up to this many tokens (batches are padded
# only to their longest sentence, so short texts cost no more).
SEQUENCE_LENGTH = 128


@dataclasses.dataclass
class SetFitHistory:
    """What `setfit_classifier` did.

    Attributes:
        contrastive: the `keras.callbacks.History` of contrastive fine-tuning
            (its `loss` is the mean squared error of the pairs' cosine
            similarities).
        head: the `FineTuneHistory` of the head's epochs after its
            prototype start, or None (`head_epochs=0`).
        num_pairs: sentence pairs trained on, half of them positive.
        seconds: wall time of each step (`contrastive`, `prototypes` and,
            with head epochs, `head`).
    """

    contrastive: keras.callbacks.History
    head: object
    num_pairs: int
    seconds: dict


def setfit_pairs(labels, pairs_per_example=PAIRS_PER_EXAMPLE, *, seed=0):
    """Sentence pairs for contrastive training: indices into `labels`, and 1 (same class) or 0 targets.

    Every example starts `pairs_per_example` pairs, half with a partner of
    its own class (positive) and half with a partner of another class
    (negative), so the pairs are balanced. Partners are drawn from a seeded
    shuffle of the candidates, cycled, so each candidate is used about
    equally often; no example is paired with itself.

    Args:
        labels: one class index per example (ints); at least 2 classes, and
            at least 2 examples of each (a positive pair needs two).
        pairs_per_example: an even number >= 2.
        seed: seeds the partners and the order of the pairs.

    Returns:
        `(first, second, targets)`: int arrays of example indices and float32
        targets, `len(labels) * pairs_per_example` of each, shuffled.

    >>> first, second, targets = setfit_pairs([0, 0, 1, 1], 4)
    >>> len(targets), int(targets.sum())
    (16, 8)
    """
    labels = _class_indices(labels)
    pairs_per_example = _check_pairs_per_example(pairs_per_example)
    _check_examples_per_class(labels)
    rng = np.random.default_rng(seed)
    half = pairs_per_example // 2
    indices = np.arange(len(labels))
    first, second = [], []
    for index, label in enumerate(labels):
        same = indices[(labels == label) & (indices != index)]
        other = indices[labels != label]
        for candidates in (same, other):
            # A shuffled copy of the candidates, repeated: each used half // len or one more time.
            cycled = np.concatenate([rng.permutation(candidates) for _ in range(-(-half // len(candidates)))])
            first.append(np.full(half, index))
            second.append(cycled[:half])
    first, second = np.concatenate(first), np.concatenate(second)
    targets = (labels[first] == labels[second]).astype("float32")
    order = rng.permutation(len(targets))
    return first[order], second[order], targets[order]


def contrastive_fine_tune(
    model,
    texts,
    labels,
    *,
    pairs_per_example=PAIRS_PER_EXAMPLE,
    epochs=CONTRASTIVE_EPOCHS,
    learning_rate=LEARNING_RATE,
    batch_size=BATCH_SIZE,
    seed=0,
    verbose="auto",
):
    """Fine-tunes `model`'s backbone so that its pooled embeddings of same-class sentences agree (SetFit's step 1).

    A siamese model shares `model`'s backbone and pooling (`feature_extractor()`)
    between the two sentences of each pair (`setfit_pairs`) and regresses
    their cosine similarity to the pair's target with a mean squared error
    (sentence-transformers' `CosineSimilarityLoss`), with Adam at
    `learning_rate`. The whole backbone trains (dropout on); the head is not
    used. Afterwards the backbone is frozen again.

    Args:
        model: a `TextClassifier` (a sentence-embedding backbone such as
            all-MiniLM-L6-v2, mean pooling).
        texts: the training sentences.
        labels: their class indices.
        pairs_per_example, epochs, learning_rate, batch_size, seed: as in
            `setfit_classifier`.
        verbose: Keras's `verbose`.

    Returns:
        The `keras.callbacks.History` of the pairs' loss.
    """
    texts, labels = _check_texts_and_labels(texts, labels)
    first, second, targets = setfit_pairs(labels, pairs_per_example, seed=seed)
    _check_training_options(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size)
    tokens = _trimmed_tokens(model, texts)
    pairs = tf.data.Dataset.from_tensor_slices((first, second, targets))
    pairs = pairs.shuffle(len(targets), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    pairs = pairs.map(lambda a, b, target: (_pair_inputs(tokens, a, b), target[:, None]))

    siamese = _siamese_model(model)
    siamese.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=keras.losses.MeanSquaredError())
    announce(
        verbose,
        f"Contrastive fine-tuning: {counted(len(targets), 'sentence pair')} from "
        f"{counted(len(texts), 'sentence')} ({int(targets.sum()):,} positive), "
        f"{counted(epochs, 'epoch')} at {format_learning_rate(learning_rate)}.",
    )
    model.backbone.trainable = True
    _keep_unused_pooler_frozen(model)
    try:
        progress = PhaseProgress("Contrastive", first_epoch=0, epochs=epochs)
        history = siamese.fit(pairs, epochs=epochs, callbacks=[progress], shuffle=False, verbose=verbose)
    finally:
        model.backbone.trainable = False
    return history


def setfit_classifier(
    backbone,
    texts,
    labels,
    *,
    class_names=None,
    pooling="mean",
    sequence_length=None,
    preprocessor=None,
    pairs_per_example=PAIRS_PER_EXAMPLE,
    contrastive_epochs=CONTRASTIVE_EPOCHS,
    head_epochs=HEAD_EPOCHS,
    learning_rate=LEARNING_RATE,
    batch_size=BATCH_SIZE,
    seed=0,
    verbose="auto",
):
    """A `TextClassifier` trained SetFit's way on a few labelled sentences per class.

    1. Contrastive fine-tuning of the backbone on sentence pairs built from
       the examples (`contrastive_fine_tune`).
    2. A cosine head on the fine-tuned, frozen backbone holding each
       class's mean embedding (`fit_prototypes`: no training); with
       `head_epochs`, the head then trains from there on the cached
       embeddings (`TEXT_RECIPES["frozen"]`'s head phase).

    Defaults: 20 pairs per sentence, 1 epoch of Adam at 2e-5, batch 16 (SetFit's
    rate, epochs and batch), mean pooling and up to 128 tokens. Measured with
    all-MiniLM-L6-v2 on 2 CPU cores: see benchmarks/results/few_shot.md.

    Args:
        backbone: what `TextClassifier` takes: a keras-hub preset name or a
            local folder (e.g. all-MiniLM-L6-v2), or a keras-hub Backbone
            model with its `preprocessor`.
        texts: the training sentences (a list of strings).
        labels: their class indices, 0 to `num_classes - 1`; at least 2
            classes with 2 or more sentences each.
        class_names: names of the classes (by default the indices seen).
        pooling: the pooling the embeddings are compared with: `"mean"`
            (what sentence-transformers models were trained with), `"cls"`,
            `"max"` or `"pooled"`.
        sequence_length: tokens per sentence; by default 128, capped by the backbone.
        preprocessor: the keras-hub preprocessor of a backbone given as a model.
        pairs_per_example: sentence pairs each example starts (even; half positive).
        contrastive_epochs: epochs over the pairs.
        head_epochs: epochs of the head after its prototype start (0: none).
        learning_rate: Adam's rate for the contrastive fine-tuning.
        batch_size: pairs per contrastive step (and sentences per head step).
        seed: seeds the pairs, their order and the dropout of the contrastive steps.
        verbose: Keras's `verbose`; `"auto"` shows progress bars on a terminal.

    Returns:
        `(model, SetFitHistory)`; the model is compiled, its backbone frozen.

    Raises:
        DataError: bad texts or labels (checked before any model is built).

    Example:
    >>> model, history = setfit_classifier("path/to/all-MiniLM-L6-v2", texts, labels)  # doctest: +SKIP
    >>> model.predict(["what a great film"])  # doctest: +SKIP
    """
    texts, labels = _check_texts_and_labels(texts, labels)
    num_classes = int(labels.max()) + 1
    if class_names is not None and len(class_names) < num_classes:
        raise DataError(
            f"The labels go up to {num_classes - 1} but {len(class_names)} class_names were given: "
            "pass one name per class index."
        )
    class_names = [str(index) for index in range(num_classes)] if class_names is None else list(class_names)
    num_classes = len(class_names)
    setfit_pairs(labels, pairs_per_example)  # the pairs' checks, before the backbone loads
    absent = sorted(set(range(num_classes)) - set(labels.tolist()))
    if absent:
        raise DataError(
            f"Class(es) {', '.join(str(class_names[i]) for i in absent)} have no examples: "
            "SetFit needs at least 2 of each class."
        )
    _check_training_options(epochs=contrastive_epochs, learning_rate=learning_rate, batch_size=batch_size)
    if isinstance(head_epochs, bool) or not isinstance(head_epochs, (int, np.integer)) or head_epochs < 0:
        raise ValueError(f"head_epochs must be an integer >= 0, got {head_epochs!r}.")

    keras.utils.set_random_seed(seed)
    model = TextClassifier(
        backbone,
        head=Head.cosine(num_classes),
        class_names=class_names,
        pooling=pooling,
        sequence_length=sequence_length or _default_sequence_length(backbone),
        preprocessor=preprocessor,
    )
    seconds = {}
    started = time.perf_counter()
    contrastive = contrastive_fine_tune(
        model,
        texts,
        labels,
        pairs_per_example=pairs_per_example,
        epochs=contrastive_epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        seed=seed,
        verbose=verbose,
    )
    seconds["contrastive"] = time.perf_counter() - started
    started = time.perf_counter()
    fit_prototypes(model, (texts, labels), verbose=verbose)
    seconds["prototypes"] = time.perf_counter() - started
    head = None
    if head_epochs:
        started = time.perf_counter()
        recipe = TEXT_RECIPES["frozen"].replace(head_epochs=int(head_epochs))
        head = model.fine_tune((texts, labels), recipe=recipe, batch_size=batch_size, verbose=verbose)
        seconds["head"] = time.perf_counter() - started
    return model, SetFitHistory(contrastive, head, len(texts) * pairs_per_example, seconds)


# --- the pieces ---------------------------------------------------------------


def _default_sequence_length(backbone):
    maximum = getattr(backbone, "max_sequence_length", None) if isinstance(backbone, keras.Model) else None
    return min(SEQUENCE_LENGTH, maximum) if maximum else SEQUENCE_LENGTH


def _trimmed_tokens(model, texts):
    """The model's inputs for `texts`, cut to the longest of them: the padding mask makes the rest no-ops."""
    tokens = model.tokenize(texts)
    width = int(np.asarray(tokens["padding_mask"]).sum(axis=1).max())
    return {name: tf.constant(np.asarray(value)[:, :width]) for name, value in tokens.items()}


def _pair_inputs(tokens, first, second):
    inputs = {}
    for side, index in (("first", first), ("second", second)):
        for name, value in tokens.items():
            inputs[f"{side}_{name}"] = tf.gather(value, index)
    return inputs


def _siamese_model(model):
    """Two sentences in, the cosine similarity of their pooled embeddings out; the encoder is `model`'s own."""
    encoder = keras.Model(model.input, model.head_features, name=f"{model.name}_encoder")
    embeddings = []
    inputs = {}
    for side in ("first", "second"):
        side_inputs = {name: keras.Input(shape=(None,), dtype="int32", name=f"{side}_{name}") for name in model.input}
        inputs.update({f"{side}_{name}": tensor for name, tensor in side_inputs.items()})
        embeddings.append(encoder(side_inputs))
    similarity = keras.layers.Dot(axes=1, normalize=True, name="cosine_similarity")(embeddings)
    return keras.Model(inputs, similarity, name="setfit_siamese")


def _keep_unused_pooler_frozen(model):
    # Token pooling leaves BERT's pooler out of the graph: frozen, it gets no "missing gradient" warning.
    if model.pooling != "pooled":
        for layer in model.backbone.layers:
            if layer.name == POOLER_LAYER:
                layer.trainable = False


# --- checks -------------------------------------------------------------------


def _check_texts_and_labels(texts, labels):
    if isinstance(texts, str) or not hasattr(texts, "__len__"):
        raise DataError(f"texts must be a list of sentences, got {type(texts).__name__}.")
    texts = list(texts)
    not_text = [index for index, text in enumerate(texts) if not isinstance(text, (str, np.str_))]
    if not_text:
        raise DataError(f"texts must be strings; text {not_text[0]} is a {type(texts[not_text[0]]).__name__}.")
    labels = _class_indices(labels)
    if len(texts) != len(labels):
        raise DataError(f"{len(texts)} texts but {len(labels)} labels: give one label per text.")
    return [str(text) for text in texts], labels


def _class_indices(labels):
    array = np.asarray(labels)
    if array.ndim != 1 or array.size == 0:
        raise DataError(f"labels must be a non-empty list of class indices, got shape {array.shape}.")
    if array.dtype.kind not in "iu" and not (array.dtype.kind == "f" and np.all(array == np.round(array))):
        raise DataError(
            f"labels must be class indices (0, 1, ...), got {array[:3].tolist()}...: "
            "map class names to indices and pass the names as class_names."
        )
    array = array.astype("int64")
    if array.min() < 0:
        raise DataError(f"labels must be class indices >= 0, got {int(array.min())}.")
    return array


def _check_examples_per_class(labels):
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise DataError(
            f"SetFit needs examples of at least 2 classes (negative pairs), got only class {int(classes[0])}."
        )
    few = classes[counts < 2]
    if len(few):
        raise DataError(
            f"SetFit needs at least 2 examples of each class (a positive pair); class(es) "
            f"{', '.join(str(int(c)) for c in few)} have 1. Add examples, or drop those classes."
        )


def _check_pairs_per_example(pairs_per_example):
    value = pairs_per_example
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2 or value % 2:
        raise ValueError(
            f"pairs_per_example must be an even integer >= 2 (half positive, half negative pairs), got {value!r}."
        )
    return int(value)


def _check_training_options(*, epochs, learning_rate, batch_size):
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"contrastive epochs must be an integer >= 1, got {epochs!r}.")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be a number > 0, got {learning_rate!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
