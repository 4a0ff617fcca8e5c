"""How much of the minGRU scan layer is its input GEMM (issue 17, scan target), fwd+bwd:

    .venv/bin/python benchmarks/scan_gemm_share.py

At T=2048 N=64 I=H=256 on 2 threads: ``Linear(256, 512)`` over the 131,072 rows alone, then the
whole layer with the scan and with the generated sequential loop (medians of 3 runs). Every
path runs that GEMM, so (sequential time) / (GEMM time) bounds any scan's speed-up. A quicker
cut of ``scan_profile.py``.
"""

from __future__ import annotations

import statistics
import time

import torch

from gatelab.nn import RNN

T, N, H = 2048, 64, 256


def _median_ms(run) -> float:  # noqa: ANN001 - a closure
    run()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return round(1e3 * statistics.median(times), 1)


def main() -> None:
    torch.set_num_threads(2)
    lin = torch.nn.Linear(H, 2 * H)
    xr = torch.randn(T * N, H).requires_grad_()

    def gemm() -> None:
        lin.zero_grad(set_to_none=True)
        xr.grad = None
        lin(xr).sum().backward()

    print("input GEMM fwd+bwd ms", _median_ms(gemm))
    x = torch.randn(T, N, H)
    for backend in ("scan", "torch"):
        m = RNN("mingru", H, H, backend=backend)

        def layer(m=m) -> None:  # noqa: ANN001
            m.zero_grad(set_to_none=True)
            m(x)[0].sum().backward()

        print(f"layer ({backend}) ms", _median_ms(layer))


if __name__ == "__main__":
    main()
