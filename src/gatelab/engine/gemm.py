"""Matrix products of the engine, routed to oneDNN on the CPU where it is faster.

``torch.mm`` on CPU float32 calls MKL's sgemm, which is slower than oneDNN (the library
``torch.nn.LSTM`` itself uses on CPU) for the engine's shapes (benchmarks/RESULTS-speed.md,
"Measurements behind the engine's choices"). So large float32 CPU products go through
``torch.ops.mkldnn._linear_pointwise`` (oneDNN inner product, the op TorchInductor emits for
``nn.Linear``); anything else (float64, CUDA, a build without oneDNN) uses plain torch.
"""

from __future__ import annotations

import torch

_ONEDNN: bool | None = None


def _onednn_ok() -> bool:
    global _ONEDNN
    if _ONEDNN is None:
        try:
            a, w = torch.ones(2, 3), torch.ones(4, 3)
            r = torch.ops.mkldnn._linear_pointwise(a, w, None, "none", [], "")
            _ONEDNN = bool(torch.equal(r, torch.full((2, 4), 3.0)))
        except (RuntimeError, AttributeError, NotImplementedError):
            _ONEDNN = False
    return _ONEDNN


def _use_onednn(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32 and _onednn_ok()


def linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w.T (+ bias)``: ``x (M, K)``, ``w (N, K)``, ``bias (N,)`` -> ``(M, N)``."""
    differentiable = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, w, bias))
    if _use_onednn(x) and not differentiable and x.numel() * w.shape[0] >= _ONEDNN_MIN:
        return torch.ops.mkldnn._linear_pointwise(x, w, bias, "none", [], "")
    return torch.nn.functional.linear(x, w, bias)


# Below about M*K*N = 2^20 multiply-adds oneDNN's per-call cost outweighs its speed, so small
# products stay on MKL (the crossover is recorded in benchmarks/RESULTS-speed.md).
_ONEDNN_MIN = 1 << 20


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b``: ``(M, K) @ (K, N)``."""
    if _use_onednn(a):
        return linear(a, b.t().contiguous())
    return a @ b


def weight_grad(dy: torch.Tensor, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """``dy.T @ x`` summed over all rows: ``dy (M, N)``, ``x (M, K)`` -> ``(N, K)``.

    oneDNN wants both operands transposed; for many rows the transposes are made per chunk of
    ``chunk`` rows, which keeps each transposed block in cache."""
    if not _use_onednn(dy):
        return dy.t() @ x
    out = None
    for i in range(0, dy.shape[0], chunk):
        part = linear(dy[i:i + chunk].t().contiguous(), x[i:i + chunk].t().contiguous())
        out = part if out is None else out.add_(part)
    return out


class _Project(torch.autograd.Function):
    """``x @ w.T + b`` with forward and backward products through :func:`linear`."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return linear(x, w, b)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        need = ctx.needs_input_grad
        dx = matmul(dy, w) if need[0] else None
        dw = weight_grad(dy, x) if need[1] else None
        db = dy.sum(0) if ctx.has_bias and need[2] else None
        return dx, dw, db


def project(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Differentiable ``x @ w.T + b`` (``x (M, K)``, ``w (N, K)``) whose three products all use
    :func:`linear`'s fast path; the same as ``torch.nn.functional.linear`` otherwise."""
    if not _use_onednn(x):
        return torch.nn.functional.linear(x, w, b)
    return _Project.apply(x, w, b)
