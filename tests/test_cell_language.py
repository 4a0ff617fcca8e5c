"""The cell language: zoo files parse, print and round-trip; other authors' cells parse."""

from __future__ import annotations

import pytest
import sympy

from gatelab import CellError, load_cell, parse_cell, zoo_names
from gatelab.cell import MatVec, cell_latex, cell_text, cell_unicode, expr_text, sigmoid

EXPECTED_ZOO = {
    "rnn", "lstm", "lstm-peephole", "nig", "nfg", "nog", "niaf", "noaf", "cifg", "fgr", "gru",
    "gru-torch", "gru-chung", "mgu", "mgu1", "mgu2", "mgu3", "mingru", "minlstm",
    # published cells added with the issue on cells nobody here wrote
    "janet", "sru", "qrnn", "indrnn", "ugrnn", "mut1", "mut2", "mut3", "delta-rnn",
    "lstm-ln",
}

DESIGN_MGU = """\
# Minimal Gated Unit (Zhou et al. 2016)
name  mgu
input x
state h
gate  f = sigmoid(W_f @ x + U_f @ h + b_f)
let   n = tanh(W_n @ x + U_n @ (f * h) + b_n)
next  h = (1 - f) * h + f * n
output h
"""

DESIGN_LSTM = """\
name  lstm
input x
state h
state c
gate  i = sigmoid(W_i @ x + U_i @ h + b_i)
gate  f = sigmoid(W_f @ x + U_f @ h + b_f)
gate  o = sigmoid(W_o @ x + U_o @ h + b_o)
let   g = tanh(W_g @ x + U_g @ h + b_g)
let   c_new = f * c + i * g
next  c = c_new
next  h = o * tanh(c_new)
output h
"""

# The same LSTM by another author: own names, Unicode, lines in another order, lets used early.
OTHER_AUTHOR_LSTM = """\
# my long short-term memory
name   mylstm
input  u
state  y, m
next   y = q ⊙ tanh(m2)
next   m = m2
let    m2 = b ⊙ m + a ⊙ cand
gate   q = σ(A3 @ u + B3 @ y + k3)
let    cand = tanh(A4 @ u + B4 @ y + k4)
gate   a = σ(A1 @ u + B1 @ y + k1)
gate   b = σ(A2 @ u + B2 @ y + k2)
output y
"""


def test_zoo_lists_every_cell_of_the_issue():
    assert set(zoo_names()) == EXPECTED_ZOO


@pytest.mark.parametrize("name", sorted(EXPECTED_ZOO))
def test_zoo_cell_round_trips_through_cell_text(name):
    cell = load_cell(name)
    again = parse_cell(cell_text(cell), default_name=name)
    assert again == cell
    assert cell.doc, f"{name}.cell must carry a comment naming its source"
    assert cell_unicode(cell) and cell_latex(cell).startswith("\\begin{aligned}")


def test_design_md_examples_parse_unchanged():
    for text, zoo in ((DESIGN_MGU, "mgu"), (DESIGN_LSTM, "lstm")):
        mine, builtin = parse_cell(text), load_cell(zoo)
        assert (mine.gates, mine.lets, mine.nexts) == (builtin.gates, builtin.lets, builtin.nexts)


def test_ir_contents_of_lstm():
    c = parse_cell(DESIGN_LSTM)
    assert c.inputs == ("x",) and c.states == ("h", "c") and c.output == "h"
    assert list(c.gates) == ["i", "f", "o"] and list(c.lets) == ["g", "c_new"]
    W_i, x, U_i, h, b_i = sympy.symbols("W_i x U_i h b_i")
    assert c.gates["i"] == sigmoid(MatVec(W_i, x) + MatVec(U_i, h) + b_i)
    assert c.params["W_i"].role == "matrix" and c.params["W_i"].shape == ("H", "I")
    assert c.params["U_i"].shape == ("H", "H")
    assert c.params["b_i"].role == "vector" and c.params["b_i"].shape == ("H",)
    assert c.param_shape("W_i", 3, 5) == (5, 3)
    assert str(c.param_count()) == "8*d**2 + 4*d"


def test_other_authors_names_order_and_unicode():
    c = parse_cell(OTHER_AUTHOR_LSTM)
    assert c.states == ("y", "m") and set(c.gates) == {"q", "a", "b"}
    # evaluation order respects dependencies even though the file uses lets before defining them
    order = [n for _, n in c.order]
    assert order.index("cand") < order.index("m2") and order.index("a") < order.index("m2")
    assert c.params["A1"].shape == ("H", "I") and c.params["k1"].role == "vector"
    assert parse_cell(cell_text(c)) == c


def test_peephole_vector_parameters_multiply_elementwise():
    c = load_cell("lstm-peephole")
    assert c.params["p_i"].role == "vector" and c.params["p_i"].shape == ("H",)


def test_inline_substitutes_lets_and_gates():
    c = load_cell("lstm")
    full = c.inline(c.nexts["h"])
    names = {s.name for s in full.free_symbols}
    assert names.isdisjoint({"i", "f", "o", "g", "c_new"})
    kept = c.inline(c.nexts["h"], keep={"o"})
    assert sympy.Symbol("o") in kept.free_symbols


def test_expr_text_is_parseable_and_unicode_is_readable():
    c = load_cell("gru")
    assert expr_text(c.nexts["h"]) == "h*z + (1 - z)*n" or "z*h" in expr_text(c.nexts["h"],
                                                                               lead={"z"})
    assert "σ" in cell_unicode(load_cell("lstm")) and "⊙" in cell_unicode(load_cell("lstm"))


def test_load_cell_unknown_name_is_a_cell_error():
    with pytest.raises(CellError, match="no built-in cell or file named 'lstmm'"):
        load_cell("lstmm")


def test_input_size_inferred_for_biases_inside_input_maps():
    c = parse_cell("input x\nstate h\nnext h = tanh(W @ (x + bx) + U @ h + b)\n")
    assert c.params["bx"].shape == ("I",) and c.params["b"].shape == ("H",)
    assert c.output == "h" and c.name == "cell"
