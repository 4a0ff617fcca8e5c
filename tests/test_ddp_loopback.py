"""`gatelab train --nproc 2` listens on loopback only: torch's TCPStore (which listens on every
interface, unauthenticated, whatever host it is given) is replaced by a FileStore, and gloo's
sockets are put on the loopback interface."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gatelab.train.ddp import loopback_interface

ROOT = Path(__file__).resolve().parents[1]


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


def _listeners(pids: set[int]) -> set[str]:
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, timeout=20).stdout
    return {line.split()[3] for line in out.splitlines()
            if any(int(p) in pids for p in re.findall(r"pid=(\d+)", line))}


def _on_loopback(addr: str) -> bool:
    host = addr.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:")
    return host.startswith("127.") or host == "::1"


def test_the_loopback_interface_is_found():
    assert loopback_interface().startswith("lo")


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_ddp_listens_on_loopback_only(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME", "MASTER_ADDR")}
    env["PYTHONPATH"] = str(ROOT / "src")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatelab", "train", "adding", "--cell", "mgu", "--nproc", "2",
         "--T", "6", "--hidden", "4", "--batch", "8", "--eval-size", "8", "--steps", "300",
         "--eval-every", "100", "--out", str(tmp_path / "run")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            seen |= _listeners(_descendants(proc.pid))
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            for pid in sorted(_descendants(proc.pid), reverse=True):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert seen, "no listener of the ranks was seen: the poll did not work"
    assert all(_on_loopback(a) for a in seen), f"listeners beyond loopback: {sorted(seen)}"
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
