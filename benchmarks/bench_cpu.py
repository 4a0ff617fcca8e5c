"""CPU benchmark of gatelab's engine (issue 5): the same as ``gatelab bench``.

    .venv/bin/python benchmarks/bench_cpu.py [--threads 1] [--repeats 7] [--json out.json]

Forward+backward at T=100 N=64 I=H=256 of gatelab LSTM, GRU, MGU and a user-written cell
(benchmarks/cells/mymgu.cell) against torch nn.LSTM, nn.GRU and the plain Python loop of the same
cell, interleaved rounds, medians, ratios against the targets; peak memory of a training step;
minGRU scan against its sequential loop at T=2048. Results: benchmarks/RESULTS-engine.md.
"""

from __future__ import annotations

import sys

from gatelab.cli import app

if __name__ == "__main__":
    sys.exit(app(["bench", *sys.argv[1:]], standalone_mode=True))
