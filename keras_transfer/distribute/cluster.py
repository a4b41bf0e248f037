"""Which workers train together and which one this process is: `TF_CONFIG`, checked before any work.

`MultiWorkerMirroredStrategy` reads its cluster from the `TF_CONFIG`
environment variable (`{"cluster": {"worker": ["host:port", ...]}, "task":
{"type": "worker", "index": i}}`); `worker_tf_config` writes one from a list
of hosts and this process's index, and `cluster_from_environment` reads and
checks the one a launcher (Kubernetes, Slurm scripts, `keras-transfer launch`)
set. Worker 0 is the chief (or the task of type "chief" where the cluster has
one): it alone writes outputs.
"""

import dataclasses
import json
import os

TF_CONFIG = "TF_CONFIG"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The cluster of a multi-worker run as this process sees it."""

    tasks: dict  # task type -> ["host:port", ...]
    task_type: str
    task_index: int

    @property
    def num_workers(self):
        """Processes that train: workers and the chief."""
        return len(self.tasks.get("chief", ())) + len(self.tasks.get("worker", ()))

    @property
    def is_chief(self):
        if "chief" in self.tasks:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def address(self):
        return self.tasks[self.task_type][self.task_index]

    def tf_config(self):
        return {"cluster": self.tasks, "task": {"type": self.task_type, "index": self.task_index}}


def parse_worker_hosts(text):
    """`"host1:port,host2:port"` -> `["host1:port", "host2:port"]`, or a ValueError saying what is wrong."""
    hosts = [host.strip() for host in str(text).split(",") if host.strip()]
    if not hosts:
        raise ValueError(f"--worker-hosts {text!r} names no worker: give host:port,host:port (one per worker).")
    for host in hosts:
        _check_address(host, "--worker-hosts")
    duplicates = sorted({host for host in hosts if hosts.count(host) > 1})
    if duplicates:
        raise ValueError(f"--worker-hosts names {', '.join(duplicates)} twice: each worker needs its own host:port.")
    return hosts


def worker_cluster(worker_hosts, task_index):
    """The `Cluster` of `worker_hosts` (a list or `"h1:p,h2:p"`) seen from worker `task_index`."""
    hosts = parse_worker_hosts(",".join(worker_hosts) if isinstance(worker_hosts, (list, tuple)) else worker_hosts)
    try:
        index = int(task_index)
    except (TypeError, ValueError):
        raise ValueError(f"--task-index must be a whole number, got {task_index!r}.") from None
    if not 0 <= index < len(hosts):
        raise ValueError(
            f"--task-index {index} is not one of the {len(hosts)} workers in --worker-hosts: "
            f"give 0 to {len(hosts) - 1} (0 is the chief)."
        )
    return Cluster({"worker": hosts}, "worker", index)


def cluster_from_environment(environ=None):
    """The `Cluster` that `TF_CONFIG` describes, None without one, or a ValueError saying what is wrong."""
    text = (os.environ if environ is None else environ).get(TF_CONFIG, "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
        tasks = {str(kind): list(hosts) for kind, hosts in config["cluster"].items()}
        task_type, task_index = str(config["task"]["type"]), int(config["task"]["index"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(
            f"{TF_CONFIG} is not a cluster description: expected JSON like "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}, '
            f"got {text[:200]!r}."
        ) from None
    unknown = sorted(set(tasks) - {"chief", "worker", "evaluator"})
    if unknown:
        raise ValueError(
            f"{TF_CONFIG} has task types {unknown}: MultiWorkerMirroredStrategy takes 'chief', 'worker' "
            "(and an 'evaluator' that does not train)."
        )
    for kind, hosts in tasks.items():
        for host in hosts:
            _check_address(host, f"{TF_CONFIG} {kind}")
    if task_type not in tasks or not 0 <= task_index < len(tasks[task_type]):
        raise ValueError(
            f"{TF_CONFIG} says this is task {task_type} {task_index}, which its cluster does not have "
            f"({ {kind: len(hosts) for kind, hosts in tasks.items()} })."
        )
    return Cluster(tasks, task_type, task_index)


def _check_address(host, where):
    name, _, port = host.rpartition(":")
    if not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{where}: {host!r} is not host:port (e.g. 10.0.0.2:12345 or localhost:23456).")
