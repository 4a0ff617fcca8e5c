"""Cells written by other authors: other names, line orders, conventions and spellings. Roles and
kinds must come from the equations, never from names."""

import re

import pytest

import gatelab
from gatelab.analysis import analyze, reduce_setting

# LSTM with every name changed: memory m, readout y, gates a (input), b (forget), q (output),
# weights A*/B*, lines in another order, Unicode σ and ⊙, terms written the other way round.
OTHER_LSTM = """
# someone else's LSTM
name  other-lstm
input u
state y
state m
let   cand = tanh(B1 @ y + A1 @ u + k1)
gate  q = σ(A4 @ u + B4 @ y + k4)
gate  b = σ(B3 @ y + A3 @ u + k3)
gate  a = σ(A2 @ u + B2 @ y + k2)
let   mm = cand ⊙ a + m ⊙ b
next  y = tanh(mm) ⊙ q
next  m = mm
output y
"""

# GRU in Chung et al.'s convention (update gate reversed), renamed: state s, gates u, w.
CHUNG = """
name  chung
input v
state s
gate  w = σ(P2 @ v + Q2 @ s + c2)
gate  u = σ(P1 @ v + Q1 @ s + c1)
let   cand = tanh(P3 @ v + Q3 @ (w ⊙ s) + c3)
next  s = u ⊙ cand + (1 - u) ⊙ s
output s
"""

# GRU written as an interpolation (lerp): s + u ⊙ (cand - s)
LERP = """
input v
state s
gate  u = σ(P1 @ v + Q1 @ s)
gate  w = σ(P2 @ v + Q2 @ s)
let   cand = tanh(P3 @ v + Q3 @ (w ⊙ s))
next  s = s + u ⊙ (cand - s)
output s
"""


def test_renamed_lstm_roles_and_kinds():
    a = analyze(gatelab.parse_cell(OTHER_LSTM))
    assert a.memory_states == ("m",) and list(a.readouts) == ["y"]
    assert a.to_dict()["readouts"][0]["previous"] == "q_prev ⊙ tanh(m)"
    assert reduce_setting(a, {"a": 1, "b": 0, "q": 1}).kind == {"m": "rnn"}
    assert reduce_setting(a, {"b": 1}).identity_path == {"m": True}
    assert reduce_setting(a, {"a": 0, "b": 1}).kind == {"m": "hold"}
    rnn = reduce_setting(a, {"a": 1, "b": 0, "q": 1}).to_dict()["details"]["m"]["rnn"]
    assert rnn["enters_through"] == "tanh" and rnn["recurrent_maps"] == ["B1"]
    assert {s.gate: s.type for s in a.switches} == {"q": "spst", "b": "spst", "a": "spst"}
    assert a.switch("b").where[0].signals == (gatelab.Cell.sym("m"),)
    assert not a.scan_parallel


def test_renamed_lstm_has_the_same_kinds_as_the_zoo_lstm():
    mine = analyze(gatelab.parse_cell(OTHER_LSTM))
    zoo = analyze("lstm")
    rename = {"i": "a", "f": "b", "o": "q"}
    for m in zoo.modes:
        other = reduce_setting(mine, {rename[g]: v for g, v in m.gates.items()})
        assert other.kind["m"] == m.kind["c"], m.label
        assert other.identity_path["m"] == m.identity_path["c"], m.label


def test_gru_in_chung_convention():
    a = analyze(gatelab.parse_cell(CHUNG))
    assert a.memory_states == ("s",) and not a.readouts
    assert reduce_setting(a, {"u": 0}).kind == {"s": "hold"}
    assert reduce_setting(a, {"u": 1, "w": 1}).kind == {"s": "rnn"}
    assert reduce_setting(a, {"u": 1, "w": 0}).kind == {"s": "feedforward"}
    u = a.to_dict()["switches"][1]
    assert u["gate"] == "u" and u["type"] == "spdt"
    assert u["where"][0]["signals"] == ["cand", "s"]  # cand at u=1, s at u=0


def test_gru_written_as_interpolation():
    a = analyze(gatelab.parse_cell(LERP))
    u = a.switch("u")
    assert u.type == "spdt"
    assert [str(s) for s in u.where[0].signals] == ["cand", "s"]
    assert reduce_setting(a, {"u": 0}).kind == {"s": "hold"}
    assert reduce_setting(a, {"u": 1, "w": 1}).kind == {"s": "rnn"}


def test_kinds_do_not_depend_on_names_of_the_zoo_gru_chung():
    zoo = analyze("gru-chung")
    mine = analyze(gatelab.parse_cell(CHUNG))
    for m in zoo.modes:
        other = reduce_setting(mine, {{"z": "u", "r": "w"}[g]: v for g, v in m.gates.items()})
        assert other.kind["s"] == m.kind["h"], m.label


def _renamed(cell: gatelab.Cell) -> tuple[gatelab.Cell, dict[str, str]]:
    """The cell with every name replaced by a meaningless one (``v1``, ``v2``…, given in reverse
    order of appearance), its state, gate, let and next lines in reverse file order."""
    names = [*cell.inputs, *cell.states, *cell.gates, *cell.lets, *cell.params]
    new = {n: f"v{len(names) - k}" for k, n in enumerate(names)}
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(names, key=len)[::-1])) + r")\b")
    lines = gatelab.cell_text(cell).splitlines()
    body = [ln for ln in lines if not ln.startswith(("#", "name"))]
    def kind(*words: str) -> list[str]:
        return [ln for ln in body if ln.startswith(words)]

    order = (kind("input") + kind("state")[::-1] + kind("next")[::-1]
             + kind("gate", "let")[::-1] + kind("output"))
    text = "\n".join(pattern.sub(lambda m: new[m.group(1)], ln) for ln in order)
    return gatelab.parse_cell(text.replace("*", "⊙").replace("sigmoid", "σ")), new


@pytest.mark.parametrize("name", gatelab.zoo_names())
def test_every_zoo_cell_renamed_and_reordered_gets_the_same_analysis(name):
    zoo = analyze(name)
    cell, new = _renamed(zoo.cell)
    mine = analyze(cell)
    assert mine.memory_states == tuple(new[m] for m in zoo.memory_states)
    assert {new[r]: tuple(new[m] for m in ro.of) for r, ro in zoo.readouts.items()} == {
        r: ro.of for r, ro in mine.readouts.items()}
    assert {new[s.gate]: s.type for s in zoo.switches} == {s.gate: s.type for s in mine.switches}
    assert mine.scan_parallel is zoo.scan_parallel
    for m in zoo.modes:
        other = reduce_setting(mine, {new[g]: v for g, v in m.gates.items()})
        assert other.kind == {new[s]: k for s, k in m.kind.items()}, m.label
        assert other.identity_path == {new[s]: v for s, v in m.identity_path.items()}, m.label
