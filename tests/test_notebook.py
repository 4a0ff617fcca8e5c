"""The worked notebook (docs/notebooks/mgu-exercise.ipynb) runs from top to bottom in a fresh
kernel, and each object it ends a cell with shows itself (equations, tables, SVG)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "mgu-exercise.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None


def test_notebook_runs_and_shows_its_objects(tmp_path, monkeypatch):
    monkeypatch.setenv("GATELAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = [set(o.get("data", {})) for c in nb.cells if c.cell_type == "code"
             for o in c.outputs if o.output_type == "execute_result"]
    assert any("text/latex" in s for s in shown)  # the Cell
    assert any("text/markdown" in s for s in shown)  # the Analysis
    assert sum("image/svg+xml" in s for s in shown) == 2  # two drawings
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs if o.output_type == "stream")
    mse = re.search(r"test MSE ([0-9.]+) \(trivial ([0-9.]+)\)", text)
    assert mse and float(mse.group(1)) < 0.5  # trained, finite
    assert re.search(r"mean f 0\.\d\d", text)
    modes = next(c for c in nb.cells if c.cell_type == "code" and "a.modes" in c.source)
    assert "'hold'" in modes.outputs[0]["data"]["text/plain"]
