"""GPU benchmark of gatelab's Triton backend against cuDNN and the Python loop (issue 6).

Run from the repository root on a CUDA machine (``benchmarks/gpu.sh`` does, within 5 minutes)::

    python benchmarks/bench_gpu.py --out benchmarks/RESULTS-gpu.md

1. parity: gatelab LSTM/GRU (``backend="triton"``, weights copied with ``from_torch``) against
   ``torch.nn.LSTM``/``GRU`` (cuDNN): max abs diff of outputs, final states and weight gradients;
2. forward+backward milliseconds (median of CUDA-event timings) of gatelab LSTM, GRU, MGU and a
   user cell, cuDNN LSTM/GRU, a Python loop over ``nn.LSTMCell`` and the user cell's eager Python
   loop, at (T, N, I=H) = (100, 64, 512), (100, 256, 1024), (1000, 16, 256);
3. minGRU at T=4096: parallel scan against the sequential loop (layer and bare recurrence).

It prints a Markdown document (card, date, versions, tables, ratios against the issue's targets)
and writes it to ``--out``. ``--dry-run`` runs every path at tiny sizes, on the CPU through the
Triton interpreter when there is no GPU, to check the script itself: its figures are not GPU
measurements and are labelled so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable

USER_CELL = """\
# A user cell (not in the zoo): leaky gate, softplus candidate shifted by a learned offset
name  leaky-gated
input x
state h
gate  f = sigmoid(W_f @ x + U_f @ h + b_f)
let   n = softplus(W_n @ x + U_n @ (f * h) + b_n) - softplus(q)
next  h = f * h + (1 - f) * tanh(n)
output h
"""

FULL_SIZES = [(100, 64, 512), (100, 256, 1024), (1000, 16, 256)]
DRY_SIZES = [(3, 2, 4)]
SCAN_FULL = (4096, 16, 256)
SCAN_DRY = (12, 2, 4)
TARGETS = [  # (ratio row, bound, "<=" or ">=")
    ("gatelab LSTM / cuDNN LSTM", 1.25, "<="),
    ("gatelab GRU / cuDNN GRU", 1.25, "<="),
    ("gatelab MGU / cuDNN GRU", 1.00, "<="),
    ("user cell: Python loop / gatelab", 10.0, ">="),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true",
                   help="tiny sizes; on the CPU via TRITON_INTERPRET=1 when there is no GPU")
    p.add_argument("--out", help="also write the Markdown report to this file")
    p.add_argument("--dtype", choices=["fp32", "tf32", "bf16"], default="fp32",
                   help="fp32 (TF32 off, the targets' setting), tf32 GEMMs, or bf16 storage")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case (median)")
    p.add_argument("--budget", type=float, default=270.0,
                   help="seconds; cases left when it runs out are reported as skipped")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch  # after argument parsing, so --help is instant

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("error: no CUDA GPU found. This benchmark needs one; use --dry-run to check the "
              "script on a CPU (Triton interpreter, tiny sizes).", file=sys.stderr)
        return 2
    if not cuda:
        # The interpreter must be chosen before triton is first imported.
        if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
            print("error: triton was imported before TRITON_INTERPRET=1 could be set",
                  file=sys.stderr)
            return 2
        os.environ["TRITON_INTERPRET"] = "1"
    bench = Bench(args, torch.device("cuda" if cuda else "cpu"))
    text = bench.run()
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


class Bench:
    """Runs the three sections and formats the report."""

    def __init__(self, args: argparse.Namespace, device):
        import torch

        self.torch = torch
        self.args = args
        self.device = device
        self.cuda = device.type == "cuda"
        self.dry = args.dry_run
        self.repeats = args.repeats or (1 if self.dry else 7)
        self.warmup = 0 if self.dry else 3
        self.start = time.perf_counter()
        self.dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
        if self.cuda:
            tf32 = args.dtype == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        self.errors: list[str] = []

    # ---- timing ----------------------------------------------------------------------------
    def over_budget(self) -> bool:
        return time.perf_counter() - self.start > self.args.budget

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def time_ms(self, fn: Callable[[], None], repeats: int | None = None,
                warmup: int | None = None) -> float:
        """Median wall time of ``fn`` in ms (CUDA events on the GPU), after warm-up runs (which
        also compile kernels and capture CUDA graphs)."""
        repeats = repeats or self.repeats
        for _ in range(self.warmup if warmup is None else warmup):
            fn()
        self.sync()
        times = []
        for _ in range(repeats):
            if self.cuda:
                start = self.torch.cuda.Event(enable_timing=True)
                end = self.torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    def fwd_bwd(self, module, x) -> Callable[[], None]:
        """One forward+backward through ``module`` on input ``x`` (the output's gradient fixed)."""
        torch = self.torch
        with torch.no_grad():
            out = module(x)[0]
        grad = torch.randn_like(out)

        def run() -> None:
            module.zero_grad(set_to_none=True)
            y = module(x)[0]
            y.backward(grad)

        return run

    # ---- models ----------------------------------------------------------------------------
    def make(self, kind: str, I: int, H: int):
        torch = self.torch
        import gatelab.nn as gnn
        from gatelab import parse_cell

        kw = {"device": self.device, "dtype": self.dtype}
        if kind == "gatelab LSTM":
            return gnn.LSTM(I, H, backend="triton", **kw)
        if kind == "gatelab GRU":
            return gnn.GRU(I, H, backend="triton", **kw)
        if kind == "gatelab MGU":
            return gnn.MGU(I, H, backend="triton", **kw)
        if kind == "gatelab user cell":
            return gnn.RNN(parse_cell(USER_CELL), I, H, backend="triton", **kw)
        if kind == "cuDNN LSTM":
            return torch.nn.LSTM(I, H, **kw)
        if kind == "cuDNN GRU":
            return torch.nn.GRU(I, H, **kw)
        if kind == "Python loop, nn.LSTMCell":
            return LSTMCellLoop(torch.nn.LSTMCell(I, H, **kw))
        if kind == "Python loop, user cell":
            return gnn.RNN(parse_cell(USER_CELL), I, H, backend="reference", **kw)
        raise KeyError(kind)

    # ---- sections --------------------------------------------------------------------------
    def parity(self) -> list[str]:
        torch = self.torch
        from gatelab.nn import from_torch

        T, N, I, H = (5, 2, 8, 8) if self.dry else (50, 16, 256, 256)
        rows = ["| model | output | final states | weight gradients |", "|---|---|---|---|"]
        for name, cls in (("LSTM", torch.nn.LSTM), ("GRU", torch.nn.GRU)):
            try:
                torch.manual_seed(0)
                ref = cls(I, H, device=self.device)
                mine = from_torch(ref, backend="triton")
                x = torch.randn(T, N, I, device=self.device)
                out_r, st_r = ref(x)
                out_m, st_m = mine(x)
                g = torch.randn_like(out_r)
                out_r.backward(g)
                out_m.backward(g)
                st_r = st_r if isinstance(st_r, tuple) else (st_r,)
                st_m = st_m if isinstance(st_m, tuple) else (st_m,)
                d_out = _maxdiff(out_r, out_m)
                d_st = max(_maxdiff(a, b) for a, b in zip(st_r, st_m, strict=True))
                pm = dict(mine.named_parameters())
                d_g = max(_maxdiff(p.grad, pm[n].grad) for n, p in ref.named_parameters())
                rows.append(f"| {name} | {d_out:.2e} | {d_st:.2e} | {d_g:.2e} |")
            except Exception as err:  # report and go on: one broken case must not hide the rest
                rows.append(f"| {name} | error | | |")
                self.errors.append(f"parity {name}: {type(err).__name__}: {err}")
        return [f"Parity at (T, N, I, H) = {(T, N, I, H)}, fp32, max abs diff:", "", *rows]

    def timings(self, progress) -> tuple[list[str], dict]:
        torch = self.torch
        sizes = DRY_SIZES if self.dry else FULL_SIZES
        kinds = ["gatelab LSTM", "gatelab GRU", "gatelab MGU", "gatelab user cell",
                 "cuDNN LSTM", "cuDNN GRU", "Python loop, nn.LSTMCell", "Python loop, user cell"]
        task = progress.add_task("fwd+bwd timings", total=len(sizes) * len(kinds))
        ms: dict[tuple[str, tuple], float | str] = {}
        for size in sizes:
            T, N, H = size
            x = torch.randn(T, N, H, device=self.device, dtype=self.dtype)
            for kind in kinds:
                progress.update(task, description=f"{kind} {size}")
                if self.over_budget():
                    ms[kind, size] = "skipped"
                else:
                    try:
                        torch.manual_seed(0)
                        model = self.make(kind, H, H)
                        # Python loops take seconds at T=1000: fewer runs (nothing to warm up).
                        slow = kind.startswith("Python loop") and not self.dry
                        ms[kind, size] = self.time_ms(self.fwd_bwd(model, x),
                                                      2 if slow else None, 1 if slow else None)
                        del model
                    except Exception as err:
                        ms[kind, size] = "error"
                        self.errors.append(f"{kind} {size}: {type(err).__name__}: {err}")
                progress.advance(task)
        head = "| case | " + " | ".join(f"T={T} N={N} I=H={H}" for T, N, H in sizes) + " |"
        rows = [head, "|---" * (len(sizes) + 1) + "|"]
        for kind in kinds:
            rows.append(f"| {kind} | " + " | ".join(_fmt(ms[kind, s]) for s in sizes) + " |")
        ratios = {
            "gatelab LSTM / cuDNN LSTM": ("gatelab LSTM", "cuDNN LSTM"),
            "gatelab GRU / cuDNN GRU": ("gatelab GRU", "cuDNN GRU"),
            "gatelab MGU / cuDNN GRU": ("gatelab MGU", "cuDNN GRU"),
            "user cell: Python loop / gatelab": ("Python loop, user cell", "gatelab user cell"),
        }
        found = {}
        for label, (a, b) in ratios.items():
            vals = [_ratio(ms[a, s], ms[b, s]) for s in sizes]
            found[label] = vals
            rows.append(f"| *{label}* | " + " | ".join(_fmt(v, "×") for v in vals) + " |")
        return rows, found

    def scan(self, progress) -> tuple[list[str], float | str]:
        torch = self.torch
        import gatelab.nn as gnn
        from gatelab.engine.triton_scan import linear_scan_reference, triton_linear_scan

        T, N, H = SCAN_DRY if self.dry else SCAN_FULL
        task = progress.add_task("minGRU scan", total=4)
        ms: dict[str, float | str] = {}
        x = torch.randn(T, N, H, device=self.device, dtype=self.dtype)
        a = torch.rand(T, N, H, device=self.device, dtype=self.dtype, requires_grad=True)
        b = torch.randn(T, N, H, device=self.device, dtype=self.dtype, requires_grad=True)
        h0 = torch.zeros(N, H, device=self.device, dtype=self.dtype, requires_grad=True)
        g = torch.randn(T, N, H, device=self.device, dtype=self.dtype)

        def bare(fn):
            def run() -> None:
                a.grad = b.grad = h0.grad = None
                fn(a, b, h0).backward(g)
            return run

        cases = {
            "minGRU layer, parallel scan (backend=scan)": lambda: self.fwd_bwd(
                gnn.RNN("mingru", H, H, backend="scan", device=self.device, dtype=self.dtype),
                x),
            "minGRU layer, sequential (backend=triton)": lambda: self.fwd_bwd(
                gnn.RNN("mingru", H, H, backend="triton", device=self.device, dtype=self.dtype),
                x),
            "recurrence only, triton_linear_scan": lambda: bare(triton_linear_scan),
            "recurrence only, Python loop": lambda: bare(linear_scan_reference),
        }
        for label, build in cases.items():
            progress.update(task, description=label)
            if self.over_budget():
                ms[label] = "skipped"
            else:
                try:
                    torch.manual_seed(0)
                    ms[label] = self.time_ms(build(), None if self.dry else 3)
                except Exception as err:
                    ms[label] = "error"
                    self.errors.append(f"{label}: {type(err).__name__}: {err}")
            progress.advance(task)
        labels = list(cases)
        speed_layer = _ratio(ms[labels[1]], ms[labels[0]])
        speed_bare = _ratio(ms[labels[3]], ms[labels[2]])
        rows = [f"minGRU, fwd+bwd, (T, N, I=H) = {(T, N, H)}:", "", "| case | ms |", "|---|---|"]
        rows += [f"| {k} | {_fmt(v)} |" for k, v in ms.items()]
        rows += [f"| *layer: sequential / scan* | {_fmt(speed_layer, '×')} |",
                 f"| *recurrence: loop / scan* | {_fmt(speed_bare, '×')} |"]
        return rows, speed_layer

    def run(self) -> str:
        import torch
        from rich.console import Console
        from rich.progress import Progress

        card = torch.cuda.get_device_name() if self.cuda else "CPU (dry run, Triton interpreter)"
        try:
            import triton

            triton_version = triton.__version__
        except ImportError:
            triton_version = "not installed"
        lines = ["# gatelab GPU benchmark (issue 6)", "",
                 f"- card: {card}",
                 f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
                 f"- torch {torch.__version__}, triton {triton_version}, dtype {self.args.dtype}",
                 "- forward+backward of one layer, median ms (CUDA events); ratios from the "
                 "same run", ""]
        if self.dry:
            lines += ["**Dry run: tiny sizes to check the script; these are not GPU "
                      "measurements.**", ""]
        with Progress(console=Console(stderr=True), transient=True) as progress:
            lines += ["## Parity against cuDNN", "", *self.parity(), ""]
            rows, ratios = self.timings(progress)
            lines += ["## Forward + backward (ms)", "", *rows, ""]
            scan_rows, scan_speed = self.scan(progress)
            lines += ["## Scan-parallel minGRU", "", *scan_rows, ""]
        lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
        judge = _met if not self.dry else (lambda *_: "not judged (dry run)")
        for label, bound, op in TARGETS:
            vals = [v for v in ratios[label] if isinstance(v, float)]
            worst = (max(vals) if op == "<=" else min(vals)) if vals else "n/a"
            lines.append(f"| {label} {op} {bound} (worst size) | {_fmt(worst, '×')} | "
                         f"{judge(worst, bound, op)} |")
        lines.append(f"| minGRU sequential / scan >= 50 | {_fmt(scan_speed, '×')} | "
                     f"{judge(scan_speed, 50.0, '>=')} |")
        if self.errors:
            lines += ["", "## Errors", ""] + [f"- {e}" for e in self.errors]
        lines.append(f"\nTotal time {time.perf_counter() - self.start:.0f} s.")
        return "\n".join(lines) + "\n"


class LSTMCellLoop:
    """A Python loop over ``torch.nn.LSTMCell`` (a baseline of docs/design.md, "The engine
    contract")."""

    def __init__(self, cell):
        self.cell = cell

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.cell.zero_grad(set_to_none=set_to_none)

    def __call__(self, x):
        import torch

        h = c = x.new_zeros(x.shape[1], self.cell.hidden_size)
        outs = []
        for t in range(x.shape[0]):
            h, c = self.cell(x[t], (h, c))
            outs.append(h)
        return torch.stack(outs), (h, c)


def _maxdiff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


def _ratio(a, b):
    if isinstance(a, float) and isinstance(b, float) and b > 0:
        return a / b
    return "n/a"


def _fmt(v, unit: str = "") -> str:
    if isinstance(v, float):
        return f"{v:.2f}{unit}" if unit else f"{v:.2f}"
    return str(v)


def _met(v, bound: float, op: str) -> str:
    if not isinstance(v, float):
        return "n/a"
    ok = v <= bound if op == "<=" else v >= bound
    return "yes" if ok else "no"


if __name__ == "__main__":
    sys.exit(main())
