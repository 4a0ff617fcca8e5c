"""Cell identity: a ``Cell`` is a cache key of the engine (plans, layouts, vendor matches), so two
cells that compute differently must never compare equal. Identity is the normalised ``.cell``
text plus the order of the parameters (which fixes the packed layout)."""

from __future__ import annotations

import dataclasses

import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import gatelab.nn
from cellgrammar import cell_texts
from gatelab import CellError, cell_text, parse_cell

SOME = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


def _parse(text: str):
    try:
        return parse_cell(text, "t.cell")
    except CellError:
        return None


def _variant(text: str, draw) -> str:
    """Small edits that may or may not change what the text says."""
    edit = draw(st.sampled_from(["hidden", "name", "doc", "swap", "number", "same"]))
    lines = text.splitlines()
    if edit == "hidden":
        lines = [ln + " : hidden" if ln == "input x" else ln for ln in lines]
    elif edit == "name":
        lines.append("name other")
    elif edit == "doc":
        lines.insert(0, "# another title")
    elif edit == "swap" and len(lines) > 3:
        i = draw(st.integers(0, len(lines) - 2))
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    elif edit == "number":
        lines = [ln.replace("0.5", "0.25", 1) for ln in lines]
    return "\n".join(lines) + "\n"


@SOME
@given(cell_texts(), st.data())
def test_cells_are_equal_exactly_when_their_normalised_text_and_parameter_order_are(text, data):
    a = _parse(text)
    assume(a is not None)
    b = _parse(_variant(text, data.draw))
    assume(b is not None)
    same_text = cell_text(a) == cell_text(b)
    assert (a == b) == (same_text and list(a.params) == list(b.params))
    if not same_text:
        assert a != b
    if a == b:
        assert hash(a) == hash(b)


@SOME
@given(cell_texts())
def test_the_normalised_text_parses_to_an_equal_cell_with_the_same_hash(text):
    a = _parse(text)
    assume(a is not None)
    again = parse_cell(cell_text(a))
    # the printer may order terms (hence first uses) differently: the same equations always
    assert again.same_equations(a)
    same = dataclasses.replace(again, params={p: again.params[p] for p in a.params})
    assert same == a and hash(same) == hash(a)


HIGHWAY = """name hw
input x{}
state h
let n = tanh(W @ x + U @ h + b)
next h = n
output h
"""


def test_cells_differing_only_in_an_input_size_are_different_cells():
    plain, hidden = parse_cell(HIGHWAY.format("")), parse_cell(HIGHWAY.format(" : hidden"))
    assert plain != hidden
    assert len({plain, hidden}) == 2


def test_cells_differing_only_in_the_parameter_order_are_different_cells():
    """The order fixes the packed layout of weight_ih: one cell's layout must not serve the
    other's."""
    a = parse_cell("input x\nstate h\nnext h = tanh(W1 @ x + W2 @ x + U @ h)\n")
    b = dataclasses.replace(a, params={p: a.params[p] for p in ("W2", "W1", "U")})
    assert a != b and a.same_equations(b)


def test_two_cells_differing_only_in_dims_both_run_in_one_process():
    """The engine caches keyed on the cell used to give the second one the first one's plan (a
    shape RuntimeError, or a wrong result)."""
    torch.manual_seed(0)
    hidden, plain = parse_cell(HIGHWAY.format(" : hidden")), parse_cell(HIGHWAY.format(""))
    for cell, (i, h) in ((hidden, (4, 4)), (plain, (3, 4)), (hidden, (4, 4))):
        for backend in ("generated", "reference"):
            layer = gatelab.nn.RNN(cell, i, h, backend=backend, dtype=torch.float64)
            x = torch.randn(5, 2, i, dtype=torch.float64)
            out, h_n = layer(x)
            p = layer.cell_params()
            state = torch.zeros(2, h, dtype=torch.float64)
            for t in range(5):  # the cell's equation, by hand
                state = torch.tanh(x[t] @ p["W"].T + state @ p["U"].T + p["b"])
                torch.testing.assert_close(out[t], state)
            torch.testing.assert_close(h_n[0], state)
