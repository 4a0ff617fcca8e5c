"""Switch verdicts follow what a cell computes, not how it is written (docs/design.md, "The
analysis": switches).

Each zoo cell below is rewritten a few ways that are algebraically equal: distributed or
factored, lets inlined or introduced, operands commuted, ``1 - f`` as ``-f + 1``, every name
changed. Each rewriting must get the zoo cell's switches: per gate the type and the number of
contacts, and per place its type, where it closes and the signals it switches (lets inlined,
names mapped back, compared in a canonical form).
"""

from __future__ import annotations

import pytest
import sympy

import gatelab
from gatelab.analysis import analyze
from gatelab.analysis.canon import Masked, canonical
from gatelab.analysis.symbols import as_switches
from gatelab.diagram.circuit import build_circuit


def verdict(cell: gatelab.Cell, rename: dict[str, str]) -> dict:
    """``{gate: (type, contacts, sorted places)}`` in the zoo's names."""
    a = analyze(cell)
    subs = {sympy.Symbol(k): sympy.Symbol(v) for k, v in rename.items()}
    gates = {sympy.Symbol(rename.get(g, g)) for g in cell.gates}
    out = {}
    for sw in a.switches:
        places = []
        for p in sw.where:
            # a signal may name a let (the zoo's ``n``) or spell it out: inline, then rename
            sig = tuple(str(canonical(cell.inline(s, keep=set(cell.gates)).xreplace(subs), gates))
                        for s in p.signals)
            places.append((p.type, p.closed_at, sig))
        out[rename.get(sw.gate, sw.gate)] = (sw.type, sw.contacts, sorted(places))
    return out


def zoo_verdict(name: str) -> dict:
    return verdict(gatelab.load_cell(name), {})


MGU = {"fo": "f", "Wf": "W_f", "Uf": "U_f", "bf": "b_f", "Wh": "W_n", "Uh": "U_n", "bh": "b_n",
       "q": "x", "s": "h"}
MGU_GATE = "gate fo = sigmoid(Wf @ q + Uf @ s + bf)\n"
GRU = {"u": "z", "w": "r", "A": "W_z", "B": "U_z", "c1": "b_z", "C": "W_r", "D": "U_r",
       "c2": "b_r", "E": "W_n", "F": "U_n", "c3": "b_n", "v": "x", "s": "h"}
GRU_GATES = "gate u = sigmoid(A @ v + B @ s + c1)\ngate w = sigmoid(C @ v + D @ s + c2)\n"
GRU_N = "tanh(E @ v + F @ (w * s) + c3)"
MINLSTM = {"ff": "f", "ii": "i", "Lf": "W_f", "bf": "b_f", "Li": "W_i", "bi": "b_i",
           "Lh": "W_n", "bh": "b_n", "q": "x", "m": "h"}
MINLSTM_GATES = "gate ff = sigmoid(Lf @ q + bf)\ngate ii = sigmoid(Li @ q + bi)\n"
LSTM = {"a": "i", "b": "f", "o2": "o", "m": "c", "y": "h", "v": "x",
        **{f"{p}{g}": f"{p}_{z}" for g, z in zip("abko", "ifgo", strict=True)
           for p in ("W", "U", "b")}}
LSTM_GATES = "".join(f"gate {g} = sigmoid(W{k} @ v + U{k} @ y + b{k})\n"
                     for g, k in (("a", "a"), ("b", "b"), ("o2", "o")))
LSTM_G = "tanh(Wk @ v + Uk @ y + bk)"
MINGRU = {"zt": "z", "Lz": "W_z", "bz": "b_z", "Lh": "W_n", "bh": "b_n", "q": "x", "s": "h"}
MINGRU_GATE = "gate zt = sigmoid(Lz @ q + bz)\n"

# (zoo cell, renaming, cell text): each text computes what the zoo cell computes.
REWRITINGS = [
    ("mgu", MGU, "input q\nstate s\n" + MGU_GATE
     + "next s = s + fo * (tanh(Wh @ q + Uh @ (fo * s) + bh) - s)\n"),
    ("mgu", MGU, "input q\nstate s\n" + MGU_GATE
     + "let cand = tanh(bh + Uh @ (s * fo) + Wh @ q)\nnext s = s * (-fo + 1) + cand * fo\n"),
    ("mgu", MGU, "input q\nstate s\n" + MGU_GATE + "let cand = tanh(Wh @ q + Uh @ (fo * s) + bh)\n"
     "next s = s - fo * s + fo * cand\n"),
    ("gru", GRU, "input v\nstate s\n" + GRU_GATES + f"let n = {GRU_N}\nnext s = n + u * (s - n)\n"),
    ("gru", GRU, "input v\nstate s\n" + GRU_GATES + f"next s = u * s + {GRU_N} - u * {GRU_N}\n"),
    ("gru", GRU, "input v\nstate s\n" + GRU_GATES
     + f"let keep = 1 - u\nlet n = {GRU_N}\nnext s = keep * n + s * (1 - keep)\n"),
    ("minlstm", MINLSTM, "input q\nstate m\n" + MINLSTM_GATES
     + "let tot = ff + ii\nnext m = (ff / tot) * m + (ii / tot) * (Lh @ q + bh)\n"),
    ("minlstm", MINLSTM, "input q\nstate m\n" + MINLSTM_GATES
     + "next m = (ff * m + ii * (Lh @ q + bh)) / (ff + ii)\n"),
    ("minlstm", MINLSTM, "input q\nstate m\n" + MINLSTM_GATES + "let n = Lh @ q + bh\n"
     "let share = ff / (ff + ii)\nnext m = share * m + n - share * n\n"),
    ("lstm", LSTM, "input v\nstate y, m\n" + LSTM_GATES
     + f"next m = b * m + a * {LSTM_G}\nnext y = o2 * tanh(m * b + {LSTM_G} * a)\noutput y\n"),
    ("lstm", LSTM, "input v\nstate y, m\n" + LSTM_GATES
     + f"let cn = a * {LSTM_G} + m * b\nnext m = cn\nnext y = tanh(cn) * o2\noutput y\n"),
    ("lstm", LSTM, "input v\nstate m, y\n" + LSTM_GATES + f"let g = {LSTM_G}\nlet fm = b * m\n"
     "let cn = fm + a * g\nnext y = o2 * tanh(cn)\nnext m = cn\noutput y\n"),
    ("mingru", MINGRU, "input q\nstate s\n" + MINGRU_GATE
     + "next s = s - zt * s + zt * (Lh @ q + bh)\n"),
    ("mingru", MINGRU, "input q\nstate s\n" + MINGRU_GATE
     + "next s = s + zt * (Lh @ q + bh - s)\n"),
    ("mingru", MINGRU, "input q\nstate s\n" + MINGRU_GATE
     + "let kept = (1 - zt) * s\nnext s = kept + zt * (Lh @ q) + bh * zt\n"),
]


@pytest.mark.parametrize(("zoo", "rename", "text"), REWRITINGS,
                         ids=[f"{z}-{i}" for i, (z, _, _) in enumerate(REWRITINGS)])
def test_rewriting_gets_the_zoo_switches(zoo: str, rename: dict[str, str], text: str) -> None:
    expected = zoo_verdict(zoo)
    assert expected  # every cell here has gates
    assert verdict(gatelab.parse_cell(text, default_name="rewritten"), rename) == expected


def test_the_zoo_verdicts_compared_are_the_articles() -> None:
    """The reference side of the comparison: MGU's one gate drives an spst inside U·(f ⊙ h)
    and the spdt of the update; minLSTM's normalised gates are not plain switches."""
    mgu = zoo_verdict("mgu")["f"]
    assert mgu[:2] == ("ganged", 3)
    assert [p[0] for p in mgu[2]] == ["spdt", "spst"]
    assert {t for t, *_ in zoo_verdict("minlstm").values()} == {"other"}
    assert zoo_verdict("gru")["z"][0] == "spdt" and zoo_verdict("gru")["r"][0] == "spst"


def test_interpolation_is_drawn_as_one_selector() -> None:
    """``h - z ⊙ h + z ⊙ n`` and ``h + f ⊙ (n - h)`` are drawn as the zoo's selector, not as two
    on/off switches."""
    for text, gate, kinds in [
        ("input q\nstate s\n" + MINGRU_GATE + "next s = s - zt * s + zt * (Lh @ q + bh)\n",
         "zt", ["select"]),
        ("input q\nstate s\n" + MGU_GATE
         + "next s = s + fo * (tanh(Wh @ q + Uh @ (fo * s) + bh) - s)\n",
         "fo", ["select", "switch"]),
    ]:
        circuit = build_circuit(analyze(gatelab.parse_cell(text, default_name="lerp")))
        assert [p.kind for p in circuit.switches(gate)] == kinds
        assert circuit.roots["s"].kind == "select"


def test_a_candidate_written_twice_is_one_core_block() -> None:
    text = "input v\nstate s\n" + GRU_GATES + f"let n = {GRU_N}\nnext s = n + u * (s - n)\n"
    blocks = analyze(gatelab.parse_cell(text, default_name="gru-lerp")).core["s"]
    assert [(b.act, b.input_maps, b.recurrent_maps) for b in blocks] == [("tanh", ("E",), ("F",))]


# ---- a place's at_1 / at_0 are its term at g = 1 / g = 0 (probe defect D4) ---------------------

SERIES = "input x\nstate c\n" + "".join(
    f"gate g{k} = sigmoid(W{k} @ x + U{k} @ c)\n" for k in (0, 1)
) + "let a = tanh(Wa @ x + Ua @ c)\n"
NESTED = [  # g1 selects e1 or a, g0 inside e1 selects c or a: written three ways
    SERIES + "let e1 = g0 * c + (1 - g0) * a\nnext c = g1 * e1 + (1 - g1) * a\n",
    SERIES + "next c = g1 * (g0 * c + (1 - g0) * a) + (1 - g1) * a\n",
    SERIES + "let e1 = a + g0 * (c - a)\nnext c = a + g1 * (e1 - a)\n",
]


def check_places(cell: gatelab.Cell) -> None:
    """Every place: ``at_1``/``at_0`` equal its term with the gate set to 1/0 (lets inlined,
    compared canonically), and its type and signals say the same thing."""
    gates = {cell.sym(g) for g in cell.gates}
    keep = set(cell.gates)

    def key(e: sympy.Expr) -> sympy.Expr:
        return canonical(as_switches(cell.inline(e, keep=keep), gates), gates)

    for sw in analyze(cell).switches:
        g = cell.sym(sw.gate)
        for p in sw.where:
            # outside atoms only: a gate inside a map (MGU's U·(f ⊙ h)) is a place of its own
            m = Masked(as_switches(cell.inline(p.term, keep=keep), gates), gates)
            at = {v: key(m.unmask(m.expr.xreplace({g: sympy.Integer(v)}))) for v in (0, 1)}
            assert (at[1], at[0]) == (key(p.at_1), key(p.at_0)), (sw.gate, p)
            if p.type == "spst":
                assert at[1 - p.closed_at] == 0 and key(p.signals[0]) == at[p.closed_at], p
            if p.type == "spdt":
                assert tuple(key(s) for s in p.signals) == (at[1], at[0]) and 0 not in at.values()


@pytest.mark.parametrize("text", [t for _, _, t in REWRITINGS] + NESTED)
def test_places_are_their_term_at_0_and_1_rewritten(text: str) -> None:
    check_places(gatelab.parse_cell(text, default_name="rewritten"))


@pytest.mark.parametrize("name", gatelab.zoo_names())
def test_places_are_their_term_at_0_and_1_zoo(name: str) -> None:
    check_places(gatelab.load_cell(name))


@pytest.mark.parametrize("text", NESTED[:2])
def test_nested_selects_are_two_spdt(text: str) -> None:
    a = analyze(gatelab.parse_cell(text, default_name="series"))
    places = {sw.gate: [(p.type, p.at_1, p.at_0) for p in sw.where] for sw in a.switches}
    c, a_, e1 = sympy.symbols("c a e1")
    assert places["g0"] == [("spdt", c, a_)]
    assert places["g1"][0][0] == "spdt" and places["g1"][0][2] == a_
