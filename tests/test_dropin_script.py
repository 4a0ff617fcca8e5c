"""A real training script written for torch.nn.LSTM runs unchanged with gatelab.nn.LSTM swapped
in (one import line), and trains to the same per-batch losses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "word_lm.py"
TORCH_LINE = "from torch.nn import LSTM\n"
GATELAB_LINE = "from gatelab.nn import LSTM\n"


def _run(tmp_path: Path, swap: bool, batches: int, dropout: float) -> dict:
    text = SCRIPT.read_text(encoding="utf-8")
    assert text.count(TORCH_LINE) == 1
    script = tmp_path / f"word_lm_{'gatelab' if swap else 'torch'}_{dropout}.py"
    script.write_text(text.replace(TORCH_LINE, GATELAB_LINE) if swap else text,
                      encoding="utf-8")
    out = tmp_path / f"{script.stem}.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    subprocess.run([sys.executable, str(script), str(out), str(batches), str(dropout), "7"],
                   check=True, env=env, cwd=tmp_path, timeout=300)
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_word_lm_script_runs_unchanged_and_matches_torch(tmp_path):
    ref = _run(tmp_path, swap=False, batches=100, dropout=0.0)
    ours = _run(tmp_path, swap=True, batches=100, dropout=0.0)
    assert ref["rnn"] == "torch.nn.modules.rnn" and ours["rnn"].startswith("gatelab.nn")
    assert len(ours["losses"]) == len(ref["losses"]) == 100
    for a, b in zip(ours["losses"], ref["losses"], strict=True):
        assert abs(a - b) <= 1e-5 * abs(b)
    assert ref["losses"][-1] < ref["losses"][0]  # it does train
    assert ours["reload_equal"] and ref["reload_equal"]


def test_word_lm_script_with_dropout_finishes(tmp_path):
    ours = _run(tmp_path, swap=True, batches=5, dropout=0.3)
    assert len(ours["losses"]) == 5 and ours["reload_equal"]
