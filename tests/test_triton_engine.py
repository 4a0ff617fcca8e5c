"""``backend="triton"`` (generated Triton kernels, run by the interpreter on the CPU) equals
``backend="torch"`` for every zoo cell: outputs, final states and every gradient."""

from __future__ import annotations

import pytest
import torch

import gatelab.nn as gnn
from gatelab import load_cell, zoo_names
from gatelab.engine.layout import EngineError
from gatelab.engine.plan import uses_layer_norm

T, N, I, H = 5, 2, 3, 4


def _size(name) -> int:
    return H if load_cell(name).hidden_inputs else I  # `input x : hidden`: I == H


def _pair(name, **kw):
    torch.manual_seed(0)
    ref = gnn.RNN(name, _size(name), H, backend="torch", **kw)
    mine = gnn.RNN(name, _size(name), H, backend="triton", **kw)
    mine.load_state_dict(ref.state_dict())
    return ref, mine


def _flat(h_n):
    return h_n if isinstance(h_n, tuple) else (h_n,)


def _run(model, x, hx, w):
    out, h_n = model(x, hx)
    loss = (out * w).sum() + sum((s * (k + 2)).sum() for k, s in enumerate(_flat(h_n)))
    leaves = [x, *_flat(hx), *model.parameters()]
    return out, _flat(h_n), torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("name", zoo_names())
def test_triton_backend_equals_torch_backend(name):
    if uses_layer_norm(load_cell(name)):  # a row reduction: refused clearly, never run wrongly
        with pytest.raises(EngineError, match="layer_norm"):
            gnn.RNN(name, I, H, backend="triton")(torch.randn(T, N, I))
        return
    ref, mine = _pair(name)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, N, _size(name), generator=g).requires_grad_()
    hx = tuple(torch.randn(1, N, H, generator=g).requires_grad_() for _ in ref.state_names)
    hx = hx[0] if len(hx) == 1 else hx
    w = torch.randn(T, N, H, generator=g)
    out_r, st_r, gr_r = _run(ref, x, hx, w)
    out_m, st_m, gr_m = _run(mine, x, hx, w)
    assert (out_r - out_m).abs().max().item() < 1e-5
    for a, b in zip(st_r, st_m, strict=True):
        assert (a - b).abs().max().item() < 1e-5
    names = ["x", *(f"h0[{s}]" for s in ref.state_names), *(n for n, _ in ref.named_parameters())]
    for label, a, b in zip(names, gr_r, gr_m, strict=True):
        assert (a - b).abs().max().item() < 1e-5, f"{name}: gradient of {label}"


def test_triton_backend_packed_bidirectional_two_layers():
    """Masks (variable lengths), the reverse direction and a second layer run through the same
    kernels."""
    ref, mine = _pair("gru", num_layers=2, bidirectional=True)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(T, N, I, generator=g)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([5, 3]))
    out_r, h_r = ref(packed)
    out_m, h_m = mine(packed)
    assert (out_r.data - out_m.data).abs().max().item() < 1e-5
    assert (h_r - h_m).abs().max().item() < 1e-5
    w = torch.randn_like(out_r.data)
    gr = torch.autograd.grad((out_r.data * w).sum(), list(ref.parameters()))
    gm = torch.autograd.grad((out_m.data * w).sum(), list(mine.parameters()))
    for (label, _), a, b in zip(ref.named_parameters(), gr, gm, strict=True):
        assert (a - b).abs().max().item() < 1e-5, label


USER_CELL = """\
name  leaky-gated-test
input x
state h
gate  f = sigmoid(W_f @ x + U_f @ h + b_f)
let   n = softplus(W_n @ x + U_n @ (f * h) + b_n) - softplus(q)
next  h = f * h + (1 - f) * tanh(n)
output h
"""


def test_user_cell_runs_generated_triton_kernels(monkeypatch):
    """A cell that is not in the zoo (two GEMM stages, softplus, a standalone vector) goes
    through kernels generated for it: every step launches them, and the result equals torch."""
    from gatelab import parse_cell
    from gatelab.engine import triton_pointwise as tp

    launches = []
    real = tp.compile_triton_pointwise

    def spy(inputs, outputs):
        fn = real(inputs, outputs)

        def counted(*args, **kw):
            launches.append(len(outputs))
            return fn(*args, **kw)

        return counted

    monkeypatch.setattr(tp, "compile_triton_pointwise", spy)
    cell = parse_cell(USER_CELL)
    ref, mine = _pair(cell)
    x = torch.randn(T, N, I, generator=torch.Generator().manual_seed(3)).requires_grad_()
    w = torch.randn(T, N, H)
    out_r, _, gr_r = _run(ref, x, torch.zeros(1, N, H).requires_grad_(), w)
    assert launches == []  # the torch backend never touches Triton
    out_m, _, gr_m = _run(mine, x, torch.zeros(1, N, H).requires_grad_(), w)
    # forward: prepare (f*h) and final per step; backward: both vector-Jacobian products per step
    assert len(launches) == 4 * T
    assert (out_r - out_m).abs().max().item() < 1e-5
    for a, b in zip(gr_r, gr_m, strict=True):
        assert (a - b).abs().max().item() < 1e-5


def test_bf16_layer_keeps_fp32_math_inside_the_kernels():
    """bf16 parameters and inputs: outputs and gradients come back in bf16, within bf16 rounding
    of the same layer in fp32 (a wrong kernel is off by far more than 3e-2)."""
    torch.manual_seed(0)
    lo = gnn.RNN("lstm", 8, 16, backend="triton", dtype=torch.bfloat16)
    hi = gnn.RNN("lstm", 8, 16, backend="torch")
    hi.load_state_dict({k: v.float() for k, v in lo.state_dict().items()})
    x = torch.randn(6, 3, 8, generator=torch.Generator().manual_seed(4))
    out_lo, _ = lo(x.bfloat16())
    out_hi, _ = hi(x)
    assert out_lo.dtype == torch.bfloat16
    assert (out_lo.float() - out_hi).abs().max().item() < 3e-2
    out_lo.float().sum().backward()
    out_hi.sum().backward()
    for (label, p), q in zip(lo.named_parameters(), hi.parameters(), strict=True):
        assert p.grad.dtype == torch.bfloat16
        scale = q.grad.abs().max().item()
        assert (p.grad.float() - q.grad).abs().max().item() < 3e-2 * max(scale, 1.0), label


def test_time_loops_go_through_cuda_graph_wrapper_eagerly_here(monkeypatch):
    """backend='triton' runs its forward and its backward time loop through GraphedFunction (a
    CUDA graph per shape on a GPU); under the interpreter and on CPU tensors the wrapper runs them
    eagerly, captures nothing, and the results still equal the torch backend's. The torch
    backend never uses it."""
    from gatelab.engine import cuda_graphs as cg

    assert cg.why_not_graphs(torch.zeros(1)) is not None  # CPU tensors: eager
    calls = []
    real_call = cg.GraphedFunction.__call__

    def spy(self, *args):
        calls.append(self)
        return real_call(self, *args)

    monkeypatch.setattr(cg.GraphedFunction, "__call__", spy)
    ref, mine = _pair("mgu")
    g = torch.Generator().manual_seed(4)
    x = torch.randn(T, N, I, generator=g).requires_grad_()
    hx = torch.randn(1, N, H, generator=g).requires_grad_()
    w = torch.randn(T, N, H, generator=g)
    out_r, st_r, gr_r = _run(ref, x, hx, w)
    assert calls == []
    out_m, st_m, gr_m = _run(mine, x, hx, w)
    # the forward loop, then the backward loop; no graph captured
    assert len(calls) == 2 and calls[0] is not calls[1]
    assert all(len(c) == 0 for c in calls)
    assert (out_r - out_m).abs().max().item() < 1e-5
    for a, b in zip((*st_r, *gr_r), (*st_m, *gr_m), strict=True):
        assert (a - b).abs().max().item() < 1e-5
