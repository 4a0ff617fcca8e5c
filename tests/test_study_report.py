"""The tour's study section: the committed reproduction is shown from its folder."""

from __future__ import annotations

import json

from gatelab.report.page import TourContext
from gatelab.study import report


def test_committed_reproduction_is_shown_with_its_figures(tmp_path, monkeypatch):
    bench = tmp_path / "bench"
    (bench / "jsb").mkdir(parents=True)
    (bench / "jsb" / "boxplot.png").write_bytes(b"\x89PNG fake")
    summary = {"task": "jsb", "finished": 3, "trials": 4, "vanilla": "lstm",
               "figures": ["boxplot.png"], "fanova": {"all": {"main": {"lr": 0.7}}},
               "variants": [{"cell": "lstm", "finished": 2, "trials": 2, "best": 8.5,
                             "median": 9.0},
                            {"cell": "nfg", "finished": 1, "trials": 2, "best": 9.5,
                             "median": 9.5, "welch_p": 0.01, "mannwhitney_p": 0.02,
                             "verdict": "worse"}]}
    (bench / "jsb" / "summary.json").write_text(json.dumps(summary))
    monkeypatch.setattr(report, "BENCH", bench)
    html = report._committed(TourContext(out=tmp_path / "out"))
    assert "jsb: 3/4 trials" in html and "<td>nfg</td>" in html and "worse" in html
    assert "lr 0.70" in html
    assert (tmp_path / "out" / "study-repro" / "jsb" / "boxplot.png").is_file()
    monkeypatch.setattr(report, "BENCH", tmp_path / "nothing")
    assert "not part of" in report._committed(TourContext(out=tmp_path / "out2"))
