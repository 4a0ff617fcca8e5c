"""The article's read-offs (docs/design.md, "The article"), computed from the equations."""

import json

import pytest

import gatelab
from gatelab.analysis import KINDS, AnalysisError, analyze, parse_setting, reduce_setting


def kind(cell: str, state: str, **setting: int) -> str:
    return reduce_setting(cell, setting).kind[state]


def test_lstm_memory_state_is_c_and_h_reads_it_out():
    a = analyze("lstm")
    assert a.memory_states == ("c",)
    assert list(a.readouts) == ["h"] and a.readouts["h"].of == ("c",)
    d = a.to_dict()
    assert d["readouts"][0]["expr"] == "o ⊙ tanh(c')"
    assert d["readouts"][0]["previous"] == "o_prev ⊙ tanh(c)"
    assert d["prev_gates"] == {"o": "o_prev"}


def test_lstm_read_offs():
    assert kind("lstm", "c", i=1, f=0, o=1) == "rnn"
    assert reduce_setting("lstm", {"f": 1}).identity_path == {"c": True}
    assert kind("lstm", "c", i=0, f=1) == "hold"
    # rnn is honest about how c enters: through tanh, via h = o·tanh(c)
    m = reduce_setting("lstm", {"i": 1, "f": 0, "o": 1})
    rnn = m.to_dict()["details"]["c"]["rnn"]
    assert rnn["act"] == "tanh" and rnn["enters_through"] == "tanh"
    assert rnn["through"] == ["tanh(c)"] and rnn["recurrent_maps"] == ["U_g"]
    assert "o_prev = 1" in m.note and "h = o_prev ⊙ tanh(c)" in m.note


def test_lstm_no_identity_path_without_forget_gate():
    assert reduce_setting("lstm", {"i": 1, "f": 0, "o": 1}).identity_path == {"c": False}
    # with o = 0 the recurrent term vanishes entirely: c' depends on x only
    assert kind("lstm", "c", i=1, f=0, o=0) == "feedforward"


def test_gru_read_offs():
    assert kind("gru", "h", r=1, z=0) == "rnn"
    assert kind("gru", "h", z=1) == "hold"
    assert kind("gru", "h", r=0, z=0) == "feedforward"
    assert analyze("gru").switch("z").type == "spdt"
    z = analyze("gru").to_dict()["switches"][0]
    assert z["gate"] == "z" and z["where"][0]["signals"] == ["h", "n"]  # h at z=1, n at z=0
    assert analyze("gru").switch("r").type == "spst"


def test_mgu_read_offs_and_ganged_gate():
    assert kind("mgu", "h", f=1) == "rnn"
    assert kind("mgu", "h", f=0) == "hold"
    sw = analyze("mgu").switch("f")
    assert sw.type == "ganged"
    assert sorted(p.type for p in sw.where) == ["spdt", "spst"]
    assert sw.contacts == 3


def test_rnn_has_one_mode():
    a = analyze("rnn")
    assert len(a.modes) == 1
    assert a.modes[0].kind == {"h": "rnn"} and a.modes[0].gates == {}
    assert a.modes[0].to_dict()["details"]["h"]["rnn"]["enters_through"] == "identity"


@pytest.mark.parametrize("name, expected", [("mingru", True), ("minlstm", True), ("lstm", False),
                                            ("gru", False), ("mgu", False), ("rnn", False)])
def test_scan_parallel(name, expected):
    a = analyze(name)
    assert a.scan_parallel is expected
    assert bool(a.scan_reasons) is not expected


def test_modes_are_ordered_gates_in_cell_order_settings_in_binary_order():
    a = analyze("lstm")
    assert [tuple(m.gates) for m in a.modes] == [("i", "f", "o")] * 8
    assert [tuple(m.gates.values()) for m in a.modes] == [
        (0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)]


def test_stage2_factors_gates_out_of_maps_and_direct_gain():
    d = analyze("mgu").to_dict()
    assert d["stages"]["1"]["updates"]["h"].count("U_n·(f ⊙ h)") == 1
    assert "f ⊙ U_n·h" in d["stages"]["2"]["updates"]["h"]
    assert d["stages"]["2"]["direct_gain"]["h"] == "1 - f"
    assert analyze("lstm").to_dict()["stages"]["2"]["direct_gain"]["c"] == "f"
    assert analyze("rnn").to_dict()["stages"]["2"]["direct_gain"]["h"] == "0"
    gates = d["stages"]["1"]["gates"]
    assert gates == [{"name": "f", "expr": "σ(U_f·h + W_f·x + b_f)", "latex": gates[0]["latex"],
                      "depends_on_state": True, "reads": ["h"]}]
    assert analyze("mingru").to_dict()["stages"]["1"]["gates"][0]["depends_on_state"] is False


def test_core_per_memory_state():
    (blk,) = analyze("lstm").core["c"]
    assert blk.act == "tanh" and blk.input_maps == ("W_g",) and blk.recurrent_maps == ("U_g",)
    assert analyze("lstm").to_dict()["core"]["c"][0]["through"] == ["o_prev ⊙ tanh(c)"]
    assert analyze("gru").to_dict()["core"]["h"][0]["through"] == ["r ⊙ h"]
    (lin,) = analyze("niaf").core["c"]  # no input activation: the core is linear
    assert lin.act == "identity" and lin.recurrent_maps == ("U_g",)


def test_json_schema_keys_and_round_trip():
    for name in gatelab.zoo_names():
        d = analyze(name).to_dict()
        assert {"cell", "gates", "states", "memory_states", "readouts", "stages", "modes",
                "switches", "scan_parallel", "core"} <= set(d)
        assert set(d["stages"]) == {"1", "2", "3"}
        assert json.loads(json.dumps(d)) == d
        for m in d["modes"]:
            assert set(m["kind"]) == set(d["memory_states"]) == set(m["identity_path"])
            assert set(m["updates"]) == set(d["states"])
            assert all(k in KINDS for k in m["kind"].values())
            assert isinstance(m["note"], str) and m["note"]
        for s in d["switches"]:
            assert s["type"] in {"spst", "spdt", "ganged", "other", "value", "unused"}
            for p in s["where"]:
                assert {"in", "in_kind", "type", "term", "signals", "at_1", "at_0",
                        "inside"} <= set(p)


def test_fgr_gate_copies_are_readouts_not_memory():
    a = analyze("fgr")
    assert a.memory_states == ("c",)
    assert {r: ro.of for r, ro in a.readouts.items()} == {
        "h": ("c",), "pi": (), "pf": (), "po": ()}
    assert a.switch("i").type == "spst"  # the copy into pi is a value, not a contact


def test_minlstm_normalised_gates():
    a = analyze("minlstm")
    assert a.switch("f").type == "other"
    modes = {tuple(m.gates.values()): m for m in a.modes}
    assert modes[(1, 0)].kind == {"h": "hold"} and modes[(0, 1)].kind == {"h": "feedforward"}
    assert modes[(0, 0)].to_dict()["updates"]["h"] == "undefined (0/0)"
    half = modes[(1, 1)]
    assert half.kind == {"h": "other"} and half.identity_path == {"h": False}
    assert half.to_dict()["direct_gain"]["h"] == "0.5"  # numbers print as decimals


def test_bad_settings_give_clear_errors():
    with pytest.raises(AnalysisError, match="unknown gate 'q'.*z, r"):
        reduce_setting("gru", {"q": 1})
    with pytest.raises(AnalysisError, match="0 or 1"):
        reduce_setting("gru", {"z": 0.5})
    with pytest.raises(AnalysisError, match="write gate=0"):
        parse_setting("z", ("z", "r"))
    assert parse_setting(" r=1 , z=0", ("z", "r")) == {"z": 0, "r": 1}


@pytest.mark.parametrize("text", ["z=1,z=0", "z=1, r=0, z=1"])
def test_a_gate_set_twice_is_an_error(text):
    """Not silently the last value: ``--set z=1,z=0`` names the gate and both values."""
    with pytest.raises(AnalysisError, match="gate z is set twice: z=1 and z="):
        parse_setting(text, ("z", "r"))


def test_txt_refuses_text_instead_of_parsing_it():
    """``txt`` converts plain numbers; a string is never handed to SymPy's parser (eval)."""
    import sympy

    from gatelab.analysis.symbols import txt

    assert txt(1) == "1" and txt(0.5) == "0.5" and txt(sympy.Symbol("f")) == "f"
    with pytest.raises(sympy.SympifyError):
        txt("__import__('os').getcwd()")


def test_many_gates_are_capped_with_a_message():
    gates = "\n".join(f"gate g{k} = sigmoid(W{k} @ x)" for k in range(11))
    terms = " + ".join(f"g{k} * h" for k in range(11))
    cell = gatelab.parse_cell(f"input x\nstate h\n{gates}\nnext h = {terms}\noutput h")
    a = analyze(cell)
    assert a.modes == [] and "at most 10 gates" in a.modes_skipped
    assert a.to_dict()["modes_skipped"] == a.modes_skipped
    # one specific setting is still available
    m = reduce_setting(a, {f"g{k}": 0 for k in range(11)})
    assert m.kind == {"h": "zero"}


def test_gatelab_analyze_wrapper_and_cache():
    assert gatelab.analyze("gru") is analyze("gru")
    assert reduce_setting("gru", {"z": 1}) is reduce_setting(analyze("gru"), {"z": 1})


def test_rnn_details_say_how_the_state_enters():
    d = reduce_setting("lstm", {"i": 1, "f": 0, "o": 1}).to_dict()["details"]["c"]
    assert d["via"] == {"h": "o_prev ⊙ tanh(c)"}
    niaf = reduce_setting("niaf", {"i": 1, "f": 0, "o": 1}).to_dict()["details"]["c"]["rnn"]
    assert niaf["act"] == "identity" and niaf["enters_through"] == "tanh"
