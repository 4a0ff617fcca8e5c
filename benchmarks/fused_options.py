"""The fused-CPU-step options of issue 17 (item 2) side by side, on one cell's step functions:

    .venv/bin/python benchmarks/fused_options.py --cell lstm --threads 1 [--skip-cpp]

For the forward ("final") and backward ("final_bwd") pointwise functions of the cell at N=64
H=256 float32 it reports the compile time (fresh cache, first call) and the time per call (best
of interleaved batches) of:

  torch code   the generated eager torch calls (``compile_pointwise(..., "torch")``)
  inductor     ``torch.compile`` (Inductor's C++/OpenMP code generation) of that torch code alone
  cpp_ext      C++ from the same SymPy expressions, built with ``torch.utils.cpp_extension``
  c            gatelab's C kernel (``compile_pointwise(..., "c")``: gcc -O3 -fopenmp, ctypes)

Each option compiles in a fresh temporary cache. Times are from a shared machine: compare within
one run only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

import gatelab
from gatelab.engine import c_pointwise as cp
from gatelab.engine.layout import Layout
from gatelab.engine.plan import Plan
from gatelab.engine.pointwise import compile_pointwise, vjp

CPP = """
#include <torch/extension.h>
#include <math.h>
#include <stdint.h>
#define restrict __restrict__
#define real float
#define EXP expf
#define LOG logf
#define TANH tanhf
#define SQRT sqrtf
#define FABS fabsf
#define POW powf
#define LOG1P log1pf
{body}
std::vector<at::Tensor> run(std::vector<at::Tensor> ins, int64_t n_out) {{
  int64_t rows = ins[0].size(0), cols = ins[0].size(1);
  std::vector<void*> p; std::vector<int64_t> rs;
  for (auto &t : ins) {{ p.push_back(t.data_ptr()); rs.push_back(t.stride(0)); }}
  std::vector<at::Tensor> outs; std::vector<void*> q; std::vector<int64_t> qs;
  for (int64_t j = 0; j < n_out; ++j) {{
    outs.push_back(at::empty({{rows, cols}}, ins[0].options()));
    q.push_back(outs.back().data_ptr()); qs.push_back(cols);
  }}
  NAME_0(rows, cols, p.data(), rs.data(), q.data(), qs.data(), at::get_num_threads());
  return outs;
}}
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {{ m.def("run", &run); }}
"""


def best_us(fn, rounds: int = 15, batch: int = 40) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        best = min(best, (time.perf_counter() - t0) / batch)
    return 1e6 * best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-cpp", action="store_true", help="skip torch.utils.cpp_extension")
    ap.add_argument("--skip-inductor", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    plan = Plan.of(Layout.of(gatelab.load_cell(args.cell)))
    ins = [*plan.states, *[s for g in plan.groups for s in g.symbols], *plan.vectors]
    outs = list(plan.nexts)
    free = set().union(*(o.free_symbols for o in outs))
    wrt = [s for s in ins if s in free]
    funcs = {"final": (ins, outs), "final_bwd": vjp(ins, outs, wrt)}
    torch.manual_seed(0)
    N, H = 64, 256
    print(f"{args.cell}: N={N} H={H} float32, {args.threads} thread(s)")
    for name, (fi, fo) in funcs.items():
        for k, (comp, us) in measure(name, fi, fo, [torch.randn(N, H) for _ in fi],
                                     args).items():
            print(f"  {name:9s} {k:10s} compile {comp:7.2f} s   per call {us:8.1f} us")


def measure(name, fi, fo, data, args) -> dict[str, tuple[float, float]]:
    """``{option: (compile seconds, microseconds per call)}`` for one function."""
    row = {}
    t0 = time.perf_counter()
    eager = compile_pointwise(fi, fo, "torch")
    row["torch code"] = (time.perf_counter() - t0, best_us(lambda: eager(*data)))
    if not args.skip_inductor:
        with tempfile.TemporaryDirectory() as d:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = d
            torch._dynamo.reset()
            ind = torch.compile(lambda *a: eager(*a), dynamic=False, fullgraph=True)
            t0 = time.perf_counter()
            ind(*data)
            row["inductor"] = (time.perf_counter() - t0, best_us(lambda: ind(*data)))
    if not args.skip_cpp:
        from torch.utils.cpp_extension import load_inline

        live = [o for o in fo if not o.is_Number]
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            mod = load_inline(f"gl_opt_{name}", CPP.format(body=cp.kernel_body("0", fi, live)),
                              extra_cflags=["-O3", "-march=native", "-fopenmp", "-ffast-math",
                                            "-fno-finite-math-only", "-D__FAST_MATH__"],
                              extra_ldflags=["-fopenmp"], build_directory=d, verbose=False)
            row["cpp_ext"] = (time.perf_counter() - t0,
                              best_us(lambda: mod.run(data, len(live))))
    with tempfile.TemporaryDirectory() as d:
        os.environ["GATELAB_CACHE_DIR"] = d
        t0 = time.perf_counter()
        ck = compile_pointwise(fi, fo, "c")
        row["c"] = (time.perf_counter() - t0, best_us(lambda: ck(*data)))
    return row


if __name__ == "__main__":
    main()
