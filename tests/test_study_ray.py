"""``gatelab study`` through real Ray: a local study, resume after a kill, a two-node cluster.

Every Ray process a test starts is found from the PIDs it started, checked for where it listens
and connects (127.0.0.0/8 only) and stopped by PID, also when the test fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = ["adding", "--cells", "lstm,gru", "--trials", "2", "--steps", "6", "-T", "8",
        "--hidden", "8", "--eval-size", "16", "--batch", "8"]
# Real Ray clusters: `make test` runs these after the parallel part, one at a time (-n 0).
pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _env(home: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), RAY_USAGE_STATS_ENABLED="0",
               **extra)
    if home is not None:  # Ray's token goes to ~/.ray: keep it in the test's own folder
        env["HOME"] = str(home)
    return env


def _descendants(roots: list[int]) -> set[int]:
    """The PIDs of ``roots`` and of every process below them (from /proc)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                parent[int(d.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(roots), list(roots)
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in found]
        found.update(kids)
        frontier.extend(kids)
    return found


def _sockets(pids: set[int], listening: bool) -> list[tuple[str, int]]:
    """``(address, pid)`` of the listeners (or the peers of established connections) of
    ``pids``, from ``ss``."""
    out = subprocess.run(["ss", "-Htnp"] + (["-l"] if listening else []), capture_output=True,
                         text=True, timeout=20).stdout
    rows = []
    for line in out.splitlines():
        cols = line.split()
        for pid in re.findall(r"pid=(\d+)", line):
            if int(pid) in pids:
                rows.append((cols[3] if listening else cols[4], int(pid)))
    return rows


def _on_loopback(addr: str) -> bool:
    host = addr.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:")
    return host.startswith("127.") or host == "::1"


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every process the test started and all below them; SIGKILL what remains."""
    pids = _descendants([p.pid for p in procs if p.poll() is None])
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + 30
    for p in procs:
        try:
            p.wait(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
    for pid in pids:  # anything that ignored SIGTERM
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _study(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gatelab", "study", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _watch(proc: subprocess.Popen, roots: list[int], timeout: float, listening: bool
           ) -> tuple[str, list[tuple[str, int]]]:
    """Wait for ``proc``; meanwhile sample the sockets of everything under ``roots``."""
    seen: list[tuple[str, int]] = []
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        pids = _descendants(roots)
        seen += _sockets(pids, listening=False)
        if listening:
            seen += _sockets(pids, listening=True)
        time.sleep(1.0)
    if proc.poll() is None:
        raise AssertionError(f"the study did not finish in {timeout:.0f} s")
    return proc.stdout.read(), seen


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_tiny_local_study_stays_on_loopback(tmp_path):
    out = tmp_path / "st"
    proc = _study([*TINY, "--out", str(out), "--cpus", "2"], _env())
    try:
        text, seen = _watch(proc, [proc.pid], 900, listening=True)
    finally:
        _stop([proc])
    assert proc.returncode == 0, text
    assert "[4/4]" in text and "1 node(s) (127.0.0.1)" in text
    s = _summary(out)
    assert s["finished"] == 4 and {v["cell"] for v in s["variants"]} == {"lstm", "gru"}
    for r in s["rows"]:  # each trial is a gatelab run folder
        run = out / "runs" / r["id"]
        assert (run / "config.json").is_file() and (run / "metrics.csv").is_file()
        assert json.loads((run / "config.json").read_text())["steps"] == 6
    assert seen, "no socket of the study's Ray was seen"
    assert all(_on_loopback(a) for a, _ in seen), [a for a, _ in seen if not _on_loopback(a)]


def test_killed_and_moved_study_resumes_without_rerunning_finished_trials(tmp_path):
    out = tmp_path / "st"
    # Trials of 6 steps take 0.04 s: on a quiet machine all six finished between the first
    # "done" and the kill. 300 steps (a second or two each, one at a time) leave the kill room.
    assert TINY[3:7] == ["--trials", "2", "--steps", "6"]
    args = [*TINY[:4], "3", "--steps", "300", *TINY[7:], "--out", str(out), "--cpus", "1"]
    proc = _study(args, _env())
    try:
        deadline = time.time() + 900
        while time.time() < deadline and proc.poll() is None:
            if any(json.loads(p.read_text()).get("status") == "done"
                   for p in out.glob("runs/*/trial.json")):
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the study ended before it could be killed"
    finally:
        _stop([proc])  # the kill
    # The killed study is moved before it resumes: its trials must land in the new place.
    moved = tmp_path / "moved"
    out.rename(moved)
    finished = {p.parent.name: (p.read_text(), (p.parent / "metrics.csv").stat().st_mtime_ns)
                for p in moved.glob("runs/*/trial.json")
                if json.loads(p.read_text())["status"] == "done"}
    assert 0 < len(finished) < 6
    again = _study(["--out", str(moved), "--resume", "--cpus", "1"], _env())
    try:
        text, _ = _watch(again, [again.pid], 900, listening=False)
    finally:
        _stop([again])
    assert again.returncode == 0, text
    assert f"{len(finished)} already finished" in " ".join(text.split())  # Rich wraps lines
    for tid, (status, mtime) in finished.items():  # untouched: not rerun
        run = moved / "runs" / tid
        assert (run / "trial.json").read_text() == status
        assert (run / "metrics.csv").stat().st_mtime_ns == mtime
    assert _summary(moved)["finished"] == 6
    assert not out.exists(), "the resumed study wrote to the folder's old place"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_port(host: str, port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ray start exited early: {proc.stdout.read()}")
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(1)
    raise AssertionError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def test_two_node_cluster_runs_the_study_through_address(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = _env(home, RAY_AUTH_MODE="token")
    port = _free_port("127.0.0.2")
    ray = str(BIN / "ray")
    common = ["--disable-usage-stats", "--num-cpus=1", "--block"]
    procs: list[subprocess.Popen] = []
    # Token authentication stays on: a token for this cluster, in the test's own HOME.
    subprocess.run([ray, "get-auth-token", "--generate"], env=env, check=True,
                   capture_output=True, timeout=120)
    assert (home / ".ray" / "auth_token").is_file()
    try:
        head = subprocess.Popen(
            [ray, "start", "--head", "--node-ip-address=127.0.0.2", f"--port={port}",
             "--include-dashboard=false", *common], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        procs.append(head)
        _wait_port("127.0.0.2", port, head, 180)
        worker = subprocess.Popen(
            [ray, "start", f"--address=127.0.0.2:{port}", "--node-ip-address=127.0.0.3",
             *common], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(worker)
        out = tmp_path / "st"
        deadline = time.time() + 180
        while True:  # the second node registers a little after its process starts
            proc = _study([*TINY, "--out", str(out), "--address", f"127.0.0.2:{port}"], env)
            procs.append(proc)
            text, seen = _watch(proc, [p.pid for p in procs], 900, listening=False)
            if "2 node(s)" in text or time.time() > deadline or proc.returncode != 0:
                break
            _stop([proc])  # only one node yet: start over in a fresh folder
            out = tmp_path / f"st{int(time.time())}"
    finally:
        _stop(procs)
        # `ray start` notes its cluster for later drivers; a stopped cluster must not be joined
        current = Path("/tmp/ray/ray_current_cluster")
        if current.is_file() and f"127.0.0.2:{port}" in current.read_text():
            current.unlink()
    assert proc.returncode == 0, text
    assert "2 node(s)" in text and "127.0.0.2" in text and "127.0.0.3" in text, text
    s = _summary(out)
    assert s["finished"] == 4
    nodes = {json.loads((out / "runs" / r["id"] / "trial.json").read_text())["node"]
             for r in s["rows"]}
    assert nodes <= {"127.0.0.2", "127.0.0.3"}, nodes
    assert seen and all(_on_loopback(a) for a, _ in seen), \
        [a for a, _ in seen if not _on_loopback(a)]
