"""The one decision of which path runs a cell, with its reason.

:func:`route` is asked by everything that runs a cell or says how it runs: the layers of
:mod:`gatelab.nn` (``module.path``, ``module.route``, and :func:`gatelab.engine.backends.run_layer`
for each layer and direction), ``gatelab engine CELL`` and ``analyze``'s ``engine`` field. Paths:

``"vendor"``     torch's fused LSTM/GRU/RNN kernels (all layers at once), for a cell
                 :func:`gatelab.engine.vendor.vendor_match` proves equal to torch's;
``"scan"``       the parallel scan, for a cell the analysis calls scan-parallel;
``"sequence"``   the compiled sequence kernel (:mod:`gatelab.engine.c_sequence`: the whole time
                 loop, forward and backward, in one generated kernel per layer);
``"generated"``  the generated step: GEMM stages and fused pointwise torch code, a generated
                 backward (``layer_norm`` steps: its backward by torch's autograd);
``"c"``          the generated loops with C pointwise kernels (CPU float32/float64);
``"triton"``     the generated loops with Triton pointwise kernels and the Triton scan;
``"reference"``  the plain loop over :func:`gatelab.cell.evaluate.step`.

``backend="auto"`` takes, in order: ``vendor`` where the proof holds; ``scan`` where the cell is
scan-parallel; ``generated`` for a ``layer_norm`` cell (a row reduction: the sequence kernel and
the C and Triton pointwise kernels refuse it); ``sequence`` on CPU float32/float64 with a C
compiler (:data:`SEQUENCE_BY_DEFAULT`); ``triton`` on CUDA once
:data:`TRITON_BY_DEFAULT` is set; ``c`` on CPU with ``GATELAB_CPU_KERNELS=c``; else
``generated``. A backend named explicitly is taken as asked, or refused with an
:class:`~gatelab.engine.layout.EngineError` that says why; one exception, as the C kernels'
``auto``: ``backend="sequence"`` without a C compiler runs ``generated`` (warned once).

While an exporter or compiler traces (:func:`graph_capture`) the route is :func:`traced_route`:
torch's kernels where they take the cell, else the reference step unrolled, so that the trace
sees plain torch ops (and no Python decision: :func:`route`'s caches and SymPy stay outside).
One case stays the layer's own: under ``torch.compile`` with autograd recording, a vendor cell
runs the unrolled reference step too (:func:`gatelab.nn.forward._compiled_autograd` says why).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from functools import lru_cache

import torch

from ..cell.ir import Cell
from .layout import EngineError, Layout
from .vendor import VendorMatch, vendor_match

BACKENDS = ("auto", "vendor", "generated", "sequence", "c", "scan", "triton", "reference")
ALIASES = {"torch": "generated"}  # the generated backend's name before the vendor path existed

# "auto" takes the compiled sequence kernel on CPU (float32/float64, a C compiler present) for
# every cell that is neither torch's nor scan-parallel nor layer_norm: float64 parity with the
# reference loop (1e-12, outputs, states, every gradient) and gradcheck hold for the whole zoo and
# for generated cells (tests/test_sequence_kernel.py). False makes it opt-in by name again.
SEQUENCE_BY_DEFAULT = True

# Triton is the default on CUDA only once benchmarks/gpu.sh has passed its parity checks on a
# real GPU (recorded in benchmarks/RESULTS-gpu.md); until then "auto" runs the generated torch
# backend on CUDA and backend="triton" stays opt-in.
TRITON_BY_DEFAULT = False

SEQUENCE_MODULE = "gatelab.engine.c_sequence"


@dataclass(frozen=True)
class Route:
    """The path a cell takes (one of the names in this module's docstring) and why;
    ``torch`` is torch's mode (``"LSTM"``, ``"GRU"``, ``"RNN_TANH"``, ...) on the vendor path."""

    path: str
    reason: str
    torch: str | None = None

    def to_dict(self) -> dict:
        """Plain data, as ``analyze --format json`` prints it."""
        return {"path": self.path, "torch": self.torch, "reason": self.reason}


VENDOR_BACKENDS = ("auto", "vendor")  # the names that take torch's kernels where the proof holds
TRACED = Route("reference", "an exporter or compiler is tracing: the reference step, unrolled "
               "(plain torch ops)")


def vendor_route(match: VendorMatch) -> Route | None:
    """torch's kernels' route for a cell whose proof holds, None where it does not."""
    if match.mode is None:
        return None
    return Route("vendor", f"torch's fused {match.mode} kernels: {match.reason}", match.mode)


def traced_route(vendor: Route | None, backend: str) -> Route:
    """The route while :func:`graph_capture` holds, from the cell's :func:`vendor_route`: plain
    Python on its arguments, so that a tracer sees no decision being made."""
    return vendor if vendor is not None and backend in VENDOR_BACKENDS else TRACED


def graph_capture() -> bool:
    """Whether an exporter or compiler is tracing (``torch.onnx.export``, ``torch.jit.trace``,
    ``torch.export``, ``torch.compile``): the engine then runs the reference loop."""
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
                or torch.compiler.is_compiling())


def check_backend(backend: str) -> str:
    """Validate a backend name and return its canonical form (``"torch"`` -> ``"generated"``)."""
    backend = ALIASES.get(backend, backend) if isinstance(backend, str) else backend
    if backend not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; expected one of "
                          f"{', '.join(BACKENDS)} ('torch' is an alias of 'generated')")
    return backend


def route(cell: Cell, *, backend: str = "auto", device: torch.device | str = "cpu",
          dtype: torch.dtype = torch.float32, vendor: bool = True) -> Route:
    """The path ``cell`` takes with ``backend`` on ``device`` for ``dtype`` tensors.

    ``vendor=False`` asks for the path of one layer and direction run by
    :func:`gatelab.engine.backends.run_layer` (torch's kernels run all layers at once, in
    :mod:`gatelab.nn`, so they are not a per-layer path). Raises
    :class:`~gatelab.engine.layout.EngineError` for a backend this cell, device or dtype cannot
    take, and for a cell the engine cannot lay out.
    """
    device = torch.device(device)
    backend = check_backend(backend)
    # what the machine offers, read on every call (the decision itself is cached)
    c_opt_in = os.environ.get("GATELAB_CPU_KERNELS", "") == "c"
    c_ok = device.type == "cpu" and (backend in ("c", "sequence") or c_opt_in
                                     or SEQUENCE_BY_DEFAULT) and _c_ok(dtype)
    here = _Here(c_opt_in, c_ok, sequence_available(), SEQUENCE_BY_DEFAULT,
                 TRITON_BY_DEFAULT and device.type == "cuda"
                 and importlib.util.find_spec("triton") is not None)
    return _route(cell, backend, device.type, dtype, vendor, here)


def describe(cell: Cell) -> dict:
    """``route(cell)`` on the CPU as plain data (``{"path", "torch", "reason"}``), with
    ``path`` None and the engine's refusal as the reason for a cell it cannot run."""
    try:
        return route(cell).to_dict()
    except EngineError as e:
        return {"path": None, "torch": None, "reason": f"the engine cannot run it: {e}"}


@dataclass(frozen=True)
class _Here:
    """What this process offers, as the decision reads it (part of its cache key)."""

    c_opt_in: bool  # GATELAB_CPU_KERNELS=c
    c_ok: bool  # a C compiler builds kernels here (warned once if not), for this dtype on CPU
    sequence: bool  # the sequence kernel's module is in this build
    sequence_default: bool  # SEQUENCE_BY_DEFAULT
    triton_default: bool  # TRITON_BY_DEFAULT, on CUDA, Triton importable


@lru_cache(maxsize=512)
def _route(cell: Cell, backend: str, device: str, dtype: torch.dtype, vendor: bool,
           here: _Here) -> Route:
    m = vendor_match(cell)
    not_torch = f"not torch's: {m.reason}"
    if backend == "vendor" and m.mode is None:
        raise EngineError(f"cell {cell.name!r} cannot take the vendor path: {m.reason}")
    if vendor and m.mode is not None and backend in VENDOR_BACKENDS:
        return vendor_route(m)
    Layout.of(cell)  # a cell the engine cannot lay out: its EngineError
    asked = f"backend={backend!r} asked for"
    if backend == "reference":
        return Route("reference", f"{asked}: the plain loop over the reference step")
    if backend == "generated":
        return Route("generated", f"{asked}: gatelab's generated step")
    if backend == "triton":
        return Route("triton", f"{asked}: the generated loops with Triton kernels")
    if backend == "sequence":
        _check_sequence(cell, device, dtype, here.sequence)
        if not here.c_ok:
            return Route("generated", f"{asked}, but no C compiler builds it here: gatelab's "
                         "generated step")
        return Route("sequence", f"{asked}: the compiled sequence kernel")
    if backend == "c":
        _check_c(device, dtype, here.c_ok)
        return Route("c", f"{asked}: the generated loops with C pointwise kernels")
    scan, why_not = _scan_verdict(cell)
    if backend == "scan":
        if not scan:
            raise EngineError(f"cell {cell.name!r} is not scan-parallel ({why_not}); "
                              "use backend='generated'")
        return Route("scan", f"{asked}: gatelab's parallel scan")
    # "auto" (and "vendor" for one layer of a vendor cell, run by the engine)
    if scan:
        return Route("scan", f"gatelab's parallel scan (scan-parallel); {not_torch}")
    from .plan import uses_layer_norm

    if uses_layer_norm(cell):  # a row reduction: neither the sequence nor the pointwise kernels
        return Route("generated", "gatelab's generated engine, layer_norm's backward by torch's "
                     f"autograd (a reduction over the hidden units); {not_torch}")
    if here.sequence_default and here.sequence and here.c_ok:
        return Route("sequence", f"gatelab's compiled sequence kernel; {not_torch}")
    if here.triton_default:
        return Route("triton", f"gatelab's generated loops with Triton kernels; {not_torch}")
    if device == "cpu" and here.c_opt_in and here.c_ok:
        return Route("c", "gatelab's generated loops with C pointwise kernels "
                     f"(GATELAB_CPU_KERNELS=c); {not_torch}")
    return Route("generated", f"gatelab's generated engine; {not_torch}")


def _scan_verdict(cell: Cell) -> tuple[bool, str]:
    """The analysis' scan-parallel verdict (:func:`gatelab.analysis.core.scan_parallel`, the
    one definition) and, when not, why."""
    from .plan import is_scan_parallel

    if is_scan_parallel(cell):
        return True, ""
    from ..analysis.core import scan_parallel
    from ..analysis.memory import find_memory

    return False, "; ".join(scan_parallel(cell, find_memory(cell))[1])


def _c_ok(dtype: torch.dtype) -> bool:
    from . import c_pointwise

    return dtype in c_pointwise.DTYPES and c_pointwise.available()


def _check_c(device: str, dtype: torch.dtype, c_ok: bool) -> None:
    from . import c_pointwise

    if device != "cpu" or dtype not in c_pointwise.DTYPES:
        raise EngineError(f"backend 'c' runs CPU float32/float64 tensors, not {dtype} on "
                          f"{device}; use backend='generated'")
    if not c_ok:
        raise EngineError("backend 'c' needs a C compiler (gcc/cc or $CC) that builds "
                          "OpenMP kernels; use backend='generated'")


def sequence_available() -> bool:
    """Whether the compiled sequence kernel's module is in this build (imported already, or
    found without importing it; looked for once per process)."""
    return SEQUENCE_MODULE in sys.modules or _sequence_found()


@lru_cache(maxsize=1)
def _sequence_found() -> bool:
    return importlib.util.find_spec(SEQUENCE_MODULE) is not None


def sequence_module():
    """:mod:`gatelab.engine.c_sequence` (``run_sequence(layout, tensors, x, state0, mask)``,
    the contract of :func:`gatelab.engine.backends.run_layer`), or an EngineError when absent."""
    if not sequence_available():
        raise EngineError(_NO_SEQUENCE)
    return importlib.import_module(SEQUENCE_MODULE)


_NO_SEQUENCE = ("backend 'sequence' (the compiled sequence kernel) is not in this build of "
                "gatelab; use backend='generated'")


def _check_sequence(cell: Cell, device: str, dtype: torch.dtype, present: bool) -> None:
    from . import c_pointwise
    from .plan import uses_layer_norm

    if not present:
        raise EngineError(_NO_SEQUENCE)
    if device != "cpu" or dtype not in c_pointwise.DTYPES:
        raise EngineError(f"backend 'sequence' runs CPU float32/float64 tensors, not {dtype} on "
                          f"{device}; use backend='generated'")
    if uses_layer_norm(cell):
        raise EngineError(f"cell {cell.name!r} uses layer_norm, a reduction over the hidden "
                          "units, which the sequence kernel does not compute; use "
                          "backend='generated'")
