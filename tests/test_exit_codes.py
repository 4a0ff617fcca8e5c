"""Honest exit codes: a command whose work failed, or that would print something other than
what was asked, exits non-zero with one line per problem instead of exit 0."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gatelab.cli import app
from gatelab.study.runner import (
    TRIAL,
    StudyError,
    TrialsFailed,
    failed_trials,
    one_line,
    probe_address,
)
from gatelab.train import TrainConfig, train

runner = CliRunner()
TINY = dict(task="adding", cell="mgu", T=6, hidden=4, batch=4, eval_size=8)


# -- gatelab study: failed trials ------------------------------------------------------------

def _plan(n: int) -> list[dict]:
    return [{"id": f"gru-{k:03d}", "cell": "gru", "draw": k, "seed": 0, "params": {},
             "config": {}} for k in range(n)]


def _record(folder: Path, tid: str, **fields) -> None:
    d = folder / "runs" / tid
    d.mkdir(parents=True, exist_ok=True)
    (d / TRIAL).write_text(json.dumps({"id": tid, **fields}))


def test_failed_trials_are_collected_from_records_and_from_ray(tmp_path):
    plan = _plan(6)
    _record(tmp_path, "gru-000", status="done", metric=0.1)
    _record(tmp_path, "gru-001", status="failed", message="TypeError: unexpected 'bogus'")
    _record(tmp_path, "gru-002", status="diverged", metric=None)  # a result, not a failure
    _record(tmp_path, "gru-003", status="running", metric=0.3)  # Ray lost it mid-way
    _record(tmp_path, "gru-004", status="failed")  # no message recorded
    # gru-005: no record at all, and Ray reported nothing: it was never run (not a failure)
    ray_errors = {"gru-003": "RayActorError: the worker died", "gru-000": "ignored: done"}
    assert failed_trials(tmp_path, plan, ray_errors) == [
        ("gru-001", "TypeError: unexpected 'bogus'"),
        ("gru-003", "RayActorError: the worker died"),
        ("gru-004", "failed (no reason recorded)"),
    ]
    assert failed_trials(tmp_path, plan[:1]) == []


def test_trials_failed_prints_one_line_per_trial_and_exits_1(tmp_path):
    e = TrialsFailed(tmp_path, 4, [("a-000", "TypeError: x"), ("b-001", "no")])
    assert e.exit_code == 1
    assert e.lines() == [f"error: 2 of 4 trial(s) of {tmp_path} failed:", "  a-000: TypeError: x",
                         "  b-001: no"]


def test_one_line_keeps_the_first_line_and_the_kind():
    assert one_line(ValueError("bad size\nTraceback (most recent call last): ...")) == \
        "ValueError: bad size"
    assert one_line(StudyError("a study problem")) == "a study problem"  # already readable
    assert len(one_line(RuntimeError("x" * 1000))) == 300


def test_a_trial_that_cannot_run_is_recorded_failed_with_its_reason(tmp_path, monkeypatch):
    """Inside Ray a failing trial used to raise (Ray printed its traceback; the study exited
    0): it is now a ``failed`` record with the one-line reason, for run_study to name."""
    pytest.importorskip("ray")
    import ray.tune
    import ray.util

    from gatelab.study.runner import run_trial

    reports = []
    monkeypatch.setattr(ray.tune, "report", reports.append)
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "127.0.0.1")
    good = TrainConfig(steps=2, **TINY).to_dict()
    good.pop("cell_text", None)
    cases = {
        "unknown option": {**good, "bogus": 1},
        "size out of range": {**good, "hidden": 10**9},
        "unknown cell": {**good, "cell": "nosuchcell"},
    }
    for k, (what, cfg) in enumerate(cases.items()):
        tid = f"mgu-{k:03d}"
        out = tmp_path / "runs" / tid
        trial = {"id": tid, "cell": "mgu", "draw": k, "seed": 0, "params": {},
                 "config": {**cfg, "out": str(out)}}
        run_trial({"trial": trial, "rungs": 1})  # does not raise
        status = json.loads((out / TRIAL).read_text())
        assert status["status"] == "failed", what
        assert status["message"] and "\n" not in status["message"], what
    assert [r["metric"] != r["metric"] for r in reports] == [True] * 3  # NaN: no result
    names = [tid for tid, _ in failed_trials(tmp_path, [
        {"id": f"mgu-{k:03d}"} for k in range(3)])]
    assert names == ["mgu-000", "mgu-001", "mgu-002"]


def test_a_corrupt_trial_run_is_recorded_failed(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import ray.tune
    import ray.util

    from gatelab.study.runner import run_trial

    monkeypatch.setattr(ray.tune, "report", lambda r: None)
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "127.0.0.1")
    out = tmp_path / "runs" / "mgu-000"
    cfg = TrainConfig(steps=2, eval_every=1, out=str(out), **TINY)
    train(cfg, progress=False)
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    data = {**cfg.to_dict(), "steps": 4}
    data.pop("cell_text", None)
    trial = {"id": "mgu-000", "cell": "mgu", "draw": 0, "seed": 0, "params": {},
             "config": data}
    run_trial({"trial": trial, "rungs": 1})
    status = json.loads((out / TRIAL).read_text())
    assert status["status"] == "failed" and "checkpoint.pt" in status["message"]


# -- gatelab study --address: probed, never a long wait --------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens


@pytest.mark.parametrize("address", ["127.0.0.1:{closed}", "127.0.0.1:1", "[::1]:{closed}",
                                     "ray://127.0.0.1:{closed}"])
def test_an_address_where_nothing_listens_is_refused_at_once(address):
    address = address.format(closed=_closed_port())
    t0 = time.monotonic()
    with pytest.raises(StudyError, match="no Ray cluster answers"):
        probe_address(address, timeout=3)
    assert time.monotonic() - t0 < 30  # bounded by the probe, not by Ray's own retries


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1", "127.0.0.1:0",
                                     "127.0.0.1:70000", ":80", "127.0.0.1:x"])
def test_an_address_that_is_not_host_port_is_refused(address):
    with pytest.raises(StudyError, match="not HOST:PORT"):
        probe_address(address)


def test_study_address_that_does_not_answer_is_one_line_exit_2(tmp_path):
    pytest.importorskip("ray")
    r = runner.invoke(app, ["study", "adding", "--trials", "1", "--steps", "2", "--out",
                            str(tmp_path / "s"), "--address", f"127.0.0.1:{_closed_port()}"])
    assert r.exit_code == 2 and "no Ray cluster answers" in r.output, r.output
    assert "Traceback" not in r.output and not (tmp_path / "s").exists()


# -- gatelab grad ----------------------------------------------------------------------------

@pytest.mark.parametrize("option", [["--lr", "inf"], ["--lr", "nan"], ["--lr", "-1"],
                                    ["--lr", "0"], ["--max-norm", "inf"],
                                    ["--clip-value", "nan"], ["--sigma-max", "inf"],
                                    ["--sigma-max", "-2"]])
def test_grad_clip_refuses_non_finite_or_non_positive_values(option):
    r = runner.invoke(app, ["grad", "clip", "--steps", "2", "--seq-len", "4", "--hidden", "2",
                            "--batch", "2", *option])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert option[0] in r.output and "finite positive" in r.output, r.output


@pytest.mark.parametrize("option", [["--sigma-max", "inf"], ["--sigma-max", "1e308"],
                                    ["--sigma-max", "2", "--steps", "2000"]])
def test_grad_law_refuses_a_rate_whose_power_is_not_a_number(option):
    r = runner.invoke(app, ["grad", "law", "--hidden", "2", "--steps", "5", *option])
    assert r.exit_code == 2 and "not a finite number" in r.output, r.output


@pytest.mark.parametrize("command", [["law", "--sigma-max", "1.1", "--steps", "3",
                                      "--hidden", "2"],
                                     ["clip", "--steps", "1", "--seq-len", "3", "--hidden",
                                      "2", "--batch", "2"],
                                     ["flow", "rnn", "--steps", "3", "--batch", "2",
                                      "--hidden", "2"]])
@pytest.mark.parametrize("where", ["folder", "folder/", ".", ""])
def test_plot_into_a_folder_is_refused_before_any_work(tmp_path, monkeypatch, command, where):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    r = runner.invoke(app, ["grad", *command, "--plot", where])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "--plot" in r.output and "wrote" not in r.output, r.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["folder"]


def test_plot_says_what_it_wrote_and_wrote_it(tmp_path):
    r = runner.invoke(app, ["grad", "law", "--sigma-max", "1.1", "--steps", "3", "--hidden",
                            "2", "--plot", str(tmp_path / "figs" / "law")])
    assert r.exit_code == 0, r.output
    for suffix in (".png", ".svg"):
        p = tmp_path / "figs" / f"law{suffix}"
        assert p.stat().st_size > 0 and str(p) in r.output.replace("\n", "")
