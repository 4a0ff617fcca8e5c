"""The generated engine: plans, layouts, gradients (gradcheck in float64), the scan, backends."""

from __future__ import annotations

import sys
import types

import pytest
import sympy
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import gatelab
import gatelab.nn as gn
from gatelab.engine import Layout
from gatelab.engine.backends import resolve
from gatelab.engine.layout import EngineError
from gatelab.engine.plan import Plan, is_scan_parallel, uses_layer_norm
from gatelab.engine.pointwise import compile_pointwise, vjp
from gatelab.engine.scan import linear_scan

ZOO = gatelab.zoo_names()
F64 = torch.float64


def _loss(out, hn) -> torch.Tensor:
    total = 0.0
    for t in [out, *(hn if isinstance(hn, tuple) else (hn,))]:
        total = total + (t * torch.cos(torch.arange(t.numel(), dtype=t.dtype)).view_as(t)).sum()
    return total


@pytest.mark.parametrize("name", ZOO)
def test_gradcheck_every_zoo_cell(name):
    """Analytic (generated) gradients equal finite differences for inputs, states and weights."""
    torch.manual_seed(0)
    backend = "scan" if is_scan_parallel(gatelab.load_cell(name)) else "torch"
    i = 3 if gatelab.load_cell(name).hidden_inputs else 2  # `input x : hidden`: I == H
    model = gn.RNN(name, i, 3, backend=backend).double()
    params = [p for _, p in model.named_parameters()]
    x = torch.randn(3, 2, i, dtype=F64, requires_grad=True)
    hx = tuple(torch.randn(1, 2, 3, dtype=F64, requires_grad=True) for _ in model.state_names)

    def f(x, *rest):
        hs, ps = rest[:len(hx)], rest[len(hx):]
        names = [n for n, _ in model.named_parameters()]
        out, hn = torch.func.functional_call(model, dict(zip(names, ps, strict=True)),
                                             (x, hs[0] if len(hs) == 1 else hs))
        return _loss(out, hn)

    assert torch.autograd.gradcheck(f, (x, *hx, *params), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ZOO)
def test_gradgradcheck_every_zoo_cell_default_backend(name):
    """Second derivatives on the default backend (``auto``: torch's kernels, the scan or the
    generated engine) equal finite differences of the first: gradient penalties and
    Hessian-vector products get exact numbers, never a detached or first-order-only graph."""
    torch.manual_seed(0)
    cell = gatelab.load_cell(name)
    i = 2 if cell.hidden_inputs else 1  # `input x : hidden`: I == H
    model = gn.RNN(name, i, 2).double()
    params = [p for _, p in model.named_parameters()]
    names = [n for n, _ in model.named_parameters()]
    x = torch.randn(2, 1, i, dtype=F64, requires_grad=True)

    def f(x, *ps):
        out, hn = torch.func.functional_call(model, dict(zip(names, ps, strict=True)), (x,))
        return _loss(out, hn)

    assert torch.autograd.gradgradcheck(f, (x, *params), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("name", ZOO)
def test_generated_step_equals_reference_loop(name):
    """Outputs, final states and every gradient of the fused path equal the reference step,
    with two bidirectional layers and a packed batch of unsorted lengths."""
    torch.manual_seed(1)
    # `input x : hidden` needs input_size == hidden_size in every layer: I = H, one direction
    hid = bool(gatelab.load_cell(name).hidden_inputs)
    i = 4 if hid else 3
    models = [gn.RNN(name, i, 4, num_layers=2, bidirectional=not hid, backend=b).double()
              for b in ("reference", "auto")]
    models[1].load_state_dict(models[0].state_dict())
    x = torch.randn(5, 3, i, dtype=F64)
    lengths = torch.tensor([2, 5, 4])
    res = []
    for m in models:
        xi = x.clone().requires_grad_()
        out, hn = m(pack_padded_sequence(xi, lengths, enforce_sorted=False))
        out = pad_packed_sequence(out)[0]
        grads = torch.autograd.grad(_loss(out, hn), [xi, *m.parameters()])
        res.append([out, *(hn if isinstance(hn, tuple) else (hn,)), *grads])
    for a, b in zip(*res, strict=True):
        assert (a - b).abs().max().item() <= 1e-10


def test_layouts_are_torch_layouts():
    L = Layout.of(gatelab.load_cell("lstm"))
    assert L.tensor_shapes(3, 5) == {"weight_ih": (20, 3), "weight_hh": (20, 5),
                                     "bias_ih": (20,), "bias_hh": (20,)}
    g = Layout.of(gatelab.load_cell("gru-torch"))
    assert g.ih == ["W_r", "W_z", "W_n"] and g.hh == ["U_r", "U_z", "U_n"]
    assert dict(g.pairs)["b_in"] == [("ih", "W_n")] and dict(g.pairs)["b_hn"] == [("hh", "U_n")]
    assert Layout.of(gatelab.load_cell("lstm-peephole")).standalone == ["p_i", "p_f", "p_o"]


def test_plans_have_the_expected_gemms():
    lstm = Plan.of(Layout.of(gatelab.load_cell("lstm")))
    assert len(lstm.groups) == 1 and lstm.groups[0].ih_rows == (0, 4)  # one addmm per step
    mgu = Plan.of(Layout.of(gatelab.load_cell("mgu")))
    assert [g.stage for g in mgu.groups] == [0, 1]  # U_n @ (f*h) waits for f
    gru = Plan.of(Layout.of(gatelab.load_cell("gru-torch")))
    assert len(gru.groups) == 1 and gru.groups[0].ih_rows is None  # r * (U_n h + b_hn)


def test_scan_parallel_is_derived_from_equations(monkeypatch):
    monkeypatch.delenv("GATELAB_CPU_KERNELS", raising=False)  # C kernels are opt-in
    assert [n for n in ZOO if is_scan_parallel(gatelab.load_cell(n))] == [
        "mingru", "minlstm", "sru", "qrnn"]
    mingru = Layout.of(gatelab.load_cell("mingru"))
    assert resolve(mingru, "auto", torch.device("cpu")) == "scan"
    from gatelab.engine import c_pointwise

    # a cell that is neither torch's nor scan-parallel: the compiled sequence kernel where a C
    # compiler builds it, else the generated step
    expected = "sequence" if c_pointwise.available() else "generated"
    assert resolve(Layout.of(gatelab.load_cell("mgu")), "auto", torch.device("cpu")) == expected


@pytest.mark.parametrize("T", [1, 2, 7, 30])
def test_linear_scan_equals_sequential_loop(T):
    torch.manual_seed(T)
    a = torch.rand(T, 3, 4, dtype=F64) * 1.5 - 0.2  # any sign, some above 1
    b, h0 = torch.randn(T, 3, 4, dtype=F64), torch.randn(3, 4, dtype=F64)
    h, ref = h0, []
    for t in range(T):
        h = a[t] * h + b[t]
        ref.append(h)
    assert (linear_scan(a, b, h0) - torch.stack(ref)).abs().max().item() <= 1e-12
    args = (a.requires_grad_(), b.requires_grad_(), h0.requires_grad_())
    assert torch.autograd.gradcheck(linear_scan, args)


def test_scan_backend_equals_sequential_engine(monkeypatch):
    """The scan path (three time chunks here) equals the generated sequential loop: outputs,
    final state and every gradient, also with padding masks."""
    import gatelab.engine.scan as scan

    monkeypatch.setattr(scan, "CHUNK_VALUES", 1)  # 16 steps per chunk
    torch.manual_seed(5)
    seq = gn.RNN("minlstm", 4, 6, backend="torch").double()
    par = gn.RNN("minlstm", 4, 6, backend="scan").double()
    par.load_state_dict(seq.state_dict())
    x = torch.randn(40, 3, 4, dtype=F64)
    lengths = torch.tensor([40, 17, 33])
    res = []
    for m in (seq, par):
        xi = x.clone().requires_grad_()
        out, hn = m(pack_padded_sequence(xi, lengths, enforce_sorted=False))
        out = pad_packed_sequence(out)[0]
        res.append([out, hn, *torch.autograd.grad(_loss(out, hn), [xi, *m.parameters()])])
    for a, b in zip(*res, strict=True):
        assert (a - b).abs().max().item() <= 1e-10


def test_pointwise_compiler_and_vjp():
    a, b = sympy.symbols("a b")
    expr = gatelab.cell.sigmoid(a) * sympy.tanh(b) + 1 - a**2
    fn = compile_pointwise([a, b], [expr, sympy.Integer(0)])
    ta, tb = torch.randn(4, 3, dtype=F64), torch.randn(3, dtype=F64)  # (H,) broadcasts
    out, zero = fn(ta, tb)
    assert zero == 0.0
    assert (out - (torch.sigmoid(ta) * torch.tanh(tb) + 1 - ta**2)).abs().max() <= 1e-12
    inputs, grads = vjp([a, b], [expr], [a, b])
    da, db = compile_pointwise(inputs, grads)(ta, tb, torch.ones(4, 3, dtype=F64))
    ta.requires_grad_()
    (ref,) = torch.autograd.grad((torch.sigmoid(ta) * torch.tanh(tb) - ta**2).sum(), ta)
    assert (da - ref).abs().max() <= 1e-12
    with pytest.raises(ValueError, match="unknown pointwise backend"):
        compile_pointwise([a], [a], "cuda-magic")


def test_triton_backend_uses_the_hook(monkeypatch):
    """backend='triton' gets its pointwise functions from compile_triton_pointwise (faked here
    with the torch compiler, so the hook is tested without a GPU)."""
    calls = []

    def fake(inputs, outputs):
        calls.append(len(outputs))
        return compile_pointwise(inputs, outputs, "torch")

    mod = types.ModuleType("gatelab.engine.triton_pointwise")
    mod.compile_triton_pointwise = fake
    monkeypatch.setitem(sys.modules, "gatelab.engine.triton_pointwise", mod)
    torch.manual_seed(6)
    ref = gn.RNN("gru", 3, 4, backend="torch")
    tri = gn.RNN("gru", 3, 4, backend="triton")
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(5, 2, 3)
    assert (ref(x)[0] - tri(x)[0]).abs().max().item() <= 1e-6
    assert calls  # forward and backward functions came from the hook


def test_real_triton_kernels_in_interpreter_mode():
    """The GPU path end to end on the CPU: Triton's interpreter runs the generated kernels."""
    pytest.importorskip("triton")
    import os

    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs TRITON_INTERPRET=1 (set by conftest) to run Triton on the CPU")
    torch.manual_seed(7)
    ref = gn.RNN("mgu", 3, 4, backend="torch")
    tri = gn.RNN("mgu", 3, 4, backend="triton")
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(4, 2, 3, requires_grad=True)
    outs = []
    for m in (ref, tri):
        out, hn = m(x)
        outs.append([out, hn, *torch.autograd.grad(_loss(out, hn), [x, *m.parameters()])])
    for a, b in zip(*outs, strict=True):
        assert (a - b).abs().max().item() <= 1e-5


def test_cli_bench_and_engine_commands(tmp_path):
    from typer.testing import CliRunner

    from gatelab.cli import app

    runner = CliRunner()
    out = tmp_path / "bench.json"
    res = runner.invoke(app, ["bench", "--T", "3", "--N", "2", "--H", "4", "--repeats", "1",
                              "--scan-T", "8", "--scan-N", "2", "--scan-H", "4", "--no-memory",
                              "--threads", "1", "--small-T", "2", "--small-N", "2",
                              "--small-H", "3", "--no-compile", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "gatelab LSTM / torch LSTM" in res.output and "minGRU" in res.output
    assert "small layer: gatelab LSTM / torch LSTM" in res.output
    import json

    data = json.loads(out.read_text())
    assert {r["name"] for r in data["ratios"]} >= {"gatelab GRU / torch GRU",
                                                   "user cell / built-in MGU"}
    res = runner.invoke(app, ["bench", "--T", "0"])
    assert res.exit_code != 0 and "--T must be at least 1" in res.output
    res = runner.invoke(app, ["engine", "mgu", "--code"])
    assert res.exit_code == 0 and "stage 1" in res.output and "def pointwise" in res.output


def test_scan_parallel_agrees_with_the_analysis():
    """The engine's own check (linear in the state, state-free coefficients) and the analysis'
    scan-parallel verdict agree on every zoo cell."""
    analysis = pytest.importorskip("gatelab.analysis")
    for name in ZOO:
        cell = gatelab.load_cell(name)
        assert is_scan_parallel(cell) == analysis.analyze(cell).scan_parallel, name


@pytest.mark.parametrize("name", ZOO)
def test_generated_out_writes_equal_returned_values(name):
    """Every generated torch function called with ``out=`` (results written into given tensors,
    as the time loops and the scan do) gives exactly what it returns without ``out``."""
    import inspect

    from gatelab.engine.autograd import compiled
    from gatelab.engine.plan import has_fast_scan, scan_functions

    cell = gatelab.load_cell(name)
    if uses_layer_norm(cell):  # kernels refuse it with a clear message, never compile wrongly
        for compiler in ("c", "triton"):
            with pytest.raises(EngineError, match="layer_norm.*backend='generated'"):
                compiled(cell, True, compiler)
    st = compiled(cell, True, "torch")
    fns = [st.final, st.final_bwd, *st.prep.values(), *st.prep_bwd.values()]
    if has_fast_scan(cell):
        sf = scan_functions(cell)
        fns += [sf.fwd, sf.bwd]
    checked = 0
    for fn in fns:
        if not getattr(fn, "supports_out", False):
            continue
        k = len(inspect.signature(fn).parameters) - 1
        args = [torch.randn(5, 4, dtype=F64) for _ in range(k)]
        ref = fn(*args)
        outs = tuple(torch.full((5, 4), float("nan"), dtype=F64) for _ in ref)
        got = fn(*args, out=outs)
        assert all(g is o for g, o in zip(got, outs, strict=True))
        for r, g in zip(ref, got, strict=True):
            assert torch.equal(torch.as_tensor(r, dtype=F64).expand(5, 4), g), fn.source
        checked += 1
    assert checked


def test_hoisted_mgu_baseline_computes_the_mgu():
    """The benchmark's hand-written baseline must be the same cell as gatelab's MGU."""
    from gatelab.engine.bench import HoistedMGULoop
    from gatelab.nn import MGU

    torch.manual_seed(0)
    ours, loop = MGU(3, 4), HoistedMGULoop(3, 4)
    p = ours.cell_params(0, 0)
    with torch.no_grad():
        loop.w_x.weight.copy_(torch.cat([p["W_f"], p["W_n"]]))
        loop.w_x.bias.copy_(torch.cat([p["b_f"], p["b_n"]]))
        loop.u_f.weight.copy_(p["U_f"])
        loop.u_n.weight.copy_(p["U_n"])
    x = torch.randn(5, 2, 3)
    out, h_n = ours(x)
    ref, h_ref = loop(x)
    assert (out - ref).abs().max().item() < 1e-6
    assert (h_n[0] - h_ref).abs().max().item() < 1e-6


def test_bench_summary_lists_every_ratio_per_thread_count():
    from gatelab.engine.bench import format_summary

    runs = [{"threads": n, "ratios": [{"name": "gatelab LSTM / torch LSTM", "value": v,
                                       "target": 1.1, "met": v <= 1.1}],
             "scan": {"speedup": s}} for n, v, s in ((1, 0.95, 4.0), (2, 1.2, 6.5))]
    runs[1]["ratios"].append({"name": "small layer: gatelab LSTM / torch LSTM", "value": 1.3,
                              "target": 1.2, "met": False})
    text = format_summary(runs)
    assert "| 1 thread(s) | 2 thread(s) | target |" in text
    assert "| gatelab LSTM / torch LSTM | 0.95 | 1.20 | ≤ 1.10 |" in text
    assert "| small layer: gatelab LSTM / torch LSTM | - | 1.30 | ≤ 1.20 |" in text
    assert "4.00× | 6.50×" in text


@pytest.mark.parametrize("text", [
    # U's product is used inside b's sum and again on its own: b must not ride in U's GEMM.
    "next h = tanh(W @ x + U @ h + b) - tanh(U @ h) / 4",
    "gate g = sigmoid(W @ x + U @ h + b)\nnext h = g * h + (1 - g) * tanh(U @ h + W @ x)",
])
def test_matrix_used_outside_its_bias_sum_equals_reference(text):
    cell = gatelab.parse_cell(f"name twice\ninput x\nstate h\n{text}\n")
    torch.manual_seed(2)
    models = [gn.RNN(cell, 3, 4, backend=b).double() for b in ("reference", "auto")]
    models[1].load_state_dict(models[0].state_dict())
    x = torch.randn(6, 2, 3, dtype=F64)
    outs = [m(x)[0] for m in models]
    assert (outs[0] - outs[1]).abs().max().item() <= 1e-12


@pytest.mark.parametrize("kw", [{}, {"num_layers": 2, "bidirectional": True},
                                {"batch_first": True}])
def test_layer_norm_cell_on_the_generated_engine_equals_the_reference(kw):
    """layer_norm (a row reduction) runs as generated torch code whose backward is torch's
    autograd: outputs and every gradient equal the reference loop's, packed input too."""
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(0)
    ref = gn.RNN("lstm-ln", 4, 5, backend="reference", dtype=F64, **kw)
    gen = gn.RNN("lstm-ln", 4, 5, backend="generated", dtype=F64, **kw)
    gen.load_state_dict(ref.state_dict())
    x = torch.randn(7, 3, 4, dtype=F64, requires_grad=True)
    outs = [m(x)[0] for m in (ref, gen)]
    assert (outs[0] - outs[1]).abs().max() < 1e-12
    grads = [torch.autograd.grad(o.pow(2).sum(), [x, *m.parameters()])
             for o, m in zip(outs, (ref, gen), strict=True)]
    assert max((a - b).abs().max().item() for a, b in zip(*grads, strict=True)) < 1e-12
    packed = pack_padded_sequence(torch.randn(7, 3, 4, dtype=F64), [7, 4, 2],
                                  enforce_sorted=False)
    if kw.get("batch_first"):
        packed = pack_padded_sequence(torch.randn(3, 7, 4, dtype=F64), [7, 4, 2],
                                      batch_first=True, enforce_sorted=False)
    a, b = ref(packed)[0].data, gen(packed)[0].data
    assert (a - b).abs().max() < 1e-12
