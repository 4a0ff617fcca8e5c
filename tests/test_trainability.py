"""The trainability study without Ray: read-outs, cell lists, the fits and the report files."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatelab.study.space import StudyError, load_config
from gatelab.study.trainability import cells_of, readouts, run_trainability, save_spec
from gatelab.study.trainability_fit import analyse, fit_readout

pytest.importorskip("sklearn")


def _runs(success: dict[str, list[bool]]) -> list[dict]:
    return [{"cell": c, "success": s} for c, ss in success.items() for s in ss]


@pytest.mark.slow
@settings(max_examples=10, deadline=None)
@given(st.lists(st.booleans(), min_size=4, max_size=9).filter(lambda v: 0 < sum(v) < len(v)),
       st.integers(1, 3))
def test_a_read_out_that_separates_the_cells_predicts_every_held_out_cell(learns, seeds):
    """For any split of cells into learners and non-learners (at least two of each kind when
    one is held out), a yes/no read-out equal to the split is right on every held-out cell."""
    if min(sum(learns), len(learns) - sum(learns)) < 2:
        return
    cells = {f"c{k}": {"flag": v} for k, v in enumerate(learns)}
    runs = _runs({f"c{k}": [v] * seeds for k, v in enumerate(learns)})
    f = fit_readout("flag", cells, runs, boot=40)
    assert f["loco_accuracy"] == 1.0 and f["misses"] == []
    assert f["coef"] > 0 and f["ci"] is not None and f["ci"][0] > 0
    assert f["fisher_p"] is not None


def test_cells_the_read_out_gets_wrong_are_listed_with_the_majority_to_beat():
    learns = {"a": True, "b": True, "c": True, "d": False, "e": False, "f": False, "g": True}
    flag = {"a": 1, "b": 1, "c": 1, "d": 0, "e": 0, "f": 0, "g": 0}  # g learns without it
    cells = {c: {"flag": bool(v)} for c, v in flag.items()}
    f = fit_readout("flag", cells, _runs({c: [v, v] for c, v in learns.items()}), boot=40)
    assert [m["cell"] for m in f["misses"]] == ["g"]
    assert f["loco_accuracy"] == pytest.approx(6 / 7)
    assert f["majority_accuracy"] < f["loco_accuracy"]


def test_fits_that_cannot_be_made_say_why():
    cells = {c: {"x": 1.0, "y": float(k)} for k, c in enumerate("abcd")}
    same = _runs({c: [False, False] for c in "abcd"})
    assert "same value" in fit_readout("x", cells, same)["note"]
    assert "same outcome" in fit_readout("y", cells, same)["note"]
    assert "fewer than 3" in fit_readout("y", {"a": {"y": 1.0}}, same)["note"]


def test_read_outs_come_from_the_analysis():
    lstm, rnn = readouts("lstm", flow_steps=20, flow_hidden=8), readouts("rnn", flow_steps=20,
                                                                         flow_hidden=8)
    assert lstm["has_hold"] and lstm["hold_setting"] == {"i": 0.0, "f": 1.0} and lstm["spst"]
    assert not rnn["has_hold"] and rnn["identity_modes"] == 0 and not rnn["spst"]
    assert lstm["identity_modes"] > 0
    assert rnn["flow_exponent"] < 0  # a plain tanh RNN's gradient decays at initialisation


def test_cell_list_expands_the_zoo_and_reads_a_folder(tmp_path):
    from gatelab.cell.zoo import ZOO_DIR, zoo_names

    (tmp_path / "mine.cell").write_text((ZOO_DIR / "gru.cell").read_text())
    got = cells_of(["zoo"], tmp_path)
    assert got[:len(zoo_names())] == zoo_names() and got[-1].endswith("mine.cell")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudyError, match="no .cell file"):
        cells_of(["lstm"], tmp_path / "empty")
    with pytest.raises(StudyError, match="not a folder"):
        cells_of(["lstm"], tmp_path / "missing")


@pytest.mark.parametrize("kw, match", [({"T": 100}, "T >= 200"), ({"tasks": ("jsb",)}, "adding"),
                                       ({"margin": 1.5}, "margin"), ({"seeds": 0}, "seeds")])
def test_bad_study_options_are_refused_before_anything_is_written(tmp_path, kw, match):
    with pytest.raises(StudyError, match=match):
        run_trainability(["lstm"], tmp_path / "t", **kw)
    assert not (tmp_path / "t").exists()
    with pytest.raises(StudyError, match="no trainability study to resume"):
        run_trainability(["lstm"], tmp_path / "t", resume=True)


@pytest.mark.slow
def test_report_reads_the_committed_records_alone(tmp_path, monkeypatch):
    """analyse() needs only trainability.json and each task's plan + trial records; the tour
    redraws its section from what analyse() wrote."""
    folder = tmp_path / "t"
    spec = {"cells": ["a", "b", "c"], "tasks": ["adding"], "T": 200, "seeds": 2,
            "margin": 0.5, "fixed": {"patience": 3, "steps": 100},
            "readouts": {c: {"has_hold": c != "c", "flow_exponent": -0.1 * k, "notes": []}
                         for k, c in enumerate("abc")}}
    save_spec(folder, spec)
    sub = folder / "adding"
    trials = [{"id": f"{c}-000-s{s}", "cell": c, "draw": 0, "seed": s, "params": {},
               "config": {}} for c in "abc" for s in range(2)]
    from gatelab.study.space import StudySpec, spec_to_dict

    sub.mkdir()
    (sub / "plan.json").write_text(json.dumps(
        {"spec": spec_to_dict(StudySpec("adding", ["a", "b", "c"], 1, 2)), "trials": trials}))
    metric = {"a": 0.01, "b": 0.05, "c": 0.17}
    for t in trials:
        run = sub / "runs" / t["id"]
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"baseline": 0.1667}))
        (run / "trial.json").write_text(json.dumps(
            {"status": "done", "metric": metric[t["cell"]], "steps": 100, "best_step": 50,
             "stop_reason": "patience", "seconds": 1.0}))
    res = analyse(folder, boot=40)
    by = {c["cell"]: c for c in res["cells"]}
    assert by["a"]["successes"] == 2 and by["c"]["successes"] == 0
    assert by["a"]["adding"]["stops"] == {"patience": 2}
    assert (folder / "trainability.md").read_text().count("| a |") == 1
    assert (folder / "trainability.png").stat().st_size > 1000
    assert json.loads((folder / "results.json").read_text())["finished"] == 6
    # the tour shows the committed folder, marked as a pilot
    from gatelab.report.page import TourContext
    from gatelab.study import report

    monkeypatch.setattr(report, "BENCH", tmp_path)
    monkeypatch.setattr(report, "TRAINABILITY", "t")
    page = report._trainability(TourContext(out=tmp_path / "out"))
    assert "A PILOT" in page and "<td>a</td>" in page and "6/6 runs finished" in page
    assert (tmp_path / "out" / "study-trainability" / "trainability.png").is_file()
    monkeypatch.setattr(report, "TRAINABILITY", "nothing")
    assert report._trainability(TourContext(out=tmp_path / "out2")) == ""


def test_study_config_takes_patience_and_the_step_cap(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[fixed]\npatience = 5\nmax_steps = 3000\n")
    assert load_config(p)[1] == {"patience": 5, "steps": 3000}
    p.write_text("[fixed]\nsteps = 10\nmax_steps = 3000\n")
    with pytest.raises(StudyError, match="not both"):
        load_config(p)
