"""The worked examples in notebooks/: committed without outputs, and every cell executes.

Each notebook reads its sampler settings from the ``TPOPK_SAMPLER`` environment variable
(realistic settings when unset); here it gets the tiny :data:`NOTEBOOK_SAMPLER` of
``tests/conftest.py`` and, for the virtual trials, :data:`NOTEBOOK_TRIAL`. With them 02 (a
two-agonist ITP study fit) executed in 147 s on 2 cores with a warm compile cache (a
first, cold-cache run reached its last cells in 357 s); 01 took 301 s before the tree
depth was bounded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import NOTEBOOK_SAMPLER, ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: Virtual trial size in the tests (patients per arm, posterior draws).
NOTEBOOK_TRIAL = {"n_patients": 4, "draws": 4}


def test_the_three_worked_examples_exist() -> None:
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01_fit_one_agonist", "02_compare_agonists", "03_diagnostics"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs; strip them"
            assert cell.execution_count is None, f"{path.name}: a cell has an execution count"
    assert "widgets" not in notebook.metadata, f"{path.name}: widget state in metadata"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TPOPK_SAMPLER", json.dumps(NOTEBOOK_SAMPLER))
    monkeypatch.setenv("TPOPK_TRIAL", json.dumps(NOTEBOOK_TRIAL))
    monkeypatch.setenv("TPOPK_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the failing cell
    print(f"{path.name}: {time.perf_counter() - start:.0f} s")
