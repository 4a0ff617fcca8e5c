"""The JAX peer of ``gatelab bench --peer jax``: generated from a cell's equations, it computes the
gatelab layer's function (outputs and gradients) on tiny sizes; the bench refuses a peer that
does not; the option is checked and skipped with one line without JAX."""

from __future__ import annotations

import re

import pytest
import torch
from typer.testing import CliRunner

import gatelab
import gatelab.nn as gn
from gatelab.cli import app
from gatelab.engine import jax_peer_bench
from gatelab.engine.layout import EngineError

# one state, a second GEMM stage; peepholes; layer_norm; an input read as itself; a readout
CELLS = ["mgu", "lstm-peephole", "lstm-ln", "mut1", "sru"]


def _peer(name: str, H: int = 3, T: int = 4, N: int = 2):
    jnp = pytest.importorskip("jax.numpy")
    from gatelab.engine.jax_peer import JaxPeer

    cell = gatelab.load_cell(name)
    torch.manual_seed(0)
    model, x = gn.RNN(cell, H, H), torch.randn(T, N, H)
    P = {k: jnp.asarray(v.detach().numpy()) for k, v in model.cell_params().items()}
    return model, x, JaxPeer(cell, H), P, jnp.asarray(x.numpy())


@pytest.mark.parametrize("name", CELLS)
def test_the_peer_computes_the_layers_function(name):
    model, x, peer, P, X = _peer(name)
    jax_peer_bench.check_same_function(model, x, peer, P, X)  # raises when not
    assert "lax.scan" in peer.source and "@ Q['_stack0']" in peer.source


def test_a_peer_with_other_parameters_is_refused():
    model, x, peer, P, X = _peer("mgu")
    P = {**P, "b_n": P["b_n"] + 0.01}
    with pytest.raises(EngineError, match="not gatelab's function"):
        jax_peer_bench.check_same_function(model, x, peer, P, X)


def test_input_products_are_hoisted_out_of_the_loop():
    pytest.importorskip("jax")
    from gatelab.engine.jax_peer import peer_source

    src = peer_source(gatelab.load_cell("mgu"), 5)
    pack, rest = src.split("def hoist")
    hoist, step = rest.split("def step")[0], rest.split("def step")[1].split("def forward")[0]
    stacks = dict(re.findall(r"Q\['(_stack\d)'\] = jnp.concatenate\(\[(.*?)\], axis", pack))
    (x_stack,) = re.findall(r"\(X\) @ Q\['(_stack\d)'\]", hoist)  # one GEMM, all steps
    assert stacks[x_stack] == "P['W_f'], P['W_n']"
    inside = dict(re.findall(r"\((\w+\*?\w*)\) @ Q\['(_stack\d)'\]", step))
    assert stacks[inside["s0"]] == "P['U_f']" and stacks[inside["v0*s0"]] == "P['U_n']"
    assert "X_t" not in step  # the input is read only through the hoisted products


def test_bench_peer_option_is_checked_and_skipped_without_jax(monkeypatch):
    runner = CliRunner()
    r = runner.invoke(app, ["bench", "--peer", "torch"])
    assert r.exit_code == 2 and "--peer knows 'jax'" in r.output
    r = runner.invoke(app, ["bench", "--peer-only"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["bench", "--peer", "jax", "--peer-only", "--peer-backends", "fast"])
    assert r.exit_code == 2 and "unknown backend 'fast'" in r.output
    monkeypatch.setattr(jax_peer_bench, "jax_available", lambda: False)
    r = runner.invoke(app, ["bench", "--peer", "jax", "--peer-only"])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "JAX peer skipped: jax is not installed (pip install " \
        "'gatelab[peer]')"
