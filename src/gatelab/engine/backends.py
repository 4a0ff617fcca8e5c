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

``"c"``: the generated loops with the pointwise part as multi-threaded C kernels
(:mod:`gatelab.engine.c_pointwise`; CPU float32/float64). ``"auto"`` uses ``"c"`` instead of
``"generated"`` (and the C kernels inside ``"scan"``) only when ``GATELAB_CPU_KERNELS=c`` is set:
on the shared 2-core machine of benchmarks/RESULTS-speed.md they were faster at 1 thread but
slower at 2 (OpenMP regions on oversubscribed cores), so they are opt-in until measured faster.

``"sequence"``: the compiled sequence kernel (:mod:`gatelab.engine.c_sequence`, same contract,
``run_sequence(layout, tensors, x, state0, mask)``), what ``"auto"`` takes on CPU for a cell
that is neither torch's, scan-parallel nor ``layer_norm``
(:data:`gatelab.engine.route.SEQUENCE_BY_DEFAULT`).

Which path a backend name takes (``"auto"`` included) is decided in one place,
:func:`gatelab.engine.route.route`; :func:`resolve` is its answer for one layer. A cell with
``layer_norm`` (a row reduction) runs the generated torch code with its backward taken by
torch's autograd; the C and Triton kernels refuse it.

The generated backends' backward is first-order code; :func:`run_layer` wraps them so that a
backward with ``create_graph=True`` (gradient penalties, Hessian-vector products) recomputes the
step with the ``reference`` loop and differentiates that: correct higher-order gradients, at the
reference loop's speed, never a silently wrong number.
"""

from __future__ import annotations

import torch

from ..cell.evaluate import iterate
from .layout import Layout

# the backend names and the one decision of which path runs (re-exported for older callers)
from .route import ALIASES, BACKENDS, check_backend, graph_capture, route  # noqa: F401


def resolve(layout: Layout, backend: str, device: torch.device,
            dtype: torch.dtype = torch.float32) -> str:
    """The path ``backend`` takes for one layer run by :func:`run_layer` on this cell, device
    and dtype: :func:`gatelab.engine.route.route`'s (the vendor path, which runs all layers at
    once, is taken before, by :mod:`gatelab.nn`)."""
    return route(layout.cell, backend=backend, device=device, dtype=dtype, vendor=False).path


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
    backend = resolve(layout, backend, x.device, x.dtype)  # the route, one layer's path
    if backend == "reference":
        return run_reference(layout, tensors, x, state0, mask)
    if backend == "sequence":  # one autograd node that takes the exact double-backward route itself
        return _run_generated(layout, tensors, x, state0, mask, backend)
    from .higher_order import with_reference_double_backward

    return with_reference_double_backward(
        lambda xs, s0, ts: _run_generated(layout, ts, xs, s0, mask, backend),
        lambda xs, s0, ts: run_reference(layout, ts, xs, s0, mask), x, state0, tensors)


def _run_generated(layout: Layout, tensors: dict[str, torch.Tensor], x: torch.Tensor,
                   state0: tuple[torch.Tensor, ...], mask: torch.Tensor | None, backend: str):
    if backend == "sequence":
        from .route import sequence_module

        return sequence_module().run_sequence(layout, tensors, x, state0, mask)
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
