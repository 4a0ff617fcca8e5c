"""The tour's training section (sizes shrunk: the real quick run takes about a minute)."""

from pathlib import Path

from gatelab.report.page import TourContext
from gatelab.train import load_run
from gatelab.train import report as train_report


def test_tour_section_compares_the_four_cells(tmp_path, monkeypatch):
    monkeypatch.setitem(train_report.QUICK, "T", 8)
    monkeypatch.setitem(train_report.QUICK, "steps", 10)
    monkeypatch.setitem(train_report.QUICK, "hidden", 6)
    said = []
    ctx = TourContext(out=tmp_path, quick=True, say=said.append)
    sec = train_report.section(ctx)
    assert sec.id == "train" and "<img src=\"train-compare/curves.png\"" in sec.html
    assert (tmp_path / "train-compare" / "curves.png").stat().st_size > 0
    runs = ctx.shared["compare_runs"]
    assert sorted(runs) == ["gru", "lstm", "mgu", "rnn"]
    for cell, folders in runs.items():
        assert len(folders) == 1 and load_run(Path(folders[0])).config["cell"] == cell
        assert f"<td>{cell}</td>" in sec.html
    assert said == [f"training {c} (seed 0)" for c in train_report.CELLS]
    # Building the tour again replaces the old comparison instead of failing on it.
    train_report.section(ctx)
