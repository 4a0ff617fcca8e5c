"""The method is general: for every zoo cell and for cells generated from the grammar, the
analysis' kinds agree with a numerical check, its scan-parallel verdict agrees with the engine
(the scan equals the sequential loop; a cell it refuses is refused by the engine), and every gate
that acts anywhere appears in the diagram as a switch.

The numerical kind check runs the original cell (``evaluate.step``) with its gates forced to the
setting and tests each memory state's new value directly: ``zero`` is 0, ``hold`` is the previous
value, ``feedforward`` does not change when the previous value does, ``rnn`` is
``scale · act(pre)`` with ``pre`` affine in what the state enters the maps through (checked at a
random combination of two points), ``residual_rnn`` the same plus the state.
"""

from __future__ import annotations

import pytest
import sympy
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gatelab
import gatelab.nn as gn
from gatelab.analysis import analyze
from gatelab.cell.evaluate import evaluate, init_params, step
from gatelab.cell.functions import FUNCTIONS, layer_norm
from gatelab.diagram.circuit import build_circuit
from gatelab.engine.layout import EngineError

N, I, H = 4, 3, 5
F64 = torch.float64


def _full(v, like: torch.Tensor) -> torch.Tensor:
    return v if torch.is_tensor(v) else torch.full_like(like, float(v))


def _env(cell, a, g: torch.Generator):
    i = H if cell.hidden_inputs else I
    params = {k: 2 * v for k, v in init_params(cell, i, H, dtype=F64, generator=g).items()}
    inputs = {x: torch.randn(N, i, dtype=F64, generator=g) for x in cell.inputs}
    prev_in = {p.name: torch.randn(N, i, dtype=F64, generator=g)
               for p in a.memory.prev_inputs.values()}
    return params, inputs, prev_in


def _run(cell, a, mode, params, inputs, prev_in, memory):
    """The forced original step from ``memory`` (readouts fed their rewritten previous value)."""
    env = {**params, **inputs, **prev_in, **memory}
    env.update({p.name: float(mode.gates[gate]) for gate, p in a.memory.prev_gates.items()})
    states = dict(memory)
    like = next(iter(memory.values()))
    for r, ro in a.readouts.items():
        states[r] = _full(evaluate(ro.previous, env), like)
    force = {k: float(v) for k, v in mode.gates.items()}
    return step(cell, inputs, states, params, force=force).states, env


def _affine_in_through(form, env, s: sympy.Symbol, g: torch.Generator) -> bool:
    """``pre`` with each ``through`` replaced by a free vector is affine in those vectors (a
    normalised map ``layer_norm(U·g(s))`` counts as a map: docs/analysis.md)."""
    ts = [sympy.Symbol(f"T{k}__") for k in range(len(form.through))]
    pre = form.pre
    for ln in pre.atoms(layer_norm):
        if any(ln.args[0].has(t) for t in form.through):
            pre = pre.xreplace({ln: ln.args[0]})  # the normalised map read as the map itself
    pre = pre.xreplace(dict(zip(form.through, ts, strict=True)))
    if s in pre.free_symbols:
        return False
    p1 = {t.name: torch.randn(N, H, dtype=F64, generator=g) for t in ts}
    p2 = {t.name: torch.randn(N, H, dtype=F64, generator=g) for t in ts}
    alpha = 0.3
    mid = {k: alpha * p1[k] + (1 - alpha) * p2[k] for k in p1}
    like = next(iter(p1.values()))

    def val(p):
        return _full(evaluate(pre, {**env, **p}), like)

    want = alpha * val(p1) + (1 - alpha) * val(p2)
    return torch.allclose(val(mid), want, atol=1e-9)


def check_kinds(cell, seed: int = 0) -> int:
    """Numerically check the kind of every memory state in every mode; returns the count."""
    a = analyze(cell)
    g = torch.Generator().manual_seed(seed)
    params, inputs, prev_in = _env(cell, a, g)
    memory = {m: torch.randn(N, H, dtype=F64, generator=g) for m in a.memory_states}
    checked = 0
    for mode in a.modes:
        new, env = _run(cell, a, mode, params, inputs, prev_in, memory)
        for m in a.memory_states:
            kind, info = mode.kind[m], mode.kinds[m]
            other = {**memory, m: torch.randn(N, H, dtype=F64, generator=g)}
            new2, _ = _run(cell, a, mode, params, inputs, prev_in, other)
            moved = not torch.allclose(new2[m], new[m], atol=1e-12, equal_nan=True)
            where = (cell.name, mode.label, m, kind)
            if kind == "zero":
                assert torch.equal(new[m], torch.zeros_like(new[m])), where
            elif kind == "hold":
                assert torch.allclose(new[m], memory[m], atol=1e-12), where
            elif kind == "feedforward":
                assert not moved, where
            elif kind in ("rnn", "residual_rnn"):
                assert moved, where
                form = info.rnn
                assert _affine_in_through(form, env, sympy.Symbol(m), g), where
                act = form.pre if form.act == "identity" else FUNCTIONS[form.act](form.pre)
                value = form.scale * act + (sympy.Symbol(m) if kind == "residual_rnn" else 0)
                got = _full(evaluate(value, env), new[m])
                assert torch.allclose(got, new[m], atol=1e-10), where
            else:
                assert kind == "other", where
                undefined = torch.isnan(new[m]).any()
                assert undefined or (moved and not torch.allclose(new[m], memory[m])), where
            checked += 1
    return checked


def check_scan(cell, seed: int = 0) -> None:
    """The analysis' scan-parallel verdict is the engine's: scan == sequential, or refused."""
    a = analyze(cell)
    torch.manual_seed(seed)
    i = H if cell.hidden_inputs else I
    if not a.scan_parallel:
        with pytest.raises(EngineError, match="not scan-parallel"):
            gn.RNN(cell, i, H, backend="scan")(torch.randn(3, 2, i))
        return
    ref = gn.RNN(cell, i, H, backend="reference").double()
    scan = gn.RNN(cell, i, H, backend="scan").double()
    auto = gn.RNN(cell, i, H, backend="auto").double()
    scan.load_state_dict(ref.state_dict())
    auto.load_state_dict(ref.state_dict())
    x = torch.randn(7, 2, i, dtype=F64)
    outs = []
    for m in (ref, scan, auto):
        xi = x.clone().requires_grad_()
        out, hn = m(xi)
        hn = hn if isinstance(hn, tuple) else (hn,)
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=F64).view_as(out)).sum()
        loss = loss + sum(h.sum() for h in hn)
        outs.append([out, *hn, *torch.autograd.grad(loss, [xi, *m.parameters()])])
    for got in outs[1:]:
        for want, have in zip(outs[0], got, strict=True):
            assert (want - have).abs().max().item() < 1e-10, cell.name


def check_diagram(cell) -> None:
    """Every gate that acts somewhere is drawn as a switch."""
    a = analyze(cell)
    acting = {s.gate for s in a.switches if s.type not in ("unused", "value")}
    circuit = build_circuit(a)
    drawn = set(circuit.gates)  # and gates inside a mixed switch (minLSTM's f/(f + i))
    drawn |= {s.name for p in circuit.switches() if p.coef is not None
              for s in p.coef.free_symbols}
    assert acting <= drawn, (cell.name, acting)


@pytest.mark.parametrize("name", gatelab.zoo_names())
def test_zoo_kinds_agree_with_a_numerical_check(name):
    assert check_kinds(gatelab.load_cell(name)) > 0


@pytest.mark.parametrize("name", gatelab.zoo_names())
def test_zoo_scan_verdict_is_the_engines(name):
    check_scan(gatelab.load_cell(name))


@pytest.mark.parametrize("name", gatelab.zoo_names())
def test_zoo_every_gate_is_drawn(name):
    check_diagram(gatelab.load_cell(name))


# ---- cells generated from the grammar -----------------------------------------------------------

ACTS = ["tanh", "sigmoid", "relu"]


@st.composite
def cells(draw) -> str:
    """A random valid gated cell: 1-2 gates that may read the state, a candidate whose
    recurrence is a matrix, an elementwise vector or nothing, an update drawn from the shapes
    published cells use, and optionally a second state that is a readout (with an output gate)
    or a second memory."""
    lines = ["input x", "state h"]
    n_gates = draw(st.integers(1, 2))
    gates = ["g", "k"][:n_gates]
    for gname in gates:
        reads = draw(st.booleans())
        lines.append(f"gate {gname} = sigmoid(W_{gname} @ x" + (f" + U_{gname} @ h" if reads
                                                                 else "") + f" + b_{gname})")
    g = gates[0]
    k = gates[-1]
    rec = draw(st.sampled_from(["", " + U_n @ h", f" + U_n @ ({g} * h)", " + u * h"]))
    act = draw(st.sampled_from(ACTS))
    lines.append(f"let n = {act}(W_n @ x{rec} + b_n)")
    update = draw(st.sampled_from([
        f"{g} * h + (1 - {g}) * n",          # spdt (GRU-like)
        f"{g} * h + {k} * n",               # two spst (LSTM-like)
        f"h + {g} * (n - h)",               # spdt written as an interpolation
        f"{g} * {g} * h + (1 - {g}) * n",   # idempotent gate
        f"(1 - {g}) * h + {g} * n",
        f"{g} * n",
    ]))
    lines.append(f"let h_new = {update}")
    lines.append("next h = h_new")
    second = draw(st.sampled_from(["none", "readout", "gated-readout", "memory"]))
    if second == "readout":
        lines[1] = "state h, y"
        lines.append("next y = tanh(h_new)")
        lines.append("output y")
    elif second == "gated-readout":
        lines[1] = "state h, y"
        lines.append("gate o = sigmoid(W_o @ x + b_o)")
        lines.append("next y = o * h_new")
        lines.append("output y")
    elif second == "memory":
        lines[1] = "state h, m"
        lines.append(f"next m = {g} * m + (1 - {g}) * h")
        lines.append("output h")
    return "\n".join(lines) + "\n"


GEN = settings(max_examples=12, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@GEN
@given(cells())
def test_generated_cells(text):
    cell = gatelab.parse_cell(text, default_name="generated")
    assert check_kinds(cell) > 0
    check_scan(cell)
    check_diagram(cell)
