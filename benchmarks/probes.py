"""Small timing probes behind figures in RESULTS-engine.md (the main benchmark is bench_cpu.py).

    .venv/bin/python benchmarks/probes.py pairs  --threads 2 --rounds 15
    .venv/bin/python benchmarks/probes.py small  --threads 1 --rounds 30
    .venv/bin/python benchmarks/probes.py phases --threads 2 --cell lstm

pairs:  torch nn.LSTM/GRU against gatelab's, alternating, T=100 N=64 I=H=256 (medians, ratio).
small:  gatelab LSTM/MGU and torch LSTM at T=30 N=16 I=H=64 (per-step overhead dominates).
phases: where a gatelab forward+backward goes: the forward time loop, the backward time loop
        and the weight-gradient GEMMs (wall time of each, medians; the rest is outside them).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from gatelab.engine import autograd
from gatelab.engine.bench import Case, _step, time_cases
from gatelab.nn import GRU, LSTM, MGU


def _alternate(runs: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Median ms of each run, timed in alternation (``gatelab.engine.bench.time_cases``)."""
    cases = [Case(k, lambda run=run: run) for k, run in runs.items()]
    return {k: 1e3 * statistics.median(v) for k, v in time_cases(cases, rounds).items()}


def pairs(rounds: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(100, 64, 256)
    for name, ref, ours in (("LSTM", torch.nn.LSTM, LSTM), ("GRU", torch.nn.GRU, GRU)):
        ms = _alternate({"torch": _step(ref(256, 256), x),
                         "gatelab": _step(ours(256, 256, backend="torch"), x)}, rounds)
        print(f"{name}: torch {ms['torch']:.1f} ms, gatelab {ms['gatelab']:.1f} ms, "
              f"ratio {ms['gatelab'] / ms['torch']:.2f}")


def small(rounds: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(30, 16, 64)
    ms = _alternate({"gatelab LSTM": _step(LSTM(64, 64, backend="torch"), x),
                     "torch nn.LSTM": _step(torch.nn.LSTM(64, 64), x),
                     "gatelab MGU": _step(MGU(64, 64, backend="torch"), x)}, rounds)
    for k, v in ms.items():
        print(f"{k}: {v:.2f} ms")


def phases(cell: str, rounds: int) -> None:
    spent: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            spent.setdefault(name, []).append(time.perf_counter() - t0)
            return out
        return wrapper

    # autograd looks these names up at call time: wrapping them there times every call
    autograd._forward_loop = timed("forward loop", autograd._forward_loop)
    autograd.backward_loop = timed("backward loop", autograd.backward_loop)
    autograd.weight_grads = timed("weight-gradient GEMMs", autograd.weight_grads)
    layer = {"lstm": LSTM, "gru": GRU, "mgu": MGU}[cell](256, 256, backend="torch")
    run = _step(layer, torch.randn(100, 64, 256))
    total = _alternate({"total": run}, rounds)["total"]
    print(f"{cell}, T=100 N=64 I=H=256: forward+backward {total:.1f} ms")
    for k, v in spent.items():
        print(f"  {k}: {1e3 * statistics.median(v[2:]):.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probe", choices=("pairs", "small", "phases"))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--cell", default="lstm", choices=("lstm", "gru", "mgu"))
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"{a.probe}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if a.probe == "pairs":
        pairs(a.rounds)
    elif a.probe == "small":
        small(a.rounds)
    else:
        phases(a.cell, a.rounds)


if __name__ == "__main__":
    main()
