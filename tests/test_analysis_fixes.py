"""The analysis reads what a cell computes, not how it is written.

* A state's new value used in another update (sLSTM's ``h' = o ⊙ c'/n'``) is a signal there:
  the gates inside it act where that state is updated, not once more as ``other``.
* A factor written unexpanded (HGRN's ``f = lb + (1 - lb) ⊙ μ``) has the same direct gain as
  its expanded form, and stage 2's gain with a gate set is what stage 3 finds at that setting.
"""

from __future__ import annotations

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gatelab
from gatelab.analysis import analyze, reduce_setting
from gatelab.analysis.paths import gradient
from gatelab.cell.printers import expr_text
from gatelab.errors import GatelabError
from published_cells import PUBLISHED

# ---- switches: a new value read elsewhere is a signal there ------------------------------------

SLSTM_HEAD = """input x
state c, n, h
gate i = sigmoid(W_i @ x + R_i @ h + b_i)
gate f = sigmoid(W_f @ x + R_f @ h + b_f)
gate o = sigmoid(W_o @ x + R_o @ h + b_o)
let z = tanh(W_z @ x + R_z @ h + b_z)
let c_new = f * c + i * z
let n_new = f * n + i
next c = c_new
next n = n_new
"""


def places(text: str) -> dict[str, list[tuple[str, str]]]:
    a = analyze(gatelab.parse_cell(text, default_name="readout"))
    return {s.gate: [(p.in_name, p.type) for p in s.where] for s in a.switches}


def test_slstm_gates_act_where_the_memory_is_updated():
    found = places(PUBLISHED["slstm"])
    assert found["i"] == [("c_new", "spst"), ("n_new", "spst")]
    assert found["f"] == [("c_new", "spst"), ("n_new", "spst")]
    assert found["o"] == [("h", "spst")]


# How a readout may use the new memory: a factor, a denominator, a function of it, inlined by
# hand (no lets), a sum of both new values.
NEW = {"c'": "c_new", "n'": "n_new", "c' inlined": "(i * z + c * f)",
       "n' inlined": "(n * f + i)"}
READOUT = st.recursive(
    st.sampled_from(sorted(NEW)).map(NEW.get),
    lambda ch: st.one_of(
        st.tuples(ch, st.sampled_from([" * ", " / ", " + "]), ch).map(lambda t: f"({''.join(t)})"),
        st.tuples(st.sampled_from(["tanh", "exp", "sqrt"]), ch).map(lambda t: f"{t[0]}({t[1]})"),
        ch.map(lambda e: f"(1 + {e})")),
    max_leaves=4)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(READOUT)
def test_new_values_in_a_readout_add_no_place(readout):
    """Whatever the readout does with ``c'`` and ``n'``, ``i`` and ``f`` act in the updates of
    ``c`` and ``n`` only (two spst each), and ``o`` in ``h`` only."""
    text = SLSTM_HEAD + f"next h = o * {readout}\noutput h\n"
    try:
        found = places(text)
    except GatelabError:
        return  # the readout folded to something the language refuses
    for g in ("i", "f"):
        assert found[g] == [("c_new", "spst"), ("n_new", "spst")], (g, found[g])
    assert [n for n, _ in found["o"]] == ["h"]  # a switch; its value where c'/c' folds to 1


def test_a_state_equal_to_another_state_new_value_keeps_its_places():
    """A let equal to a state's new value is that signal elsewhere, but its own update is still
    searched: ``h`` set to ``c'`` keeps f's spdt in ``c_new``."""
    text = """input x
state c, h
gate f = sigmoid(W_f @ x + U_f @ h + b_f)
let c_new = f * c + (1 - f) * tanh(W @ x + U @ h + b)
next c = c_new
next h = c_new
output h
"""
    assert places(text)["f"] == [("c_new", "spdt")]


# ---- stage 2 and stage 3 agree, however a factor is written ----------------------------------

def test_hgrn_lower_bound_factor_has_the_direct_gain_of_its_gate():
    a = analyze(gatelab.parse_cell(PUBLISHED["hgrn"]))
    assert a.to_dict()["stages"]["2"]["direct_gain"] == {"h": "mu"}
    assert reduce_setting(a, {"mu": 1}).identity_path == {"h": True}
    assert reduce_setting(a, {"mu": 0}).gradients["h"].gain == 0


FACTOR = st.recursive(
    st.sampled_from(["mu", "z", "lb", "a", "1", "2", "0.5"]),
    lambda ch: st.tuples(ch, st.sampled_from([" + ", " - ", " * "]), ch).map(
        lambda t: f"({''.join(t)})"),
    max_leaves=5)
UPDATES = ["f * h + (1 - f) * c", "f * h + c", "h * f * (1 - z) + z * c",
           "(f * h + (1 - f) * c) * (2 - f)", "tanh(f * h) + f * (U @ h)"]


@st.composite
def factored_cells(draw) -> str:
    """A cell whose update multiplies the state by a factor ``f`` written as a let: a
    polynomial in the gates ``mu``, ``z``, learned vectors ``lb``, ``a`` and numbers."""
    return f"""input x
state h
gate mu = sigmoid(W_m @ x + U_m @ h + b_m)
gate z = sigmoid(W_z @ x + b_z)
let c = tanh(W_c @ x + U_c @ h + b_c)
let f = {draw(FACTOR)} + 0 * mu
next h = {draw(st.sampled_from(UPDATES))}
"""


def expanded(cell: gatelab.Cell) -> gatelab.Cell:
    """The same cell with the update written out (lets inlined, every product multiplied out)."""
    e = sympy.expand(cell.inline(cell.nexts["h"], keep=set(cell.gates)))
    head = [line for line in gatelab.cell_text(cell).splitlines()
            if line.split()[0] in ("input", "state", "gate") or line.startswith("let    c ")]
    return gatelab.parse_cell("\n".join(head) + f"\nnext h = {expr_text(e)}\n",
                              default_name="expanded")


def readings(a) -> list:
    """What stages 2 and 3 say about ``h``: the direct gain, and per setting (full and one gate
    set) the gain, the identity path and the kind."""
    out = [sympy.expand(gradient(a.stage2["h"], sympy.Symbol("h"), a.scalars).gain)]
    settings_ = [m.gates for m in a.modes] + [{g: v} for g in a.gates for v in (0, 1)]
    for s in settings_:
        m = reduce_setting(a, s)
        out.append((s, sympy.expand(m.gradients["h"].gain), m.identity_path["h"], m.kind["h"]))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(factored_cells())
def test_factored_and_expanded_forms_read_the_same(text):
    try:
        factored = gatelab.parse_cell(text, default_name="factored")
        flat = expanded(factored)
    except GatelabError:
        return  # a factor that folds to a constant update: refused by the language
    a, b = analyze(factored), analyze(flat)
    assert readings(a) == readings(b)
    # stage 2's gain with the gates set is stage 3's gain at that setting
    for an in (a, b):
        gain = gradient(an.stage2["h"], sympy.Symbol("h"), an.scalars).gain
        for m in an.modes:
            at = gain.xreplace({sympy.Symbol(g): v for g, v in m.gates.items()})
            assert sympy.expand(at - m.gradients["h"].gain) == 0, (m.gates, gain)


@pytest.mark.parametrize("factor, kind", [
    ("(1 + lb) * h", "residual_rnn"), ("h + lb * h", "residual_rnn"),
    ("(2 + 2 * lb) * h", "rnn"), ("2 * h + 2 * lb * h", "rnn"),
])
def test_kind_of_a_learned_diagonal_does_not_depend_on_how_it_is_written(factor, kind):
    text = f"input x\nstate h\nnext h = {factor} + W @ x\n"
    a = analyze(gatelab.parse_cell(text, default_name="diag"))
    assert a.modes[0].kind == {"h": kind}


def test_a_nonlinearity_is_never_a_direct_path():
    """``tanh'(h) = 1 - tanh(h)²`` holds a 1 once multiplied out; it is still not direct."""
    a = analyze(gatelab.parse_cell("input x\nstate h\nnext h = tanh(h + W @ x)\n",
                                   default_name="squash"))
    assert a.modes[0].gradients["h"].gain == 0 and not a.modes[0].identity_path["h"]


def test_analysis_prints_constants_the_algebra_makes():
    """At a gate setting ``exp(c)`` with ``c' = g`` is SymPy's E, ``log(g - 1)`` is not real:
    both are printed (they raised TypeError)."""
    text = ("input x\nstate h, c\ngate g = sigmoid(W @ x + U @ h + b)\n"
            "next h = exp(c) * h + log(g - 1) * (V @ x)\nnext c = g\noutput h\n")
    notes = [m.note for m in analyze(gatelab.parse_cell(text, default_name="consts")).modes]
    assert "exp(1)" in notes[1] and "undefined" in notes[0]
