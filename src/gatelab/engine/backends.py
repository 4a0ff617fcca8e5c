"""Pick and run a backend for one layer and direction of a recurrent network.

Every backend has the same contract::

    run_layer(layout, tensors, x, state0, mask, backend) -> (out, states)

``x`` ``(T, N, I)`` time-major; ``state0`` one ``(N, H)`` tensor per cell state (cell order);
``tensors`` the packed parameters of :class:`~gatelab.engine.layout.Layout` (``weight_ih``, ...);
``mask`` ``(T, N)`` bool or None: where False the states are carried unchanged and the output is
zero (padding of variable-length batches). ``out`` is ``(T, N, H)``, ``states`` the final states.

Backends: ``"reference"`` (the slow step of :mod:`gatelab.cell.evaluate`, autograd through it),
``"generated"`` (gatelab's own engine: generated GEMM + fused pointwise step with a generated
backward; ``"torch"`` is its former name and still accepted), ``"scan"`` (parallel scan,
every cell the analysis calls scan-parallel), ``"triton"`` (the generated plan with Triton
pointwise kernels and the Triton scan; CUDA or ``TRITON_INTERPRET=1``), ``"vendor"`` (torch's
own fused kernels, for a cell :func:`gatelab.engine.vendor.vendor_match` proves equal to torch's
LSTM/GRU/RNN; run by :class:`gatelab.nn.RNN` for all layers at once, not here).

``"sequence"``: the whole time loop of a layer and direction, forward and backward, in one
generated C call per pass (:mod:`gatelab.engine.c_sequence`; CPU float32/float64; not for
``layer_norm`` cells). Without a C compiler it warns once and the generated step runs.

``"c"``: the generated loops with the pointwise part as multi-threaded C kernels
(:mod:`gatelab.engine.c_pointwise`; CPU float32/float64). ``"auto"`` uses ``"c"`` instead of
``"generated"`` (and the C kernels inside ``"scan"``) only when ``GATELAB_CPU_KERNELS=c`` is set:
on the shared 2-core machine of benchmarks/RESULTS-speed.md they were faster at 1 thread but
slower at 2 (OpenMP regions on oversubscribed cores), so they are opt-in until measured faster.

``"auto"`` takes ``"vendor"`` where the proof holds, else ``"scan"`` where the cell allows it,
else ``"generated"`` (on CUDA too: ``"triton"`` stays opt-in, see :data:`TRITON_BY_DEFAULT`). A
cell with ``layer_norm`` (a row reduction) runs the generated torch code with its backward taken
by torch's autograd; the C and Triton kernels refuse it.

The generated backends' backward is first-order code; :func:`run_layer` wraps them so that a
backward with ``create_graph=True`` (gradient penalties, Hessian-vector products) recomputes the
step with the ``reference`` loop and differentiates that: correct higher-order gradients, at the
reference loop's speed, never a silently wrong number. The sequence kernel's own node does the
same in its backward (one node instead of two: the wrapper's second graph cost a fifth of a
small layer's time).
"""

from __future__ import annotations

import torch

from ..cell.evaluate import iterate
from .layout import EngineError, Layout

BACKENDS = ("auto", "vendor", "generated", "sequence", "c", "scan", "triton", "reference")
ALIASES = {"torch": "generated"}  # the generated backend's name before the vendor path existed

# Triton is the default on CUDA only once benchmarks/gpu.sh has passed its parity checks on a
# real GPU (recorded in benchmarks/RESULTS-gpu.md). No session has had a GPU yet, so "auto" runs
# the generated torch backend on CUDA and backend="triton" stays opt-in.
TRITON_BY_DEFAULT = False


def check_backend(backend: str) -> str:
    """Validate a backend name and return its canonical form (``"torch"`` -> ``"generated"``)."""
    backend = ALIASES.get(backend, backend) if isinstance(backend, str) else backend
    if backend not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; expected one of "
                          f"{', '.join(BACKENDS)} ('torch' is an alias of 'generated')")
    return backend


def resolve(layout: Layout, backend: str, device: torch.device,
            dtype: torch.dtype = torch.float32) -> str:
    """The concrete backend ``backend`` stands for on this cell, device and dtype, for one layer
    run by :func:`run_layer` (the vendor path, which runs all layers at once, is decided by
    :func:`gatelab.engine.vendor.vendor_match` before)."""
    backend = check_backend(backend)
    if backend == "c":
        from . import c_pointwise

        if device.type != "cpu" or dtype not in c_pointwise.DTYPES:
            raise EngineError(f"backend 'c' runs CPU float32/float64 tensors, not {dtype} on "
                              f"{device}; use backend='generated'")
        if not c_pointwise.available():
            raise EngineError("backend 'c' needs a C compiler (gcc/cc or $CC) that builds "
                              "OpenMP kernels; use backend='generated'")
    if backend == "sequence":
        return _sequence_or_generated(layout, device, dtype)
    if backend == "scan" and not is_scan_parallel(layout):
        from ..analysis.core import scan_parallel
        from ..analysis.memory import find_memory

        why = "; ".join(scan_parallel(layout.cell, find_memory(layout.cell))[1])
        raise EngineError(f"cell {layout.cell.name!r} is not scan-parallel ({why}); "
                          "use backend='generated'")
    if backend not in ("auto", "vendor"):
        return backend
    if is_scan_parallel(layout):
        return "scan"
    from .plan import uses_layer_norm

    if uses_layer_norm(layout.cell):  # a row reduction: torch code, not the C/Triton kernels
        return "generated"
    if device.type == "cuda" and TRITON_BY_DEFAULT and triton_available():
        return "triton"
    if device.type == "cpu" and c_kernels_default() and c_kernels_ok(dtype):
        return "c"
    return "generated"


def _sequence_or_generated(layout: Layout, device: torch.device, dtype: torch.dtype) -> str:
    """``"sequence"`` where it can run; ``"generated"`` (warned once) without a C compiler."""
    from . import c_pointwise
    from .plan import uses_layer_norm

    if device.type != "cpu" or dtype not in c_pointwise.DTYPES:
        raise EngineError(f"backend 'sequence' runs CPU float32/float64 tensors, not {dtype} on "
                          f"{device}; use backend='generated'")
    if uses_layer_norm(layout.cell):
        raise EngineError(f"cell {layout.cell.name!r} uses layer_norm, a reduction over the "
                          "hidden units, which the sequence kernel does not compute; use "
                          "backend='generated'")
    return "sequence" if c_pointwise.available() else "generated"


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
    """The analysis' scan-parallel verdict: the memory's update is affine in the memory with
    state-free coefficients (any number of states, readouts, output gates)."""
    from .plan import is_scan_parallel as scan_parallel

    return scan_parallel(layout.cell)


def run_layer(layout: Layout, tensors: dict[str, torch.Tensor], x: torch.Tensor,
              state0: tuple[torch.Tensor, ...], mask: torch.Tensor | None,
              backend: str) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Run one direction of one layer; see the module docstring for shapes."""
    if graph_capture():
        # Exporters and compilers cannot see through the generated engine's autograd.Function
        # and in-place buffers: they get the reference step's plain torch ops (unrolled).
        return run_traceable(layout, tensors, x, state0, mask)
    backend = resolve(layout, backend, x.device, x.dtype)
    if backend == "reference":
        return run_reference(layout, tensors, x, state0, mask)
    if backend == "sequence":  # one autograd node that takes the exact route itself
        from .c_sequence import run_sequence

        return run_sequence(layout, tensors, x, state0, mask)
    from .higher_order import with_reference_double_backward

    return with_reference_double_backward(
        lambda xs, s0, ts: _run_generated(layout, ts, xs, s0, mask, backend),
        lambda xs, s0, ts: run_reference(layout, ts, xs, s0, mask), x, state0, tensors)


def graph_capture() -> bool:
    """Whether an exporter or compiler is tracing (``torch.onnx.export``, ``torch.jit.trace``,
    ``torch.export``, ``torch.compile``): the engine then runs the reference loop."""
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
                or torch.compiler.is_compiling())


def _run_generated(layout: Layout, tensors: dict[str, torch.Tensor], x: torch.Tensor,
                   state0: tuple[torch.Tensor, ...], mask: torch.Tensor | None, backend: str):
    if backend == "scan":
        from .scan import run_scan

        return run_scan(layout, tensors, x, state0, mask,
                        compiler="c" if x.device.type == "cpu" and c_kernels_default()
                        and c_kernels_ok(x.dtype) else "torch")
    from .autograd import run_fused

    return run_fused(layout, tensors, x, state0, mask,
                     compiler=backend if backend in ("triton", "c") else "torch")


def run_traceable(layout: Layout, tensors: dict[str, torch.Tensor], x: torch.Tensor,
                  state0: tuple[torch.Tensor, ...], mask: torch.Tensor | None):
    """The reference loop as seen by exporters and compilers: with ``layout.traceable`` (the
    closures of :func:`gatelab.cell.evaluate.traceable_step`, attached by :mod:`gatelab.nn`'s
    modules when built) it has no SymPy in it, so ``torch.compile`` traces one graph."""
    fn = getattr(layout, "traceable", None)
    if fn is None:
        return run_reference(layout, tensors, x, state0, mask)
    cell = layout.cell
    (inp,) = cell.inputs
    params = layout.cell_params(tensors, state0[0].shape[-1])
    states = dict(zip(cell.states, state0, strict=True))
    outs = []
    for t in range(x.shape[0]):
        new, out = fn({**params, **states, inp: x[t]})
        if mask is not None:
            keep = mask[t].unsqueeze(-1)
            new = {s: torch.where(keep, new[s], states[s]) for s in cell.states}
            out = out * keep
        states = new
        outs.append(out)
    return torch.stack(outs), tuple(states[s] for s in cell.states)


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
