"""The keep gate and its bias, per-step saturation, the unit-by-unit view and the evidence."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gatelab import load_cell
from gatelab.explain import explain_text, random_model, saturation
from gatelab.explain.gates import TextGates
from gatelab.explain.keep import gate_bias_name, keep_gate, shift_keep_bias
from gatelab.explain.render import html_page, to_json
from gatelab.explain.render_units import units_html
from gatelab.explain.saturation import sequence_saturation
from gatelab.explain.units import evidence, log_odds, unit_view

WORDS = ["amazing", "box", "of", "cereal", "bad", "!", "good"]


@pytest.mark.parametrize("name, want", [("lstm", ("f", 1)), ("gru", ("z", 1)),
                                        ("gru-torch", ("z", 1)), ("mgu", ("f", 0)),
                                        ("rnn", None)])
def test_keep_gate_comes_from_the_analysis(name, want):
    assert keep_gate(load_cell(name)) == want


@pytest.mark.parametrize("name, sign", [("lstm", 1), ("gru", 1), ("mgu", -1)])
def test_shift_keep_bias_moves_the_gate_towards_keeping(name, sign):
    from gatelab.nn import RNN

    torch.manual_seed(0)
    rnn = RNN(load_cell(name), 3, 5, num_layers=2)
    gate, keep = keep_gate(rnn.cell)
    bias = gate_bias_name(rnn.cell, gate)
    before = [rnn.cell_params(layer)[bias].detach().clone() for layer in range(2)]
    assert shift_keep_bias(rnn, 1.5) == f"{bias} {'+' if sign > 0 else '-'}= 1.5"
    for layer in range(2):
        torch.testing.assert_close(rnn.cell_params(layer)[bias].detach() - before[layer],
                                   torch.full((5,), 1.5 * sign))
    # the gate itself, read through the reference step at a zero input and memory: σ(b)
    from gatelab.cell.evaluate import step

    p = {k: v.detach() for k, v in rnn.cell_params(0).items()}
    zero = torch.zeros(1, 5)
    r = step(rnn.cell, {"x": torch.zeros(1, 3)}, {s: zero for s in rnn.cell.states}, p)
    torch.testing.assert_close(r.values[gate][0], torch.sigmoid(p[bias]))
    kept = r.values[gate] if keep == 1 else 1 - r.values[gate]
    assert float(kept.mean()) > float(torch.sigmoid(torch.tensor(1.0)))  # σ(1.5 ± init noise)


def test_shift_keep_bias_refuses_a_cell_without_a_keep_gate():
    from gatelab.nn import RNN

    with pytest.raises(ValueError, match="no gate that keeps"):
        shift_keep_bias(RNN(load_cell("rnn"), 2, 3), 1.0)


def test_sequence_saturation_counts_like_the_text_version():
    model = random_model("gru", WORDS, hidden=6, layers=2, seed=3)
    texts = ["amazing box of cereal", "bad box of good !"[:17], "good good bad !"]
    ids = [model.encode(t)[1][:4] for t in texts]  # all four tokens long: no padding
    want = saturation(model, ids)
    x = model.embed(torch.stack(ids).T)  # (T, N, I)
    got = sequence_saturation(model.cell, model.layers, [x[:, :2], x[:, 2:]])
    assert got.steps == want.steps == 12
    for lab in want.left:
        torch.testing.assert_close(got.left[lab], want.left[lab])
        torch.testing.assert_close(got.right[lab], want.right[lab])


def _made_up(values: torch.Tensor) -> TextGates:
    """A GRU-shaped explanation with given z values ``(T, H)``."""
    T, H = values.shape
    tokens = [f"w{t}" for t in range(T)]
    logits = torch.stack([torch.tensor([0.0, 0.5 * t]) for t in range(T)])
    return TextGates(" ".join(tokens), tokens, {"z": values, "r": torch.full((T, H), 0.5)},
                     torch.softmax(logits[-1], 0), ("neg", "pos"), torch.softmax(logits, 1), 1,
                     logits, torch.tensor([0.0, -1.0]))


def test_unit_view_clusters_units_that_switch_on_the_same_words():
    # z = 1 keeps (GRU). Units 0, 2 write on word 1; units 1, 4 write on word 3; unit 3 and 5
    # always keep (they vary least and are left out with k = 4).
    T, H = 5, 6
    z = torch.full((T, H), 0.97)
    z[1, 0], z[1, 2] = 0.05, 0.1
    z[3, 1], z[3, 4] = 0.02, 0.08
    z[:, 3] += torch.linspace(0, 0.02, T)
    view = unit_view(load_cell("gru"), _made_up(z), k=4, n_clusters=2)
    assert view.gate == "z" and view.keep == 1 and sorted(view.units) == [0, 1, 2, 4]
    by = {u: c for u, c in zip(view.units, view.clusters, strict=True)}
    assert by[0] == by[2] != by[1] == by[4]
    assert view.writes[0] == ["w1"] and view.writes[4] == ["w3"]
    assert view.kept() == [True, False, True, False, True]
    assert view.reading(1) == f"written by c{by[0]}" and view.reading(0) == "kept"
    torch.testing.assert_close(view.keep_share, torch.tensor([1, 4 / 6, 1, 4 / 6, 1]))
    data = view.to_json()
    assert data["writes_on"]["1"] == ["w3"] and data["kept"][1] is False


def test_evidence_is_the_log_odds_word_by_word():
    ex = _made_up(torch.full((4, 3), 0.5))
    ev = evidence(ex)
    assert ev.cls == "pos" and ev.start == pytest.approx(-1.0)
    torch.testing.assert_close(ev.score, torch.tensor([0.0, 0.5, 1.0, 1.5]))
    torch.testing.assert_close(ev.delta, torch.tensor([1.0, 0.5, 0.5, 0.5]))
    three = torch.tensor([1.0, 2.0, 0.5])
    p = torch.softmax(three, 0)[1]
    assert float(log_odds(three, 1)) == pytest.approx(math.log(p / (1 - p)), rel=1e-5)


def test_views_carry_units_and_evidence():
    model = random_model("mgu", WORDS, hidden=8, seed=2)
    ex = explain_text(model, "amazing box of cereal , bad !")
    data = json.loads(to_json(model.cell, ex))
    assert data["units"]["gate"] == "f" and data["units"]["keep_value"] == 0
    assert len(data["units"]["keep_share"]) == len(ex.tokens)
    assert len(data["evidence"]["delta"]) == len(ex.tokens)
    frag = units_html(unit_view(model.cell, ex, k=5), evidence(ex))
    assert frag.count('data-tip="f[') == 5 * len(ex.tokens)
    assert "evidence for" in frag and "kept / written" in frag
    page = html_page(model.cell, ex)
    assert "unit by unit" in page and "<script>alert" not in page
    with pytest.raises(ValueError, match="no gate 'q'"):
        unit_view(model.cell, ex, "q")
