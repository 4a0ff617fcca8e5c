"""The tour's analysis section: pages for the article cells, the zoo table, MGU's exercise."""

import html
import json
import re

from gatelab.analysis import analyze
from gatelab.analysis.compare import find_ganging
from gatelab.analysis.report import gate_effects, mgu_exercise, section
from gatelab.report.page import TourContext


def test_section_pages_and_json(tmp_path):
    secs = section(TourContext(out=tmp_path))
    assert [s.id for s in secs] == ["analysis", "analysis-rnn", "analysis-lstm", "analysis-gru",
                                    "analysis-mgu"]
    assert "minlstm" in secs[0].html and "scan-parallel" in secs[0].html
    d = json.loads((tmp_path / "analysis" / "lstm.json").read_text(encoding="utf-8"))
    assert d["memory_states"] == ["c"]
    assert "o_prev ⊙ tanh(c)" in secs[2].html


def test_mgu_exercise_is_computed():
    g = find_ganging(analyze("mgu"), analyze("gru"))
    assert g is not None and g.exact
    assert {k: str(v) for k, v in g.mapping.items()} == {"r": "f", "z": "1 - f"}
    text = mgu_exercise(analyze("mgu"), analyze("gru"))
    assert "ganged" in text and "r = f, z = 1 - f" in text and "checked symbolically" in text
    assert "z=0, r=0" in text  # the feedforward mode MGU gives up
    # against Chung's GRU (z reversed) the same computation gives another ganging
    chung = mgu_exercise(analyze("mgu"), analyze("gru-chung"))
    assert "r = f, z = f" in chung
    assert find_ganging(analyze("lstm"), analyze("gru")) is None


def test_gate_effects_are_the_article_read_offs():
    def plain(name):
        return [html.unescape(re.sub("<[^>]+>", "", e)) for e in gate_effects(analyze(name))]

    assert plain("lstm") == ["i=0 ignores the current input", "f=1 keeps an identity path c → c'",
                             "o=0 zeroes the readout h"]
    assert plain("gru") == ["z=1 holds h and keeps an identity path h → h'"]
    assert plain("gru-chung") == ["z=0 holds h and keeps an identity path h → h'"]
