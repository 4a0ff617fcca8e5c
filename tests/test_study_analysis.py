"""The analysis of a study folder, on folders with known answers (no Ray, no training)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from gatelab.cli import app
from gatelab.study.analysis import write_summary
from gatelab.study.fanova import importances
from gatelab.study.space import DEFAULT_SPACE, StudySpec, make_plan, spec_to_dict


def _fake_study(folder, metric_of, cells=("lstm", "gru", "nfg"), trials=12, diverge=()):
    """A finished study whose metrics are ``metric_of(cell, params)`` (lower is better)."""
    spec = StudySpec("adding", list(cells), trials, fixed={"steps": 5, "T": 10})
    plan = make_plan(spec)
    (folder / "plan.json").write_text(json.dumps({"spec": spec_to_dict(spec), "trials": plan}))
    for t in plan:
        run = folder / "runs" / t["id"]
        run.mkdir(parents=True)
        bad = t["id"] in diverge
        st = {"id": t["id"], "cell": t["cell"], "draw": t["draw"], "seed": t["seed"],
              "params": t["params"], "status": "diverged" if bad else "done",
              "metric": None if bad else metric_of(t["cell"], t["params"]),
              "higher_is_better": False}
        (run / "trial.json").write_text(json.dumps(st))
    return spec, plan


def _lr_metric(cell, p):
    # a U-shaped learning-rate curve; nfg worse by a clear margin; gru equal to lstm
    return (math.log10(p["lr"]) + 2.5) ** 2 + (1.0 if cell == "nfg" else 0.0)


@pytest.mark.slow  # fANOVA's forests: seconds, minutes on a loaded machine
def test_summary_finds_the_worse_cell_and_the_learning_rate(tmp_path):
    _fake_study(tmp_path, _lr_metric, diverge=("gru-011",))
    s = write_summary(tmp_path)
    v = {x["cell"]: x for x in s["variants"]}
    assert v["nfg"]["verdict"] == "worse" and v["nfg"]["welch_p"] < 0.05
    assert v["nfg"]["wilcoxon_p"] < 0.05 and v["nfg"]["paired_n"] == 12
    assert v["gru"]["verdict"] == "no difference"  # identical metrics on the draws it finished
    assert v["gru"]["diverged"] == 1 and v["gru"]["finished"] == 11
    assert v["lstm"]["median"] == pytest.approx(
        float(np.median([_lr_metric("lstm", r["params"]) for r in s["rows"]
                         if r["cell"] == "lstm"])))
    main = s["fanova"]["all"]["main"]
    # the metric depends on the learning rate and the cell only
    assert max((n for n in main if n != "cell"), key=main.get) == "lr"
    assert main["lr"] + main["cell"] > 0.8 and main["hidden"] < 0.1
    assert "forget_gate_cells" in s["fanova"]  # nfg has no forget gate: a second analysis
    assert set(s["fanova_per_cell"]) == {"lstm", "gru", "nfg"}
    for f in ("boxplot.png", "lr.png", "importance.png", "summary.md", "summary.json"):
        assert (tmp_path / f).stat().st_size > 0
    md = (tmp_path / "summary.md").read_text()
    assert "| nfg | 12/12 | 0 |" in md and "worse" in md


@pytest.mark.slow  # fANOVA's forests: seconds, minutes on a loaded machine
def test_report_redraws_from_the_folder_alone(tmp_path):
    _fake_study(tmp_path, _lr_metric)
    (tmp_path / "lr.png").unlink(missing_ok=True)
    r = CliRunner().invoke(app, ["study", "--report", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "Study: adding" in r.output and (tmp_path / "lr.png").is_file()


def test_report_of_a_folder_without_a_study_is_one_line(tmp_path):
    r = CliRunner().invoke(app, ["study", "--report", str(tmp_path)])
    assert r.exit_code == 2
    assert "holds no study" in r.output and "Traceback" not in r.output


@pytest.mark.slow  # fANOVA's forests: seconds, minutes on a loaded machine
def test_fanova_sees_an_interaction():
    rng = np.random.default_rng(0)
    dims = {n: DEFAULT_SPACE[n] for n in ("lr", "clip", "forget_bias")}
    rows = []
    for _ in range(120):
        p = {"lr": float(10 ** rng.uniform(-4, np.log10(3e-2))),
             "clip": float(10 ** rng.uniform(-1, 1)), "forget_bias": float(rng.uniform(0, 3))}
        a = np.log10(p["lr"]) + 2.5
        b = np.log10(p["clip"])
        rows.append({"params": p, "metric": float(a * b)})  # a pure interaction
    f = importances(rows, dims, higher=False)
    pair = {frozenset(k.split(" × ")): v for k, v in f["pairs"].items()}
    assert pair[frozenset({"lr", "clip"})] > 0.15
    assert pair[frozenset({"lr", "clip"})] > 3 * max(pair[frozenset({"lr", "forget_bias"})],
                                                      pair[frozenset({"clip", "forget_bias"})])
    assert f["main"]["forget_bias"] < 0.05


@pytest.mark.slow  # fANOVA's forests: seconds, minutes on a loaded machine
def test_fanova_pairs_name_the_right_parameters():
    # The columns Optuna uses are in its own order: a pure clip × forget_bias interaction
    # must come out under those two names.
    rng = np.random.default_rng(1)
    dims = {n: DEFAULT_SPACE[n] for n in ("lr", "clip", "forget_bias")}
    rows = []
    for _ in range(120):
        p = {"lr": float(10 ** rng.uniform(-4, np.log10(3e-2))),
             "clip": float(rng.uniform(0.1, 10)), "forget_bias": float(rng.uniform(0, 3))}
        rows.append({"params": p, "metric": float((p["forget_bias"] - 1.5) * (p["clip"] - 5))})
    f = importances(rows, dims, higher=False)
    top = max(f["pairs"], key=f["pairs"].get)
    assert set(top.split(" × ")) == {"clip", "forget_bias"} and f["pairs"][top] > 0.5


def test_fanova_refuses_too_few_trials():
    with pytest.raises(ValueError, match="at least 4"):
        importances([{"params": {"lr": 1e-3}, "metric": 1.0}], {"lr": DEFAULT_SPACE["lr"]},
                    higher=False)
