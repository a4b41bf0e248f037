"""Few-shot training sets: exactly K labelled examples of each class, drawn with a seed.

`draw_shots` draws from arrays or lists (images, sentences, file paths,
cached features); `dataset_shots` from a labelled dataset of
`keras_transfer.data` (an image folder, a text file), which it reads once.
The same labels, `shots` and `seed` always give the same draw.

>>> texts, labels = draw_shots(["good", "fine", "bad", "awful"], [1, 1, 0, 0], 1, seed=0)
>>> labels.tolist()
[0, 1]
"""

import numbers

import numpy as np

from keras_transfer.errors import DataError


def check_shots(shots):
    """`shots` as an int >= 1, or a ValueError that says what to give."""
    if isinstance(shots, bool) or not isinstance(shots, numbers.Integral) or shots < 1:
        raise ValueError(f"shots must be an integer >= 1 (examples per class), got {shots!r}.")
    return int(shots)


def shot_indices(labels, shots, *, seed=0, num_classes=None, class_names=None):
    """The indices of `shots` examples of each class in `labels`, drawn without replacement.

    Args:
        labels: one class per example: int class indices or class names.
        shots: examples per class (K).
        seed: seed of the draw.
        num_classes: for int labels, the number of classes: each of
            `0 .. num_classes - 1` must have `shots` examples (by default the
            classes are the label values present).
        class_names: names of the classes, for error messages.

    Returns:
        An int array of `shots * classes` indices, class by class (in class
        order), each class's in the order drawn.

    Raises:
        DataError: a class has fewer than `shots` examples (the message names
            it and how many it has).
    """
    shots = check_shots(shots)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(
            f"Few-shot draws need one class per example, got labels of shape {labels.shape}: "
            "multi-label and regression targets have no classes to draw from."
        )
    classes = np.arange(num_classes) if num_classes is not None else np.unique(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for index, value in enumerate(classes):
        members = np.flatnonzero(labels == value)
        if len(members) < shots:
            name = class_names[index] if class_names is not None else value
            raise DataError(
                f"Class {str(name)!r} has {len(members)} example(s), fewer than shots={shots}: "
                f"give at most shots={max(len(members), 1)}, or add examples of that class."
            )
        chosen.append(rng.choice(members, shots, replace=False))
    return np.concatenate(chosen) if chosen else np.zeros(0, int)


def draw_shots(inputs, labels, shots, *, seed=0, num_classes=None):
    """Exactly `shots` examples of each class of `labels`, seeded: `(inputs, labels)` of the draw.

    Args:
        inputs: a numpy array (one row per example), a list of examples
            (e.g. sentences or file paths) or a dict of such arrays.
        labels: one class per example (int indices or names).
        shots: examples per class (K), 1 or more.
        seed: seed of the draw; the same seed gives the same examples.
        num_classes: for int labels, the classes that must all be drawn from
            (`0 .. num_classes - 1`); by default the label values present.

    Returns:
        `(inputs, labels)` in the kinds given (a list stays a list), class by class.

    Raises:
        DataError: a class has fewer than `shots` examples, or the inputs and
            labels differ in length.
    """
    labels = np.asarray(labels)
    lengths = {len(value) for value in (inputs.values() if isinstance(inputs, dict) else [inputs])}
    if lengths != {len(labels)}:
        raise DataError(f"Got {sorted(lengths)} inputs but {len(labels)} labels: give one label per example.")
    chosen = shot_indices(labels, shots, seed=seed, num_classes=num_classes)
    return _take(inputs, chosen), labels[chosen]


def dataset_shots(dataset, shots, *, seed=0, batch_size=None):
    """A dataset of exactly `shots` examples of each class of a labelled `keras_transfer.data` dataset.

    The dataset is read once (a seeded reservoir draw per class, so only the
    examples kept stay in memory); the draw depends on `seed` and on the
    order the dataset yields its examples in. Images come back as
    `data.from_arrays` makes them, sentences as `data.from_texts` does, with
    the same `class_names`, shuffled every epoch with `seed`.

    Args:
        dataset: batches of `(inputs, int labels)` carrying `class_names`
            (what `image_folder`, `from_arrays`, `text_file` and `from_texts`
            return).
        shots: examples per class (K).
        seed: seed of the draw and of the new dataset's shuffling.
        batch_size: of the new dataset (default: the smaller of 32 and the
            number of examples drawn).

    Raises:
        DataError: a class has fewer than `shots` examples, or the labels are
            not class indices.
    """
    from keras_transfer import data as data_lib

    shots = check_shots(shots)
    class_names = data_lib.class_names_of(dataset)
    if class_names is None:
        raise DataError("dataset_shots needs a dataset with class_names: load it with keras_transfer.data.")
    counts = getattr(dataset, "class_counts", None)
    if counts is not None:  # the loaders count each class: a short one fails before any image decodes
        _check_counts(class_names, counts, shots)
    kept = [[] for _ in class_names]
    seen = np.zeros(len(class_names), int)
    rng = np.random.default_rng(seed)
    for inputs, labels in dataset.as_numpy_iterator():
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(
                "Few-shot draws need one class index per example: multi-label and regression "
                "datasets have no classes to draw from."
            )
        for example, label in zip(inputs, labels):
            # Reservoir sampling: every example of the class is kept with probability shots / seen.
            seen[label] += 1
            if len(kept[label]) < shots:
                kept[label].append(example)
            else:
                slot = rng.integers(seen[label])
                if slot < shots:
                    kept[label][slot] = example
    _check_counts(class_names, seen, shots)
    examples = [example for class_examples in kept for example in class_examples]
    labels = np.repeat(np.arange(len(class_names)), shots)
    batch_size = batch_size or min(32, len(labels))
    if isinstance(examples[0], (bytes, str)):
        texts = [text.decode("utf-8") if isinstance(text, bytes) else text for text in examples]
        return data_lib.from_texts(texts, labels, class_names=class_names, batch_size=batch_size, seed=seed)
    return data_lib.from_arrays(np.stack(examples), labels, class_names=class_names, batch_size=batch_size, seed=seed)


def examples_of(dataset):
    """`(inputs, labels)` of every example of a labelled dataset, read once: a list of sentences or an array."""
    inputs, labels = [], []
    for batch_inputs, batch_labels in dataset.as_numpy_iterator():
        inputs.extend(batch_inputs)
        labels.extend(batch_labels)
    if inputs and isinstance(inputs[0], bytes):
        return [text.decode("utf-8") for text in inputs], np.asarray(labels)
    return np.asarray(inputs), np.asarray(labels)


def _check_counts(class_names, counts, shots):
    for name, count in zip(class_names, counts):
        if count < shots:
            raise DataError(
                f"Class {name!r} has {count} example(s), fewer than shots={shots}: "
                f"give at most shots={max(int(count), 1)}, or add examples of that class."
            )


def _take(inputs, indices):
    if isinstance(inputs, dict):
        return {name: _take(value, indices) for name, value in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return [inputs[index] for index in indices]
    return np.asarray(inputs)[indices]
