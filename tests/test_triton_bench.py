"""``benchmarks/bench_gpu.py`` runs end to end on this CPU (``--dry-run``: tiny sizes, Triton
interpreter), so the GPU session that runs ``benchmarks/gpu.sh`` finds a working script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback path")
def test_dry_run_writes_every_section(bench, tmp_path):
    out = tmp_path / "dry.md"
    assert bench.main(["--dry-run", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Dry run" in text and "CPU (dry run, Triton interpreter)" in text
    for section in ("## Parity against cuDNN", "## Forward + backward (ms)",
                    "## Scan-parallel minGRU", "## Targets"):
        assert section in text
    rows = {ln.split("|")[1].strip(): ln for ln in text.splitlines() if ln.startswith("| ")}
    # Parity: gatelab's Triton path against torch's own LSTM/GRU, to float precision.
    for model in ("LSTM", "GRU"):
        diffs = [float(c) for c in rows[model].split("|")[2:5]]
        assert max(diffs) < 1e-4, rows[model]
    # Every timed case that does not depend on unfinished engine parts produced a number.
    for case in ("gatelab LSTM", "gatelab GRU", "gatelab MGU", "gatelab user cell", "cuDNN LSTM",
                 "cuDNN GRU", "Python loop, nn.LSTMCell", "Python loop, user cell",
                 "recurrence only, triton_linear_scan", "recurrence only, Python loop",
                 "minGRU layer, sequential (backend=triton)",
                 "minGRU layer, parallel scan (backend=scan)"):
        float(rows[case].split("|")[2])
    assert "not judged (dry run)" in rows["minGRU sequential / scan >= 50"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_without_gpu_and_without_dry_run_it_says_so(bench, capsys):
    assert bench.main([]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
