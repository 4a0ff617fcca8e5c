"""Triton kernels of the linear scan (see :mod:`gatelab.engine.triton_scan` for the math).

Kept apart so that ``triton_scan`` can be imported without triton; ``@triton.jit`` reads these
functions' source through ``inspect``, so they live at module level in a real file.
"""

import triton
import triton.language as tl


@triton.jit
def _combine(a1, b1, a2, b2):
    # (a1, b1) is the earlier map, (a2, b2) the later one: x -> a2 (a1 x + b1) + b2.
    return a1 * a2, a2 * b1 + b2


@triton.jit
def scan_fwd(a_ptr, b_ptr, h0_ptr, h_ptr, T, C,
             BT: tl.constexpr, BC: tl.constexpr):
    cols = tl.program_id(0).to(tl.int64) * BC + tl.arange(0, BC)
    cmask = cols < C
    carry = tl.load(h0_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    rows = tl.arange(0, BT)
    for t0 in range(0, T, BT):
        t = t0 + rows
        m = (t < T)[:, None] & cmask[None, :]
        off = t.to(tl.int64)[:, None] * C + cols[None, :]
        # Padding rows are the identity map (1, 0), so the last row carries the true h_T.
        a = tl.load(a_ptr + off, mask=m, other=1.0).to(tl.float32)
        b = tl.load(b_ptr + off, mask=m, other=0.0).to(tl.float32)
        A, B = tl.associative_scan((a, b), 0, _combine)
        h = A * carry[None, :] + B
        tl.store(h_ptr + off, h.to(h_ptr.dtype.element_ty), mask=m)
        carry = tl.sum(tl.where((rows == BT - 1)[:, None], h, 0.0), axis=0)


# PLR0913: a Triton kernel takes every pointer and size as an argument
@triton.jit
def scan_bwd(a_ptr, h0_ptr, h_ptr, dh_ptr, da_ptr, db_ptr, dh0_ptr, T, C,  # noqa: PLR0913
             BT: tl.constexpr, BC: tl.constexpr):
    cols = tl.program_id(0).to(tl.int64) * BC + tl.arange(0, BC)
    cmask = cols < C
    carry = tl.zeros([BC], tl.float32)  # g_{T+1} = 0
    h0 = tl.load(h0_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    rows = tl.arange(0, BT)
    n_chunks = tl.cdiv(T, BT)
    for k in range(0, n_chunks):
        t = (n_chunks - 1 - k) * BT + rows
        m = (t < T)[:, None] & cmask[None, :]
        off = t.to(tl.int64)[:, None] * C + cols[None, :]
        # g_t = a_{t+1} g_{t+1} + dh_t: coefficients are a shifted by one step (0 past T).
        nxt = m & (t + 1 < T)[:, None]
        a_next = tl.load(a_ptr + off + C, mask=nxt, other=0.0).to(tl.float32)
        a_next = tl.where(m, a_next, 1.0)  # padding rows: identity
        d = tl.load(dh_ptr + off, mask=m, other=0.0).to(tl.float32)
        A, B = tl.associative_scan((a_next, d), 0, _combine, reverse=True)
        g = A * carry[None, :] + B
        carry = tl.sum(tl.where((rows == 0)[:, None], g, 0.0), axis=0)
        # h_{t-1}: the previous row of the output, or h0 for the first step.
        first = (t == 0)[:, None]
        prev = tl.load(h_ptr + off - C, mask=m & ~first, other=0.0).to(tl.float32)
        prev = tl.where(first, h0[None, :], prev)
        tl.store(db_ptr + off, g.to(db_ptr.dtype.element_ty), mask=m)
        tl.store(da_ptr + off, (g * prev).to(da_ptr.dtype.element_ty), mask=m)
    # After the loop, carry is g_1 (first row); dL/dh0 = a_1 g_1.
    a1 = tl.load(a_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    tl.store(dh0_ptr + cols, (a1 * carry).to(dh0_ptr.dtype.element_ty), mask=cmask)
