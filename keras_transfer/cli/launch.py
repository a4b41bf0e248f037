"""`keras-transfer launch`: the same command as N workers on this machine, for trying multi-worker training."""

import argparse
import os
import shlex
import sys
import tempfile
import time

from keras_transfer.cli import common
from keras_transfer.cli.common import CommandError

# Shown under `--help` (and checked to parse by the tests).
EXAMPLES = (
    "keras-transfer launch --workers 2 -- keras-transfer train photos/ --val-split 0.2 --backbone mobilenet_v2 "
    "--output runs/photos",
    "keras-transfer launch --workers 2 --max-restarts 3 --log-dir runs/logs -- keras-transfer train-text "
    "reviews.csv --val-split 0.1 --backbone ./all-MiniLM-L6-v2 --output runs/reviews",
    "keras-transfer launch --workers 2 -- python my_training_script.py",
)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "launch",
        help="run a training command as several workers on this machine (MultiWorkerMirroredStrategy on loopback)",
        description="Starts COMMAND WORKERS times on this machine, each with its own TF_CONFIG (localhost ports "
        "picked free), so that keras-transfer train / train-text (or your script with "
        "keras_transfer.distribute.multi_worker_strategy()) trains as that many workers. Worker 0's output "
        "shows here; the others' goes to --log-dir. When a worker fails, all are stopped and started again "
        "(--max-restarts); a training command then resumes from its last finished epoch.",
    )
    parser.add_argument("--workers", type=common.positive_int, default=2, metavar="N", help="workers (default: 2)")
    parser.add_argument(
        "--max-restarts",
        type=common.non_negative_int,
        default=0,
        metavar="N",
        help="start all workers again up to N times when one fails (default: 0)",
    )
    parser.add_argument(
        "--log-dir", metavar="DIR", help="where workers 1..N-1 write worker-<i>.log (default: a new temporary folder)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="what every worker runs")
    parser.set_defaults(run=run, needs_library=False)
    return parser


def run(args):
    from keras_transfer.distribute.launcher import LocalCluster, describe_status

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise CommandError("give the command every worker runs after --, e.g. -- keras-transfer train photos/ ...")
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="keras-transfer-workers-")
    common.check_writable(log_dir, "--log-dir")
    cluster = LocalCluster(
        command,
        args.workers,
        max_restarts=args.max_restarts,
        log_dir=log_dir,
        announce=lambda line: print(f"keras-transfer launch: {line}", flush=True),
    )
    print(
        f"keras-transfer launch: {args.workers} workers of `{shlex.join(command)}` on localhost; "
        f"worker 0's output follows, the others' is in {log_dir}.",
        flush=True,
    )
    start = time.perf_counter()
    status = cluster.run()
    seconds = time.perf_counter() - start
    restarts = f" after {cluster.restarts} restart{'s' if cluster.restarts != 1 else ''}" if cluster.restarts else ""
    if status == 0:
        print(f"keras-transfer launch: all {args.workers} workers finished in {seconds:.0f} s{restarts}.")
        return 0
    index, how = cluster.failures[-1]
    where = cluster.log_path(index)
    tail = _tail(where) if where else ""
    print(
        f"keras-transfer launch: worker {index} ended with {describe_status(how)}{restarts}"
        + (f"; the end of {where}:\n{tail}" if tail else "."),
        file=sys.stderr,
    )
    return status


def _tail(path, lines=8):
    if not path or not os.path.isfile(path):
        return ""
    with open(path, errors="replace") as file:
        return "".join(file.readlines()[-lines:]).rstrip()
