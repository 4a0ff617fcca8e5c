"""Scan-parallel cells (``mingru``, ``minlstm``): no step-by-step loop over the sequence.

When no gate or candidate reads the state, the update is linear, ``h_t = a_t * h_{t-1} + b_t``
with ``a``, ``b`` functions of ``x_t`` only (found from the equations by
:func:`gatelab.engine.plan.linear_recurrence`). Then ``a`` and ``b`` for all steps come from one
GEMM, a generated pointwise function gives ``a``, ``b`` of many steps per call, and
:func:`linear_scan` solves the recurrence as a blocked parallel prefix: ``sqrt(T)`` chunks scanned
side by side, a short scan of the chunk carries, one fix-up. On the CPU the sequence is processed
in cache-sized time chunks (each the chunk's input GEMM, a pointwise call and a scan; backward the
same in reverse, with the chunk's share of the weight gradient), because whole-sequence passes
are bound by memory bandwidth there (:class:`_ChunkedScan`); on CUDA it is one pass.
It only multiplies and adds (no division by running products, no logarithms), so it is as
accurate as the sequential loop for gates of any sign or size.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from .layout import Layout

CHUNK_VALUES = 1 << 18  # values of a, b per time chunk on the CPU (1 MiB each in float32)
# (26 Nov, minGRU fwd+bwd at T=2048, 1 thread, interleaved: 2^18 was 10-33 % faster than 2^20 at
# N=64 I=H=256 and N=16 I=H=64, 2^21 slower still: a chunk's temporaries stay in the 2 MiB L2.)


def _scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor,
          reverse: bool = False, out: torch.Tensor | None = None) -> torch.Tensor:
    """Blocked scan, no autograd: ``h_t = a_t h_{t-1} + b_t`` (``reverse``: ``h_t = a_t h_{t+1}
    + b_t`` from the end). ``a``, ``b`` ``(T, *S)``, ``h0`` ``S`` -> ``(T, *S)``.

    ``C`` chunks of ``L ~ sqrt(T)`` steps are scanned side by side from a zero start (``L``
    vectorised steps), the state entering each chunk follows from a scan of the ``C`` chunk ends,
    and one fused multiply-add fixes every chunk up; the ``T - C*L`` leftover steps run one by one.
    ``out`` (contiguous, shape of ``b``) receives the result when given. On CPU float32/float64
    tensors, with ``GATELAB_CPU_KERNELS=c`` and where C kernels build, the C scan
    (:func:`gatelab.engine.c_scan.scan`: one pass, columns shared among the threads) runs
    instead: same result, one call instead of ``2 sqrt(T)`` small torch calls and three passes
    over memory.
    """
    if _c_scan_ok(a, b, h0):
        from .c_scan import scan

        return scan(a, b, h0, reverse, out)
    T = a.shape[0]
    h = torch.empty_like(b) if out is None else out
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


def _c_scan_ok(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> bool:
    from .backends import c_kernels_default, c_kernels_ok

    return (a.device.type == "cpu" and a.dtype == b.dtype == h0.dtype
            and h0.device.type == "cpu" and c_kernels_default() and c_kernels_ok(a.dtype))


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


def _writes_out(fns) -> bool:
    """Whether the generated ``a, b`` and their backward can write into given tensors: torch
    code (``out=``) whose inputs are all ``(rows, H)`` blocks (no broadcast vectors)."""
    return (not fns.plan.vectors and getattr(fns.fwd, "supports_out", False)
            and getattr(fns.bwd, "supports_out", False))


class _ChunkedScan(torch.autograd.Function):
    """The CPU path of a scan-parallel layer as one autograd function over the whole sequence:
    ``apply(fns, H, steps, mask, x (T*N, I), w_ih, b_ih, h0 (N, H), *vecs) -> (h (T, N, H),
    h_T)``.

    Forward, per time chunk of ``steps`` steps (cache-sized): the chunk's input GEMM
    ``gx = x W^T + b``, generated ``a, b`` from it, then the blocked scan written straight into
    ``h``. Backward, chunks in reverse: the reverse scan ``g_t = dh_t + a_{t+1} g_{t+1}`` (``a``
    kept from the forward), ``da = g * h_{t-1}``, ``db = g``, the generated vector-Jacobian
    product writing each block of the chunk's ``dgx`` in place, and while that chunk is still in
    cache its share of ``dW += dgx^T x``, ``db_ih``, ``dx = dgx W``. No per-chunk autograd nodes,
    no whole-sequence ``dgx``, no concatenation of chunk results or gradients (each was a
    further pass over the whole sequence in memory)."""

    @staticmethod
    def forward(ctx, fns, H: int, steps: int, mask, x, w, b_ih, h0, *vecs):
        from .gemm import linear

        TN = x.shape[0]
        N = h0.shape[0]
        T = TN // N
        n_x = len(fns.plan.xsyms)
        h_all = h0.new_empty(T, N, H)
        a_list = []  # per chunk: chunk-sized blocks are reused by the allocator from call to
        # call, a whole-sequence buffer is fresh memory (page faults) on every call
        direct = _writes_out(fns)
        b_buf = h0.new_empty(min(steps, T), N, H) if direct else None
        h = h0
        gxs = []
        for t0 in range(0, T, steps):
            n = min(steps, T - t0)
            xc = x[t0 * N:(t0 + n) * N]
            g = xc.new_zeros(n * N, 0) if w is None else linear(xc, w, b_ih)
            gxs.append(g)
            args = [g[:, k * H:(k + 1) * H] for k in range(n_x)] + list(vecs)
            a_c = h0.new_empty(n, N, H)
            a_list.append(a_c)
            if direct:  # the generated code writes a and b in place
                b = b_buf[:n]
                fns.fwd(*args, out=(a_c.view(n * N, H), b.view(n * N, H)))
            else:
                a, b = fns.fwd(*args)
                if torch.is_tensor(a):
                    a_c.copy_(a.view(n, N, H) if a.dim() == 2 and a.shape[0] == n * N else a)
                else:
                    a_c.fill_(a)
                b = (b.view(n, N, H) if torch.is_tensor(b) and b.dim() == 2
                     and b.shape[0] == n * N
                     else torch.as_tensor(b, dtype=h0.dtype).expand(n, N, H).contiguous())
            if mask is not None:  # padding: carry the state (a = 1, b = 0)
                m = mask[t0:t0 + n].unsqueeze(-1)
                a_c.masked_fill_(~m, 1.0)
                b = torch.where(m, b, 0.0)
            h = _scan(a_c, b.contiguous(), h, out=h_all[t0:t0 + n])[-1]
        ctx.fns, ctx.H, ctx.steps, ctx.mask = fns, H, steps, mask
        ctx.gxs, ctx.a_list = gxs, a_list  # intermediates, kept on ctx (not inputs or outputs)
        ctx.save_for_backward(x, w, b_ih, h0, h_all, *vecs)
        return h_all, h.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dh_all, dh_last):
        from .gemm import linear

        fns, H, steps, mask, gxs = ctx.fns, ctx.H, ctx.steps, ctx.mask, ctx.gxs
        x, w, b_ih, h0, h_all, *vecs = ctx.saved_tensors
        need = ctx.needs_input_grad
        TN = x.shape[0]
        N = h0.shape[0]
        T = TN // N
        n_x = len(fns.plan.xsyms)
        direct = _writes_out(fns)
        x_of = [fns.inputs.index(sym) for sym in fns.wrt]  # wrt are x blocks when direct
        dgx_buf = x.new_empty(min(steps, T) * N, n_x * H)  # one chunk, reused
        dx = x.new_zeros(x.shape) if need[4] else None
        w_t = w.t().contiguous() if need[4] and w is not None else None
        dw = torch.zeros_like(w) if need[5] and w is not None else None
        db_ih = torch.zeros_like(b_ih) if need[6] and b_ih is not None else None
        dvecs: list = [None] * len(vecs)
        carry = torch.zeros_like(h0) if dh_last is None else dh_last
        dh_all = torch.zeros_like(h_all) if dh_all is None else dh_all
        g_buf = h_all.new_empty(min(steps, T), N, H)
        da_buf = h_all.new_empty(min(steps, T), N, H)
        for t0 in reversed(range(0, T, steps)):
            n = min(steps, T - t0)
            a, dh = ctx.a_list[t0 // steps], dh_all[t0:t0 + n]
            g = g_buf[:n]
            torch.add(dh[n - 1], carry, out=g[n - 1])
            if n > 1:  # (dh may be an expanded view: reshape copies only then)
                _scan(a[1:], dh[:n - 1], g[n - 1], reverse=True, out=g[:n - 1])
            carry = a[0] * g[0]
            da = da_buf[:n]
            if n > 1:
                torch.mul(g[1:], h_all[t0:t0 + n - 1], out=da[1:])
            torch.mul(g[0], h_all[t0 - 1] if t0 else h0, out=da[0])
            db = g
            if mask is not None:
                m = mask[t0:t0 + n].unsqueeze(-1)
                da, db = torch.where(m, da, 0.0), torch.where(m, db, 0.0)
            rows = gxs[t0 // steps]
            args = [rows[:, k * H:(k + 1) * H] for k in range(n_x)] + list(vecs)
            drows = dgx_buf[:n * N]
            cot = (da.reshape(n * N, H), db.reshape(n * N, H))
            if direct:  # each gradient block written straight into dgx
                outs = tuple(drows[:, k * H:(k + 1) * H] for k in x_of)
                grads = dict(zip(fns.wrt, fns.bwd(*args, *cot, out=outs), strict=True))
            else:
                grads = dict(zip(fns.wrt, fns.bwd(*args, *cot), strict=True))
            for k, sym in enumerate(fns.inputs[:n_x]):
                if not (direct and sym in grads):
                    drows[:, k * H:(k + 1) * H] = grads.get(sym, 0.0)
            for j, (sym, v) in enumerate(zip(fns.inputs[n_x:], vecs, strict=True)):
                gv = grads.get(sym, 0.0)
                if not torch.is_tensor(gv):
                    if gv == 0.0:
                        continue
                    gv = torch.full((n * N, H), gv, dtype=v.dtype)
                gv = gv.expand(n * N, H)
                gv = gv.sum(0) if v.dim() == 1 else gv
                dvecs[j] = gv if dvecs[j] is None else dvecs[j] + gv
            if w is not None and n_x:  # this chunk's share of the input GEMM's gradients
                xc = x[t0 * N:(t0 + n) * N]
                if dw is not None:
                    dw.add_(linear(drows.t().contiguous(), xc.t().contiguous()))
                if db_ih is not None:
                    db_ih.add_(drows.sum(0))
                if dx is not None:
                    dx[t0 * N:(t0 + n) * N] = linear(drows, w_t)
        dvecs = [torch.zeros_like(v) if d is None else d for d, v in zip(dvecs, vecs, strict=True)]
        return None, None, None, None, dx, dw, db_ih, carry, *dvecs


def run_scan(layout: Layout, tensors: dict[str, torch.Tensor], x: torch.Tensor,
             state0: tuple[torch.Tensor, ...], mask: torch.Tensor | None,
             compiler: str = "torch"):
    """One direction of one layer of a scan-parallel cell (contract of :mod:`backends`);
    ``compiler``: the backend of the generated ``a``, ``b`` functions (``"c"``: CPU only).
    Cells beyond the one-state fast path go to :func:`.scan_cells.run_scan_cells`."""
    from .gemm import project
    from .plan import has_fast_scan, scan_functions

    if not has_fast_scan(layout.cell):
        from .scan_cells import run_scan_cells

        return run_scan_cells(layout, tensors, x, state0, mask)

    fns = scan_functions(layout.cell, layout.bias_flag(tensors), compiler)
    T, N, _ = x.shape
    (h0,) = state0
    H = h0.shape[-1]
    w, b_ih = tensors.get("weight_ih"), tensors.get("bias_ih")
    x2 = x.reshape(T * N, -1)
    vecs = [tensors[v] for v in fns.plan.vector_names]
    if not x.is_cuda:
        # On a CPU a whole-sequence pass is bound by memory traffic; chunks of CHUNK_VALUES
        # values stay in cache (the gain is in benchmarks/RESULTS-speed.md).
        steps = max(16, CHUNK_VALUES // max(1, N * H))
        h_all, h = _ChunkedScan.apply(fns, H, steps, mask, x2, w, b_ih, h0, *vecs)
        return (h_all if mask is None else h_all * mask.unsqueeze(-1)), (h,)
    # On CUDA: one pass over the whole sequence (the Triton scan).
    gx = x2.new_zeros(T * N, 0) if w is None else project(x2, w, b_ih)
    a, b = _Coefficients.apply(fns, H, gx, *vecs)
    a, b = a.view(T, N, H), b.view(T, N, H)
    if mask is not None:  # padding: carry the state (a = 1, b = 0)
        m = mask.unsqueeze(-1)
        a, b = torch.where(m, a, 1.0), torch.where(m, b, 0.0)
    h_all = linear_scan(a, b, h0)
    h = h_all[-1]
    out = h_all if mask is None else h_all * mask.unsqueeze(-1)
    return out, (h,)
