"""First-call compile time and cached second-process time of the C kernels of a cell.

Each measurement runs in a fresh Python process (imports excluded from the time): the time to
build a cell's compiled step, ``gatelab.engine.autograd.CompiledStep``, with the ``"c"``
pointwise backend. The first process starts from an empty kernel cache (SymPy derivatives, C
generation and one ``gcc`` run); the second finds the library on disk (only the plan is made
again). The eager ``"torch"`` backend's time (SymPy and Python code generation) is given for
comparison.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

_CHILD = """
import time
import gatelab
from gatelab.engine.autograd import CompiledStep
from gatelab.engine.layout import Layout
from gatelab.engine.plan import Plan
cell = gatelab.load_cell({cell!r})
t0 = time.perf_counter()
CompiledStep(Plan.of(Layout.of(cell), True), {compiler!r})
print(time.perf_counter() - t0)
"""


def _child(cell: str, compiler: str, cache: str) -> float:
    env = {**os.environ, "GATELAB_CACHE_DIR": cache}
    res = subprocess.run([sys.executable, "-c", _CHILD.format(cell=cell, compiler=compiler)],
                         capture_output=True, text=True, check=True, env=env, timeout=600)
    return float(res.stdout.strip().splitlines()[-1])


def compile_times(cells: tuple[str, ...] = ("lstm", "mgu", "lstm-peephole")) -> dict:
    """``{cell: {"first_s", "second_s", "torch_code_s"}}`` (seconds, one fresh process each)."""
    out = {}
    for cell in cells:
        with tempfile.TemporaryDirectory() as cache:
            first = _child(cell, "c", cache)
            second = _child(cell, "c", cache)
            eager = _child(cell, "torch", cache)
        out[cell] = {"first_s": round(first, 3), "second_s": round(second, 3),
                     "torch_code_s": round(eager, 3)}
    return out


def format_compile(times: dict) -> str:
    """Markdown table of :func:`compile_times`."""
    lines = ["| cell | first call, empty cache (s) | second process, cached (s) | "
             "eager torch code, for comparison (s) |", "|---|---:|---:|---:|"]
    for cell, t in times.items():
        lines.append(f"| {cell} | {t['first_s']:.2f} | {t['second_s']:.2f} | "
                     f"{t['torch_code_s']:.2f} |")
    return "\n".join(lines) + "\n"
