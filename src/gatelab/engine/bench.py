"""CPU benchmark of the engine: forward+backward of gatelab layers against torch's and against the
plain Python loop of the same cell, timed interleaved (one of each per round, medians), plus peak
memory of one training step and the scan against the sequential loop.

Used by ``gatelab bench``, ``benchmarks/bench_cpu.py`` and the tour's engine section.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

USER_CELL = Path(__file__).resolve().parents[3] / "benchmarks" / "cells" / "mymgu.cell"

# (ratio name, numerator case, denominator case, target: numerator <= target * denominator).
# "gatelab X" is the generated engine forced, with the C pointwise kernels where a compiler is
# found; "(torch code)" the same loops with generated torch calls; "(auto)" the default backend.
TARGETS = [
    # "(auto)": what a user gets by default; for these cells the vendor path (torch's kernels).
    ("gatelab LSTM (auto) / torch LSTM", "gatelab LSTM (auto)", "torch nn.LSTM", 1.02),
    ("gatelab GRU (auto) / torch GRU", "gatelab GRU (auto)", "torch nn.GRU", 1.02),
    ("gatelab LSTM / torch LSTM", "gatelab LSTM", "torch nn.LSTM", 1.10),
    ("gatelab LSTM-peephole / torch LSTM", "gatelab LSTM-peephole", "torch nn.LSTM", 1.15),
    ("gatelab CIFG / torch LSTM", "gatelab CIFG", "torch nn.LSTM", 1.15),
    ("gatelab GRU / torch GRU", "gatelab GRU", "torch nn.GRU", 1.00),
    ("gatelab MGU / torch GRU", "gatelab MGU", "torch nn.GRU", 0.55),
    ("gatelab MGU / Python MGU loop", "gatelab MGU", "Python loop MGU", 0.50),
    ("gatelab MGU / hoisted Python MGU loop", "gatelab MGU", "Python loop MGU, W@x hoisted",
     0.45),
    ("user cell / built-in MGU", "user cell", "gatelab MGU", 1.05),
    ("LSTM: C kernels / torch code", "gatelab LSTM", "gatelab LSTM (torch code)", None),
    ("MGU: C kernels / torch code", "gatelab MGU", "gatelab MGU (torch code)", None),
    ("LSTM: gatelab / Python loop", "gatelab LSTM", "Python loop LSTM", None),
    ("small layer: gatelab LSTM (auto) / torch LSTM", "small: gatelab LSTM (auto)",
     "small: torch nn.LSTM", 1.02),
    ("small layer: gatelab LSTM / torch LSTM", "small: gatelab LSTM", "small: torch nn.LSTM",
     1.20),
    ("small layer: LSTM C kernels / torch code", "small: gatelab LSTM",
     "small: gatelab LSTM (torch code)", None),
]


def generated_backend() -> str:
    """The generated engine's fastest CPU pointwise backend here: ``"c"`` (C kernels) where a
    compiler is found, else ``"torch"``. ``auto`` uses the C kernels only when
    ``GATELAB_CPU_KERNELS=c`` is set."""
    from .backends import c_kernels_ok

    return "c" if c_kernels_ok(torch.float32) else "torch"


@dataclass
class Case:
    """A named forward+backward workload; ``build()`` returns the closure to time."""

    label: str
    build: Callable[[], Callable[[], None]]


def _step(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        model.zero_grad(set_to_none=True)
        out = model(x)[0]
        out.sum().backward()

    return run


class HoistedMGULoop(torch.nn.Module):
    """The baseline of docs/design.md ("The engine contract"): a Python loop over MGU with the
    input GEMM hoisted, what a user writes by hand, deliberately not derived from the cell.
    ``x (T, N, I)`` -> ``(out, h_T)``::

        f_t = σ(W_f x_t + U_f h_{t-1} + b_f)
        n_t = tanh(W_n x_t + U_n (f_t ⊙ h_{t-1}) + b_n)
        h_t = (1 - f_t) ⊙ h_{t-1} + f_t ⊙ n_t

    with ``W_f x_t, W_n x_t`` of every step in one GEMM before the loop."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.w_x = torch.nn.Linear(input_size, 2 * hidden_size)
        self.u_f = torch.nn.Linear(hidden_size, hidden_size, bias=False)
        self.u_n = torch.nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xf, xn = self.w_x(x).chunk(2, dim=-1)
        h = x.new_zeros(x.shape[1], self.hidden_size)
        outs = []
        for t in range(x.shape[0]):
            f = torch.sigmoid(xf[t] + self.u_f(h))
            n = torch.tanh(xn[t] + self.u_n(f * h))
            h = (1 - f) * h + f * n
            outs.append(h)
        return torch.stack(outs), h


def main_cases(T: int, N: int, I: int, H: int, user_cell: Path | str | None = None,
               python_loops: bool = True) -> list[Case]:
    """The comparisons of the issue at sizes T, N, I=H."""
    from ..nn import GRU, LSTM, MGU, RNN

    def make(factory):
        def build():
            torch.manual_seed(0)
            return _step(factory(), torch.randn(T, N, I))
        return build

    gen = generated_backend()
    cases = [
        Case("torch nn.LSTM", make(lambda: torch.nn.LSTM(I, H))),
        Case("gatelab LSTM (auto)", make(lambda: LSTM(I, H))),
        Case("gatelab LSTM", make(lambda: LSTM(I, H, backend=gen))),
        Case("gatelab LSTM-peephole", make(lambda: RNN("lstm-peephole", I, H, backend=gen))),
        Case("gatelab CIFG", make(lambda: RNN("cifg", I, H, backend=gen))),
        Case("torch nn.GRU", make(lambda: torch.nn.GRU(I, H))),
        Case("gatelab GRU (auto)", make(lambda: GRU(I, H))),
        Case("gatelab GRU", make(lambda: GRU(I, H, backend=gen))),
        Case("gatelab MGU", make(lambda: MGU(I, H, backend=gen))),
    ]
    if gen != "torch":
        cases += [Case("gatelab LSTM (torch code)", make(lambda: LSTM(I, H, backend="torch"))),
                  Case("gatelab MGU (torch code)", make(lambda: MGU(I, H, backend="torch")))]
    user = user_cell or (USER_CELL if USER_CELL.exists() else None)
    if user is not None:
        label = f"user cell ({Path(str(user)).stem})"
        cases.append(Case(label, make(lambda: RNN(user, I, H, backend=gen))))
    if python_loops:
        cases += [Case("Python loop LSTM", make(lambda: LSTM(I, H, backend="reference"))),
                  Case("Python loop MGU", make(lambda: MGU(I, H, backend="reference"))),
                  Case("Python loop MGU, W@x hoisted", make(lambda: HoistedMGULoop(I, H)))]
    return cases


def small_cases(T: int, N: int, H: int, layers: int) -> list[Case]:
    """The small layer of the issue (a word-language-model size): ``layers`` stacked LSTMs."""
    from ..nn import LSTM

    def make(factory):
        def build():
            torch.manual_seed(0)
            return _step(factory(), torch.randn(T, N, H))
        return build

    gen = generated_backend()
    cases = [Case("small: torch nn.LSTM", make(lambda: torch.nn.LSTM(H, H, layers))),
             Case("small: gatelab LSTM (auto)", make(lambda: LSTM(H, H, layers))),
             Case("small: gatelab LSTM", make(lambda: LSTM(H, H, layers, backend=gen)))]
    if gen != "torch":
        cases.append(Case("small: gatelab LSTM (torch code)",
                          make(lambda: LSTM(H, H, layers, backend="torch"))))
    return cases


def scan_cases(T: int, N: int, I: int, H: int) -> list[Case]:
    """minGRU with the parallel scan against its own sequential (generated) loop."""
    from ..nn import RNN

    def make(backend):
        def build():
            torch.manual_seed(0)
            return _step(RNN("mingru", I, H, backend=backend), torch.randn(T, N, I))
        return build

    return [Case("minGRU scan", make("scan")),
            Case("minGRU sequential", make(generated_backend())),
            Case("minGRU Python loop", make("reference"))]


def time_cases(cases: list[Case], repeats: int,
               progress: Callable[[str], None] = lambda s: None) -> dict[str, list[float]]:
    """Seconds per run of each case: one warm-up each, then ``repeats`` interleaved rounds."""
    runs = {}
    for c in cases:
        progress(f"warm-up {c.label}")
        runs[c.label] = c.build()
        runs[c.label]()
    times: dict[str, list[float]] = {c.label: [] for c in cases}
    for r in range(repeats):
        for label, run in runs.items():
            progress(f"round {r + 1}/{repeats}: {label}")
            t0 = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - t0)
    return times


def peak_memory_mb(label: str, T: int, N: int, I: int, H: int, threads: int) -> float:
    """Peak resident memory added by one training step of a case, in MiB.

    Measured in a fresh process after one warm-up step: the kernel's high-water mark (``VmHWM``)
    is reset through ``/proc/self/clear_refs``, then one step runs and ``VmHWM - VmRSS(before)``
    is its peak. ``MALLOC_MMAP_THRESHOLD_`` pins glibc's mmap threshold so every large tensor is
    really returned to the system when freed (no heap reuse hiding a peak)."""
    code = ("from gatelab.engine.bench import _peak_child; "
            f"_peak_child({label!r}, {T}, {N}, {I}, {H}, {threads})")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    return float(res.stdout.strip().splitlines()[-1])


def _status_kb(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(key + r":\s+(\d+)", text).group(1))


def _peak_child(label: str, T: int, N: int, I: int, H: int, threads: int) -> None:
    torch.set_num_threads(threads)
    case = next(c for c in main_cases(T, N, I, H) if c.label == label)
    run = case.build()
    run()  # warm-up: one-time compilation and caches are not part of a training step
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    run()
    print((_status_kb("VmHWM") - before) / 1024)


# PLR0913: one parameter per `gatelab bench` option
def run_benchmark(T: int = 100, N: int = 64, H: int = 256, repeats: int = 7,  # noqa: PLR0913
                  scan_T: int = 2048, scan_N: int = 64, scan_H: int = 256,
                  threads: int | None = None, memory: bool = True, python_loops: bool = True,
                  user_cell: Path | str | None = None,
                  progress: Callable[[str], None] = lambda s: None,
                  small: tuple[int, int, int, int] | None = None) -> dict:
    """Run everything and return a JSON-ready dict (times in ms, medians, ratios, memory).
    ``small``: ``(T, N, H, layers)`` of the small-layer comparison (None: skipped)."""
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    I = H
    cases = main_cases(T, N, I, H, user_cell, python_loops)
    if small:
        cases += small_cases(*small)
    main = time_cases(cases, repeats, progress)
    result: dict = {
        "sizes": {"T": T, "N": N, "I": I, "H": H}, "threads": threads, "repeats": repeats,
        "generated_backend": generated_backend(),
        "small_sizes": None if not small else dict(zip("TNHL", small, strict=True)),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "ms": {k: [round(1e3 * t, 2) for t in v] for k, v in main.items()},
        "median_ms": {k: round(1e3 * statistics.median(v), 2) for k, v in main.items()},
    }
    med = dict(result["median_ms"])
    for k, v in result["median_ms"].items():
        if k.startswith("user cell ("):
            med["user cell"] = v
    result["ratios"] = [
        {"name": name, "value": round(med[a] / med[b], 3), "target": target,
         "met": None if target is None else med[a] / med[b] <= target}
        for name, a, b, target in TARGETS if a in med and b in med]
    if scan_T:
        sc = time_cases(scan_cases(scan_T, scan_N, scan_H, scan_H), max(3, repeats // 2),
                        progress)
        sm = {k: statistics.median(v) for k, v in sc.items()}
        speed = sm["minGRU sequential"] / sm["minGRU scan"]
        result["scan"] = {"sizes": {"T": scan_T, "N": scan_N, "I": scan_H, "H": scan_H},
                          "median_ms": {k: round(1e3 * v, 2) for k, v in sm.items()},
                          "speedup": round(speed, 2), "target": 5.0, "met": speed >= 5.0,
                          "speedup_vs_python_loop":
                              round(sm["minGRU Python loop"] / sm["minGRU scan"], 2)}
    if memory:
        mem = {}
        for label in ("torch nn.LSTM", "gatelab LSTM", "torch nn.GRU", "gatelab GRU",
                      "gatelab MGU"):
            progress(f"peak memory: {label}")
            mem[label] = round(peak_memory_mb(label, T, N, I, H, threads), 1)
        ratio = mem["gatelab LSTM"] / max(mem["torch nn.LSTM"], 1e-9)
        result["peak_mb"] = mem
        result["memory_ratio"] = {"name": "peak memory gatelab LSTM / torch LSTM",
                                  "value": round(ratio, 3), "target": 1.3, "met": ratio <= 1.3}
    return result


def format_markdown(r: dict) -> str:
    """The result as Markdown tables (for RESULTS-engine.md and the tour)."""
    s = r["sizes"]
    lines = [f"Forward+backward, T={s['T']} N={s['N']} I=H={s['H']}, float32, "
             f"{r['threads']} thread(s), median of {r['repeats']} interleaved rounds "
             f"(torch {r['torch']}, {r['date']}). Generated pointwise backend: "
             f"`{r.get('generated_backend', 'torch')}`."
             + ("" if not r.get("small_sizes") else
                " Small layer ('small:'): T={T} N={N} I=H={H}, {L} layers.".format(
                    **r["small_sizes"])), "",
             "| case | median ms | all runs (ms) |", "|---|---:|---|"]
    for k, v in r["median_ms"].items():
        lines.append(f"| {k} | {v:.1f} | {', '.join(f'{t:.0f}' for t in r['ms'][k])} |")
    lines += ["", "| ratio | value | target | met |", "|---|---:|---:|---|"]
    rows = list(r["ratios"])
    if "memory_ratio" in r:
        rows.append(r["memory_ratio"])
    for q in rows:
        tgt = "-" if q["target"] is None else f"≤ {q['target']:.2f}"
        met = "-" if q["met"] is None else ("yes" if q["met"] else "**no**")
        lines.append(f"| {q['name']} | {q['value']:.2f} | {tgt} | {met} |")
    if "scan" in r:
        sc = r["scan"]
        z = sc["sizes"]
        ms = sc["median_ms"]
        lines += ["", f"minGRU at T={z['T']} N={z['N']} I=H={z['H']}, forward+backward: "
                  f"scan {ms['minGRU scan']:.1f} ms, generated sequential loop "
                  f"{ms['minGRU sequential']:.1f} ms (**{sc['speedup']:.2f}×**; target ≥ 5×, "
                  f"{'met' if sc['met'] else 'not met'}), plain Python loop "
                  f"{ms['minGRU Python loop']:.1f} ms (**{sc['speedup_vs_python_loop']:.1f}×**)."]
    if "peak_mb" in r:
        lines += ["", "Peak memory added by one training step after a warm-up (MiB, fresh process, "
                  "VmHWM): "
                  + ", ".join(f"{k} {v:.0f}" for k, v in r["peak_mb"].items()) + "."]
    return "\n".join(lines) + "\n"

def format_summary(runs: list[dict]) -> str:
    """One table of every ratio at each thread count (runs of :func:`run_benchmark`)."""
    heads = [f"{r['threads']} thread(s)" for r in runs]
    lines = ["| ratio (same run) | " + " | ".join(heads) + " | target |",
             "|---|" + "---:|" * len(runs) + "---:|"]
    names = list(dict.fromkeys(q["name"] for r in runs for q in r["ratios"]))
    for name in names:
        vals, tgt = [], None
        for r in runs:
            q = next((q for q in r["ratios"] if q["name"] == name), None)
            vals.append("-" if q is None else f"{q['value']:.2f}")
            tgt = tgt if q is None else q["target"]
        lines.append(f"| {name} | " + " | ".join(vals) + f" | "
                     f"{'-' if tgt is None else f'≤ {tgt:.2f}'} |")
    scans = [r.get("scan") for r in runs]
    if any(scans):
        lines.append("| minGRU scan speed-up over its sequential loop | " + " | ".join(
            "-" if sc is None else f"{sc['speedup']:.2f}×" for sc in scans) + " | ≥ 5× |")
    return "\n".join(lines) + "\n"
