"""The tutorial notebooks in notebooks/: committed with the outputs of one full run, and each runs top to bottom.

A reader on GitHub sees every plot and number without running anything, so the
committed notebooks carry the outputs of one full-data run (`notebooks/execute.py`
writes them, see notebooks/README.md): every code cell executed once, in order, with no
error, the run recorded in the notebook's metadata, and the file within a size budget
(test_committed_notebooks_carry_one_full_run).

CI still executes every notebook, from a copy stripped of its outputs, in a fresh
Jupyter kernel (nbclient) on its small-data setting: KERAS_TRANSFER_SMALL_DATA=1, which
each notebook's `parameters` cell reads, and KERAS_TRANSFER_ASSETS, from which it reads
the real photos, texts and presets (run ../shared/bin/install-offline-assets first so that
weights="imagenet" loads offline). The execution happens in memory and is never written
back. Any error fails the test and shows the failing cell and its traceback.
"""

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SERIES = [
    "01_image_transfer_learning.ipynb",
    "02_fine_tuning_strategies.ipynb",
    "03_text_classification_bert_lora.ipynb",
    "04_quantize_and_export_tflite.ipynb",
    "05_feature_extraction_and_function_fitting.ipynb",
    "06_multi_task_learning.ipynb",
    "07_domain_adaptation.ipynb",
    "08_few_shot_learning.ipynb",
    "09_zero_shot_classification.ipynb",
]
# The committed outputs are for readers; every plot is base64 PNG in the file and in the
# history for good, so each notebook keeps to a budget (plots at dpi 80, few images).
MAX_NOTEBOOK_BYTES = 1_500_000
# What notebook.metadata["keras_transfer"] records about the run that made the outputs.
RUN_RECORD = ("executed", "date", "cpu", "seconds")
# Seconds any one cell may run before the execution fails.
CELL_TIMEOUT = 600


def _ids(path):
    return path.stem


def test_the_series_is_complete_and_numbered():
    assert [path.name for path in NOTEBOOKS] == SERIES


def test_the_readme_links_every_notebook():
    readme = (NOTEBOOK_DIR / "README.md").read_text()
    for name in SERIES:
        assert f"({name})" in readme, f"notebooks/README.md does not link {name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_committed_notebooks_carry_one_full_run(path):
    """Valid nbformat v4; the outputs of one in-order run, no error; the run recorded; within budget."""
    size = path.stat().st_size
    assert size <= MAX_NOTEBOOK_BYTES, (
        f"{path.name} is {size:,} bytes, over the {MAX_NOTEBOOK_BYTES:,}-byte budget: fewer or smaller "
        f"plots (dpi 80), shorter printed output (verbose=0 or 2 instead of progress bars)."
    )
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code_cells]
    assert counts == list(range(1, len(code_cells) + 1)), (
        f"{path.name}: execution counts {counts}: the outputs must come from one run of every code cell, "
        f"top to bottom, in a fresh kernel (python notebooks/execute.py notebooks/{path.name})."
    )
    errors = [
        f"code cell {index}: {output.get('ename')}"
        for index, cell in enumerate(code_cells)
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors, f"{path.name} was committed with errors in its outputs: {errors}"
    record = notebook.metadata.get("keras_transfer", {})
    missing = [key for key in RUN_RECORD if key not in record]
    assert not missing, (
        f"{path.name}: notebook.metadata['keras_transfer'] lacks {missing}: "
        f"run it with notebooks/execute.py, which records the run."
    )
    assert record["executed"] == "full data", f"{path.name}: committed outputs from a {record['executed']!r} run"
    attachments = [index for index, cell in enumerate(notebook.cells) if cell.get("attachments")]
    assert not attachments, f"{path.name}: cells {attachments} embed attachments; keep images out of git."
    parameters = [index for index, cell in enumerate(code_cells) if "parameters" in cell.metadata.get("tags", [])]
    assert parameters == [0], (
        f"{path.name}: the first code cell, and only it, must be tagged `parameters` "
        f"(papermill's convention), got code cells {parameters}."
    )
    assert "KERAS_TRANSFER_SMALL_DATA" in code_cells[0].source


@pytest.mark.integration
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs_top_to_bottom_on_small_data(path, assets_dir, tmp_path, monkeypatch):
    # The kernel is a child process: it inherits these variables.
    monkeypatch.setenv("KERAS_TRANSFER_SMALL_DATA", "1")
    monkeypatch.setenv("KERAS_TRANSFER_ASSETS", assets_dir)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    # Plots go inline as PNGs; no display is needed.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(path, as_version=4)
    # The committed outputs come from the full run: strip them in memory, so that what this
    # test shows (and keeps, below) is only what the small-data run printed.
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        # The kernel's working directory: anything a notebook writes lands in tmp_path.
        resources={"metadata": {"path": str(tmp_path)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{path.name} failed on its small-data setting:\n{error}", pytrace=False)
    finally:
        # KERAS_TRANSFER_NOTEBOOK_OUTPUTS=folder keeps the executed notebooks, outputs and all
        # (never the committed file: nbclient executes in memory).
        keep = os.environ.get("KERAS_TRANSFER_NOTEBOOK_OUTPUTS")
        if keep:
            os.makedirs(keep, exist_ok=True)
            nbformat.write(notebook, os.path.join(keep, path.name))
    seconds = time.perf_counter() - start
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors, f"{path.name}: {errors[0].ename}: {errors[0].evalue}"
    print(f"\n{path.name}: executed on small data in {seconds:.0f} s")
