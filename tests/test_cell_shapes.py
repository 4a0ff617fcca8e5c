"""Shape misuse in the cell language (matrix states, sized signals, reductions): every wrong
program is ONE problem naming the line and the column of the operator, call or argument that
cannot take its operands, and every right one parses.

The table holds one program per kind of misuse; the property tests draw every pairing of the
language's shapes under each elementwise operator and each kind of ``@``.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatelab.cell import CellError, parse_cell
from gatelab.cell import shapes as sh

HEAD = "input x\nstate C : hidden x hidden\nstate M : hidden x 4\nstate h\n"  # lines 1-4
TAIL = "next C = C\nnext M = M\nnext h = tanh(W_h @ x + U_h @ h + b)\noutput h\n"


def _one_problem(text: str):
    with pytest.raises(CellError) as err:
        parse_cell(text)
    problems = err.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# (line 5, column, words the message must hold)
MISUSE = [
    ("gate g = sigmoid(W @ C)", 22, "applies a weight matrix to a vector"),
    ("let y = layer_norm(C)", 20, "layer_norm takes a vector"),
    ("let y = rms_norm(M)", 18, "rms_norm takes a vector"),
    ("let y = sum(C)", 13, "sum takes a vector"),
    ("let y = outer(C, h)", 15, "outer takes a vector"),
    ("let y = h ⊗ C", 13, "outer takes a vector"),
    ("let y = dot(h, x)", 9, "'dot' combines vectors of different sizes"),
    ("let y = M @ h", 9, "needs a vector of size 4"),
    ("let y = C @ M", 13, "its right side is a hidden x 4 matrix"),
    ("let y = x @ C", 9, "whose rows it must match"),
    ("let y = h @ x", 9, "left of @ must be a weight matrix"),
    ("let y = C + M", 11, "'+' combines a hidden x hidden matrix and a hidden x 4 matrix"),
    ("let y = C * outer(h, x)", 11, "hidden x input matrix"),
    ("let y = max(C, M)", 9, "'max' combines"),
    ("gate g : 1 = rms_norm(h)", 14, "gate g is a vector of size 1 but its expression is a "
     "vector of the hidden size"),
    ("let y : hidden = C", 18, "let y is a vector of the hidden size but its expression is a "
     "hidden x hidden matrix"),
    ("let y : 4 = W @ x + h", 19, "'+' combines a vector of size 4 and a vector of the hidden"),
    ("let y = outer(2, h)", 15, "outer of a constant has no size"),
    ("let y = C @ 2", 13, "applies to only numbers"),
    ("let y = h * xᵀ", 14, "the transpose mark ᵀ is not part of the language"),
    ("let y = max(h)", 14, "max takes 2 arguments"),
    ("let y = sin(h, h)", 14, "sin takes one argument"),
    ("let y : hidden x banana = h", 9, "unknown size 'hidden x banana'"),
    ("let y : 0 = h", 9, "size factor 0 is out of range"),
    ("let y : 1*hidden = h", 9, "size factor 1 is out of range"),
]


@pytest.mark.parametrize(("stmt", "col", "words"), MISUSE, ids=[m[0] for m in MISUSE])
def test_misuse_is_one_problem_at_its_column(stmt, col, words):
    p = _one_problem(HEAD + stmt + "\n" + TAIL)
    assert (p.line, p.col) == (5, col), str(p)
    assert words in p.message, str(p)


def test_matrix_output_and_matrix_next_of_a_vector():
    p = _one_problem(HEAD + "next C = C\nnext M = M\nnext h = C\noutput h\n")
    assert (p.line, p.col) == (7, 10) and "next h is a vector of the hidden size" in p.message
    p = _one_problem(HEAD + "next C = C + outer(W @ x, h)\nnext M = M\nnext h = h\noutput C\n")
    assert (p.line, p.col) == (8, 8) and "output C is a hidden x hidden matrix" in p.message


# ---- properties: every pairing of shapes ----------------------------------------------------
SHAPES = {"hidden": "H", "1": "1", "4": "4", "2*hidden": "2*H", "hidden x hidden": "H×H",
          "hidden x 4": "H×4", "4 x hidden": "4×H"}


def _program(a: str, b: str, line: str) -> str:
    """Two states of shapes ``a`` and ``b`` (lines 2-3) and ``line`` (line 4) using them."""
    return (f"input x\nstate A : {a}\nstate B : {b}\n{line}\nnext A = A\n"
            "next B = B\nlet y = tanh(U @ x)\noutput y\n")


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(SHAPES)), st.sampled_from(sorted(SHAPES)),
       st.sampled_from(["+", "-", "*", "/", "max"]))
def test_elementwise_operands_broadcast_or_fail_at_the_operator(a, b, op):
    line = "let z = max(A, B)" if op == "max" else f"let z = A {op} B"
    want = sh.broadcast(SHAPES[a], SHAPES[b])
    if want is not None:
        cell = parse_cell(_program(a, b, line))
        assert cell.dims["z"] == want
        return
    p = _one_problem(_program(a, b, line))
    assert (p.line, p.col) == (4, 9 if op == "max" else 11), str(p)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(SHAPES)), st.sampled_from(sorted(SHAPES)))
def test_matmul_of_signals_checks_sizes(a, b):
    sa, sb = SHAPES[a], SHAPES[b]
    text = _program(a, b, "let z = A @ B")
    if sh.is_matrix(sa) and not sh.is_matrix(sb):
        ok, dim = sh.cols(sa) == sb, sh.rows(sa)
    elif not sh.is_matrix(sa) and sh.is_matrix(sb):
        ok, dim = sh.rows(sb) == sa, sh.cols(sb)
    else:
        ok, dim = False, None
    if ok:
        assert parse_cell(text).dims["z"] == dim
        return
    p = _one_problem(text)
    assert p.line == 4 and p.col in (9, 13), str(p)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(SHAPES)), st.sampled_from(sorted(SHAPES)))
def test_outer_takes_two_vectors(a, b):
    text = _program(a, b, "let z = outer(A, B)")
    sa, sb = SHAPES[a], SHAPES[b]
    if not (sh.is_matrix(sa) or sh.is_matrix(sb)):
        assert parse_cell(text).dims["z"] == sh.matrix(sa, sb)
        return
    p = _one_problem(text)
    assert (p.line, p.col) == (4, 15 if sh.is_matrix(sa) else 18), str(p)


def test_parameters_take_their_shape_from_the_expression():
    """An elementwise parameter takes the shape of its nearest enclosing sized expression; a
    declared shape reaches it through unary functions (Mamba's A_log); `W @ v` has the rows of
    its statement."""
    cell = parse_cell(HEAD + "gate d : scalar = softplus(w @ x + b_d)\n"
                      "let dA : hidden x 4 = exp(-d * exp(A_log))\n"
                      "let z : 2*hidden = V @ h + c\n" + TAIL.replace("M = M", "M = dA * M + g"))
    shapes = {n: p.shape for n, p in cell.params.items()}
    assert shapes["w"] == ("1", "I") and shapes["b_d"] == ("1",)
    assert shapes["A_log"] == ("H", "4") and shapes["g"] == ("H", "4")
    assert shapes["V"] == ("2*H", "H") and shapes["c"] == ("2*H",)
    assert cell.param_shape("V", 5, 3) == (6, 3) and cell.param_shape("A_log", 5, 3) == (3, 4)
