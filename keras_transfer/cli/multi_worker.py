"""The multi-worker options of `train` and `train-text`: `--worker-hosts`, `--task-index` (or `TF_CONFIG`).

Every worker runs the same command; worker 0 (the chief) writes OUT_DIR,
the others train and leave it alone. `keras-transfer launch` starts such a
group on one machine.
"""

import json
import os

from keras_transfer.cli.common import CommandError
from keras_transfer.distribute.cluster import TF_CONFIG, cluster_from_environment, worker_cluster

# Options that train on one process only, with what to do instead.
_SINGLE_PROCESS_OPTIONS = {
    "lr_find": "--lr-find runs on one process: find the rate there, then pass --head-lr to the workers",
    "shots": "--shots trains on a few examples, one process is enough",
    "method": "--method belongs to --shots, which trains on one process",
    "adapt": "--adapt (domain adaptation) trains on one process",
    "target_dir": "--target-dir (domain adaptation) trains on one process",
    "target_file": "--target-file (domain adaptation) trains on one process",
}


def add_options(parser):
    group = parser.add_argument_group(
        "several workers (MultiWorkerMirroredStrategy; the same command on every worker, or keras-transfer launch)"
    )
    group.add_argument(
        "--worker-hosts",
        metavar="HOST:PORT,...",
        help="every worker's address, the same list on every worker (the first is the chief, which writes "
        f"OUT_DIR); default: {TF_CONFIG} when set",
    )
    group.add_argument("--task-index", type=int, metavar="I", help="this worker's place in --worker-hosts (0-based)")


def cluster(args):
    """Before any work: the `Cluster` this command trains in (None for one process), or a CommandError."""
    hosts, index = getattr(args, "worker_hosts", None), getattr(args, "task_index", None)
    try:
        if hosts is None and index is not None:
            raise ValueError("--task-index needs --worker-hosts: every worker's host:port, the same on all.")
        if hosts is not None and index is None:
            raise ValueError("--worker-hosts needs --task-index: this worker's place in the list (0 is the chief).")
        found = worker_cluster(hosts, index) if hosts is not None else cluster_from_environment()
    except ValueError as error:
        raise CommandError(error) from error
    if found is None or found.num_workers < 2:
        return None
    for name, why in _SINGLE_PROCESS_OPTIONS.items():
        if getattr(args, name, None):
            raise CommandError(f"{why}; drop it, or drop --worker-hosts/{TF_CONFIG}.")
    return found


def join(found):
    """The strategy of `found` (made before TensorFlow runs anything), after saying what this worker waits for."""
    from keras_transfer.distribute import multi_worker_strategy

    others = found.num_workers - 1
    role = "chief" if found.is_chief else "worker"
    print(
        f"Joining {found.num_workers} workers as {role} {found.task_index} ({found.address}); "
        f"training starts once the other {others} {'has' if others == 1 else 'have'} joined.",
        flush=True,
    )
    os.environ[TF_CONFIG] = json.dumps(found.tf_config())  # what --worker-hosts said, or TF_CONFIG as read
    return multi_worker_strategy()


def scope(strategy):
    """`strategy.scope()`, or the default strategy's for one process."""
    if strategy is None:
        import tensorflow as tf

        return tf.distribute.get_strategy().scope()
    return strategy.scope()


def run_folder_and_strategy(args, found):
    """Before TensorFlow runs anything: `(RunFolder of --output, strategy or None)`.

    The chief (or a single process) checks and owns OUT_DIR; another worker
    only reads the chief's backup in it (to resume alike) and writes nothing.
    """
    from keras_transfer.atomic_files import RunFolder
    from keras_transfer.cli import common

    if found is None or found.is_chief:
        folder = common.check_output_dir(args.output, args.overwrite, resume=args.resume, args=args)
    else:
        folder = RunFolder(args.output)
    return folder, (join(found) if found is not None else None)


def train_as_worker(found, folder, model, train, validation, recipe):
    """A non-chief worker's part: the same fine-tuning, in step with the chief; then it says so and stops."""
    # The chief's backup to resume from; checkpoints go to a scratch folder here.
    history = model.fine_tune(
        train, validation, recipe=recipe, backup_dir=folder.backup_dir, checkpoint_dir=folder.checkpoint_dir
    )
    print(worker_summary(found, history))


def on_workers(summary):
    """` on 2 workers` for a run's summary line when it trained on several, else nothing."""
    workers = summary.get("workers", 1)
    return f" on {workers} workers" if workers > 1 else ""


def worker_summary(found, history):
    """What a non-chief worker prints when it is done."""
    from keras_transfer.finetune.progress import counted

    epochs = sum(len(phase.history.get("loss", [])) for _, phase in history.phases)
    return (
        f"Worker {found.task_index} finished ({counted(epochs, 'epoch')} in step with the others); "
        "the chief writes the outputs."
    )
