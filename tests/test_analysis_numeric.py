"""Numeric parity: every reduced mode of every zoo cell equals the original cell run with its
gates forced to that setting (gatelab.cell.evaluate.step), on random tensors.

Readout states are fed their rewritten previous value (LSTM: h = o_prev·tanh(c) with o_prev held
at the setting), so the original step sees exactly the state the reduced equations assume.
"""

import pytest
import torch

import gatelab
from gatelab.analysis import analyze
from gatelab.analysis.paths import gradient
from gatelab.cell.evaluate import evaluate, init_params, step

N, I, H = 5, 3, 4


def _tensor(v, like: torch.Tensor) -> torch.Tensor:
    return v if torch.is_tensor(v) else torch.full_like(like, float(v))


def _setup(cell, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    i = H if cell.hidden_inputs else I  # `input x : hidden`
    params = init_params(cell, i, H, dtype=torch.float64, generator=g)
    # larger weights than torch's init so that every nonlinearity is exercised
    params = {k: 3 * v for k, v in params.items()}
    inputs = {x: torch.randn(N, i, dtype=torch.float64, generator=g) for x in cell.inputs}
    # the previous inputs (x_prev) of readouts that read the input and feed back
    inputs_prev = {p.name: torch.randn(N, i, dtype=torch.float64, generator=g)
                   for p in analyze(cell).memory.prev_inputs.values()}
    return g, params, inputs, inputs_prev


def _close(got, want: torch.Tensor) -> float:
    got = _tensor(got, want)
    both_nan = torch.isnan(got) & torch.isnan(want)
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    return (got - want).abs()[~both_nan].max().item() if (~both_nan).any() else 0.0


@pytest.mark.parametrize("name", gatelab.zoo_names())
def test_every_mode_matches_the_forced_cell(name):
    cell = gatelab.load_cell(name)
    a = analyze(cell)
    g, params, inputs, inputs_prev = _setup(cell)
    memory = {m: torch.randn(N, H, dtype=torch.float64, generator=g) for m in a.memory_states}
    assert a.modes
    for mode in a.modes:
        env = {**params, **inputs, **memory, **inputs_prev}
        env.update({p.name: float(mode.gates[gate]) for gate, p in a.memory.prev_gates.items()})
        states = dict(memory)
        for r, ro in a.readouts.items():
            states[r] = _tensor(evaluate(ro.previous, env), memory[a.memory_states[0]])
        force = {k: float(v) for k, v in mode.gates.items()}
        want = step(cell, inputs, states, params, force=force).states
        for m in a.memory_states:
            diff = _close(evaluate(mode.updates[m], env), want[m])
            assert diff < 1e-12, (name, mode.label, m, diff)
        new = {f"{m}'": want[m] for m in a.memory_states}
        for r in a.readouts:
            diff = _close(evaluate(mode.updates[r], {**env, **new}), want[r])
            assert diff < 1e-12, (name, mode.label, r, diff)


@pytest.mark.parametrize("name", ["lstm", "gru", "mgu", "cifg", "fgr", "gru-torch", "minlstm"])
def test_stage1_with_vector_gates_and_stage2_with_scalar_gates(name):
    """Stage 1 holds for any gate values; stage 2 (gates out of the maps) for scalar gates."""
    cell = gatelab.load_cell(name)
    a = analyze(cell)
    g, params, inputs, inputs_prev = _setup(cell, seed=1)
    memory = {m: torch.randn(N, H, dtype=torch.float64, generator=g) for m in a.memory_states}
    prev = {p.name: torch.rand(N, H, dtype=torch.float64, generator=g)
            for p in a.memory.prev_gates.values()}
    env = {**params, **inputs, **memory, **prev, **inputs_prev}
    states = dict(memory)
    for r, ro in a.readouts.items():
        states[r] = _tensor(evaluate(ro.previous, env), memory[a.memory_states[0]])
    # stage 1: the gates take their own (vector) values computed by the cell
    res = step(cell, inputs, states, params)
    env1 = {**env, **{k: res.values[k] for k in cell.gates}}
    for m in a.memory_states:
        assert _close(evaluate(a.stage1[m], env1), res.states[m]) < 1e-12
    # stage 2: every gate (and previous gate) a scalar, drawn at random in (0, 1)
    scalars = {k: float(v) for k, v in zip(cell.gates, torch.rand(len(cell.gates),
                                                                   generator=g), strict=True)}
    env2 = {**env, **scalars}
    env2.update({p.name: scalars[k] for k, p in a.memory.prev_gates.items()})
    states2 = dict(memory)
    for r, ro in a.readouts.items():
        states2[r] = _tensor(evaluate(ro.previous, env2), memory[a.memory_states[0]])
    res2 = step(cell, inputs, states2, params, force=scalars)
    for m in a.memory_states:
        assert _close(evaluate(a.stage2[m], env2), res2.states[m]) < 1e-12


def _path_jacobian(paths, env, H):
    """Σ over paths of the product of their factors (diag(vector) or a weight matrix)."""
    total = torch.zeros(H, H, dtype=torch.float64)
    for path in paths:
        j = torch.eye(H, dtype=torch.float64)
        for kind, e in path:
            if kind == "mat":
                j = j @ env[e.name]
            else:
                v = _tensor(evaluate(e, env), torch.zeros(1, H, dtype=torch.float64))
                j = j @ torch.diag(v.reshape(-1))
        total = total + j
    return total


@pytest.mark.parametrize("name", ["lstm", "gru", "mgu", "gru-torch", "nfg", "minlstm"])
def test_gradient_paths_equal_autograd(name):
    """∂s'/∂s as printed (sum of diag/matrix paths) equals torch's Jacobian, stage 2 and modes."""
    cell = gatelab.load_cell(name)
    a = analyze(cell)
    g = torch.Generator().manual_seed(2)
    params = {k: 3 * v for k, v in init_params(cell, I, H, dtype=torch.float64,
                                                generator=g).items()}
    base = {**params, **{x: torch.randn(1, I, dtype=torch.float64, generator=g)
                         for x in cell.inputs}}
    base.update({m: torch.randn(1, H, dtype=torch.float64, generator=g) for m in a.memory_states})
    gates = {k: float(v) for k, v in zip(sorted(s.name for s in a.scalars),
                                          torch.rand(len(a.scalars), generator=g), strict=True)}
    cases = [(a.stage2, gates, lambda m: gradient(a.stage2[m], gatelab.Cell.sym(m), a.scalars))]
    cases += [(mode.updates, {}, lambda m, mode=mode: mode.gradients[m]) for mode in a.modes]
    for updates, values, grad in cases:
        env = {**base, **values}
        for m in a.memory_states:
            def f(s, m=m, env=env, updates=updates):
                return _tensor(evaluate(updates[m], {**env, m: s.reshape(1, H)}),
                               base[m]).reshape(-1)
            want = torch.autograd.functional.jacobian(f, base[m].reshape(-1))
            got = _path_jacobian(grad(m).paths, env, H)
            assert (got - want).abs().max().item() < 1e-10, (name, m)
