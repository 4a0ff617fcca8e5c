"""The light install: the wheel, installed into an empty virtualenv outside the repository with
its core dependencies only, runs check, analyze, diagram and a short train (so the zoo and every
file read at run time are package data), and a command that needs an extra names it in one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

MY_CELL = """# a user's minimal gated unit
input x
state h
gate f = sigmoid(W_f @ x + U_f @ h + b_f)
let n = tanh(W_n @ x + U_n @ (f * h) + b_n)
next h = f * n + (1 - f) * h
output h
"""


def _run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: int = 900):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """An empty virtualenv with the built wheel and torch's pinned CPU build (nothing else from
    the repository's environment)."""
    tmp = tmp_path_factory.mktemp("wheel")
    res = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"),
                str(ROOT)], cwd=tmp)
    if res.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{res.stderr[-3000:]}")
    wheel = next((tmp / "dist").glob("gatelab-*.whl"))
    venv = tmp / "venv"
    res = _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp)
    assert res.returncode == 0, res.stderr
    pip = venv / "bin" / "pip"
    # torch first, pinned: an unpinned torch would pull a CUDA build (see the Makefile)
    res = _run([str(pip), "install", "-q", f"torch=={_torch_version()}"], cwd=tmp)
    if res.returncode != 0:
        pytest.skip(f"torch {_torch_version()} cannot be installed here: {res.stderr[-500:]}")
    res = _run([str(pip), "install", "-q", str(wheel), f"torch=={_torch_version()}"], cwd=tmp)
    if res.returncode != 0:
        pytest.fail(f"installing the wheel failed:\n{res.stderr[-3000:]}")
    return wheel, venv, tmp


def _torch_version() -> str:
    import torch

    return torch.__version__.split("+")[0]


def _env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["GATELAB_CACHE_DIR"] = str(tmp / "cache")
    env["MPLBACKEND"] = "Agg"
    return env


def test_wheel_holds_the_runtime_files(installed):
    wheel, _, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    for sub in ("cell/zoo/", "engine/torch_cells/"):
        cells = [n for n in names if n.startswith(f"gatelab/{sub}") and n.endswith(".cell")]
        on_disk = list((ROOT / "src" / "gatelab" / sub).glob("*.cell"))
        assert len(cells) == len(on_disk) > 0, sub


def test_core_commands_run_from_the_wheel(installed):
    _, venv, tmp = installed
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    gl = str(venv / "bin" / "gatelab")
    env = _env(tmp)
    # the core install holds none of the extras
    res = _run([str(venv / "bin" / "python"), "-c",
                "import importlib.util as u; print([m for m in ('ray', 'optuna', 'music21') "
                "if u.find_spec(m)])"], cwd=work, env=env)
    assert res.stdout.strip() == "[]", res.stdout + res.stderr
    (work / "my.cell").write_text(MY_CELL, encoding="utf-8")
    for cmd in (["check", "my.cell"], ["analyze", "my.cell"], ["analyze", "lstm"],
                ["diagram", "gru", "--out", "gru.svg"],
                ["train", "adding", "--cell", "mgu", "--steps", "3", "--hidden", "8",
                 "--batch", "4", "-T", "10", "--out", "run-mgu"]):
        res = _run([gl, *cmd], cwd=work, env=env, timeout=600)
        shown = f"gatelab {' '.join(cmd)}:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
        assert res.returncode == 0, shown
    assert (work / "gru.svg").stat().st_size > 1000
    assert (work / "run-mgu" / "checkpoint.pt").is_file()


def test_a_missing_extra_is_one_line(installed):
    _, venv, tmp = installed
    gl = str(venv / "bin" / "gatelab")
    for cmd, extra in ((["study", "adding", "--cells", "lstm", "--trials", "1",
                         "--out", "st"], "study"),
                       (["train", "jsb", "--steps", "1", "--out", "jsb-run"], "music")):
        res = _run([gl, *cmd], cwd=tmp, env=_env(tmp), timeout=300)
        assert res.returncode == 2, res.stdout + res.stderr
        err = res.stderr.strip().splitlines()
        assert len(err) == 1 and f"gatelab[{extra}]" in err[0], res.stderr
        assert "Traceback" not in res.stderr
