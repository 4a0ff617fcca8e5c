"""A real local study with one trial that cannot run: the command exits 1 naming it (Ray used
to print a traceback and the study exited 0), the other trial finishes, and Ray's session files
and token stay out of /tmp/ray and ~/.ray (its temp folder is the study's ``.ray-tmp``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from gatelab.study.space import StudySpec, make_plan, spec_to_dict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _descendants(root: int) -> set[int]:
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in found]
        found.update(kids)
        frontier.extend(kids)
    return found


def test_a_study_with_a_failed_trial_exits_1_naming_it(tmp_path):
    short = Path(tempfile.mkdtemp(prefix="gl", dir="/tmp"))  # Ray's sockets need a short path
    folder = short / "s"
    home = tmp_path / "home"
    home.mkdir()
    spec = StudySpec("adding", ["mgu"], 2, fixed={"steps": 4, "T": 6, "hidden": 4, "batch": 4,
                                                   "eval_size": 8, "threads": 1})
    plan = make_plan(spec)
    plan[0]["config"]["bogus"] = 1  # an option TrainConfig does not have
    folder.mkdir()
    (folder / "plan.json").write_text(json.dumps({"spec": spec_to_dict(spec), "trials": plan}))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HOME=str(home),
               RAY_USAGE_STATS_ENABLED="0")
    for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "RAY_ADDRESS"):
        env.pop(k, None)
    proc = subprocess.Popen([sys.executable, "-m", "gatelab", "study", "--out", str(folder),
                             "--resume", "--cpus", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 400
        while proc.poll() is None and time.monotonic() < deadline:
            seen |= _descendants(proc.pid)
            time.sleep(0.5)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        for pid in seen - {proc.pid}:  # anything of Ray's still running is stopped by PID
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    try:
        assert proc.returncode == 1, (out[-2000:], err[-3000:])
        assert "Traceback" not in out + err, err[-3000:]
        assert "1 of 2 trial(s)" in err and f"{plan[0]['id']}: TypeError" in err, err
        assert "bogus" in err and plan[1]["id"] + ":" not in err, err
        records = {t["id"]: json.loads((folder / "runs" / t["id"] / "trial.json").read_text())
                   for t in plan}
        assert records[plan[0]["id"]]["status"] == "failed"
        assert records[plan[1]["id"]]["status"] == "done"
        assert not (home / ".ray").exists(), "Ray wrote its token to ~/.ray"
        sessions = list((folder / ".ray-tmp").glob("session_*"))
        assert sessions, "Ray's session files are not in the study's .ray-tmp"
        assert not (folder / ".gatelab.lock").exists()
    finally:
        shutil.rmtree(short, ignore_errors=True)
