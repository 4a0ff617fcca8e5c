"""`gatelab grad flow` on every kind of state: one that copies the input (``next p = x``,
RWKV's token shift, QRNN of width 2) has no gradient path through time and is reported so; the
gradients of the others through it are right; no zoo or published cell ends in a traceback."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import gatelab
from gatelab import load_cell
from gatelab.cell.zoo import zoo_names
from gatelab.dynamics.flow import gradient_flow, no_gradient_path
from gatelab.dynamics.model import CellLayer
from gatelab.errors import GatelabError
from published_cells import PUBLISHED


def flow(cell: gatelab.Cell):
    return gradient_flow(cell, steps=4, batch=3, hidden=4, seed=1)


@pytest.mark.parametrize("name", [*zoo_names(), *sorted(PUBLISHED)])
def test_every_cell_runs_grad_flow(name):
    cell = load_cell(name) if name in zoo_names() else gatelab.parse_cell(PUBLISHED[name])
    try:
        r = flow(cell)
    except GatelabError:
        return  # a clear refusal (a state that overflows) is fine; a traceback is not
    assert r.distance == list(range(5)) and set(r.states) == set(cell.states)
    for s in r.no_path:
        assert r.states[s]["grad_norm"][1:] == [0.0] * 4


@pytest.mark.parametrize("name, copy", [("rwkv", "xprev"), ("qrnn2", "p")])
def test_a_state_copying_the_input_has_no_path(name, copy):
    cell = gatelab.parse_cell(PUBLISHED[name])
    r = flow(cell)
    assert r.no_path == [copy]
    assert r.states[copy]["grad_norm"] == pytest.approx([1.0, 0, 0, 0, 0])
    assert r.state not in r.no_path and r.grad_norm[1] > 0


SHIFT = """input x : hidden
state h, p
next h = tanh(U @ p + V @ h)
next p = x
output h
"""


def test_gradient_through_a_copied_input_is_the_input_gradient():
    """``p_k = x_(k-1)`` reaches the loss only through ``p_k``: ``∂L/∂p_k`` measured through
    the leaf the replay makes of it equals ``∂L/∂x_(k-1)`` taken on the input itself."""
    cell = gatelab.parse_cell(SHIFT, default_name="shift")
    g = torch.Generator().manual_seed(0)
    layer = CellLayer(cell, 3, 3, generator=g)
    x = torch.randn(2, 5, 3, generator=g)
    h0 = {s: torch.zeros(2, 3, requires_grad=True) for s in cell.states}
    u = torch.randn(2, 3, generator=g)

    trail, _ = layer(x, h0, every_state=True)
    steps = range(1, 5)  # p_k is read at step k + 1 <= 5 (p_5 is never read)
    ps = [trail[k]["p"] for k in steps]
    by_state = torch.autograd.grad((trail[-1]["h"] * u).sum(), ps)

    xg = x.clone().requires_grad_(True)
    trail, _ = layer(xg, h0)
    (by_input,) = torch.autograd.grad((trail[-1]["h"] * u).sum(), xg)
    for k, grad in zip(steps, by_state, strict=True):
        torch.testing.assert_close(grad, by_input[:, k - 1])
    assert bool(by_input[:, 0].abs().sum() > 0)
    assert no_gradient_path(cell) == ["p"]


def test_cli_reports_the_state_without_a_path(tmp_path):
    from gatelab.cli import app

    path = tmp_path / "rwkv.cell"
    path.write_text(PUBLISHED["rwkv"])
    args = ["grad", "flow", str(path), "--steps", "4", "--batch", "3", "--hidden", "4"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "no gradient path through time: xprev" in res.stdout
    res = CliRunner().invoke(app, [*args, "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["no_path"] == ["xprev"]


def test_zoo_measurements_are_unchanged_by_the_leaves():
    """States already in the graph are measured as before: LSTM's ``c`` (read out into ``h``)
    gives the same curve with and without ``every_state``."""
    cell = load_cell("lstm")
    g = torch.Generator().manual_seed(2)
    layer = CellLayer(cell, 4, 4, generator=g)
    x = torch.randn(3, 6, 4, generator=g)
    u = torch.randn(3, 4, generator=g)
    grads = []
    for every in (False, True):
        h0 = {s: torch.zeros(3, 4, requires_grad=True) for s in cell.states}
        trail, _ = layer(x, h0, every_state=every)
        grads.append(torch.autograd.grad((trail[-1]["c"] * u).sum(),
                                         [t["c"] for t in trail]))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
