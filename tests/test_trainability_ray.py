"""``gatelab trainability`` end to end on a real local Ray: two tasks (two Ray sessions in one
process), early-stopped trials with their stop records, the report redrawn from the folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("ray")
pytest.importorskip("sklearn")

from test_study_ray import ROOT, _env, _on_loopback, _stop, _watch  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.ray]
TINY = ["--cells", "lstm,rnn", "--tasks", "adding,copy", "-T", "200", "--seeds", "1",
        "--hidden", "4", "--max-steps", "10", "--eval-every", "5", "--eval-size", "16",
        "--patience", "2", "--cpus", "1"]


def _cmd(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gatelab", "trainability", *args], cwd=ROOT,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_trainability_runs_both_tasks_on_loopback_and_redraws_from_its_folder(tmp_path):
    out = tmp_path / "tr"
    proc = _cmd(*TINY, "--out", str(out))
    try:
        text, seen = _watch(proc, [proc.pid], 900, listening=True)
    finally:
        _stop([proc])
    assert proc.returncode == 0, text
    assert all(_on_loopback(a) for a, _ in seen), [a for a, _ in seen if not _on_loopback(a)]
    res = json.loads((out / "results.json").read_text())
    assert res["finished"] == res["runs"] == 4
    for task in ("adding", "copy"):
        for cell in ("lstm", "rnn"):
            trial = json.loads((out / task / "runs" / f"{cell}-000" / "trial.json")
                               .read_text())
            assert trial["stop_reason"] in ("patience", "max_steps")
            assert trial["steps"] <= 10 and trial["best_step"] <= trial["steps"]
            assert json.loads((out / task / "runs" / f"{cell}-000" / "config.json")
                              .read_text())["outcome"]["test_metric"] == trial["metric"]
    md = (out / "trainability.md").read_text()
    (out / "trainability.md").unlink()
    again = _cmd("--report", str(out))
    text, _ = _watch(again, [again.pid], 300, listening=False)
    assert again.returncode == 0, text
    assert (out / "trainability.md").read_text() == md
