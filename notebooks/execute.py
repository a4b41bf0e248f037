"""Executes tutorial notebooks on their full-data setting and saves them with their outputs.

    eval "$(../shared/bin/install-offline-assets)"   # offline machines: the real assets
    python notebooks/execute.py notebooks/01_image_transfer_learning.ipynb [...]

Each notebook runs from a copy stripped of its outputs, in a fresh kernel (nbclient,
at most 1,800 s per cell) whose working directory is a temporary folder, so whatever
it writes stays out of the repository; KERAS_TRANSFER_SMALL_DATA is removed from the
kernel's environment. The notebook is written back only when every cell ran without
error, with notebook.metadata["keras_transfer"] recording the run: "full data", the
date, the CPU (from /proc/cpuinfo), the core count and the seconds it took. TensorFlow's
C++ start-up log lines, its converter's "Assets written to" lines and tqdm's ipywidgets
notice are dropped from the outputs. Plots are
drawn at 80 dpi (a matplotlibrc in the working folder) to keep the files small.
tests/test_notebooks.py checks that record and a size budget per notebook.
"""

import argparse
import datetime
import os
import re
import sys
import tempfile
import time

import nbclient
import nbformat

from keras_transfer.version import cpu_model

CELL_TIMEOUT = 1800
# Lines the kernel picks up from TensorFlow's C++ start-up (absl log lines such as
# "I0000 ... oneDNN custom operations are on"), TensorFlow's "INFO:tensorflow:Assets written to"
# during a LiteRT conversion, and tqdm's notice that ipywidgets is missing: noise about the
# machine, not part of the tutorial, so they are dropped from the outputs.
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWE]\d{4} |.*TqdmWarning: IProgress not found"
    r"|\s+from \.autonotebook import tqdm|INFO:tensorflow:Assets written to)"
)


def drop_noise(notebook):
    """Removes the `NOISE` lines from stream outputs, and outputs left empty."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            if output.output_type == "stream":
                lines = [line for line in output.text.splitlines(keepends=True) if not NOISE.match(line)]
                if not "".join(lines).strip():
                    continue
                output.text = "".join(lines)
            kept.append(output)
        cell.outputs = kept


def execute(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    env_before = os.environ.pop("KERAS_TRANSFER_SMALL_DATA", None)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        with tempfile.TemporaryDirectory(prefix="kt_notebook_") as folder:
            # Modest plots: the PNGs are part of the committed file.
            with open(os.path.join(folder, "matplotlibrc"), "w") as rc:
                rc.write("figure.dpi: 80\n")
            os.environ["MATPLOTLIBRC"] = folder
            client = nbclient.NotebookClient(
                notebook, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": folder}}
            )
            start = time.perf_counter()
            client.execute()
            seconds = time.perf_counter() - start
    finally:
        if env_before is not None:
            os.environ["KERAS_TRANSFER_SMALL_DATA"] = env_before
    drop_noise(notebook)
    notebook.metadata.pop("widgets", None)
    notebook.metadata["keras_transfer"] = {
        "executed": "full data",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "seconds": round(seconds),
    }
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(notebook, path)
    print(f"{path}: {seconds:.0f} s, {os.path.getsize(path):,} bytes", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+")
    for path in parser.parse_args(argv).notebooks:
        execute(path)


if __name__ == "__main__":
    sys.exit(main())
