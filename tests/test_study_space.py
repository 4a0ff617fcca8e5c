"""The study's search space, config file and plan (no Ray, no training)."""

from __future__ import annotations

import math

import pytest

from gatelab.study.space import DEFAULT_SPACE, Dim, StudySpec, load_config, make_plan
from gatelab.train.forget import forget_gate


def test_dims_sample_their_ranges():
    lr = DEFAULT_SPACE["lr"]
    assert lr.sample(0.0) == pytest.approx(lr.low)
    assert lr.sample(0.5) == pytest.approx(math.sqrt(lr.low * lr.high))  # log scale midpoint
    h = Dim("hidden", "int_loguniform", 16, 64)
    assert h.sample(0.5) == 32 and isinstance(h.sample(0.3), int)
    b = Dim("batch", "choice", choices=(4, 8, 16))
    assert [b.sample(u) for u in (0.0, 0.4, 0.99)] == [4, 8, 16]


def test_bad_dims_are_refused():
    with pytest.raises(ValueError, match="low <= high"):
        Dim("lr", "loguniform", 1e-2, 1e-4)
    with pytest.raises(ValueError, match="log scale needs low > 0"):
        Dim("clip", "loguniform", 0.0, 1.0)
    with pytest.raises(ValueError, match="unknown kind"):
        Dim("lr", "normal", 0.0, 1.0)


def test_config_file_narrows_and_fixes(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("[space]\nlr = {low = 1e-3, high = 1e-2}\nbatch = {choices = [2, 4]}\n"
                 "[fixed]\nsteps = 7\nT = 12\n")
    space, fixed = load_config(p)
    assert (space["lr"].low, space["lr"].high, space["lr"].kind) == (1e-3, 1e-2, "loguniform")
    assert space["batch"].choices == (2, 4)
    assert fixed == {"steps": 7, "T": 12}
    j = tmp_path / "s.json"
    j.write_text('{"space": {"hidden": {"low": 4, "high": 8}}}')
    assert load_config(j)[0]["hidden"].high == 8


@pytest.mark.parametrize("text,match", [
    ("[space]\nmomentum = {low = 0.1, high = 0.9}\n", "not a searchable"),
    ("[fixed]\nseed = 3\n", "not a training option"),
    ("[other]\nx = 1\n", "unknown section"),
    ("[space\n", "not a valid TOML"),
])
def test_bad_config_files_say_what_is_wrong(tmp_path, text, match):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_config(p)


def test_plan_is_paired_and_respects_forget_gates(tmp_path):
    spec = StudySpec("adding", ["lstm", "nfg", "mgu"], trials=3, seeds=2,
                     fixed={"steps": 5, "T": 10})
    plan = make_plan(spec)
    assert len(plan) == 3 * 3 * 2
    by = {(t["cell"], t["draw"], t["seed"]): t for t in plan}
    for k in range(3):
        a, b = by[("lstm", k, 0)]["params"], by[("nfg", k, 0)]["params"]
        assert a["lr"] == b["lr"] and a["hidden"] == b["hidden"]  # the same draw for each cell
        assert "forget_bias" in a and "forget_bias" not in b  # NFG has no forget gate
        assert by[("lstm", k, 1)]["params"] == a  # seeds repeat a draw
    assert len({by[("lstm", k, 0)]["params"]["lr"] for k in range(3)}) == 3
    assert all(t["config"]["steps"] == 5 and "steps" not in t["params"] for t in plan)
    assert "dropout" not in plan[0]["params"]  # one layer: dropout would do nothing
    # run folders relative to the study folder, so a moved study resumes where it now is
    assert all(t["config"]["out"] == f"runs/{t['id']}" for t in plan)


def test_plan_refuses_bad_values_before_running(tmp_path):
    spec = StudySpec("adding", ["lstm"], trials=1, fixed={"steps": 0})
    with pytest.raises(ValueError, match="--steps must be at least 1"):
        make_plan(spec)
    with pytest.raises(ValueError, match="twice"):
        StudySpec("adding", ["lstm", "lstm"], trials=1)


def test_forget_gate_comes_from_the_equations(tmp_path):
    # The same LSTM with its gates renamed: found by what the gate does, not by its name.
    cell = tmp_path / "renamed.cell"
    cell.write_text(
        "input x\nstate h, c\n"
        "gate  a = sigmoid(W_a @ x + U_a @ h + b_a)\n"
        "gate  keep = sigmoid(W_k @ x + U_k @ h + b_k)\n"
        "gate  b = sigmoid(W_b @ x + U_b @ h + b_b)\n"
        "let   z = tanh(W_z @ x + U_z @ h + b_z)\n"
        "next  c = keep * c + a * z\n"
        "next  h = b * tanh(c)\n"
        "output h\n")
    from gatelab.cell import load_cell

    assert forget_gate(load_cell(str(cell))) == ("keep", 1, "b_k")
    assert forget_gate("rnn") is None and forget_gate("nfg") is None


def test_forget_bias_moves_the_gate_towards_keeping_memory():
    import torch

    import gatelab.nn
    from gatelab.train.forget import add_forget_bias

    for name, gate, sign in (("lstm", "b_f", 1), ("mgu", "b_f", -1), ("cifg", "b_i", -1)):
        rnn = gatelab.nn.RNN(name, 3, 4, num_layers=2)
        before = [rnn.cell_params(k)[gate].detach().clone() for k in range(2)]
        add_forget_bias(rnn, 1.5)
        for k in range(2):
            moved = rnn.cell_params(k)[gate] - before[k]
            assert torch.allclose(moved, torch.full((4,), sign * 1.5))
    with pytest.raises(ValueError, match="has no forget gate"):
        add_forget_bias(gatelab.nn.RNN("nfg", 3, 4), 1.0)
