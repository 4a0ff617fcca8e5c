"""Per-token gates, switch settings, saturation and fidelity on small hand-made models."""

from __future__ import annotations

import json

import pytest
import torch

from gatelab.explain import (
    explain_text,
    fidelity,
    from_module,
    random_model,
    replay,
    round_gates,
    saturation,
    switches,
)
from gatelab.explain.gates import replay_error
from gatelab.explain.render import html_page, to_html, to_json

WORDS = ["amazing", "box", "of", "cereal", "bad", "!", "good"]


def mgu_by_hand(params, x):
    """MGU written out (docs/design.md, "The article", point 6): f = σ(W_f x + U_f h + b_f),
    n = tanh(W_n x + U_n (f ⊙ h) + b_n), h' = (1 − f) ⊙ h + f ⊙ n. x: (T, I). Returns f (T, H)."""
    p = params
    h = torch.zeros(p["b_f"].shape[0])
    fs = []
    for xt in x:
        f = torch.sigmoid(p["W_f"] @ xt + p["U_f"] @ h + p["b_f"])
        n = torch.tanh(p["W_n"] @ xt + p["U_n"] @ (f * h) + p["b_n"])
        h = (1 - f) * h + f * n
        fs.append(f)
    return torch.stack(fs)


def test_gates_equal_the_hand_written_mgu():
    model = random_model("mgu", WORDS, hidden=5, seed=1)
    ex = explain_text(model, "Amazing box of cereal!")
    assert ex.tokens == ["amazing", "box", "of", "cereal", "!"]
    _, ids = model.encode(ex.text)
    want = mgu_by_hand(model.layers[0], model.embed(ids))
    torch.testing.assert_close(ex.gates["f"], want)


def _sequence_model(cell: str, layers: int):
    from gatelab.data.text import Vocab
    from gatelab.train.models import SequenceModel

    torch.manual_seed(0)
    vocab = Vocab(["<pad>", "<unk>", *WORDS])
    net = SequenceModel(load(cell), input_size=0, vocab_size=len(vocab), embed=6, hidden=7,
                        layers=layers, n_out=2, per_step=False)
    return from_module(net, vocab.encode, ("negative", "positive"), source="test")


def load(name):
    from gatelab.cell import load_cell

    return load_cell(name)


@pytest.mark.parametrize(("cell", "layers"), [("gru", 2), ("lstm", 1)])
def test_replay_equals_the_layers_own_forward(cell, layers):
    model = _sequence_model(cell, layers)
    ids = torch.tensor([[2, 3, 4, 5, 7], [8, 6, 2, 0, 0], [4, 0, 0, 0, 0]]).T  # (T, N), padded
    lengths = torch.tensor([5, 3, 1])
    assert replay_error(model, ids, lengths) < 1e-5


def test_padding_does_not_change_a_texts_result():
    model = random_model("gru", WORDS, hidden=4, seed=2)
    alone = replay(model, torch.tensor([[2, 3, 4]]).T)
    padded = replay(model, torch.tensor([[2, 3, 4, 0, 0], [5, 6, 7, 8, 2]]).T,
                    torch.tensor([3, 5]))
    torch.testing.assert_close(padded.logits[0], alone.logits[0])
    torch.testing.assert_close(padded.gates[0]["z"][:3, 0], alone.gates[0]["z"][:, 0])


def test_json_has_tokens_gates_in_unit_interval_and_prediction():
    model = random_model("lstm", WORDS, hidden=3, layers=2)
    data = json.loads(to_json(model.cell, explain_text(model, "good box !")))
    assert data["tokens"] == ["good", "box", "!"]
    assert set(data["gates"]) == {"L1.i", "L1.f", "L1.o", "L2.i", "L2.f", "L2.o"}
    for rows in data["gates"].values():
        assert len(rows) == 3 and all(len(r) == 3 for r in rows)
        assert all(0.0 <= v <= 1.0 for r in rows for v in r)
    probs = data["prediction"]["probabilities"]
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
    assert data["prediction"]["label"] == max(probs, key=probs.get)
    assert len(data["switches"]["L2"]) == 3
    running = data["running_prediction"]
    assert all(len(v) == 3 for v in running.values())
    for c, p in probs.items():  # after the last token, the running verdict is the verdict
        assert running[c][-1] == pytest.approx(p, abs=1e-4)


def _pinned(cell: str, gate_bias: dict[str, float], hidden: int = 4):
    """A random model whose gates are pinned near 0 or 1 by huge biases."""
    model = random_model(cell, WORDS, hidden=hidden, seed=3)
    for name, b in gate_bias.items():
        model.layers[0][name].fill_(b)
    return model


@pytest.mark.parametrize(("cell", "bias", "setting", "kind", "update"), [
    ("mgu", {"b_f": -30.0}, {"f": 0}, "hold", "h' = h"),
    ("mgu", {"b_f": 30.0}, {"f": 1}, "rnn", None),
    ("gru", {"b_z": 30.0, "b_r": -30.0}, {"z": 1, "r": 0}, "hold", "h' = h"),
    ("gru", {"b_z": -30.0, "b_r": -30.0}, {"z": 0, "r": 0}, "feedforward", None),
])
def test_switch_settings_are_named_by_the_analysis(cell, bias, setting, kind, update):
    model = _pinned(cell, bias)
    sw = switches(model.cell, explain_text(model, "amazing cereal !"))
    assert [s.token for s in sw] == ["amazing", "cereal", "!"]
    for s in sw:
        assert s.setting == setting
        assert s.kind == kind
        assert all(a == 1.0 for a in s.agreement.values())
        if update:
            assert s.update == update


def test_saturation_counts_real_steps_only():
    texts = ["amazing box", "bad !  bad bad", "good"]  # 2 + 4 + 1 = 7 tokens
    low = saturation(_pinned("mgu", {"b_f": -30.0}), texts, batch=2)
    assert low.steps == 7
    assert torch.equal(low.left["f"], torch.ones(4)) and torch.equal(low.right["f"], torch.zeros(4))
    high = saturation(_pinned("mgu", {"b_f": 30.0}), texts)
    assert torch.equal(high.right["f"], torch.ones(4))
    assert high.summary()["f"]["between"] == 0.0


def test_saturation_matches_a_direct_count():
    model = random_model("gru", WORDS, hidden=8, seed=4)
    model.layers[0]["W_z"].mul_(8)  # spread the gate values so some saturate
    texts = ["amazing box of cereal !", "bad", "good good box"]
    sat = saturation(model, texts)
    values = torch.cat([explain_text(model, t).gates["z"] for t in texts])  # (steps, H)
    torch.testing.assert_close(sat.left["z"], (values < 0.1).float().mean(0))
    torch.testing.assert_close(sat.right["z"], (values > 0.9).float().mean(0))
    assert 0 < float(sat.left["z"].sum() + sat.right["z"].sum())


def test_round_gates_rounds_only_the_named_gates():
    v = torch.tensor([0.2, 0.5, 0.8])
    assert round_gates()("f", v).tolist() == [0.0, 1.0, 1.0]
    assert round_gates({"z"})("f", v) is v


def test_fidelity_of_saturated_gates_is_perfect():
    model = _pinned("gru", {"b_z": -30.0, "b_r": 30.0})
    texts, labels = ["amazing box", "bad !", "good cereal of box"], [1, 0, 1]
    fid = fidelity(model, texts, labels)
    assert [c.name for c in fid.conditions] == ["exact", "all gates 0/1", "only z 0/1",
                                                "only r 0/1"]
    for c in fid.conditions:
        assert c.changed == 0.0 and c.shift < 1e-6
        assert c.accuracy == fid.exact.accuracy


def test_fidelity_measures_what_rounding_changes():
    model = random_model("mgu", WORDS, hidden=6, seed=5)
    texts = ["amazing box of cereal", "bad ! bad", "good", "box of bad cereal !"]
    labels = [1, 0, 1, 0]
    fid = fidelity(model, texts, labels, batch=3)
    exact = replay(model, torch.tensor([[2, 3, 4, 5]]).T).logits
    logits = torch.cat([replay(model, model.encode(t)[1].view(-1, 1)).logits for t in texts])
    acc = float((logits.argmax(1) == torch.tensor(labels)).float().mean())
    assert fid.exact.accuracy == pytest.approx(acc)
    assert fid.exact.loss == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, torch.tensor(labels))), rel=1e-5)
    rounded = replay(model, torch.tensor([[2, 3, 4, 5]]).T, gate_fn=round_gates()).logits
    assert not torch.allclose(exact, rounded)  # a random MGU's gates sit near 0.5
    assert fid.all_rounded.shift > 0
    assert len(fid.conditions) == 2  # one gate: no per-gate rows


def test_html_shades_every_token_and_escapes_text():
    model = random_model("gru", WORDS, hidden=3)
    ex = explain_text(model, "good <script>alert(1)</script> box")
    frag = to_html(model.cell, ex)
    assert "<script>" not in frag and "&lt;" in frag
    assert frag.count('class="tok"') == len(ex.tokens)
    assert "gate z (mean)" in frag and "gate r (mean)" in frag and "switches" in frag
    page = html_page(model.cell, ex)
    assert page.startswith("<!doctype html>") and "<script>alert" not in page


def test_empty_text_is_a_clear_error():
    with pytest.raises(ValueError, match="no tokens"):
        explain_text(random_model("mgu", WORDS), "   ")


def test_a_cell_without_gates_still_explains():
    model = random_model("rnn", WORDS, hidden=3)
    ex = explain_text(model, "good box")
    assert ex.gates == {}
    assert [s.kind for s in switches(model.cell, ex)] == ["rnn", "rnn"]
    assert "switches" in to_html(model.cell, ex)
    fid = fidelity(model, ["good box", "bad"], [1, 0])
    assert [c.name for c in fid.conditions] == ["exact"]
    assert saturation(model, ["good box"]).summary() == {}
