"""The generated engine's fixed cost per step (issue 17, small-layer target), forward+backward:

    .venv/bin/python benchmarks/step_overhead.py

A 2-layer LSTM over T=35 steps, torch's nn.LSTM against gatelab's generated engine (torch calls,
C kernels), at the issue's small size (H=64, N=20) and at H=4 N=1, where there is almost no
arithmetic, so what remains is per-step dispatch. Medians of 15 runs, microseconds per step and
layer; one thread.
"""

from __future__ import annotations

import statistics
import time

import torch

from gatelab.engine.bench import _step
from gatelab.nn import LSTM

T, LAYERS = 35, 2


def main() -> None:
    torch.set_num_threads(1)
    for H, N in ((64, 20), (4, 1)):
        cases = {"torch": lambda H=H: torch.nn.LSTM(H, H, LAYERS),
                 "generated": lambda H=H: LSTM(H, H, LAYERS, backend="torch"),
                 "c": lambda H=H: LSTM(H, H, LAYERS, backend="c")}
        per_step = {}
        for name, make in cases.items():
            torch.manual_seed(0)
            run = _step(make(), torch.randn(T, N, H))
            run()
            times = []
            for _ in range(15):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            per_step[name] = round(1e6 * statistics.median(times) / (T * LAYERS))
        print(f"H={H} N={N}: µs per step and layer {per_step}")


if __name__ == "__main__":
    main()
