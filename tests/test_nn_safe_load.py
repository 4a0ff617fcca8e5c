"""A whole saved model that holds gatelab modules reloads with ``torch.load(f, weights_only=True)``
in a fresh process whose allowlist names no gatelab class (importing ``gatelab.nn`` registers
them): the one-line swap ``from gatelab.nn import LSTM`` keeps a script's reload working."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

import gatelab.nn as g

HIGHWAY = "name hw\ninput x : hidden\nstate h\nnext h = tanh(W @ x + U @ h + b) + x\noutput h\n"


def _modules() -> dict[str, torch.nn.Module]:
    """Every public class, with various cells and options."""
    from gatelab import parse_cell

    return {
        "lstm": g.LSTM(3, 5, num_layers=2, bidirectional=True, dropout=0.1),
        "lstm_proj": g.LSTM(3, 5, proj_size=2, batch_first=True),
        "lstm_f64_generated": g.LSTM(3, 4, dtype=torch.float64, backend="generated"),
        "gru": g.GRU(3, 4, bias=False, batch_first=True),
        "rnn_relu": g.RNN(3, 4, 2, "relu"),
        "mgu": g.MGU(3, 4),
        "rnn_cell_mgu": g.RNN("mgu", 3, 4, backend="generated"),
        "rnn_cell_text": g.RNN(parse_cell(HIGHWAY), 4, 4, bidirectional=True),
        "cell": g.Cell("lstm", 3, 4),
        "cell_highway": g.Cell(parse_cell(HIGHWAY), 4, 4, bias=False),
        "rnncell": g.RNNCell(3, 4, nonlinearity="relu"),
        "lstmcell": g.LSTMCell(3, 4),
        "grucell": g.GRUCell(3, 4, bias=False),
    }


def _run(code: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, timeout=300,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_public_class_reloads_weights_only_in_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    mods = _modules()
    assert {type(m) for m in mods.values()} == set(g.PUBLIC_CLASSES)
    for name, m in mods.items():
        torch.save(m, tmp_path / f"{name}.pt")
        torch.save(m.state_dict(), tmp_path / f"{name}.sd.pt")
    out = _run(textwrap.dedent("""
        import glob, torch
        import gatelab.nn  # no safe_globals, no add_safe_globals of our own
        for f in sorted(glob.glob("*.sd.pt")):
            name = f[:-6]
            m = torch.load(name + ".pt", weights_only=True)
            sd = torch.load(f, weights_only=True)
            assert sd.keys() == m.state_dict().keys(), name
            assert all(torch.equal(sd[k], v) for k, v in m.state_dict().items()), name
            if not getattr(m, "proj_size", 0):  # a projected LSTM has no cell parameters
                m.cell_params()
            print(name, type(m).__name__, m.path)
    """), tmp_path)
    assert len(out.splitlines()) == len(mods)


SCRIPT = '''
import sys
import torch
from torch import nn
from gatelab.nn import LSTM


class WordLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.drop = nn.Dropout(0.2)
        self.rnn = LSTM(8, 16, num_layers=2, dropout=0.2)
        self.head = nn.Linear(16, 20)

    def forward(self, tokens, hidden=None):
        out, hidden = self.rnn(self.drop(self.emb(tokens)), hidden)
        return self.head(self.drop(out)), hidden


if sys.argv[1] == "save":
    torch.manual_seed(0)
    model = WordLM()
    tokens = torch.randint(0, 20, (7, 3))
    model.eval()
    torch.save({"tokens": tokens, "logits": model(tokens)[0].detach()}, "expected.pt")
    with open("model.pt", "wb") as f:
        torch.save(model, f)
else:
    # the reload of pytorch/examples' word_language_model: torch's classes allowlisted
    allow = [WordLM, nn.LSTM, nn.Embedding, nn.Linear, nn.Dropout]
    with open("model.pt", "rb") as f, torch.serialization.safe_globals(allow):
        model = torch.load(f, weights_only=True)
    model.rnn.flatten_parameters()
    model.eval()
    want = torch.load("expected.pt", weights_only=True)
    assert torch.equal(model(want["tokens"])[0], want["logits"])
    print(type(model.rnn).__module__)
'''


def test_the_word_language_model_reload_pattern_runs_unchanged(tmp_path):
    script = tmp_path / "main.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    for step in ("save", "load"):
        done = subprocess.run([sys.executable, str(script), step], env=env, cwd=tmp_path,
                              timeout=300, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("gatelab.nn")
