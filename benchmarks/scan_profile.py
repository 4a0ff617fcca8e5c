"""Where the minGRU scan's time goes (issue 17, item 4), forward+backward, interleaved medians:

    .venv/bin/python benchmarks/scan_profile.py --threads 2 --T 2048 --N 64 --H 256 --rounds 5

layer scan        gatelab.nn.RNN("mingru", backend="scan"): the chunked scan path
layer seq (c)     the same cell through the generated sequential loop, C pointwise kernels
layer seq (torch) the generated sequential loop with generated torch calls
input GEMM        x @ W^T + b and its gradients alone (what every path above must run)
scan primitive    linear_scan(a, b, h0) on precomputed a, b (the C one-pass scan on CPU)
loop primitive    its sequential loop: h = a_t * h + b_t over t, autograd through it

Ratios within one run only; the machine may be shared.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from gatelab.engine.bench import Case, time_cases
from gatelab.engine.scan import linear_scan
from gatelab.nn import RNN


def cases(T: int, N: int, H: int) -> list[Case]:
    torch.manual_seed(0)
    x = torch.randn(T, N, H)

    def layer(backend):
        def build():
            m = RNN("mingru", H, H, backend=backend)

            def run():
                m.zero_grad(set_to_none=True)
                m(x)[0].sum().backward()
            return run
        return build

    def gemm():
        lin = torch.nn.Linear(H, 2 * H)
        xr = x.reshape(T * N, H).clone().requires_grad_()

        def run():
            lin.zero_grad(set_to_none=True)
            lin(xr).sum().backward()
        return run

    a = torch.rand(T, N, H).requires_grad_()
    b = torch.randn(T, N, H).requires_grad_()
    h0 = torch.zeros(N, H)

    def prim():
        def run():
            linear_scan(a, b, h0).sum().backward()
        return run

    def loop():
        def run():
            h, outs = h0, []
            for t in range(T):
                h = torch.addcmul(b[t], a[t], h)
                outs.append(h)
            torch.stack(outs).sum().backward()
        return run

    return [Case("layer scan", layer("scan")), Case("layer seq (c)", layer("c")),
            Case("layer seq (torch)", layer("torch")), Case("input GEMM", gemm),
            Case("scan primitive", prim), Case("loop primitive", loop)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--T", type=int, default=2048)
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--H", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ms = {k: 1e3 * statistics.median(v)
          for k, v in time_cases(cases(args.T, args.N, args.H), args.rounds).items()}
    print(f"T={args.T} N={args.N} H={args.H}, {args.threads} thread(s), "
          f"median of {args.rounds} interleaved rounds, forward+backward:")
    for k, v in ms.items():
        print(f"  {k:18s} {v:9.1f} ms")
    print(f"layer seq (c) / layer scan:     {ms['layer seq (c)'] / ms['layer scan']:.2f}x")
    print(f"layer seq (torch) / layer scan: {ms['layer seq (torch)'] / ms['layer scan']:.2f}x")
    print(f"input GEMM / layer scan:        {ms['input GEMM'] / ms['layer scan']:.2f}")
    print(f"loop / scan primitive:          {ms['loop primitive'] / ms['scan primitive']:.2f}x")


if __name__ == "__main__":
    main()
