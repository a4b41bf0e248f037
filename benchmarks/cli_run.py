"""A `keras-transfer` command run the way a user runs it: in a process of its own, timed whole."""

import json
import os
import subprocess
import sys
import tempfile
import time

# The installed command, run by this interpreter (the benchmark's environment).
CLI = (sys.executable, "-c", "import sys; from keras_transfer.cli import main; sys.exit(main())")


def run_command(arguments):
    """Runs `keras-transfer ARGUMENTS --output OUT` into a temporary OUT.

    Returns `(report, seconds, shown)`: OUT/report.json, the command's wall-clock
    seconds (start-up, reading the data and writing the run included), and the
    command as a user types it, with `OUT` for the folder.
    """
    with tempfile.TemporaryDirectory() as folder:
        output = os.path.join(folder, "run")
        command = [*CLI, *arguments, "--output", output]
        start = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if finished.returncode != 0:
            raise RuntimeError(f"keras-transfer {' '.join(arguments)} failed:\n{finished.stderr[-3000:]}")
        with open(os.path.join(output, "report.json")) as file:
            report = json.load(file)
    return report, seconds, " ".join(["keras-transfer", *arguments, "--output", "OUT"])
