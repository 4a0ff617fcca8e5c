"""Every function of the registry (``gatelab.cell.functions.REGISTRY``) works on every backend:
the same cell gives the same outputs and gradients with the generated torch code (float64, and a
float64 gradcheck), the Triton kernels (float32, Triton's interpreter on the CPU) and the
reference loop. A new registry entry is
picked up here with no other change (only a function defined on part of the line needs
:data:`POSITIVE`)."""

from __future__ import annotations

import pytest
import sympy
import torch

import gatelab.nn as gnn
from gatelab import parse_cell
from gatelab.cell.evaluate import evaluate
from gatelab.cell.functions import (
    BY_NAME,
    FUNCTIONS,
    REFERENCE_ONLY,
    REGISTRY,
    by_class,
    function_name,
)
from gatelab.cell.printers import cell_latex, cell_text, cell_unicode
from gatelab.engine.layout import EngineError

T, N, I, H = 4, 3, 2, 3
F64 = torch.float64
POSITIVE = {"log", "sqrt"}  # defined for positive arguments only
NAMES = sorted(set(FUNCTIONS) - REFERENCE_ONLY)  # those: tests/test_cells_modern.py
REDUCTIONS = {"layer_norm"}  # over the hidden units: generated torch code, no kernels


def _cell(fn: str, top: bool):
    """A cell using ``fn`` either as the whole update (``top``: the generated code's ``out=``
    path) or inside a gated blend."""
    # a bounded argument of either sign (of positive sign in POSITIVE): no function overflows
    pre = "tanh(W_n @ x + U_n @ h + b_n)"
    arg = f"2 + {pre}" if fn in POSITIVE else pre
    if top:
        body = f"next   h = {fn}({arg})\n"
    else:
        body = (f"gate   z = sigmoid(W_z @ x + U_z @ h + b_z)\n"
                f"next   h = z*h + (1 - z)*{fn}({arg})\n")
    return parse_cell(f"name   f_{fn}\ninput  x\nstate  h\n{body}output h\n")


def _models(cell, dtype, backends=("torch",)):
    torch.manual_seed(0)
    ref = gnn.RNN(cell, I, H, backend="reference", dtype=dtype)
    others = {b: gnn.RNN(cell, I, H, backend=b, dtype=dtype) for b in backends}
    for m in others.values():
        m.load_state_dict(ref.state_dict())
    return ref, others


def _run(model, x, h0):
    out, h_n = model(x, h0)
    loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum() \
        + (h_n * 3).sum()
    return out, h_n, torch.autograd.grad(loss, [x, h0, *model.parameters()])


def test_registry_is_the_language():
    """Every cell-callable entry is a parser name, and the printers name it back."""
    assert {f.name for f in REGISTRY if f.cell} == set(FUNCTIONS)
    x = sympy.Symbol("x")
    for name, make in FUNCTIONS.items():
        e = make(*[x] * BY_NAME[name].arity)
        if BY_NAME[name].cls is not None:  # sqrt and dot are spellings (a power, a sum)
            assert by_class(e) is BY_NAME[name]
            assert function_name(e) == name


@pytest.mark.parametrize("top", [True, False], ids=["update", "blend"])
@pytest.mark.parametrize("fn", NAMES)
def test_function_on_every_backend(fn, top):
    cell = _cell(fn, top)
    # the printers round-trip and name the function
    assert parse_cell(cell_text(cell)) == cell
    assert fn in cell_text(cell) and cell_latex(cell) and cell_unicode(cell)
    backends = ((F64, "torch", 1e-10), (torch.float32, "triton", 2e-5))
    if fn in REDUCTIONS:  # torch code (autograd for its backward) runs it; kernels refuse it
        with pytest.raises(EngineError, match="layer_norm.*backend='generated' or 'reference'"):
            gnn.RNN(cell, I, H, backend="triton")(torch.randn(T, N, I))
        backends = backends[:1]
    # float64 for the generated torch code; Triton kernels compute in float32
    for dtype, backend, tol in backends:
        ref, others = _models(cell, dtype, (backend,))
        g = torch.Generator().manual_seed(1)
        x = torch.randn(T, N, I, generator=g, dtype=dtype).requires_grad_()
        h0 = torch.randn(1, N, H, generator=g, dtype=dtype).requires_grad_()
        out_r, h_r, grads_r = _run(ref, x, h0)
        assert torch.isfinite(out_r).all()
        out, h_n, grads = _run(others[backend], x, h0)
        assert torch.allclose(out, out_r, atol=tol), backend
        assert torch.allclose(h_n, h_r, atol=tol), backend
        for a, b in zip(grads, grads_r, strict=True):
            assert torch.allclose(a, b, atol=tol * 100), f"{fn} {backend}: gradients differ"


@pytest.mark.parametrize("fn", NAMES)
def test_function_gradcheck_generated_torch(fn):
    cell = _cell(fn, top=False)
    backend = "reference" if fn in REDUCTIONS else "torch"
    _, others = _models(cell, F64, (backend,))
    m = others[backend]
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 2, I, generator=g, dtype=F64).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: m(x)[0], (x,))


@pytest.mark.parametrize("fn", NAMES)
def test_reference_evaluator_uses_the_registry(fn):
    """``evaluate`` gives the registry's torch function of the argument."""
    x = sympy.Symbol("x")
    v = torch.tensor([0.3, 1.7, 2.5], dtype=F64)
    got = evaluate(FUNCTIONS[fn](x), {"x": v})
    ref = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
           "softplus": torch.nn.functional.softplus, "exp": torch.exp, "log": torch.log,
           "sqrt": torch.sqrt, "abs": torch.abs,
           "layer_norm": lambda v: (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + 1e-5)}
    if fn in ref:  # a function added later is covered by the backend tests above
        assert torch.allclose(got, ref[fn](v))


def test_indrnn_relu_update_on_default_backend():
    """IndRNN: ``relu`` at the top of the update (the generated code once passed ``out=`` to
    ``torch.relu``), through ``gatelab.nn.RNN`` on the default backend."""
    cell = parse_cell("name indrnn\ninput x\nstate h\nnext h = relu(W @ x + u*h + b)\noutput h\n")
    torch.manual_seed(0)
    m = gnn.RNN(cell, I, H)
    x = torch.randn(T, N, I)
    with torch.no_grad():
        out, h_n = m(x)
    ref = gnn.RNN(cell, I, H, backend="reference")
    ref.load_state_dict(m.state_dict())
    with torch.no_grad():
        out_r, _ = ref(x)
    assert (out >= 0).all() and torch.allclose(out, out_r, atol=1e-6)
    out, _ = m(x.requires_grad_())
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_abs_cell_on_default_backend():
    cell = parse_cell("name absrnn\ninput x\nstate h\n"
                      "next h = tanh(W @ x + U @ h + b) - abs(V @ h)/4\noutput h\n")
    ref, _ = _models(cell, F64, ())
    m = gnn.RNN(cell, I, H, dtype=F64)
    m.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(3)
    x = torch.randn(T, N, I, generator=g, dtype=F64).requires_grad_()
    h0 = torch.randn(1, N, H, generator=g, dtype=F64).requires_grad_()
    out_r, h_r, grads_r = _run(ref, x, h0)
    out, h_n, grads = _run(m, x, h0)
    assert torch.allclose(out, out_r, atol=1e-10)
    for a, b in zip(grads, grads_r, strict=True):
        assert torch.allclose(a, b, atol=1e-8)


@pytest.mark.parametrize("fn", sorted(set(NAMES) - REDUCTIONS))
def test_abs_of_and_inside_every_function(fn):
    """``abs`` around a function SymPy cannot prove real (``sigmoid``, ``exp``, ``log``...) and
    inside one, on the default backend: equal to the reference loop, values and gradients.
    SymPy's own ``Abs`` differentiated ``|sigmoid(v)|`` into ``re``/``im`` parts the generated
    code could not print, and folded ``|exp(v)|`` to ``exp(re(v))``, which ``check`` refused."""
    pre = "W_n @ x + U_n @ h + b_n"
    inner = f"abs({fn}(2 + tanh({pre})))" if fn in POSITIVE else f"abs({fn}({pre}))"
    outer = f"{fn}(abs({pre}) + 0.5)"
    cell = parse_cell(f"name   abs_{fn}\ninput  x\nstate  h\n"
                      f"gate   z = sigmoid(W_z @ x + U_z @ h + b_z)\n"
                      f"next   h = z*h + (1 - z)*tanh({inner} - {outer})\noutput h\n")
    assert not any(e.has(sympy.re, sympy.im) for e in cell.nexts.values())
    ref, others = _models(cell, F64, ("torch",))
    g = torch.Generator().manual_seed(4)
    x = torch.randn(T, N, I, generator=g, dtype=F64).requires_grad_()
    h0 = torch.randn(1, N, H, generator=g, dtype=F64).requires_grad_()
    out_r, h_r, grads_r = _run(ref, x, h0)
    out, h_n, grads = _run(others["torch"], x, h0)
    assert torch.allclose(out, out_r, atol=1e-10) and torch.allclose(h_n, h_r, atol=1e-10)
    for a, b in zip(grads, grads_r, strict=True):
        assert torch.allclose(a, b, atol=1e-8)


def test_cell_abs_stays_as_written():
    """``|x|`` of a real signal: folded only where that is exact, derivative ``sign(x) x'``."""
    from gatelab.cell.functions import Abs, sigmoid

    v = sympy.Symbol("v")
    assert Abs(-3) == 3 and Abs(-v) == Abs(v) and Abs(Abs(v)) == Abs(v)
    assert Abs(sympy.exp(v)).args == (sympy.exp(v),)  # not exp(re(v))
    assert Abs(sigmoid(v)).diff(v) == sympy.sign(sigmoid(v)) * sigmoid(v).diff(v)
    assert by_class(sympy.Abs(v)) is by_class(Abs(v)) is not None


def test_cell_tanh_agrees_with_sympys_and_stays_cheap_when_nested():
    """The cell language's tanh is SymPy's with cheap assumptions: same values, same derivative,
    odd, and a 30-deep nest of it over a sum of matrix products builds and differentiates
    (SymPy's own took exponential time there)."""
    from gatelab.cell.functions import MatVec, tanh

    v = sympy.Symbol("v")
    assert isinstance(tanh(v), sympy.tanh) and tanh(-v) == -tanh(v) and tanh(0) == 0
    assert sympy.simplify(tanh(v).diff(v) - sympy.tanh(v).diff(v).subs(sympy.tanh(v), tanh(v))) == 0
    for value in (-2.5, 0.3, 7.0):
        assert float(tanh(v).subs(v, value).evalf()) == pytest.approx(float(sympy.tanh(value)))
    assert by_class(sympy.tanh(v)) is by_class(tanh(v)) is not None  # both print as tanh
    h, x = sympy.symbols("h x")
    e = MatVec(sympy.Symbol("U"), h) + MatVec(sympy.Symbol("W"), x)
    for _ in range(30):
        e = tanh(e)
    # one factor (1 - tanh^k(z)^2) for each k = 1..30, holding k tanh nodes
    assert e.diff(h).count(tanh) == sum(range(1, 31))
    s = 0.9 * v  # numerically: d/dv tanh^30(0.9 v) against a central difference
    for _ in range(30):
        s = tanh(s)
    f = sympy.lambdify(v, s, "math")
    slope = float(s.diff(v).subs(v, 0.4).evalf())
    assert slope == pytest.approx((f(0.4 + 1e-6) - f(0.4 - 1e-6)) / 2e-6, rel=1e-5)
