"""Generated Triton pointwise kernels (run by Triton's interpreter on the CPU) against the
reference evaluator and against torch autograd, for every zoo cell."""

from __future__ import annotations

import pytest
import sympy
import torch

from gatelab import load_cell, zoo_names
from gatelab.cell.evaluate import evaluate
from gatelab.cell.functions import MatVec, layer_norm, relu, sigmoid, softplus
from gatelab.engine.triton_pointwise import (
    TritonCodegenError,
    compile_triton_pointwise,
    kernel_source,
)

N, H = 3, 5


def pointwise_form(cell):
    """The cell's step with every ``W @ v`` replaced by a symbol ``m<k>`` (what the engine does):
    returns (inputs, {name: expression over inputs})."""
    exprs = {**{n: cell.inline(cell.definition(n)) for _, n in cell.order},
             **{f"next_{s}": cell.inline(e) for s, e in cell.nexts.items()}}
    mvs = sorted(set().union(*(e.atoms(MatVec) for e in exprs.values())), key=str)
    subs = {mv: sympy.Symbol(f"m{k}") for k, mv in enumerate(mvs)}
    exprs = {n: e.xreplace(subs) for n, e in exprs.items()}
    free = set().union(*(e.free_symbols for e in exprs.values()))
    inputs = sorted(free, key=str)
    return inputs, exprs


def draw(inputs, cell=None, gen=None):
    """(N, H) tensors for signals and pre-activations, (H,) vectors for the cell's vectors."""
    vectors = set(cell.vectors) if cell is not None else set()
    out = []
    for s in inputs:
        shape = (H,) if s.name in vectors else (N, H)
        out.append(torch.randn(shape, generator=gen) * 2)
    return out


@pytest.mark.parametrize("name", zoo_names())
def test_zoo_step_forward_matches_reference(name):
    cell = load_cell(name)
    inputs, exprs = pointwise_form(cell)
    if any(e.has(layer_norm) for e in exprs.values()):  # a row reduction, not pointwise
        with pytest.raises(TritonCodegenError, match="layer_norm"):
            compile_triton_pointwise(inputs, list(exprs.values()))
        return
    fn = compile_triton_pointwise(inputs, list(exprs.values()))
    args = draw(inputs, cell, torch.Generator().manual_seed(0))
    env = {s.name: t for s, t in zip(inputs, args, strict=True)}
    got = fn(*args)
    assert len(got) == len(exprs)
    for (label, expr), value in zip(exprs.items(), got, strict=True):
        ref = evaluate(expr, env)
        ref = torch.broadcast_to(torch.as_tensor(ref, dtype=torch.float32), (N, H))
        assert value.shape == (N, H), label
        diff = (value - ref).abs().max().item()
        assert diff < 1e-5, f"{name}.{label}: max abs diff {diff}"


@pytest.mark.parametrize("name", ["lstm", "gru", "gru-torch", "mgu", "cifg", "minlstm", "niaf"])
def test_zoo_derivatives_match_autograd(name):
    """d(next state)/d(every input of the kernel), from SymPy's derivatives, equals autograd of
    the reference evaluator (the step is elementwise, so each Jacobian is diagonal)."""
    cell = load_cell(name)
    inputs, exprs = pointwise_form(cell)
    targets = [exprs[f"next_{s}"] for s in cell.states]
    derivs = [t.diff(s) for t in targets for s in inputs]
    fn = compile_triton_pointwise(inputs, derivs)
    args = draw(inputs, cell, torch.Generator().manual_seed(1))
    got = fn(*args)
    leaves = [a.clone().requires_grad_() for a in args]
    env = {s.name: t for s, t in zip(inputs, leaves, strict=True)}
    k = 0
    for target in targets:
        value = evaluate(target, env)
        for s, leaf in zip(inputs, leaves, strict=True):
            (g,) = torch.autograd.grad(value.sum(), leaf, retain_graph=True, allow_unused=True)
            g = torch.zeros_like(leaf) if g is None else g
            mine = got[k] if leaf.dim() == 2 else got[k].sum(0)  # vectors: summed over rows
            diff = (mine - g).abs().max().item()
            assert diff < 1e-4, f"{name}: d/d{s} max abs diff {diff}"
            k += 1


def test_every_function_and_power_is_stable_and_right():
    x, y = sympy.symbols("x y", real=True)
    outs = [sigmoid(x), sympy.tanh(x), softplus(x), relu(x), sympy.exp(-sympy.Abs(x)),
            sympy.log(1 + y**2), sympy.sqrt(1 + y**2), 1 / sympy.sqrt(1 + y**2), x**3, y**-2,
            (1 + y**2) ** sympy.Rational(3, 2), sympy.Abs(x).diff(x), relu(x).diff(x),
            sympy.Max(x, y, 0), sympy.Min(x, y), sympy.Integer(7), 2**y]
    fn = compile_triton_pointwise([x, y], outs)
    xs = torch.tensor([[-1e4, -100.0, -20.0, -1.0, -0.05, -1e-6, 0.0, 1e-6, 0.05, 1.0, 20.0,
                        100.0, 1e4]])
    ys = torch.linspace(-3, 3, xs.shape[1]).reshape(1, -1) + 0.25  # never 0: y**-2 is finite
    got = fn(xs, ys)
    xd, yd = xs.double(), ys.double()
    F = torch.nn.functional
    refs = [torch.sigmoid(xd), torch.tanh(xd), F.softplus(xd), torch.relu(xd),
            torch.exp(-xd.abs()), torch.log(1 + yd**2), torch.sqrt(1 + yd**2),
            1 / torch.sqrt(1 + yd**2), xd**3, yd**-2, (1 + yd**2) ** 1.5, torch.sign(xd),
            (xd > 0).double(), torch.maximum(torch.maximum(xd, yd), torch.zeros_like(xd)),
            torch.minimum(xd, yd), torch.full_like(xd, 7.0), 2**yd]
    for expr, value, ref in zip(outs, got, refs, strict=True):
        # relative where large (x**3 at 1e4 is 1e12), absolute below 1
        err = (value.double() - ref).abs() / ref.abs().clamp(min=1.0)
        assert torch.isfinite(value).all(), expr
        assert err.max().item() < 2e-6, f"{expr}: relative error {err.max().item()}"
    # tanh near 0 must keep its relative precision (the exp form alone cancels there)
    t = got[1][0, 5:8].double()
    assert torch.allclose(t, torch.tanh(xd[0, 5:8]), rtol=1e-6, atol=1e-12)


def test_vectors_broadcast_along_rows_and_bf16_storage():
    z, b = sympy.symbols("z b")
    fn = compile_triton_pointwise([z, b], [sigmoid(z + b), sympy.tanh(z) * b])
    zs = torch.randn(4, 6).to(torch.bfloat16)
    bs = torch.randn(6).to(torch.bfloat16)
    s, t = fn(zs, bs)
    assert s.dtype == torch.bfloat16 and s.shape == (4, 6)
    ref_s = torch.sigmoid(zs.float() + bs.float())
    ref_t = torch.tanh(zs.float()) * bs.float()
    assert (s.float() - ref_s).abs().max().item() <= 2**-8  # one bf16 rounding of a value < 1
    assert (t.float() - ref_t).abs().max().item() <= 2**-7 * ref_t.abs().max().item()
    (s32,) = compile_triton_pointwise([z, b], [sigmoid(z + b)])(zs, bs, out_dtype=torch.float32)
    assert s32.dtype == torch.float32
    assert (s32 - ref_s).abs().max().item() < 1e-6  # fp32 math, stored without rounding


def test_only_generated_identifiers_reach_the_source():
    evil = sympy.Symbol('__import__("os").system("echo pwned")')
    x = sympy.Symbol("x")
    src = kernel_source([evil, x], [evil * sigmoid(x)])
    code = [ln for ln in src.splitlines() if not ln.lstrip().startswith("#")]
    assert not any("import__" in ln or "system" in ln for ln in code)
    fn = compile_triton_pointwise([evil, x], [evil * sigmoid(x)])
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    (out,) = fn(a, b)
    assert (out - a * torch.sigmoid(b)).abs().max().item() < 1e-6


def test_kernels_are_cached_per_expression_and_serve_every_layout():
    x, b = sympy.symbols("x b")
    f1 = compile_triton_pointwise([x, b], [sympy.tanh(x) * 3 + b])
    f2 = compile_triton_pointwise([x, b], [sympy.tanh(x) * 3 + b])
    assert f1.source == f2.source
    from gatelab.engine import triton_pointwise as tp

    f1(torch.randn(2, 2), torch.randn(2, 2))
    n = len(tp._KERNELS)
    # a column block of a wider GEMM result (strided rows) and a broadcast vector
    wide, vec = torch.randn(4, 9), torch.randn(3)
    (out,) = f2(wide[:, 3:6], vec)
    assert (out - (torch.tanh(wide[:, 3:6]) * 3 + vec)).abs().max().item() < 1e-6
    assert len(tp._KERNELS) == n  # same expressions: the same kernel, whatever the layout
    (only_vectors,) = f2(vec, vec)
    assert only_vectors.shape == (3,)


def test_results_can_go_into_slices_of_preallocated_buffers():
    x, y = sympy.symbols("x y")
    fn = compile_triton_pointwise([x, y], [x * y, sympy.tanh(x)])
    buf = torch.zeros(3, 4, 10)
    a, b = torch.randn(4, 5), torch.randn(4, 5)
    p, q = fn(a, b, out=(buf[1, :, 2:7], None))  # a strided column block and a fresh tensor
    assert p.data_ptr() == buf[1, :, 2:7].data_ptr()
    assert (buf[1, :, 2:7] - a * b).abs().max().item() < 1e-6
    assert buf[1, :, :2].abs().sum() == 0 and buf[1, :, 7:].abs().sum() == 0  # nothing else
    assert buf[0].abs().sum() == 0 and buf[2].abs().sum() == 0
    assert (q - torch.tanh(a)).abs().max().item() < 1e-6
    with pytest.raises(ValueError, match="out must hold 2"):
        fn(a, b, out=(None,))
    with pytest.raises(ValueError, match=r"out\[0\] must be"):
        fn(a, b, out=(torch.empty(5, 4), None))


def test_clear_errors():
    x, y = sympy.symbols("x y")
    W = sympy.Symbol("W")
    with pytest.raises(TritonCodegenError, match="MatVec"):
        compile_triton_pointwise([x], [MatVec(W, x)])
    with pytest.raises(TritonCodegenError, match="not inputs: y"):
        compile_triton_pointwise([x], [x * y])
    with pytest.raises(TritonCodegenError, match="cannot generate Triton code for sin"):
        compile_triton_pointwise([x], [sympy.sin(x)])
    with pytest.raises(TritonCodegenError, match="SymPy expressions or numbers"):
        compile_triton_pointwise([x], ["x + 1"])  # text is never parsed
    fn = compile_triton_pointwise([x, y], [x * y])
    with pytest.raises(ValueError, match="expected 2 tensors"):
        fn(torch.randn(2, 2))
    with pytest.raises(ValueError, match="shape"):
        fn(torch.randn(2, 2), torch.randn(3, 2))
    with pytest.raises(ValueError, match="last dimension"):
        fn(torch.randn(2, 2), torch.randn(3))
    with pytest.raises(TypeError, match="dtype"):
        fn(torch.ones(2, 2, dtype=torch.int64), torch.ones(2, 2))
    with pytest.raises(TypeError, match="y is None, but the expressions use it"):
        fn(torch.ones(2, 2), None)
    (half,) = compile_triton_pointwise([x, y], [x / 2])(torch.ones(2, 2), None)  # y unused: ok
    assert torch.equal(half, torch.full((2, 2), 0.5))


def test_cpu_without_interpreter_is_refused(monkeypatch):
    x = sympy.Symbol("x")
    fn = compile_triton_pointwise([x], [x + 1])
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="need a CUDA GPU"):
        fn(torch.randn(2, 2))


def test_kernels_run_from_memory_and_no_file_is_read(monkeypatch, tmp_path):
    """The generated kernel is executed from memory: no file is written, and a file planted
    where an earlier version kept kernel sources is never imported."""
    from gatelab.engine import triton_pointwise as tp

    monkeypatch.setenv("GATELAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tp, "_KERNELS", {})
    x = sympy.Symbol("x")
    source = tp.kernel_source([x], [x * 3 + 1])
    digest = __import__("hashlib").sha256(source.encode()).hexdigest()[:24]
    planted = tmp_path / "triton" / f"pw_{digest}.py"
    planted.parent.mkdir()
    marker = tmp_path / "planted-ran"
    planted.write_text(f"open({str(marker)!r}, 'w')\n")
    out = compile_triton_pointwise([x], [x * 3 + 1])(torch.arange(4.0).view(1, 4))[0]
    assert torch.equal(out, torch.arange(4.0).view(1, 4) * 3 + 1)
    assert not marker.exists() and [p.name for p in tmp_path.rglob("*")] == ["triton", planted.name]
