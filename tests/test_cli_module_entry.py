"""``python -m gatelab.cli ARGS`` runs the command line as ``python -m gatelab`` does (it
imported the module, printed nothing and exited 0, so a failing ``check`` looked like a pass)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).parent.parent / "src")


@pytest.mark.slow
@pytest.mark.parametrize("module", ["gatelab", "gatelab.cli"])
def test_module_entry_runs_the_cli(module: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.cell"
    bad.write_text("name bad\ninput x\nstate h\nnext h = tanh(W @ x +)\n")
    run = subprocess.run([sys.executable, "-m", module, "check", str(bad)], capture_output=True,
                         text=True, timeout=300, env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"})
    assert run.returncode == 2
    assert "bad.cell:4:" in run.stdout + run.stderr
