"""The sequence kernel (``backend="sequence"``): the whole time loop of a layer, forward and
backward, in one generated C call. Parity with the reference loop (float64, 1e-12) on outputs,
final states and every gradient for every zoo cell (stacked, bidirectional, dropout, packed
batches, given ``hx``), gradcheck, generated cells, float32, the fallbacks and refusals."""

from __future__ import annotations

import ctypes
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import gatelab
import gatelab.nn as gn
from cellgrammar import cell_texts
from gatelab.engine import c_pointwise as cp
from gatelab.engine.backends import resolve
from gatelab.engine.layout import EngineError, Layout
from gatelab.engine.plan import uses_layer_norm

ZOO = gatelab.zoo_names()
ELEMENTWISE = [n for n in ZOO if not uses_layer_norm(gatelab.load_cell(n))]
F64 = torch.float64
TOL = 1e-12
needs_cc = pytest.mark.skipif(cp.compiler() is None, reason="no C compiler")


def _loss(out, hn) -> torch.Tensor:
    total = 0.0
    for t in [out, *(hn if isinstance(hn, tuple) else (hn,))]:
        total = total + (t * torch.cos(torch.arange(t.numel(), dtype=t.dtype)).view_as(t)).sum()
    return total


def _run(model, x, hx=None, lengths=None, seed=0):
    """Outputs, final states and the gradients of inputs, hx and every parameter."""
    xi = x.clone().requires_grad_()
    hs = None if hx is None else tuple(h.clone().requires_grad_() for h in hx)
    inp = xi if lengths is None else pack_padded_sequence(xi, lengths, enforce_sorted=False)
    torch.manual_seed(seed)  # the same dropout masks in both models
    out, hn = model(inp, None if hs is None else (hs[0] if len(hs) == 1 else hs))
    if lengths is not None:
        out = pad_packed_sequence(out)[0]
    wrt = [xi, *(hs or ()), *model.parameters()]
    loss = _loss(out, hn)
    if not loss.requires_grad:  # a cell whose outputs read nothing learned (next h = h)
        grads = [None] * len(wrt)
    else:
        grads = torch.autograd.grad(loss, wrt, allow_unused=True)  # SRU never reads h
    grads = [torch.zeros_like(w) if g is None else g for w, g in zip(wrt, grads, strict=True)]
    return [out, *(hn if isinstance(hn, tuple) else (hn,)), *grads]


def _pair(name_or_cell, i, h, **kw):
    models = [gn.RNN(name_or_cell, i, h, backend=b, **kw).double()
              for b in ("reference", "sequence")]
    models[1].load_state_dict(models[0].state_dict())
    return models


def _assert_equal(ref, got, tol=TOL):
    assert len(ref) == len(got)
    for a, b in zip(ref, got, strict=True):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= tol


@needs_cc
@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("packed", [False, True])
def test_sequence_kernel_equals_reference_on_every_zoo_cell(name, packed):
    """Two stacked layers with dropout between them, bidirectional (one direction for
    ``input x : hidden`` cells, whose layers need I = H), a given hx, a full or a packed batch of
    unsorted lengths: outputs, final states and every gradient equal the reference loop."""
    torch.manual_seed(2)
    cell = gatelab.load_cell(name)
    hid = bool(cell.hidden_inputs)
    i, h = (5, 5) if hid else (3, 5)
    ref, seq = _pair(name, i, h, num_layers=2, bidirectional=not hid, dropout=0.3)
    x = torch.randn(6, 4, i, dtype=F64)
    d = 1 if hid else 2
    hx = tuple(torch.randn(2 * d, 4, h, dtype=F64) for _ in cell.states)
    lengths = torch.tensor([2, 6, 5, 1]) if packed else None
    _assert_equal(_run(ref, x, hx, lengths), _run(seq, x, hx, lengths))


@needs_cc
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_gradcheck_sequence_kernel_every_zoo_cell(name):
    """The kernel's gradients equal finite differences (inputs, hx, every parameter), on a
    packed batch (the padding mask's backward included)."""
    torch.manual_seed(0)
    cell = gatelab.load_cell(name)
    i = 3 if cell.hidden_inputs else 2
    model = gn.RNN(name, i, 3, backend="sequence").double()
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    x = torch.randn(4, 2, i, dtype=F64, requires_grad=True)
    hx = tuple(torch.randn(1, 2, 3, dtype=F64, requires_grad=True) for _ in model.state_names)
    lengths = torch.tensor([4, 2])

    def f(x, *rest):
        hs, ps = rest[:len(hx)], rest[len(hx):]
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, hn = torch.func.functional_call(model, dict(zip(names, ps, strict=True)),
                                             (packed, hs[0] if len(hs) == 1 else hs))
        return _loss(pad_packed_sequence(out)[0], hn)

    assert torch.autograd.gradcheck(f, (x, *hx, *params), eps=1e-6, atol=1e-6)


@needs_cc
def test_float32_agrees_with_the_generated_step():
    torch.manual_seed(0)
    for name in ("mgu", "lstm-peephole", "indrnn"):
        a, b = (gn.RNN(name, 4, 6, backend=k) for k in ("generated", "sequence"))
        b.load_state_dict(a.state_dict())
        x = torch.randn(7, 3, 4)
        for u, v in zip(_run(a, x), _run(b, x), strict=True):
            assert v.dtype == torch.float32
            torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5)


@needs_cc
@pytest.mark.parametrize("name", ["mgu", "lstm-peephole", "sru", "indrnn"])
def test_second_derivatives_take_the_exact_reference_route(name):
    """``create_graph=True`` through the kernel's node differentiates the reference loop:
    gradgradcheck holds for inputs, hx and every parameter (a packed batch; vectors, a gated
    matrix stage, an input read as itself)."""
    torch.manual_seed(0)
    cell = gatelab.load_cell(name)
    i = 2 if cell.hidden_inputs else 1
    model = gn.RNN(name, i, 2, backend="sequence").double()
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    x = torch.randn(3, 2, i, dtype=F64, requires_grad=True)
    hx = tuple(torch.randn(1, 2, 2, dtype=F64, requires_grad=True) for _ in cell.states)
    lengths = torch.tensor([3, 2])

    def f(x, *rest):
        hs, ps = rest[:len(hx)], rest[len(hx):]
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, hn = torch.func.functional_call(model, dict(zip(names, ps, strict=True)),
                                             (packed, hs[0] if len(hs) == 1 else hs))
        return _loss(pad_packed_sequence(out)[0], hn)

    assert torch.autograd.gradgradcheck(f, (x, *hx, *params), eps=1e-6, atol=1e-5)


def test_layer_norm_cells_and_other_devices_are_refused_clearly():
    layout = Layout.of(gatelab.load_cell("lstm-ln"))
    with pytest.raises(EngineError, match="layer_norm.*backend='generated'"):
        resolve(layout, "sequence", torch.device("cpu"), torch.float64)
    mgu = Layout.of(gatelab.load_cell("mgu"))
    with pytest.raises(EngineError, match="CPU float32/float64"):
        resolve(mgu, "sequence", torch.device("cpu"), torch.bfloat16)
    # auto: the kernel for a cell it can run, the generated torch code for a layer_norm cell
    assert resolve(mgu, "auto", torch.device("cpu")) == (
        "sequence" if cp.available() else "generated")
    assert resolve(layout, "auto", torch.device("cpu"), torch.float64) == "generated"


def test_without_a_compiler_the_generated_step_runs_and_says_so_once(monkeypatch):
    monkeypatch.setattr(cp, "compiler", lambda: None)
    cp.available.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            layout = Layout.of(gatelab.load_cell("mgu"))
            assert resolve(layout, "sequence", torch.device("cpu")) == "generated"
            assert resolve(layout, "sequence", torch.device("cpu")) == "generated"
            out, _ = gn.MGU(3, 4, backend="sequence")(torch.randn(4, 2, 3))
        said = [w for w in caught if "no C compiler" in str(w.message)]
        assert len(said) == 1 and out.shape == (4, 2, 4)
    finally:
        cp.available.cache_clear()


# ---- generated cells -----------------------------------------------------------------------
def _cells():
    from test_cells_generality import cells

    return cells()


@needs_cc
@pytest.mark.slow
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(_cells())
def test_generated_cells_equal_the_reference_loop(text):
    """Cells drawn from the published shapes (gates reading the state or not, candidates with a
    matrix, a gated matrix stage or a vector recurrence, readouts, a second memory): the kernel
    equals the reference loop, packed batch and hx included, and passes gradcheck."""
    cell = gatelab.parse_cell(text, default_name="generated")
    torch.manual_seed(1)
    ref, seq = _pair(cell, 3, 4)
    x = torch.randn(5, 3, 3, dtype=F64)
    hx = tuple(torch.randn(1, 3, 4, dtype=F64) for _ in cell.states)
    _assert_equal(_run(ref, x, hx, torch.tensor([5, 2, 4])), _run(seq, x, hx,
                                                                 torch.tensor([5, 2, 4])))
    small = gn.RNN(cell, 2, 2, backend="sequence").double()
    xs = torch.randn(3, 2, 2, dtype=F64, requires_grad=True)
    names = [n for n, _ in small.named_parameters()]
    ps = [p for _, p in small.named_parameters()]

    def f(x, *ps):
        return _loss(*torch.func.functional_call(small, dict(zip(names, ps, strict=True)), (x,)))

    assert torch.autograd.gradcheck(f, (xs, *ps), eps=1e-6, atol=1e-6)


@needs_cc
def test_a_later_process_loads_the_kernel_without_deriving_or_compiling(tmp_path, monkeypatch,
                                                                        capsys):
    """The first build records the library; a later process (here: the in-memory caches
    cleared) finds it through the record, verified, without SymPy derivatives or the compiler;
    a record naming another step's library is not trusted (rebuilt)."""
    from gatelab import cache
    from gatelab.engine import c_sequence, c_sequence_codegen

    monkeypatch.setenv("GATELAB_CACHE_DIR", str(tmp_path))
    assert cp.available()  # its test kernel is built before the compiler is taken away
    monkeypatch.setattr(cache, "_LOADED", {})  # as a fresh process: built into tmp_path
    cell = gatelab.load_cell("mgu")
    capsys.readouterr()
    first = c_sequence.SequenceKernel(c_sequence.Plan.of(Layout.of(cell)))
    assert capsys.readouterr().err.count("building the sequence kernel of cell 'mgu'") == 1
    monkeypatch.setattr(cache, "_LOADED", {})

    def refuse(*a, **k):
        raise AssertionError("compiled or derived again although the kernel was cached")

    monkeypatch.setattr(cache, "_compile", refuse)
    monkeypatch.setattr(c_sequence, "library_source", refuse)
    again = c_sequence.SequenceKernel(c_sequence.Plan.of(Layout.of(cell)))
    assert capsys.readouterr().err == ""  # a load says nothing
    x = torch.randn(4, 2, 3, dtype=F64)
    model = gn.RNN("mgu", 3, 5, backend="sequence").double()
    monkeypatch.setattr(c_sequence, "kernel", lambda c, b: again)
    out_again = model(x)[0]
    monkeypatch.setattr(c_sequence, "kernel", lambda c, b: first)
    assert torch.equal(out_again, model(x)[0])
    # a record pointing at another cell's library: its tag does not match, so it is rebuilt
    monkeypatch.undo()
    monkeypatch.setenv("GATELAB_CACHE_DIR", str(tmp_path))
    other = c_sequence_codegen.StepSymbols(c_sequence.Plan.of(Layout.of(gatelab.load_cell("rnn"))))
    c_sequence._library(other)
    name = c_sequence._record_name(first.symbols.key())
    other_key = cache.read_json("kernels", c_sequence._record_name(other.key()),
                                c_sequence._valid_record)
    cache.write_json("kernels", name, {"library": other_key})
    monkeypatch.setattr(cache, "_LOADED", {})
    rebuilt = c_sequence.SequenceKernel(c_sequence.Plan.of(Layout.of(cell)))
    tag = ctypes.c_char_p.in_dll(rebuilt._dll, "gl_seq_tag").value.decode()
    assert tag == name


@needs_cc
@pytest.mark.slow
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(cell_texts())
def test_cells_from_the_grammar_equal_the_reference_loop(text):
    """Cells drawn from the grammar itself (any function, power, constant, a matrix applied to
    any expression, a second state): where the reference loop gives finite numbers, the kernel
    gives the same ones (relative 1e-9: constants up to 1e16 make some sums ill-conditioned)."""
    from hypothesis import assume

    try:
        cell = gatelab.parse_cell(text, default_name="generated")
        Layout.of(cell)
    except gatelab.CellError:
        assume(False)
    except EngineError:
        assume(False)
    assume(not uses_layer_norm(cell))
    torch.manual_seed(3)
    ref, seq = _pair(cell, 3, 4)
    x = torch.randn(4, 2, 3, dtype=F64)
    want = _run(ref, x, None, torch.tensor([4, 2]))
    assume(all(torch.isfinite(w).all() for w in want))
    got = _run(seq, x, None, torch.tensor([4, 2]))
    for a, b in zip(want, got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9)


@needs_cc
@pytest.mark.parametrize("name", ["lstm-peephole", "mgu", "indrnn"])
def test_threaded_pointwise_loops_equal_the_reference(name):
    """Rows of at least 4096 elements take the OpenMP column split (H = 70: an uneven split
    in whole SIMD vectors; vector parameters' gradients summed per thread's columns), with a
    padding mask: equal to the reference loop at 2 threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(4)
        ref, seq = _pair(name, 3, 70)
        x = torch.randn(4, 64, 3, dtype=F64)
        lengths = torch.randint(1, 5, (64,))
        lengths[0] = 4
        _assert_equal(_run(ref, x, None, lengths), _run(seq, x, None, lengths))
    finally:
        torch.set_num_threads(threads)
