"""CPU seconds per training step (one thread) of the configurations the full studies plan, for
the CPU-hour budget in benchmarks/RESULTS-study.md.

Process time (``time.process_time``), not wall time: on a shared machine the wall time of a
step grows with the load, its CPU time much less. Each (config, cell) runs a few warm-up steps,
then ``--steps`` timed ones, through the trainer's own step (forward, backward, clipping, Adam).

    PYTHONPATH=src python benchmarks/study/step_cost.py --out benchmarks/study/step_cost.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gatelab.cell import load_cell
from gatelab.train import trainer
from gatelab.train.config import TrainConfig
from gatelab.train.models import build_model
from gatelab.train.tasks import make_task

# The planned trial of each study, at the middle of its search space (module docstring of
# gatelab.study.space: hidden log-uniform 16-128 -> 64, batch 8-64 -> 16 or 32).
CONFIGS = {
    "jsb (windows of 100, h64, b16)": dict(task="jsb", hidden=64, batch=16, max_len=100),
    "stdlib (BPTT 100, h64, b32)": dict(task="stdlib", hidden=64, batch=32, T=100,
                                        train_size=200_000),
    "copy T=200 (h64, b32)": dict(task="copy", hidden=64, batch=32, T=200),
    "adding T=200 (h32, b32)": dict(task="adding", hidden=32, batch=32, T=200),
    "copy T=200 (h32, b32)": dict(task="copy", hidden=32, batch=32, T=200),
}


def step_cost(cfg: dict, cell: str, steps: int, warm: int = 3) -> float:
    """CPU seconds per optimiser step of ``cfg`` with ``cell``."""
    c = TrainConfig(**cfg, cell=cell, steps=steps + warm)
    task = make_task(c)
    torch.manual_seed(0)
    model = build_model(load_cell(cell), task, c.hidden, c.layers, c.embed, c.dropout)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    rows: list[dict] = []
    for k in range(warm + steps):
        if k == warm:
            t0 = time.process_time()
        b = task.train_batch(k, c.batch, 0)
        trainer._one_step(model, model, optim, task, b, 1.0, 1, k, Path("."), rows)
    return (time.process_time() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", default="lstm,gru,rnn")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--only", default="", help="comma-separated substrings of config names")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = {}
    for name, cfg in CONFIGS.items():
        if a.only and not any(s in name for s in a.only.split(",")):
            continue
        for cell in a.cells.split(","):
            s = step_cost(cfg, cell, a.steps)
            out[f"{name} / {cell}"] = round(s, 5)
            print(f"{name:34s} {cell:6s} {s * 1000:8.1f} ms CPU per step", flush=True)
    if a.out:
        a.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
