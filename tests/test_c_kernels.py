"""The C pointwise kernels (backend ``"c"``): parity with the reference step on every zoo cell,
the printer on every function a cell may use, the disk cache, and the fallbacks."""

from __future__ import annotations

import subprocess
import warnings

import pytest
import sympy
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import gatelab
import gatelab.nn as gn
from gatelab import cache
from gatelab.cell.functions import relu, sigmoid, softplus
from gatelab.engine import c_pointwise as cp
from gatelab.engine import c_scan
from gatelab.engine.backends import resolve
from gatelab.engine.layout import EngineError, Layout
from gatelab.engine.plan import is_scan_parallel, uses_layer_norm
from gatelab.engine.pointwise import compile_pointwise, vjp

ZOO = gatelab.zoo_names()
# layer_norm is a row reduction: the C kernels refuse such cells (generated torch code runs them)
ELEMENTWISE = [n for n in ZOO if not uses_layer_norm(gatelab.load_cell(n))]
F64 = torch.float64
needs_cc = pytest.mark.skipif(cp.compiler() is None, reason="no C compiler")


def _loss(out, hn) -> torch.Tensor:
    total = 0.0
    for t in [out, *(hn if isinstance(hn, tuple) else (hn,))]:
        total = total + (t * torch.cos(torch.arange(t.numel(), dtype=t.dtype)).view_as(t)).sum()
    return total


def _run(model, x, lengths=None):
    xi = x.clone().requires_grad_()
    inp = xi if lengths is None else pack_padded_sequence(xi, lengths, enforce_sorted=False)
    out, hn = model(inp)
    if lengths is not None:
        out = pad_packed_sequence(out)[0]
    grads = torch.autograd.grad(_loss(out, hn), [xi, *model.parameters()])
    return [out, *(hn if isinstance(hn, tuple) else (hn,)), *grads]


@needs_cc
@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("packed", [False, True])
def test_c_kernels_equal_reference_on_every_zoo_cell(name, packed, monkeypatch):
    """Outputs, final states and every gradient with the C kernels equal the reference step
    (float64; two bidirectional layers; a packed batch of unsorted lengths or a full batch)."""
    monkeypatch.setenv("GATELAB_CPU_KERNELS", "c")  # the scan path uses them too
    torch.manual_seed(2)
    backend = "scan" if is_scan_parallel(gatelab.load_cell(name)) else "c"
    # `input x : hidden` needs input_size == hidden_size in every layer: I = H, one direction
    hid = bool(gatelab.load_cell(name).hidden_inputs)
    i = 5 if hid else 3
    models = [gn.RNN(name, i, 5, num_layers=2, bidirectional=not hid, backend=b).double()
              for b in ("reference", backend)]
    models[1].load_state_dict(models[0].state_dict())
    x = torch.randn(6, 4, i, dtype=F64)
    lengths = torch.tensor([2, 6, 5, 1]) if packed else None
    ref, got = (_run(m, x, lengths) for m in models)
    for a, b in zip(ref, got, strict=True):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= 1e-10


@needs_cc
def test_auto_takes_the_c_kernels_when_opted_in_and_float32_agrees(monkeypatch):
    from gatelab.engine import route as route_mod

    # the C pointwise kernels' opt-in, where auto would otherwise run the generated step
    monkeypatch.setattr(route_mod, "SEQUENCE_BY_DEFAULT", False)
    assert resolve(Layout.of(gatelab.load_cell("mgu")), "auto", torch.device("cpu")) == "generated"
    monkeypatch.setenv("GATELAB_CPU_KERNELS", "c")
    assert resolve(Layout.of(gatelab.load_cell("mgu")), "auto", torch.device("cpu")) == "c"
    torch.manual_seed(0)
    a, b = gn.LSTM(4, 6, backend="torch"), gn.LSTM(4, 6)
    b.load_state_dict(a.state_dict())
    x = torch.randn(7, 3, 4)
    for u, v in zip(_run(a, x), _run(b, x), strict=True):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5)


x, y, z = sympy.symbols("x y z")
EXPRS = [sigmoid(x) * y + sympy.tanh(z), relu(x - y) + softplus(z) * 3, sympy.exp(x / 4) - z ** 2,
         sympy.log(sympy.Abs(x) + 1) + sympy.sqrt(y ** 2 + 1) / (z ** 2 + 2), sympy.sign(x) * y,
         (1 - sigmoid(y)) * x + sympy.Rational(1, 3), x ** 3 * y ** -2 + 1 / sympy.sqrt(z ** 2 + 1),
         sympy.Heaviside(x, 0) * y, x ** sympy.Rational(3, 2) * 0 + sympy.Abs(x) ** 2.5]


@needs_cc
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_printer_covers_every_function_with_strided_and_broadcast_inputs(dtype):
    """Each expression evaluated by a C kernel equals the generated torch code, for an input that
    is a column block of a wider buffer (row stride), a broadcast ``(cols,)`` vector and a plain
    tensor."""
    torch.manual_seed(3)
    rows, cols = 33, 70  # more than PARALLEL_MIN elements: the threaded loop runs too
    wide = torch.randn(rows, 3 * cols, dtype=dtype)
    xs, ys, zs = wide[:, cols:2 * cols], torch.randn(cols, dtype=dtype), torch.randn(rows, cols,
                                                                                   dtype=dtype)
    fn = compile_pointwise([x, y, z], EXPRS, "c")
    got = fn(xs, ys, zs)
    wants = compile_pointwise([x, y, z], EXPRS, "torch")(xs, ys.expand(rows, cols), zs)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for g, want in zip(got, wants, strict=True):
        assert g.dtype == dtype and g.shape == (rows, cols)
        torch.testing.assert_close(g, want, rtol=tol, atol=tol, equal_nan=True)
    outs = tuple(torch.empty(rows, cols, dtype=dtype) for _ in EXPRS)  # out= writes in place
    assert all(a is b for a, b in zip(fn(xs, ys, zs, out=outs), outs, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(outs, got, strict=True))


@needs_cc
def test_vjp_kernels_equal_torch_backend():
    outs = [sigmoid(x) * sympy.tanh(y) + z * x, relu(y) * softplus(x)]
    ins, grads = vjp([x, y, z], outs, [x, y, z])
    args = [torch.randn(9, 5, dtype=F64) for _ in ins]
    for a, b in zip(compile_pointwise(ins, grads, "c")(*args),
                    compile_pointwise(ins, grads, "torch")(*args), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@needs_cc
def test_unsupported_tensors_are_refused_or_fall_back():
    fn = compile_pointwise([x], [x + 1], "c")
    with pytest.raises(cp.KernelError, match="float32/float64"):
        fn(torch.ones(3, 4, dtype=torch.float16))
    with pytest.raises(cp.KernelError, match="one CPU dtype"):
        compile_pointwise([x, y], [x + y], "c")(torch.ones(2, 3), torch.ones(2, 3, dtype=F64))
    m = gn.MGU(3, 4, backend="c").to(torch.bfloat16)
    with pytest.raises(EngineError, match="backend 'c' runs CPU float32/float64"):
        m(torch.randn(5, 2, 3, dtype=torch.bfloat16))
    m.backend = "auto"  # auto keeps to the generated torch step for this dtype
    out, _ = m(torch.randn(5, 2, 3, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


@needs_cc
def test_cache_on_disk_second_process_does_not_compile(tmp_path, monkeypatch):
    monkeypatch.setenv("GATELAB_CACHE_DIR", str(tmp_path))
    body = cp.kernel_body("0", [x, y], [x * y + 2])
    lib = cp.build([body])
    so = list((tmp_path / "kernels").glob("*.so"))
    assert so == [tmp_path / "kernels" / f"{lib.key}.so"]
    cache._LOADED.clear()  # as a new process: nothing loaded, the library is on disk

    def no_compiler(*a, **k):
        raise AssertionError("the compiler ran although the library was cached")

    monkeypatch.setattr(subprocess, "run", no_compiler)
    again = cp.build([body])
    assert again.key == lib.key
    a = torch.arange(6.0).view(2, 3)
    assert torch.equal(again.function(0, 1)(a, a)[0], a * a + 2)


def test_cache_dir_is_overridable_and_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GATELAB_CACHE_DIR", str(tmp_path / "c"))
    assert cache.cache_folder("kernels") == tmp_path / "c" / "kernels"
    monkeypatch.delenv("GATELAB_CACHE_DIR")
    monkeypatch.delenv("GATELAB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_folder("kernels") == tmp_path / "xdg" / "gatelab" / "kernels"


def test_without_a_compiler_the_eager_step_runs_and_says_so_once(monkeypatch):
    monkeypatch.setenv("GATELAB_CPU_KERNELS", "c")
    monkeypatch.setattr(cp, "compiler", lambda: None)
    cp.available.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            layout = Layout.of(gatelab.load_cell("mgu"))
            assert resolve(layout, "auto", torch.device("cpu")) == "generated"
            assert resolve(layout, "auto", torch.device("cpu")) == "generated"
            out, _ = gn.MGU(3, 4)(torch.randn(4, 2, 3))
        said = [w for w in caught if "no C compiler" in str(w.message)]
        assert len(said) == 1 and out.shape == (4, 2, 4)
        with pytest.raises(EngineError, match="needs a C compiler"):
            gn.MGU(3, 4, backend="c")(torch.randn(4, 2, 3))
    finally:
        cp.available.cache_clear()


def test_printer_refuses_unknown_functions():
    f = sympy.Function("mystery")
    with pytest.raises(cp.KernelError, match="does not know mystery"):
        cp.kernel_body("0", [x], [f(x)])


@needs_cc
@pytest.mark.parametrize("T", [1, 5, 64])
@pytest.mark.parametrize("reverse", [False, True])
def test_c_scan_equals_the_blocked_torch_scan_and_the_loop(T, reverse, monkeypatch):
    """The C scan (columns in blocks of 256 and a remainder, threaded above PARALLEL_MIN) equals
    the blocked torch scan and the plain loop, both directions, float32 and float64."""
    import gatelab.engine.scan as scan

    torch.manual_seed(T)
    for dtype in (torch.float32, F64):
        a = (torch.rand(T, 3, 100) * 1.5 - 0.2).to(dtype)  # any sign, some above 1
        b, h0 = torch.randn(T, 3, 100).to(dtype), torch.randn(3, 100).to(dtype)
        h, loop = h0, [None] * T
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            h = a[t] * h + b[t]
            loop[t] = h
        got = c_scan.scan(a, b, h0, reverse)
        monkeypatch.setattr(scan, "_c_scan_ok", lambda *args: False)
        blocked = scan._scan(a, b, h0, reverse)
        monkeypatch.undo()
        tol = 1e-4 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(got, torch.stack(loop), rtol=tol, atol=tol)
        torch.testing.assert_close(blocked, torch.stack(loop), rtol=tol, atol=tol)
    with pytest.raises(cp.KernelError, match="C scan"):
        c_scan.scan(a.half(), b.half(), h0.half())


@needs_cc
def test_second_process_loads_the_step_without_sympy_derivatives(tmp_path, monkeypatch):
    """A step built once is found by its expressions' key: no backward derivation, no compiler
    run, same kernels (the cached path of a second process)."""
    import gatelab.engine.autograd as ag
    from gatelab.engine.plan import Plan

    monkeypatch.setenv("GATELAB_CACHE_DIR", str(tmp_path))
    plan = Plan.of(Layout.of(gatelab.load_cell("mgu")))
    first = ag.CompiledStep(plan, "c")
    assert list((tmp_path / "kernels").glob("step-*.json"))
    cache._LOADED.clear()

    def refuse(*a, **k):
        raise AssertionError("derived or compiled again")

    monkeypatch.setattr(ag, "vjp", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)
    second = ag.CompiledStep(plan, "c")
    torch.manual_seed(0)
    args = [torch.randn(4, 6, dtype=F64) for _ in second.inputs]
    cots = [torch.randn(4, 6, dtype=F64) for _ in plan.nexts]
    for f, g, extra in ((first.final, second.final, []),
                        (first.final_bwd, second.final_bwd, cots)):
        for a, b in zip(f(*args, *extra), g(*args, *extra), strict=True):
            assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    assert second.prep_wrt == first.prep_wrt and second.final_wrt == first.final_wrt
