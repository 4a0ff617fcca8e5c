"""The scan primitive alone, forward: the C one-pass scan, the blocked torch scan and the loop.

    .venv/bin/python benchmarks/scan_primitive.py --T 2048 --N 16 --H 64 --threads 1

Best of interleaved rounds (a shared machine: compare within one run).
"""

from __future__ import annotations

import argparse
import time

import torch

import gatelab.engine.scan as scan
from gatelab.engine import c_scan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=2048)
    ap.add_argument("--N", type=int, default=16)
    ap.add_argument("--H", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    a, b = torch.rand(args.T, args.N, args.H), torch.randn(args.T, args.N, args.H)
    h0 = torch.zeros(args.N, args.H)

    def loop():
        h, out = h0, torch.empty_like(b)
        for t in range(args.T):
            h = torch.addcmul(b[t], a[t], h, out=out[t])
        return out

    runs = {"C scan": lambda: c_scan.scan(a, b, h0),
            "blocked torch scan": lambda: scan._scan(a, b, h0), "loop": loop}
    best = {k: float("inf") for k in runs}
    for _ in range(args.rounds):
        for k, f in runs.items():
            t0 = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t0)
    print(f"T={args.T} N={args.N} H={args.H}, {args.threads} thread(s), forward, best of "
          f"{args.rounds}: " + ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in best.items())
          + f"; loop / C scan {best['loop'] / best['C scan']:.1f}x, loop / blocked "
          f"{best['loop'] / best['blocked torch scan']:.1f}x")


if __name__ == "__main__":
    main()
