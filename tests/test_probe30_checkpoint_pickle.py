"""A run folder whose checkpoint.pt is a pickle that would run code: one `error:` line naming
the file, no warning lines from torch, never torch's advice to load it with
``weights_only=False`` (that is how the code would run), and nothing executed."""

from __future__ import annotations

import io
import os
import pickle

import pytest
import torch
from typer.testing import CliRunner

from gatelab.cli import app
from gatelab.train import TrainConfig, train

runner = CliRunner()


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - what an attacker's pickle does
        return (os.system, (f"touch {self.marker}",))


def _raw_pickle(marker: str, protocol: int) -> bytes:
    return pickle.dumps(_Payload(marker), protocol=protocol)


def _torch_save(marker: str, protocol: int) -> bytes:
    buf = io.BytesIO()
    torch.save({"model": _Payload(marker)}, buf, pickle_protocol=protocol)
    return buf.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "r"
    train(TrainConfig(task="adding", cell="lstm", hidden=4, steps=2, batch=2, T=5, out=str(out)),
          progress=False)
    return out


@pytest.mark.parametrize("make", [_raw_pickle, _torch_save])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_code_running_checkpoint_is_one_line_and_never_runs(run, tmp_path, make, protocol):
    folder = tmp_path / "r"
    folder.mkdir()
    for f in run.iterdir():
        if f.is_file() and not f.name.startswith("."):
            (folder / f.name).write_bytes(f.read_bytes())
    marker = tmp_path / "ran"
    (folder / "checkpoint.pt").write_bytes(make(str(marker), protocol))
    for args in (["grad", "spectrum", str(folder)],
                 ["train", "adding", "--resume", "--out", str(folder), "--steps", "4"]):
        r = runner.invoke(app, args)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert r.exit_code == 2, r.output
        assert len(lines) == 1 and lines[0].startswith("error:"), r.output
        assert "checkpoint.pt" in lines[0] and "weights_only" not in lines[0], r.output
        assert not marker.exists()
