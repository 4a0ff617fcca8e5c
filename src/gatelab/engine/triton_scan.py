"""Parallel scan of the linear recurrence ``h_t = a_t * h_{t-1} + b_t`` in Triton, with backward.

Scan-parallel cells (minGRU, minLSTM: no gate or candidate sees the previous state) reduce to this
recurrence, elementwise over ``(N, H)``. Each step is the affine map ``x -> a x + b``; composing
two maps is associative,

    (a1, b1) then (a2, b2)  =  (a1 * a2,  a2 * b1 + b2),

so ``tl.associative_scan`` computes every prefix in ``O(log T)`` depth. A program owns a block of
``BC`` columns of the flattened ``(N*H)`` and walks the time axis in chunks of ``BT`` rows,
carrying ``h`` from one chunk into the next: ``h = A_prefix * carry + B_prefix``.

Backward is the same scan run backwards in time. With ``g_t = dL/dh_t`` (total, through later
steps) and ``dh_t`` the incoming gradient::

    g_t = dh_t + a_{t+1} g_{t+1}      (g_T = dh_T, reverse recurrence)
    dL/db_t = g_t,   dL/da_t = g_t * h_{t-1},   dL/dh0 = a_1 g_1

Shapes: ``a``, ``b`` are ``(T, N, H)``, ``h0`` is ``(N, H)``, the result ``(T, N, H)``. Storage
may be fp32, bf16 or fp16; the scan runs in fp32.
"""

from __future__ import annotations

import torch

from .triton_pointwise import _interpreting, check_device

__all__ = ["triton_linear_scan", "linear_scan_reference"]


def _kernels():
    """The compiled kernels; imported on first use, so importing this module never imports
    triton."""
    from . import triton_scan_kernels

    return triton_scan_kernels


def _blocks(T: int, C: int) -> tuple[int, int]:
    """Rows per chunk and columns per program."""
    if _interpreting():
        # Each program is Python: use few, large ones.
        bc = min(1 << max(C - 1, 0).bit_length(), 1024)
        bt = min(1 << max(T - 1, 0).bit_length(), 256)
        return max(bt, 2), max(bc, 2)
    # On a GPU, a narrow column block gives many programs (C/32 of them) for the SMs; 64 rows
    # per chunk keep the scan's registers small. Not tuned on a GPU yet (none was available).
    return 64, 32


def _check(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> None:
    if a.dim() != 3 or a.shape != b.shape:
        raise ValueError(f"a and b must both be (T, N, H); got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if h0.shape != a.shape[1:]:
        raise ValueError(f"h0 must be (N, H) = {tuple(a.shape[1:])}, got {tuple(h0.shape)}")
    for name, t in (("a", a), ("b", b), ("h0", h0)):
        if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"{name} has dtype {t.dtype}; use float32, bfloat16 or float16")
    check_device([a, b, h0])


def _scan_forward(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    k = _kernels()
    T = a.shape[0]
    C = a.shape[1] * a.shape[2]
    h = torch.empty(a.shape, dtype=torch.promote_types(a.dtype, b.dtype), device=a.device)
    if h.numel() == 0:
        return h
    bt, bc = _blocks(T, C)
    k.scan_fwd[(-(-C // bc),)](a, b, h0, h, T, C, BT=bt, BC=bc)
    return h


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, h0):
        a, b, h0 = (t.detach().contiguous() for t in (a, b, h0))
        h = _scan_forward(a, b, h0)
        ctx.save_for_backward(a, h0, h)
        ctx.b_dtype = b.dtype
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dh):
        a, h0, h = ctx.saved_tensors
        dh = dh.contiguous()
        T = a.shape[0]
        C = a.shape[1] * a.shape[2]
        da = torch.empty_like(a)
        db = torch.empty(a.shape, dtype=ctx.b_dtype, device=a.device)
        dh0 = torch.empty_like(h0)
        if a.numel() == 0:
            return da, db, dh0.zero_()
        k = _kernels()
        bt, bc = _blocks(T, C)
        k.scan_bwd[(-(-C // bc),)](a, h0, h, dh, da, db, dh0, T, C, BT=bt, BC=bc)
        return da, db, dh0


def triton_linear_scan(a: torch.Tensor, b: torch.Tensor,
                       h0: torch.Tensor | None = None) -> torch.Tensor:
    """All states of ``h_t = a_t * h_{t-1} + b_t`` (elementwise), by a parallel scan.

    Args:
        a, b: ``(T, N, H)`` coefficients (fp32, bf16 or fp16; math is fp32).
        h0: ``(N, H)`` initial state (zeros when None).

    Returns:
        ``h`` of shape ``(T, N, H)``, ``h[t]`` being the state after step ``t``. Differentiable in
        ``a``, ``b`` and ``h0`` (the backward pass is the reverse scan, also in Triton).
    """
    if h0 is None:
        h0 = a.new_zeros(a.shape[1:])
    _check(a, b, h0)
    return _LinearScan.apply(a, b, h0)


def linear_scan_reference(a: torch.Tensor, b: torch.Tensor,
                          h0: torch.Tensor | None = None) -> torch.Tensor:
    """The same recurrence as a plain sequential loop (the baseline the scan is checked
    against)."""
    h = a.new_zeros(a.shape[1:]) if h0 is None else h0
    out = []
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]
        out.append(h)
    return torch.stack(out) if out else a.new_zeros(a.shape)
