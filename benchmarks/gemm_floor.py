"""How fast could gatelab be on this CPU? The matrix products alone, timed against the real cases.

    .venv/bin/python benchmarks/gemm_floor.py [--threads 1] [--repeats 7] [--scan-T 2048]

Two floors, each timed in the same interleaved rounds as the cases it bounds (medians):

* MGU at T=100 N=64 I=H=256: every GEMM that ``gatelab.nn.MGU(backend="torch")`` runs for one
  forward+backward (the input GEMM of all steps, per step ``h U_f^T`` and ``(f*h) U_n^T``, per
  step in the backward ``dz_n U_n`` and ``dz_f U_f``, then ``dW_ih``, ``dW_hh`` with their
  operand transposes), through the same oneDNN calls, with no pointwise work at all. Against the
  plain Python MGU loop of the benchmark this is the best ratio any engine built on these GEMMs
  could reach.
* minGRU at T=2048 N=64 I=H=256: the input GEMM of all steps and its weight gradient (the two
  products both the scan and the sequential loop must run; in row chunks as the CPU scan runs
  them), against both.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gatelab.engine.bench import _step
from gatelab.engine.gemm import linear


def mgu_gemms(T: int, N: int, H: int):
    torch.manual_seed(0)
    x = torch.randn(T * N, H)
    w_ih, u_f, u_n = torch.randn(2 * H, H), torch.randn(H, H) * 0.01, torch.randn(H, H) * 0.01
    h0 = torch.randn(N, H)

    def run() -> None:
        gx = linear(x, w_ih)
        hs, vs, h = [], [], h0
        for _ in range(T):  # forward: two dependent GEMMs per step
            a = linear(h, u_f)
            v = a  # stands for f*h
            vs.append(v)
            hs.append(h)
            h = linear(v, u_n)
        u_fc, u_nc = u_f.t().contiguous(), u_n.t().contiguous()
        d = h0
        for _ in range(T):  # backward: two dependent GEMMs per step
            d = linear(linear(d, u_nc), u_fc)
        dgx_t = gx.t().contiguous()
        x_t = x.t().contiguous()
        linear(dgx_t, x_t)  # dW_ih
        linear(dgx_t[:H], torch.stack(hs).view(-1, H).t().contiguous())  # dW_hh, f rows
        linear(dgx_t[H:], torch.stack(vs).view(-1, H).t().contiguous())  # dW_hh, n rows

    return run


def input_gemms(T: int, N: int, H: int):
    """The input GEMM and its weight gradient, in row chunks as the CPU scan runs them (the
    chunk's output and both transposed operands stay in cache)."""
    from gatelab.engine.scan import CHUNK_VALUES

    chunk = max(16, CHUNK_VALUES // (N * H)) * N
    torch.manual_seed(0)
    x, w = torch.randn(T * N, H), torch.randn(2 * H, H)

    def run() -> None:
        dw = torch.zeros_like(w)
        for i in range(0, T * N, chunk):
            xc = x[i:i + chunk]
            gc = linear(xc, w)
            dw.add_(linear(gc.t().contiguous(), xc.t().contiguous()))

    return run


def timed(cases: dict, repeats: int) -> dict[str, float]:
    for run in cases.values():
        run()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, run in cases.items():
            t0 = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def main() -> None:
    from gatelab.nn import MGU, RNN

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--scan-T", type=int, default=2048)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    T, N, H = 100, 64, 256

    def model(factory, T):
        torch.manual_seed(0)
        return _step(factory(), torch.randn(T, N, H))

    m = timed({"gatelab MGU": model(lambda: MGU(H, H, backend="torch"), T),
               "Python loop MGU": model(lambda: MGU(H, H, backend="reference"), T),
               "GEMMs of gatelab MGU only": mgu_gemms(T, N, H)}, a.repeats)
    loop = m["Python loop MGU"]
    print(f"T={T} N={N} I=H={H}, {a.threads} thread(s), medians of {a.repeats} rounds "
          f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}):")
    for k, v in m.items():
        print(f"  {k:28s} {v:8.1f} ms   {v / loop:.2f} x Python loop MGU")
    if a.scan_T:
        s = timed({"minGRU scan": model(lambda: RNN("mingru", H, H, backend="scan"), a.scan_T),
                   "minGRU sequential": model(lambda: RNN("mingru", H, H, backend="torch"),
                                              a.scan_T),
                   "input GEMM + its dW only": input_gemms(a.scan_T, N, H)},
                  max(3, a.repeats // 2))
        seq = s["minGRU sequential"]
        print(f"minGRU T={a.scan_T} N={N} I=H={H}:")
        for k, v in s.items():
            print(f"  {k:28s} {v:8.1f} ms   sequential / this = {seq / v:.2f}")


if __name__ == "__main__":
    main()
