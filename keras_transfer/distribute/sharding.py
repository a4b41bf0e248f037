"""Each worker's part of every global batch, so that several workers train on what one process would.

Global batch k of a single process holds examples kB to (k+1)B - 1; under
`MultiWorkerMirroredStrategy` worker i takes the rows i, i + n, i + 2n, ...
of it (n workers), so the workers' batches together are that global batch
and the summed gradients equal the single process's. Two ways to get there:

- a dataset that knows how (`dataset.for_worker(num_workers, index)`, which
  `keras_transfer.data.image_folder` attaches) keeps this worker's files
  before anything is decoded: each worker reads only its share;
- any other batched dataset is read whole by each worker, which keeps its
  rows of each batch (right for any pipeline; only the model's work is
  shared out).

`distribute(dataset, strategy)` hands Keras the per-worker datasets
(`distribute_datasets_from_function`, tf.data auto-sharding off: the rows
are already split).
"""

import numpy as np
import tensorflow as tf

from keras_transfer.distribute import keras_fixes


def rows_for_worker(batch_size, num_workers, index):
    """How many rows of a full batch of `batch_size` worker `index` of `num_workers` takes."""
    return len(range(int(index), int(batch_size), int(num_workers)))


def keep_for_worker(num_workers, index, batch_size):
    """A transformation of an unbatched dataset keeping the elements worker `index` gets once it is batched by
    `batch_size` (element e sits at row e % batch_size of its batch; the worker takes rows index, index + n, ...)."""
    num_workers, index, batch_size = int(num_workers), int(index), int(batch_size)

    def keep(dataset):
        return (
            dataset.enumerate()
            .filter(lambda position, element: (position % batch_size) % num_workers == index)
            .map(lambda position, element: element)
        )

    return keep


def kept_count(num_examples, num_workers, index, batch_size):
    """Elements of an epoch of `num_examples` that `keep_for_worker` keeps."""
    full, rest = divmod(int(num_examples), int(batch_size))
    return full * rows_for_worker(batch_size, num_workers, index) + rows_for_worker(rest, num_workers, index)


def shard_batches(dataset, num_workers, index):
    """Worker `index`'s rows of each batch of `dataset` (every worker reads the whole pipeline)."""
    num_workers, index = int(num_workers), int(index)

    def rows(*batch):
        part = tf.nest.map_structure(lambda value: value[index::num_workers], batch)
        return part if len(part) > 1 else part[0]

    return dataset.map(rows, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def for_worker(dataset, num_workers, index):
    """Worker `index`'s part of every batch: from the dataset's own `for_worker` where it has one.

    Made once per dataset and worker: a dataset that reshuffles every epoch
    goes on to its next order in a later `fit` (fine-tuning after the head),
    as the one dataset does in a single process.
    """
    if num_workers == 1:
        return dataset
    parts = dataset.__dict__.setdefault("_worker_parts", {})
    if (num_workers, index) not in parts:
        own = getattr(dataset, "for_worker", None)
        parts[num_workers, index] = (
            own(num_workers, index) if own is not None else shard_batches(dataset, num_workers, index)
        )
    return parts[num_workers, index]


def distribute(dataset, strategy, convert=None, *, key=None):
    """`dataset` as the `tf.distribute.DistributedDataset` whose worker i gets its part of each global batch.

    `convert` (optional) turns each worker's part into what the model takes
    (e.g. sentences into token ids), after the split. Outside multi-worker
    training the dataset comes back converted, not distributed.

    Given a `key` (what `convert` does), it is made once per dataset,
    strategy and key: TensorFlow copies the workers' datasets when it
    distributes them, and a copy would start its shuffling over, where the
    one dataset of a single process goes on to its next order in a later
    `fit` (fine-tuning after the head).
    """
    convert = convert or (lambda part: part)
    if not keras_fixes.in_multi_worker_mode(strategy):
        return convert(dataset)
    made = dataset.__dict__.setdefault("_distributed", {})
    if key is not None and (id(strategy), key) in made:
        return made[id(strategy), key]
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF

    def worker_dataset(context):
        part = convert(for_worker(dataset, context.num_input_pipelines, context.input_pipeline_id))
        return part.with_options(options)

    distributed = strategy.distribute_datasets_from_function(worker_dataset)
    if key is not None:
        made[id(strategy), key] = distributed
    return distributed


def all_gather_rows(array, strategy):
    """Every worker's `array` (rows may differ in number), one per worker in worker order, on every worker."""
    array = np.asarray(array)
    if not keras_fixes.in_multi_worker_mode(strategy):
        return [array]

    def gather(value):
        return np.asarray(
            strategy.gather(strategy.experimental_distribute_values_from_function(lambda _: value), axis=0)
        )

    counts = gather(np.asarray([len(array)], np.int64))
    padded = np.zeros((int(counts.max()), *array.shape[1:]), array.dtype)
    padded[: len(array)] = array
    gathered = gather(padded)
    parts = np.split(gathered, len(counts))
    return [part[:count] for part, count in zip(parts, counts)]


def interleave_rows(parts_in_worker_order, num_workers, batch_size):
    """Undoes the split of `keep_for_worker`: the workers' rows back in the order of the single dataset."""
    parts = [np.asarray(part) for part in parts_in_worker_order]
    total = sum(len(part) for part in parts)
    order = np.arange(total)
    owner = (order % batch_size) % num_workers
    result = np.empty((total, *parts[0].shape[1:]), parts[0].dtype)
    for index, part in enumerate(parts):
        result[owner == index] = part
    return result


def _local(strategy, value):
    return strategy.experimental_local_results(value)[0]


def array_batches(x, y=None, sample_weight=None, *, batch_size=None, shuffle=False):
    """Arrays as a dataset of batches that every worker orders alike (its shuffling seed drawn from numpy's
    global state, which `keras.utils.set_random_seed` makes the same on every worker)."""
    import keras

    dataset = tf.data.Dataset.from_tensor_slices(keras.utils.pack_x_y_sample_weight(x, y, sample_weight))
    if shuffle:
        count = len(tf.nest.flatten(x)[0])
        dataset = dataset.shuffle(count, seed=int(np.random.randint(2**31 - 1)), reshuffle_each_iteration=True)
    return dataset.batch(batch_size or 32)


def predict(model, x, batch_size=None):
    """`model.predict(x)` that works under any strategy (`predict_locally` in multi-worker training)."""
    if keras_fixes.in_multi_worker_mode(model.distribute_strategy):
        return predict_locally(model, x, batch_size)
    return model.predict(x, batch_size=batch_size, verbose=0)


def predict_locally(model, data, batch_size=None):
    """`model`'s outputs on every row of `data` (arrays, a dataset or a list of batches), in order, computed
    by this worker alone.

    Keras's `predict` under `MultiWorkerMirroredStrategy` splits the rows over
    the workers and gathers them back in worker order, which is not the data's
    order, and needs every worker to take part; computed locally, the chief
    can evaluate and export on its own after training.
    """
    import keras

    if isinstance(data, list):  # batches as they are
        pass
    elif not isinstance(data, tf.data.Dataset):
        data = tf.data.Dataset.from_tensor_slices(data).batch(batch_size or 32)
    forward = model.__dict__.get("_local_forward")
    if forward is None:  # one per model: a new tf.function per call would trace every batch again
        forward = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)
        model.__dict__["_local_forward"] = forward
    outputs = []
    for batch in data:
        inputs, _, _ = keras.utils.unpack_x_y_sample_weight(batch)
        outputs.append(keras.tree.map_structure(np.asarray, forward(inputs)))
    if not outputs:
        raise ValueError("No data to predict on: the dataset is empty.")
    return keras.tree.map_structure(lambda *parts: np.concatenate(parts), *outputs)
