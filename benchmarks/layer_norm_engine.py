"""LayerNorm LSTM (the zoo's ``lstm-ln``) on the generated engine against the reference loop,
forward+backward, with torch's nn.LSTM (no normalisation) in the same run as the yardstick:

    .venv/bin/python benchmarks/layer_norm_engine.py

The generated step is torch code with ``F.layer_norm`` over each row; its backward is torch's
autograd of that code (a row reduction has no elementwise derivative to generate). Medians of
9 interleaved rounds; one and two threads. Numbers go to benchmarks/RESULTS-speed.md.
"""

from __future__ import annotations

import statistics
import time

import torch

from gatelab.engine.bench import _step
from gatelab.nn import RNN

T, N, H = 100, 64, 256


def main() -> None:
    for threads in (1, 2):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        x = torch.randn(T, N, H)
        runs = {"nn.LSTM": _step(torch.nn.LSTM(H, H), x),
                "lstm-ln reference": _step(RNN("lstm-ln", H, H, backend="reference"), x),
                "lstm-ln generated": _step(RNN("lstm-ln", H, H, backend="generated"), x)}
        times: dict[str, list[float]] = {k: [] for k in runs}
        for run in runs.values():
            run()  # warm-up: code generation, allocator
        for _ in range(9):
            for name, run in runs.items():
                t0 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        base = med["nn.LSTM"]
        print(f"threads={threads} T={T} N={N} H={H}: " + ", ".join(
            f"{k} {1e3 * v:.0f} ms ({v / base:.2f}x nn.LSTM)" for k, v in med.items())
            + f"; generated/reference {med['lstm-ln generated'] / med['lstm-ln reference']:.2f}")


if __name__ == "__main__":
    main()
