"""The sequence kernel (``backend="sequence"``) against torch's nn.LSTM, the generated step and
the reference loop: forward + backward of one layer, float32, ratios within one run.

    PYTHONPATH=src python benchmarks/sequence_kernel.py --threads 1,2 --repeats 7
    PYTHONPATH=src python benchmarks/sequence_kernel.py --zoo          # every zoo cell, T=35

The cases of one size and thread count are timed round-robin (one sample of each in turn,
``repeats`` times) and the median is reported, so load that comes and goes on a shared machine
falls on every case alike; the spread (max/min of the samples) of each case is printed too.
Objects alive after the warm-up (SymPy's caches, the models) are frozen out of Python's cyclic
garbage collector (``gc.freeze``): otherwise a full collection over them lands in whichever case
happens to be running.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import torch

import gatelab
import gatelab.nn as gn
from gatelab.errors import GatelabError

SIZES = [(32, 8, 32), (35, 20, 64), (100, 64, 256)]  # (T, N, I = H)


def fwd_bwd(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        out, hn = model(x)
        hs = hn if isinstance(hn, tuple) else (hn,)
        loss = out.sum() + sum(h.sum() for h in hs)
        loss.backward()

    return run


def model_of(cell: str, backend: str, h: int) -> torch.nn.Module:
    if backend == "torch":
        return torch.nn.LSTM(h, h)
    return gn.RNN(cell, h, h, backend=backend)


def timed(fns: dict[str, Callable[[], None]], repeats: int,
          min_s: float = 0.02) -> dict[str, tuple[float, float, float]]:
    """Median seconds per call, max/min spread and the fastest sample, cases sampled
    round-robin."""
    inner = {}
    for name, f in fns.items():  # warm up (compiles), then calls per sample >= min_s
        f()
        t = time.perf_counter()
        f()
        inner[name] = max(1, int(min_s / max(time.perf_counter() - t, 1e-6)))
    gc.collect()
    gc.freeze()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            t = time.perf_counter()
            for _ in range(inner[name]):
                f()
            samples[name].append((time.perf_counter() - t) / inner[name])
    gc.unfreeze()
    return {k: (statistics.median(v), max(v) / min(v), min(v)) for k, v in samples.items()}


def sizes_table(threads: list[int], repeats: int, sizes, reference_max_t: int,
                backends: tuple[str, ...] = ("sequence", "generated", "reference")) -> list[str]:
    cases = [("nn.LSTM", "lstm", "torch")]
    for cell in ("mgu", "lstm-peephole", "lstm"):
        cases += [(f"{cell} {b}", cell, b) for b in backends]
    lines = ["| threads | T N H | case | ms (median) | spread | ms (min) | / nn.LSTM | "
             "/ generated | / reference |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for th in threads:
        torch.set_num_threads(th)
        for T, N, H in sizes:
            torch.manual_seed(0)
            x = torch.randn(T, N, H)
            fns = {name: fwd_bwd(model_of(cell, b, H), x) for name, cell, b in cases
                   if b != "reference" or T <= reference_max_t}
            res = timed(fns, repeats)
            base = res["nn.LSTM"][0]
            for name, (sec, spread, fastest) in res.items():
                cell = name.split()[0]
                gen = res.get(f"{cell} generated", (None,))[0]
                ref = res.get(f"{cell} reference", (None,))[0]
                lines.append(f"| {th} | {T} {N} {H} | {name} | {sec * 1e3:.2f} | {spread:.2f} | "
                             f"{fastest * 1e3:.2f} | {sec / base:.2f} | {_ratio(sec, gen)} | "
                             f"{_ratio(sec, ref)} |")
            print("\n".join(lines[-len(res):]), flush=True)
    return lines


def zoo_table(threads: list[int], repeats: int, T: int = 35, N: int = 20,
              H: int = 64) -> list[str]:
    lines = ["| threads | cell | auto path | auto ms | sequence ms | reference ms | "
             "reference / auto | reference / sequence | spread (max of cases) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for th in threads:
        torch.set_num_threads(th)
        for name in gatelab.zoo_names():
            torch.manual_seed(0)
            x = torch.randn(T, N, H)
            models = {b: gn.RNN(name, H, H, backend=b) for b in ("auto", "sequence", "reference")}
            try:
                fns = {b: fwd_bwd(m, x) for b, m in models.items()}
                fns["sequence"]()
            except GatelabError:  # layer_norm: no sequence kernel
                fns.pop("sequence")
            res = timed(fns, repeats)
            auto = models["auto"]
            from gatelab.engine.backends import resolve

            path = auto.path if auto.path == "vendor" else resolve(auto.layout, "auto", x.device)
            seq = res.get("sequence", (None,))[0]
            ref = res["reference"][0]
            lines.append(f"| {th} | {name} | {path} | {res['auto'][0] * 1e3:.2f} | "
                         f"{'-' if seq is None else f'{seq * 1e3:.2f}'} | {ref * 1e3:.2f} | "
                         f"{ref / res['auto'][0]:.1f} | {_ratio(ref, seq, digits=1)} | "
                         f"{max(r[1] for r in res.values()):.1f} |")
            print(lines[-1], flush=True)
    return lines


def _ratio(a: float, b: float | None, digits: int = 2) -> str:
    """``a / b`` as text ("-" when there is no ``b``)."""
    if b is None:
        return "-"
    return f"{a / b:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--zoo", action="store_true", help="every zoo cell at T=35 N=20 H=64")
    ap.add_argument("--sizes", default="", help="e.g. 35,20,64;100,64,256 (default: all three)")
    ap.add_argument("--reference-max-t", type=int, default=100)
    ap.add_argument("--backends", default="sequence,generated,reference",
                    help="gatelab backends timed beside nn.LSTM (comma-separated)")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    print(f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC")
    if args.zoo:
        print("\n".join(zoo_table(threads, args.repeats)))
        return
    sizes = SIZES if not args.sizes else [tuple(int(v) for v in s.split(","))
                                          for s in args.sizes.split(";")]
    print("\n".join(sizes_table(threads, args.repeats, sizes, args.reference_max_t,
                                      tuple(args.backends.split(",")))))


if __name__ == "__main__":
    main()
