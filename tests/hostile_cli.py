"""Run ``gatelab`` in a subprocess with its address space capped, for hostile-input tests: a
regression that allocates what the options ask for fails with an allocation error instead of
eating the machine, and a hang fails at the timeout."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
# well above what the command line needs to start, train briefly or refuse; far below what
# the hostile options would allocate
ADDRESS_SPACE = 3 * 2**30


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    peak_mb: float  # the child's peak resident memory

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            cap: bool = True, timeout: float = 180) -> Result:
    """``python -m gatelab ARGS`` with ``src`` first on the path; killed past ``timeout``."""
    full_env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "200", **(env or {})}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen([sys.executable, "-m", "gatelab", *args], cwd=cwd, env=full_env,
                             stdin=subprocess.DEVNULL, stdout=out, stderr=err, text=True,
                             preexec_fn=_cap if cap else None)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(p.pid, 0)  # reaped here: its own peak memory
        finally:
            timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if p.returncode == -9:
        raise AssertionError(f"gatelab {' '.join(args)} ran past {timeout} s")
    return Result(p.returncode, stdout, stderr, usage.ru_maxrss / 1024)


def assert_refused(result: Result, *needles: str) -> None:
    """Exit 2 with exactly one line, ``error: ...``, containing every needle."""
    lines = result.error_lines()
    assert result.code == 2, (result.code, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
