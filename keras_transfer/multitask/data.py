"""Training data of a multi-task model, in either of its two forms, as one dataset of batches.

1. One dataset labelled for every task: an `(inputs, {task: labels})` tuple,
   or a batched `tf.data.Dataset` of `(inputs, {task: labels})`. Every example
   counts for every task.
2. One dataset per task, each with its own examples and labels:
   `{task: (inputs, labels)}` or `{task: dataset of (inputs, labels) batches}`
   (as `keras_transfer.data` loads them). The examples of all tasks are mixed
   into shared batches (`tf.data.Dataset.sample_from_datasets`, in proportion
   to each task's size), and an example's loss counts only for its own task:
   the Keras-native way, a per-task sample weight (1 for the task's own
   examples, 0 for the others') with a placeholder label (zeros) where the
   example has none. The model's losses average over the examples of weight
   1 (`tasks.TASK_LOSS_REDUCTION`) and its metrics are weighted metrics, so
   neither sees a placeholder.

Either way the result is a `tf.data.Dataset` of `(inputs, labels[, sample
weights])` batches of known length, which `fit`, `evaluate` and `fine_tune`
take as any other (a text model tokenizes the sentences in the pipeline).
"""

import math

import numpy as np
import tensorflow as tf

from keras_transfer.data import DataError


def task_batches(tasks, data, *, batch_size=32, shuffle=False, seed=0, require_all=True):
    """`(dataset, examples per task)` for data in either form (see the module's docstring).

    Args:
        tasks: the model's `Task`s.
        data: `(inputs, {task: labels})`, a dataset of such batches, or a
            dict `{task: (inputs, labels) or dataset}`.
        batch_size: examples per batch (datasets of the first form keep theirs).
        shuffle: reshuffle the examples every epoch (training).
        seed: seed of the shuffling and of the mixing of tasks.
        require_all: in the second form, every task must have data (training).

    Raises:
        DataError: labels missing for a task, of the wrong kind (classes
            out of range, wrong width), inputs and labels of different
            lengths, or a task name the model does not have.
    """
    names = [task.name for task in tasks]
    if isinstance(data, dict):
        return _mixed_tasks(tasks, data, batch_size, shuffle, seed, require_all)
    if isinstance(data, tf.data.Dataset):
        return _labelled_dataset(tasks, data)
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[1], dict):
        inputs, labels = data
        _check_label_keys(names, labels, "the labels dict")
        inputs = _inputs_array(inputs)
        labels = {task.name: _labels_array(task, labels[task.name], len(inputs)) for task in tasks}
        dataset = tf.data.Dataset.from_tensor_slices((inputs, labels))
        if shuffle:
            dataset = dataset.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
        return dataset.batch(batch_size), {name: len(inputs) for name in names}
    raise DataError(
        "Multi-task data comes as (inputs, {task: labels}), a dataset of such batches, or "
        f"{{task: (inputs, labels)}} with one entry per task ({', '.join(names)}); got {type(data).__name__}."
    )


def is_task_dict(data, tasks):
    """True for data of the second form: a dict keyed by task names."""
    return isinstance(data, dict) and set(data) <= {task.name for task in tasks} and bool(data)


def task_labels(data, name):
    """The data of one task alone, `(inputs, labels)` or a dataset of such batches, from either form."""
    if isinstance(data, dict):
        if name not in data:
            raise DataError(f"The data has nothing for task {name!r}: it has {', '.join(data)}.")
        return data[name]
    if isinstance(data, tf.data.Dataset):
        return data.map(lambda inputs, labels, *_: (inputs, labels[name]))
    inputs, labels = data
    return inputs, labels[name]


def _check_label_keys(names, labels, where):
    missing = [name for name in names if name not in labels]
    unknown = [name for name in labels if name not in names]
    if missing or unknown:
        raise DataError(
            f"{where} must hold labels for every task ({', '.join(names)})"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else "")
            + ". For tasks labelled on different examples give {task: (inputs, labels)}."
        )


def _inputs_array(inputs):
    """Sentences as a string array; images (numbers) as float32."""
    if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str):
        return np.asarray(inputs, dtype=object).astype(str)
    array = np.asarray(inputs)
    return array.astype(str) if array.dtype.kind in "UO" else array.astype("float32")


def _labels_array(task, labels, num_examples):
    """One task's labels as the dtype and shape its head trains on, checked."""
    head = task.head
    labels = np.asarray(labels)
    if len(labels) != num_examples:
        raise DataError(f"Task {task.name!r} has {len(labels)} labels for {num_examples} examples: give one each.")
    if head.task == "multiclass":
        if labels.ndim != 1:
            raise DataError(f"Task {task.name!r} (multiclass) takes one class index per example, got {labels.shape}.")
        if len(labels) and (labels.min() < 0 or labels.max() >= head.num_outputs):
            raise DataError(
                f"Task {task.name!r} labels run from {labels.min()} to {labels.max()}, but its head has "
                f"{head.num_outputs} classes (0 to {head.num_outputs - 1}): fix the labels or the head."
            )
        return labels.astype("int32")
    labels = labels.astype("float32")
    if not np.all(np.isfinite(labels)):
        raise DataError(f"Task {task.name!r} has NaN or infinite labels: remove or fix those examples.")
    width = head.num_outputs
    if head.task == "binary" or width == 1:
        labels = labels.reshape(len(labels), -1)
        if labels.shape[1] != 1:
            raise DataError(f"Task {task.name!r} takes one value per example, got {labels.shape[1]}.")
        labels = labels[:, 0]
        if head.task == "binary" and not np.all(np.isin(labels, (0.0, 1.0))):
            raise DataError(f"Task {task.name!r} (binary) takes labels 0 and 1: map its classes to them.")
        return labels
    if labels.ndim != 2 or labels.shape[1] != width:
        raise DataError(f"Task {task.name!r} takes {width} values per example, got labels of shape {labels.shape}.")
    return labels


def _labelled_dataset(tasks, dataset):
    """A batched dataset of `(inputs, {task: labels})`, checked and with each task's labels cast."""
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) >= 2 and isinstance(spec[1], dict)):
        raise DataError(
            f"A multi-task dataset yields (inputs, {{task: labels}}) batches, got {spec}: "
            "or give {task: dataset} for tasks labelled on different examples."
        )
    _check_label_keys([task.name for task in tasks], spec[1], "The dataset's labels")
    dtypes = {task.name: _label_dtype(task) for task in tasks}

    def cast(inputs, labels, *rest):
        return (inputs, {name: tf.cast(labels[name], dtypes[name]) for name in dtypes}, *rest)

    # The counts would take a pass over the data: unknown (None) for a dataset of this form.
    return dataset.map(cast, num_parallel_calls=tf.data.AUTOTUNE), {task.name: None for task in tasks}


def _label_dtype(task):
    return tf.int32 if task.head.task == "multiclass" else tf.float32


def _label_shape(task):
    """One example's label: a class index or value `()`, or a row of `num_outputs` values."""
    head = task.head
    return () if head.task in ("multiclass", "binary") or head.num_outputs == 1 else (head.num_outputs,)


def _count_examples(labels):
    return int(sum(int(tf.shape(batch)[0]) for batch in labels))


def _mixed_tasks(tasks, data, batch_size, shuffle, seed, require_all):
    """One task's examples after another's (evaluation) or sampled into mixed batches (training)."""
    names = [task.name for task in tasks]
    unknown = [str(name) for name in data if name not in names]
    if unknown:
        raise DataError(f"No task named {', '.join(unknown)}: the model's tasks are {', '.join(names)}.")
    missing = [name for name in names if name not in data]
    if require_all and missing:
        raise DataError(
            f"Task {', '.join(missing)} has no training data: give {{task: (inputs, labels)}} for every task "
            f"({', '.join(names)})."
        )
    sources, counts = [], {}
    for task in tasks:
        if task.name in data:
            examples, counts[task.name] = _task_examples(task, data[task.name])
            sources.append(examples)
    placeholders = _placeholder_labels(tasks)
    sources = [source.map(placeholders) for source in sources]
    _check_same_inputs(sources, list(counts))
    total = sum(counts.values())
    if shuffle:
        sources = [source.shuffle(counts[name], seed=seed) for source, name in zip(sources, counts)]
        mixed = tf.data.Dataset.sample_from_datasets(
            sources, weights=[counts[name] / total for name in counts], seed=seed, stop_on_empty_dataset=False
        )
    else:
        mixed = sources[0]
        for source in sources[1:]:
            mixed = mixed.concatenate(source)
    mixed = mixed.batch(batch_size)
    return mixed.apply(tf.data.experimental.assert_cardinality(math.ceil(total / batch_size))), counts


def _task_examples(task, data):
    """`(dataset of single examples (inputs, {task: labels}), count)` of one task's own data."""
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if not (isinstance(spec, tuple) and len(spec) >= 2):
            raise DataError(f"Task {task.name!r}: its dataset must yield (inputs, labels) batches, got {spec}.")
        dtype, shape = _label_dtype(task), _label_shape(task)
        examples = data.map(lambda inputs, labels, *_: (inputs, labels)).unbatch()
        examples = examples.map(
            lambda inputs, labels: (
                _as_float_if_numeric(inputs),
                {task.name: tf.reshape(tf.cast(labels, dtype), shape)},
            )
        )
        count = _count_examples(data.map(lambda inputs, labels, *_: labels))
        if not count:
            raise DataError(f"Task {task.name!r}: its dataset holds no examples.")
        return examples, count
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise DataError(f"Task {task.name!r}: give (inputs, labels) or a dataset, got {type(data).__name__}.")
    inputs = _inputs_array(data[0])
    if not len(inputs):
        raise DataError(f"Task {task.name!r}: it has no examples.")
    labels = _labels_array(task, data[1], len(inputs))
    return tf.data.Dataset.from_tensor_slices((inputs, {task.name: labels})), len(inputs)


def _as_float_if_numeric(inputs):
    return inputs if inputs.dtype == tf.string else tf.cast(inputs, tf.float32)


def _placeholder_labels(tasks):
    """A map that gives an example every task's label (zeros where it has none) and weights (1 own, 0 others)."""

    def complete(inputs, labels):
        full, weights = {}, {}
        for task in tasks:
            own = task.name in labels
            placeholder = tf.zeros(_label_shape(task), _label_dtype(task))
            full[task.name] = labels[task.name] if own else placeholder
            weights[task.name] = tf.constant(1.0 if own else 0.0)
        return inputs, full, weights

    return complete


def _check_same_inputs(sources, names):
    specs = [source.element_spec[0] for source in sources]
    for name, spec in zip(names[1:], specs[1:]):
        if spec.dtype != specs[0].dtype or not spec.shape.is_compatible_with(specs[0].shape):
            raise DataError(
                f"Task {name!r} has inputs of shape {spec.shape} ({spec.dtype.name}) but task {names[0]!r} "
                f"has {specs[0].shape} ({specs[0].dtype.name}): every task's inputs must fit the one backbone "
                "(load the images at the same size)."
            )
