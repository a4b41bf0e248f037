"""Two fixes that let Keras 3's TensorFlow trainer run under `MultiWorkerMirroredStrategy`.

Keras 3.15's `model.fit` fails there in its first step (keras-team/keras#20585):

1. `TensorFlowTrainer._maybe_symbolic_build` reads a first distributed
   batch and reduces it across replicas, only to learn its shapes for
   building the model. Across workers that reduce cannot take a `PerReplica`
   value: `ValueError: Attempt to convert a value (PerReplica:{...})`. The
   build gets the distributed dataset's element spec here (the same shapes
   and dtypes, and no batch read: reading one starts a pass over the data,
   which moves a reshuffling dataset on to its next order).
2. `reduce_per_replica` averages each step's logs with
   `strategy.reduce("MEAN", value, axis=0)`; the logs are scalars, so that
   fails with `Invalid reduction dimension 0 for input with 0 dimensions`
   (tensorflow/tensorflow#72388). They are averaged with `axis=None`.

Both replacements change what Keras does only in multi-worker mode, where the
originals fail; everywhere else they call the originals. `install()` puts them
in place (once); `keras_transfer.distribute` calls it on import.
"""

import tensorflow as tf
from keras.src import tree
from keras.src.backend.tensorflow import trainer as tf_trainer

_KERAS_MAYBE_SYMBOLIC_BUILD = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
_KERAS_REDUCE_PER_REPLICA = tf_trainer.reduce_per_replica


def in_multi_worker_mode(strategy):
    """True for a `MultiWorkerMirroredStrategy` whose cluster has more than one worker."""
    return tf_trainer._collective_all_reduce_multi_worker(strategy)


def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    strategy = self._distribute_strategy
    if strategy is None or iterator is None or not in_multi_worker_mode(strategy):
        return _KERAS_MAYBE_SYMBOLIC_BUILD(self, iterator=iterator, data_batch=data_batch)
    # The distributed dataset's element spec: shapes and dtypes without reading a batch, which would
    # start an extra pass and move a reshuffling dataset on to its next order.
    data_batch = getattr(iterator, "_distributed_dataset", None)
    data_batch = None if data_batch is None else data_batch.element_spec
    if data_batch is None:
        for _, _, batches in iterator:
            data_batch = next(batches)
            break
    data_batch = tree.map_structure(lambda value: _one_replica(value, strategy), data_batch)
    with strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def _one_replica(value, strategy):
    """The first replica's part of a distributed value or of a distributed spec (`PerReplicaSpec`)."""
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    specs = getattr(value, "_value_specs", None)
    return specs[0] if specs else value


def _reduce_per_replica(values, strategy, reduction):
    if reduction not in ("auto", "mean") or not in_multi_worker_mode(strategy):
        return _KERAS_REDUCE_PER_REPLICA(values, strategy, reduction)

    def mean_over_replicas(value):
        if not tf_trainer._is_per_replica_instance(value) and not isinstance(value, tf.Tensor):
            return value
        return strategy.reduce("MEAN", value, axis=None)

    return tree.map_structure(mean_over_replicas, values)


def install():
    """Puts both fixes in place; calling it again changes nothing."""
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = _reduce_per_replica
