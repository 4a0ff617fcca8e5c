"""One writer per run folder: a run holds the folder's lock for its whole life, a second writer
is refused with one line; a folder that is not empty and holds no run is refused before anything
is written; a study trial killed before its first checkpoint starts again on resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gatelab.cli import app
from gatelab.errors import GatelabError
from gatelab.train import TrainConfig, train
from gatelab.train.folder_lock import LOCK, RunFolderBusy, lock_run_folder
from gatelab.train.runs import RunFolderError

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(task="adding", cell="mgu", T=6, hidden=4, batch=4, eval_size=8)
TINY_CLI = ["adding", "--cell", "mgu", "--T", "6", "--hidden", "4", "--batch", "4",
            "--eval-size", "8"]
runner = CliRunner()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("resume", [False, True])
def test_a_held_folder_is_refused_and_left_as_it_was(tmp_path, resume):
    out = tmp_path / "run"
    if resume:
        train(TrainConfig(steps=2, out=str(out), **TINY), progress=False)
    with lock_run_folder(out):
        before = _snapshot(out)
        with pytest.raises(RunFolderBusy, match="being written by another gatelab process"):
            train(TrainConfig(steps=4, out=str(out), **TINY), progress=False, resume=resume)
        r = runner.invoke(app, ["train", *TINY_CLI, "--steps", "4", "--out", str(out)]
                          + (["--resume"] if resume else []))
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert "being written by another gatelab process" in r.output
        assert _snapshot(out) == before


def test_the_lock_is_released_and_removed_after_a_run_even_a_failed_one(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(steps=2, out=str(out), **TINY), progress=False)
    assert not (out / LOCK).exists()
    with pytest.raises(GatelabError, match="already reached step 2"):  # a shorter run
        train(TrainConfig(steps=1, out=str(out), **TINY), progress=False, resume=True)
    with lock_run_folder(out):  # free again
        pass
    (out / LOCK).write_text("12345")  # left by a process killed with SIGKILL: not held
    train(TrainConfig(steps=3, out=str(out), **TINY), progress=False, resume=True)
    assert not (out / LOCK).exists()


def test_a_lock_that_is_a_link_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RunFolderError, match="lock"):
        train(TrainConfig(steps=2, out=str(out), **TINY), progress=False)
    assert not (tmp_path / "elsewhere").exists()


def test_two_train_commands_into_one_folder(tmp_path):
    """The first `gatelab train` holds the folder; a second one (with or without --resume) is
    refused with one line while it runs, and the first finishes with its own settings."""
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    first = subprocess.Popen(
        [sys.executable, "-m", "gatelab", "train", *TINY_CLI, "--steps", "100000",
         "--eval-every", "50", "--lr", "0.001", "--out", str(out)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").is_file():
            assert first.poll() is None and time.monotonic() < deadline, "first run did not start"
            time.sleep(0.2)
        for extra in ([], ["--resume"]):
            second = subprocess.run(
                [sys.executable, "-m", "gatelab", "train", *TINY_CLI, "--steps", "100001",
                 "--lr", "0.5", "--out", str(out), *extra],
                env=env, capture_output=True, text=True, timeout=120)
            assert second.returncode == 2, second.stderr
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1 and "being written by another gatelab process" in lines[0]
            assert f"pid {first.pid}" in lines[0]
        assert json.loads((out / "config.json").read_text())["lr"] == 0.001
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)


FOREIGN = {"metrics.csv": b"step,loss\n1,0.5\n", "checkpoint.pt": b"mine",
           "notes.txt": b"my notes", "vocab.json": b"[]", ".hidden": b"x"}


@pytest.mark.parametrize("name", list(FOREIGN))
def test_a_folder_holding_other_files_is_refused_untouched(tmp_path, name):
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_bytes(FOREIGN[name])
    r = runner.invoke(app, ["train", *TINY_CLI, "--steps", "2", "--out", str(out)])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "holds no gatelab run" in r.output and name in r.output
    assert _snapshot(out) == {name: FOREIGN[name]}
    r = runner.invoke(app, ["train", *TINY_CLI, "--steps", "2", "--out", str(out), "--resume"])
    assert r.exit_code == 2 and _snapshot(out) == {name: FOREIGN[name]}, r.output


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.text(st.characters(codec="ascii", categories=["L", "N"],
                                             include_characters="._-"),
                              min_size=1, max_size=12).filter(lambda n: n not in (".", "..")),
                      min_size=1, max_size=4, unique=True))
def test_any_foreign_file_makes_the_folder_refused(tmp_path_factory, names):
    out = tmp_path_factory.mktemp("foreign")
    for n in names:
        (out / n).write_bytes(b"user data")
    before = _snapshot(out)
    if "config.json" in names:  # then it claims to be a run: only --resume reads it
        with pytest.raises(GatelabError, match="already holds a run"):
            train(TrainConfig(steps=2, out=str(out), **TINY), progress=False)
    elif all(n in (LOCK, "trial.json") for n in names):  # what gatelab itself leaves there
        return
    else:
        with pytest.raises(RunFolderError, match="holds no gatelab run"):
            train(TrainConfig(steps=2, out=str(out), **TINY), progress=False)
    assert _snapshot(out) == before


def test_an_output_path_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("mine")
    with pytest.raises(RunFolderError, match="not a folder"):
        train(TrainConfig(steps=2, out=str(f), **TINY), progress=False)
    assert f.read_text() == "mine"


def test_a_study_trial_killed_before_its_first_checkpoint_restarts(tmp_path, monkeypatch):
    """The trial's folder holds config.json but no checkpoint (killed during its first steps):
    the next execution continues it instead of marking it failed ("already holds a run")."""
    pytest.importorskip("ray")
    import ray.tune
    import ray.util

    from gatelab.study import runner as study_runner

    reports = []
    monkeypatch.setattr(ray.tune, "report", reports.append)
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "127.0.0.1")
    out = tmp_path / "study" / "runs" / "mgu-000"
    cfg = TrainConfig(steps=4, eval_every=2, out=str(out), **TINY)
    train(cfg, progress=False)
    (out / "checkpoint.pt").unlink()
    trial = {"id": "mgu-000", "cell": "mgu", "draw": 0, "seed": 0, "params": {},
             "config": {**cfg.to_dict(), "out": str(out)}}
    trial["config"].pop("cell_text", None)
    study_runner.run_trial({"trial": trial, "rungs": 1})
    status = json.loads((out / "trial.json").read_text())
    assert status["status"] == "done", status
    assert reports and reports[-1]["step"] == 4
