"""`launch_local`: N workers of one command on this machine, on loopback, restarted together when one fails.

For trying multi-worker training (and testing it) without a cluster: each
worker runs the same command with its own `TF_CONFIG` (`localhost` ports
picked free). `MultiWorkerMirroredStrategy` cannot go on without a worker
that died: the others fail (or wait) in their next collective operation, and
every worker has to be started again, which resumes from the last backup
when the command keeps one (`--backup-dir`, `BackupAndRestore`). So when any
worker ends with an error, the launcher stops the others and starts them all
again, up to `max_restarts` times.
"""

import json
import os
import signal
import socket
import subprocess
import time

from keras_transfer.distribute.cluster import TF_CONFIG

# Set in the workers of a restart (to the restart's number): a command may continue what the first
# start left (`keras-transfer train` resumes from OUT_DIR.partial).
RESTART_ENVIRONMENT = "KERAS_TRANSFER_RESTART"


def restarted():
    """True in a worker that `launch_local` started again after a failure."""
    return bool(os.environ.get(RESTART_ENVIRONMENT))


def free_ports(count):
    """`count` TCP ports free on localhost now."""
    sockets = []
    try:
        for _ in range(count):
            handle = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            handle.bind(("localhost", 0))
            sockets.append(handle)
        return [handle.getsockname()[1] for handle in sockets]
    finally:
        for handle in sockets:
            handle.close()


def worker_environments(workers, environ=None, restart=0):
    """One environment per worker: `environ` with a `TF_CONFIG` for a loopback cluster of `workers`
    (and, from the first restart on, `KERAS_TRANSFER_RESTART`)."""
    hosts = [f"localhost:{port}" for port in free_ports(workers)]
    base = dict(os.environ if environ is None else environ)
    if restart:
        base[RESTART_ENVIRONMENT] = str(restart)
    return [
        {**base, TF_CONFIG: json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})}
        for index in range(workers)
    ]


class LocalCluster:
    """Runs `command` as `workers` processes; `run()` waits for them and restarts them together on a failure.

    `restarts` counts the restarts so far; `failures` lists `(worker, exit status)` of each failure.

    The chief's output goes to this process's stdout/stderr; worker i's to
    `log_dir/worker-<i>.log` (appended to on every restart) and, when
    `log_dir` is None, nowhere. While it runs, `log_dir/worker-<i>.pid` holds
    each worker's process id.
    """

    def __init__(self, command, workers=2, *, max_restarts=0, log_dir=None, announce=print):
        if int(workers) < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}.")
        if not command:
            raise ValueError("No command to launch: give it after --, e.g. -- keras-transfer train photos/ ...")
        self.command = list(command)
        self.workers = int(workers)
        self.max_restarts = int(max_restarts)
        self.log_dir = log_dir
        self.announce = announce
        self.restarts = 0
        self.failures = []
        self._processes = []

    def run(self):
        """Runs to the end: 0 when every worker finished cleanly, else the failing worker's exit status."""
        if self.log_dir:
            os.makedirs(self.log_dir, exist_ok=True)
        while True:
            try:
                failed = self._run_once()
            except BaseException:  # Ctrl-C or SIGTERM of the launcher: no worker is left behind
                self._terminate()
                raise
            if failed is None:
                return 0
            index, status = failed
            self.failures.append(failed)
            if self.restarts >= self.max_restarts:
                return status if status > 0 else 128 + (-status or signal.SIGTERM)
            self.restarts += 1
            self.announce(
                f"Worker {index} ended with {describe_status(status)}: restarting all {self.workers} workers "
                f"(restart {self.restarts} of {self.max_restarts})."
            )

    def log_path(self, index):
        """Worker `index`'s log file (None for the chief, whose output is this process's, or without log_dir)."""
        return os.path.join(self.log_dir, f"worker-{index}.log") if self.log_dir and index else None

    def _run_once(self):
        self._processes = []
        for index, environment in enumerate(worker_environments(self.workers, restart=self.restarts)):
            output = None if index == 0 else self._log(index)
            process = subprocess.Popen(
                self.command, env=environment, stdout=output, stderr=subprocess.STDOUT if output else None
            )
            if output not in (None, subprocess.DEVNULL):
                output.close()
            self._processes.append(process)
            if self.log_dir:
                with open(os.path.join(self.log_dir, f"worker-{index}.pid"), "w") as handle:
                    handle.write(str(process.pid))
        while True:
            statuses = [process.poll() for process in self._processes]
            failures = [(index, status) for index, status in enumerate(statuses) if status not in (None, 0)]
            if failures:
                self._terminate()
                return failures[0]
            if all(status == 0 for status in statuses):
                return None
            time.sleep(0.2)

    def _log(self, index):
        path = self.log_path(index)
        return open(path, "ab") if path else subprocess.DEVNULL

    def _terminate(self, grace_seconds=10):
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace_seconds
        for process in self._processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def launch_local(command, workers=2, *, max_restarts=0, log_dir=None, announce=print):
    """Runs `command` as `workers` loopback workers (see `LocalCluster`); returns the exit status."""
    return LocalCluster(command, workers, max_restarts=max_restarts, log_dir=log_dir, announce=announce).run()


def describe_status(status):
    """`exit status 2`, `signal SIGKILL`: how a worker ended."""
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"exit status {status}"
