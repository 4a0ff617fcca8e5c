"""Pick and run a backend for one layer and direction of a recurrent network.

Every backend has the same contract::

    run_layer(layout, tensors, x, state0, mask, backend) -> (out, states)

``x`` ``(T, N, I)`` time-major; ``state0`` one ``(N, H)`` tensor per cell state (cell order);
``tensors`` the packed parameters of :class:`~gatelab.engine.layout.Layout` (``weight_ih``, ...);
``mask`` ``(T, N)`` bool or None: where False the states are carried unchanged and the output is
zero (padding of variable-length batches). ``out`` is ``(T, N, H)``, ``states`` the final states.

Backends: ``"reference"`` (the slow step of :mod:`gatelab.cell.evaluate`, autograd through it),
``"torch"`` (generated GEMM + fused pointwise step with a generated backward, the pointwise part
as generated torch calls), ``"c"`` (the same loops, the pointwise part as multi-threaded C kernels,
:mod:`gatelab.engine.c_pointwise`; CPU float32/float64), ``"scan"`` (parallel scan,
scan-parallel cells only), ``"triton"`` (the torch plan with Triton pointwise kernels and the
Triton scan; CUDA or ``TRITON_INTERPRET=1``). ``"auto"`` takes ``"scan"`` where the cell allows
it, ``"triton"`` for CUDA tensors, ``"torch"`` otherwise; ``"c"`` instead of ``"torch"`` (and the
C kernels inside ``"scan"``) only when ``GATELAB_CPU_KERNELS=c`` is set: on the shared 2-core
machine of benchmarks/RESULTS-speed.md the C kernels were faster at 1 thread but slower at 2
(OpenMP regions on oversubscribed cores), so they are opt-in until measured faster.
"""

from __future__ import annotations

import torch

from ..cell.evaluate import iterate
from .layout import EngineError, Layout

BACKENDS = ("auto", "torch", "c", "scan", "triton", "reference")


def check_backend(backend: str) -> str:
    """Validate a backend name (clear message instead of a KeyError later)."""
    if backend not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    return backend


def resolve(layout: Layout, backend: str, device: torch.device,
            dtype: torch.dtype = torch.float32) -> str:
    """The concrete backend ``"auto"`` stands for on this cell, device and dtype."""
    check_backend(backend)
    if backend == "c":
        from . import c_pointwise

        if device.type != "cpu" or dtype not in c_pointwise.DTYPES:
            raise EngineError(f"backend 'c' runs CPU float32/float64 tensors, not {dtype} on "
                              f"{device}; use backend='torch'")
        if not c_pointwise.available():
            raise EngineError("backend 'c' needs a C compiler (gcc/cc or $CC) that builds "
                              "OpenMP kernels; use backend='torch'")
    if backend == "scan" and not is_scan_parallel(layout):
        raise EngineError(f"cell {layout.cell.name!r} is not scan-parallel (a gate or candidate "
                          "depends on the previous state); use backend='torch'")
    if backend != "auto":
        return backend
    if is_scan_parallel(layout):
        return "scan"
    if device.type == "cuda" and triton_available():
        return "triton"
    return "c" if device.type == "cpu" and c_kernels_default() and c_kernels_ok(dtype) else "torch"


def c_kernels_default() -> bool:
    """Whether ``auto`` uses the C kernels on CPU (opt-in: ``GATELAB_CPU_KERNELS=c``)."""
    import os

    return os.environ.get("GATELAB_CPU_KERNELS", "") == "c"


def c_kernels_ok(dtype: torch.dtype) -> bool:
    """Whether the C pointwise kernels take CPU tensors of ``dtype`` here (a compiler found;
    :func:`gatelab.engine.c_pointwise.available` warns once when not)."""
    from . import c_pointwise

    return dtype in c_pointwise.DTYPES and c_pointwise.available()


def triton_available() -> bool:
    """Whether Triton can be imported (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("triton") is not None


def is_scan_parallel(layout: Layout) -> bool:
    """Scan-parallel: one state whose update is ``a * s + b`` with ``a``, ``b`` free of states."""
    from .plan import is_scan_parallel as scan_parallel

    return scan_parallel(layout.cell)


def run_layer(layout: Layout, tensors: dict[str, torch.Tensor], x: torch.Tensor,
              state0: tuple[torch.Tensor, ...], mask: torch.Tensor | None,
              backend: str) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Run one direction of one layer; see the module docstring for shapes."""
    backend = resolve(layout, backend, x.device, x.dtype)
    if backend == "reference":
        return run_reference(layout, tensors, x, state0, mask)
    if backend == "scan":
        from .scan import run_scan

        return run_scan(layout, tensors, x, state0, mask,
                        compiler="c" if x.device.type == "cpu" and c_kernels_default()
                        and c_kernels_ok(x.dtype) else "torch")
    from .autograd import run_fused

    return run_fused(layout, tensors, x, state0, mask, compiler=backend)


def run_reference(layout: Layout, tensors: dict[str, torch.Tensor], x: torch.Tensor,
                  state0: tuple[torch.Tensor, ...], mask: torch.Tensor | None):
    """The plain Python loop over :func:`gatelab.cell.evaluate.step` (autograd does backward)."""
    cell = layout.cell
    H = state0[0].shape[-1]
    params = layout.cell_params(tensors, H)
    states = dict(zip(cell.states, state0, strict=True))
    outs = []
    for t, r in enumerate(iterate(cell, x, states, params, live=mask)):
        states = r.states
        outs.append(r.output if mask is None else r.output * mask[t].unsqueeze(-1))
    return torch.stack(outs), tuple(states[s] for s in cell.states)
