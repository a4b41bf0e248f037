"""Training on several workers: `MultiWorkerMirroredStrategy` for Keras 3 models, sharded data, a local launcher.

- `multi_worker_strategy(worker_hosts, task_index)` (or `TF_CONFIG`): the
  strategy, with the fixes Keras 3's TensorFlow trainer needs under it
  (`keras_fixes`; importing `keras_transfer` installs them);
- `is_chief`, `worker_index`, `worker_count`: who writes outputs, who is who;
- `sharding`: each worker's part of every global batch;
- `launch_local(command, workers)`: N workers of one command on loopback,
  restarted together when one fails (`keras-transfer launch`).

The cluster and launcher parts load without TensorFlow (the command line
parses its options first); the rest loads on first use.
"""

import importlib

from keras_transfer.distribute.cluster import Cluster, cluster_from_environment, parse_worker_hosts, worker_cluster
from keras_transfer.distribute.launcher import LocalCluster, launch_local

_WITH_TENSORFLOW = {
    "multi_worker_strategy": "strategy",
    "is_chief": "strategy",
    "worker_index": "strategy",
    "worker_count": "strategy",
}

__all__ = [
    "Cluster",
    "LocalCluster",
    "cluster_from_environment",
    "launch_local",
    "parse_worker_hosts",
    "worker_cluster",
    *_WITH_TENSORFLOW,
]


def __getattr__(name):
    if name in _WITH_TENSORFLOW:
        return getattr(importlib.import_module(f"keras_transfer.distribute.{_WITH_TENSORFLOW[name]}"), name)
    if name in ("keras_fixes", "sharding", "strategy"):
        return importlib.import_module(f"keras_transfer.distribute.{name}")
    raise AttributeError(f"module 'keras_transfer.distribute' has no attribute {name!r}")
