"""Scan-parallel cells (``mingru``, ``minlstm``): no step-by-step loop over the sequence.

When no gate or candidate reads the state, the update is linear, ``h_t = a_t * h_{t-1} + b_t``
with ``a``, ``b`` functions of ``x_t`` only (found from the equations by
:func:`gatelab.engine.plan.linear_recurrence`). Then ``a`` and ``b`` for all steps come from one
GEMM, a generated pointwise function gives ``a``, ``b`` of many steps per call, and
:func:`linear_scan` solves the recurrence as a blocked parallel prefix: ``sqrt(T)`` chunks scanned
side by side, a short scan of the chunk carries, one fix-up. On the CPU the sequence is processed
in cache-sized time chunks (each a pointwise call plus a scan), because whole-sequence passes
are bound by memory bandwidth there; on CUDA it is one pass.
It only multiplies and adds (no division by running products, no logarithms), so it is as
accurate as the sequential loop for gates of any sign or size.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from .layout import Layout

CHUNK_VALUES = 1 << 20  # values of a, b per time chunk on the CPU (4 MiB each in float32)


def _scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor,
          reverse: bool = False) -> torch.Tensor:
    """Blocked scan, no autograd: ``h_t = a_t h_{t-1} + b_t`` (``reverse``: ``h_t = a_t h_{t+1}
    + b_t`` from the end). ``a``, ``b`` ``(T, *S)``, ``h0`` ``S`` -> ``(T, *S)``.

    ``C`` chunks of ``L ~ sqrt(T)`` steps are scanned side by side from a zero start (``L``
    vectorised steps), the state entering each chunk follows from a scan of the ``C`` chunk ends,
    and one fused multiply-add fixes every chunk up; the ``T - C*L`` leftover steps run one by one.
    """
    T = a.shape[0]
    h = torch.empty_like(b)
    L = max(1, math.isqrt(T))
    C = T // L
    main = C * L
    if reverse:  # the chunked part is the last C*L steps; the leftover comes first
        lo, hi = T - main, T
    else:
        lo, hi = 0, main
    if C > 1:
        a2, b2 = a[lo:hi].view(C, L, *a.shape[1:]), b[lo:hi].view(C, L, *b.shape[1:])
        hl, al = h[lo:hi].view(C, L, *b.shape[1:]), torch.empty_like(a2)
        order = range(L - 1, -1, -1) if reverse else range(L)
        prev = None
        for j in order:  # level 1: all chunks at once, each from a zero start
            if prev is None:
                hl[:, j], al[:, j] = b2[:, j], a2[:, j]
            else:
                torch.addcmul(b2[:, j], a2[:, j], hl[:, prev], out=hl[:, j])
                torch.mul(a2[:, j], al[:, prev], out=al[:, j])
            prev = j
        last = 0 if reverse else L - 1
        carry = torch.empty(C, *h0.shape, dtype=b.dtype, device=b.device)
        chunks = range(C - 1, -1, -1) if reverse else range(C)
        before = None
        for c in chunks:  # level 2: the state entering each chunk
            if before is None:
                carry[c] = h0
            else:
                torch.addcmul(hl[before, last], al[before, last], carry[before], out=carry[c])
            before = c
        hl.addcmul_(al, carry.unsqueeze(1))  # fix-up: h = h_local + (prod a) * carry
        state = h[lo] if reverse else h[hi - 1]
    else:
        lo, hi = (T, T) if reverse else (0, 0)
        state = h0
    rest = range(lo - 1, -1, -1) if reverse else range(hi, T)
    for t in rest:  # the leftover steps
        state = torch.addcmul(b[t], a[t], state, out=h[t])
    return h


def _scan_impl(a, b, h0, use_triton: bool, reverse: bool = False):
    if use_triton:
        from .triton_scan import triton_linear_scan

        if reverse:
            return triton_linear_scan(a.flip(0).contiguous(), b.flip(0).contiguous(),
                                      h0.contiguous()).flip(0)
        return triton_linear_scan(a.contiguous(), b.contiguous(), h0.contiguous())
    return _scan(a, b, h0, reverse)


class LinearScan(torch.autograd.Function):
    """``h = scan(a, b, h0)`` with the backward as a reverse scan of the same kind:
    ``g_t = dh_t + a_{t+1} g_{t+1}``; ``db = g``, ``da_t = g_t h_{t-1}``, ``dh0 = a_0 g_0``."""

    @staticmethod
    def forward(ctx, a, b, h0, use_triton: bool):
        h = _scan_impl(a, b, h0, use_triton)
        ctx.save_for_backward(a, h0, h)
        ctx.use_triton = use_triton
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, dh):
        a, h0, h = ctx.saved_tensors
        T = a.shape[0]
        g = torch.empty_like(dh)
        g[T - 1] = dh[T - 1]
        if T > 1:  # views only: coefficients a[1:], inputs dh[:-1], starting from g[T-1]
            g[:T - 1] = _scan_impl(a[1:], dh[:T - 1], g[T - 1], ctx.use_triton, reverse=True)
        da = torch.empty_like(g)
        torch.mul(g[1:], h[:-1], out=da[1:])
        torch.mul(g[0], h0, out=da[0])
        return da, g, a[0] * g[0], None


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """Solve ``h_t = a_t * h_{t-1} + b_t`` for all t: ``(T, N, H), (T, N, H), (N, H) -> (T, N, H)``.

    Differentiable in ``a``, ``b`` and ``h0``. Uses
    ``gatelab.engine.triton_scan.triton_linear_scan`` (same signature) on CUDA tensors.

    >>> a, b = torch.full((3, 1, 1), 0.5), torch.ones(3, 1, 1)
    >>> linear_scan(a, b, torch.zeros(1, 1)).flatten().tolist()
    [1.0, 1.5, 1.75]
    """
    if a.shape != b.shape or a.shape[1:] != h0.shape:
        raise ValueError(f"linear_scan wants a, b (T, N, H) and h0 (N, H); got "
                         f"{tuple(a.shape)}, {tuple(b.shape)}, {tuple(h0.shape)}")
    from .backends import triton_available

    return LinearScan.apply(a, b, h0, a.is_cuda and triton_available())


class _Coefficients(torch.autograd.Function):
    """``(a, b)`` of all steps from the input pre-activations ``gx (T*N, G*H)`` with the generated
    backward writing each block of ``dgx`` once (no autograd graph over column slices)."""

    @staticmethod
    def forward(ctx, fns, H: int, gx, *vecs):
        args = [gx[:, k * H:(k + 1) * H] for k in range(len(fns.plan.xsyms))] + list(vecs)
        shape = (gx.shape[0], H)
        a, b = (v.expand(shape) if torch.is_tensor(v) else gx.new_full(shape, v)
                for v in fns.fwd(*args))
        ctx.fns, ctx.H = fns, H
        ctx.save_for_backward(gx, *vecs)
        return a.contiguous(), b.contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, da, db):
        fns, H = ctx.fns, ctx.H
        gx, *vecs = ctx.saved_tensors
        n_x = len(fns.plan.xsyms)
        args = [gx[:, k * H:(k + 1) * H] for k in range(n_x)] + list(vecs)
        da = torch.zeros_like(gx[:, :H]) if da is None else da
        db = torch.zeros_like(gx[:, :H]) if db is None else db
        grads = dict(zip(fns.wrt, fns.bwd(*args, da, db), strict=True))
        dgx = torch.empty_like(gx)
        for k, sym in enumerate(fns.inputs[:n_x]):
            g = grads.get(sym, 0.0)
            dgx[:, k * H:(k + 1) * H] = g
        dvecs = []
        for sym, v in zip(fns.inputs[n_x:], vecs, strict=True):
            g = grads.get(sym, 0.0)
            g = torch.as_tensor(g, dtype=v.dtype).expand(gx.shape[0], H)
            dvecs.append(g.sum(0) if v.dim() == 1 else g)
        return None, None, dgx, *dvecs


def run_scan(layout: Layout, tensors: dict[str, torch.Tensor], x: torch.Tensor,
             state0: tuple[torch.Tensor, ...], mask: torch.Tensor | None):
    """One direction of one layer of a scan-parallel cell (contract of :mod:`backends`)."""
    from .gemm import project
    from .plan import scan_functions

    fns = scan_functions(layout.cell, layout.bias_flag(tensors))
    T, N, _ = x.shape
    (h0,) = state0
    H = h0.shape[-1]
    w, b_ih = tensors.get("weight_ih"), tensors.get("bias_ih")
    x2 = x.reshape(T * N, -1)
    gx = x2.new_zeros(T * N, 0) if w is None else project(x2, w, b_ih)
    vecs = [tensors[v] for v in fns.plan.vector_names]
    if x.is_cuda:
        steps = T  # one pass over the whole sequence
    else:
        # On a CPU a whole-sequence pass is bound by memory traffic; chunks of about 2^20 values
        # stay in cache (measured at T=2048 N=64 H=256: 3.7 s unchunked vs below 1.2 s).
        steps = max(16, CHUNK_VALUES // max(1, N * H))
    hs, h = [], h0
    for t0, g in zip(range(0, T, steps), gx.split(steps * N), strict=False):
        n = g.shape[0] // N
        a, b = _Coefficients.apply(fns, H, g, *vecs)
        a, b = a.view(n, N, H), b.view(n, N, H)
        if mask is not None:  # padding: carry the state (a = 1, b = 0)
            m = mask[t0:t0 + n].unsqueeze(-1)
            a, b = torch.where(m, a, 1.0), torch.where(m, b, 0.0)
        hc = linear_scan(a, b, h)
        hs.append(hc)
        h = hc[-1]
    h_all = hs[0] if len(hs) == 1 else torch.cat(hs)
    out = h_all if mask is None else h_all * mask.unsqueeze(-1)
    return out, (h,)
