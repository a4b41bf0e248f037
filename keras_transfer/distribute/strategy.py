"""`multi_worker_strategy`: a `MultiWorkerMirroredStrategy` that Keras 3 models train under.

One process per worker, each running the same program; the strategy keeps
their variables in sync (every step's gradients are summed across workers
with collective all-reduce), and `fit` gives each worker its share of every
global batch. The Keras fixes in `keras_fixes` are installed first.
"""

import json
import os

import tensorflow as tf

from keras_transfer.distribute import keras_fixes
from keras_transfer.distribute.cluster import TF_CONFIG, cluster_from_environment, worker_cluster


def multi_worker_strategy(worker_hosts=None, task_index=None):
    """The `MultiWorkerMirroredStrategy` of this worker, from `worker_hosts` and `task_index` or `TF_CONFIG`.

    Create it first thing in the program, before any TensorFlow operation
    runs (TensorFlow configures its collective operations once, at startup),
    and create one per process. It waits until every worker has started.

    Args:
        worker_hosts: every worker's `host:port`, in the same order on every
            worker (a list or `"host1:port,host2:port"`); None reads `TF_CONFIG`.
        task_index: this process's place in `worker_hosts`; 0 is the chief.

    Returns:
        A `tf.distribute.MultiWorkerMirroredStrategy`.
    """
    if worker_hosts is not None:
        cluster = worker_cluster(worker_hosts, 0 if task_index is None else task_index)
        if task_index is None:
            raise ValueError("worker_hosts needs task_index: this process's place in the list (0 is the chief).")
        os.environ[TF_CONFIG] = json.dumps(cluster.tf_config())
    elif task_index is not None:
        raise ValueError("task_index needs worker_hosts: every worker's host:port, in the same order everywhere.")
    elif cluster_from_environment() is None:
        raise ValueError(
            f"No cluster to join: pass worker_hosts and task_index, or set {TF_CONFIG} "
            "(keras-transfer launch sets it for workers on this machine)."
        )
    keras_fixes.install()
    # Ring all-reduce: the implementation for CPUs (NCCL needs GPUs).
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as error:
        if "startup" not in str(error) and "initialized" not in str(error):
            raise
        raise RuntimeError(
            "MultiWorkerMirroredStrategy must be created before TensorFlow runs any operation "
            f"({error}): create it first thing in the program, once."
        ) from error


def is_chief(strategy=None):
    """True unless this process is a non-chief worker of a multi-worker strategy: the process that writes outputs."""
    resolver = getattr(strategy or tf.distribute.get_strategy(), "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    tasks = resolver.cluster_spec().as_dict()
    if "chief" in tasks:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and int(resolver.task_id or 0) == 0


def worker_index(strategy=None):
    """This worker's place among the workers that train (0 outside multi-worker training)."""
    strategy = strategy or tf.distribute.get_strategy()
    if not keras_fixes.in_multi_worker_mode(strategy):
        return 0
    # As TensorFlow numbers input pipelines (multi_worker_util.id_in_cluster): the chief, then the workers.
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return 0
    return int(resolver.task_id) + len(resolver.cluster_spec().as_dict().get("chief", ()))


def worker_count(strategy=None):
    """Processes training together under `strategy` (1 outside multi-worker training)."""
    strategy = strategy or tf.distribute.get_strategy()
    if not keras_fixes.in_multi_worker_mode(strategy):
        return 1
    return strategy.extended._num_workers
