"""Faults in run folders, data files, options and paths: one clear error naming the file, exit
status 2, nothing overwritten, nothing written outside the folder asked for."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gatelab.cli import app
from gatelab.data import DataUnavailable
from gatelab.data.fashion_mnist import read_idx
from gatelab.data.tweets import load_tweets
from gatelab.files import FileProblem, atomic_write_bytes, inside, read_limited, safe_name
from gatelab.train import TrainConfig, load_run, train
from gatelab.train.runs import RunFolderError

TINY = ["--T", "6", "--hidden", "4", "--batch", "4", "--eval-size", "8"]
runner = CliRunner()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "good"
    train(TrainConfig(task="adding", cell="mgu", T=6, hidden=4, batch=4, eval_size=8, steps=2,
                      out=str(out)), progress=False)
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _corrupt(run_folder: Path, tmp_path: Path, name: str, data) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    target = folder / name
    if callable(data):
        data = data(target.read_bytes())
    target.write_bytes(data if isinstance(data, bytes) else data.encode())
    return folder


def _config_with(run_folder: Path, **changes) -> str:
    cfg = json.loads((run_folder / "config.json").read_text())
    cfg.update(changes)
    return json.dumps(cfg)


CONFIG_FAULTS = {
    "a list": "[1, 2]",
    "null": "null",
    "not json": "{hidden: ",
    "hidden text": lambda: ("hidden", "abc"),
    "hidden null": lambda: ("hidden", None),
    "clip nan": lambda: ("clip", float("nan")),
    "model missing": lambda: ("model", None),
    "cell text invalid": lambda: ("cell_text", "input x\nstate h\nnext h = (("),
    "cell text swapped": lambda: ("cell_text", "input x\nstate h\nnext h = tanh(W @ x + U @ h)"),
    "nested too deeply": "[" * 100000 + "]" * 100000,
    "lone surrogate": lambda: ("cell", "\ud800"),
    "integer too large for a float": lambda: ("hidden", 10**400),
}


@pytest.mark.parametrize("fault", list(CONFIG_FAULTS))
def test_corrupt_config_is_one_clear_error_and_nothing_changes(run_folder, tmp_path, fault):
    spec = CONFIG_FAULTS[fault]
    text = spec if isinstance(spec, str) else _config_with(run_folder, **dict([spec()]))
    folder = _corrupt(run_folder, tmp_path, "config.json", text)
    before = _snapshot(folder)
    with pytest.raises(RunFolderError) as e:
        load_run(folder)
    assert "config.json" in str(e.value) or "checkpoint.pt" in str(e.value)
    r = runner.invoke(app, ["train", "adding", "--out", str(folder), "--resume", "--steps", "4"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert str(folder) in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert _snapshot(folder) == before


CHECKPOINT_FAULTS = {
    "empty": b"",
    "junk": b"PK\x03\x04 this is not a zip file at all",
    "truncated": lambda data: data[: len(data) // 2],
    "wrong keys": lambda _: _saved({"model": {"nonsense": torch.zeros(2)}}),
    "wrong shape": lambda data: _reshaped(data),
    "no model": lambda _: _saved({"step": 3}),
    "plain list": lambda _: _saved([1, 2, 3]),
    "nan weights": lambda data: _edited(data, _nan_weights),
}


def _edited(data: bytes, change) -> bytes:
    import io

    state = torch.load(io.BytesIO(data), weights_only=True)
    change(state)
    return _saved(state)


def _nan_weights(state) -> None:
    for t in state["model"].values():
        t.fill_(float("nan"))


def _adam_buffers_resized(state) -> None:
    for per_param in state["optim"]["state"].values():
        per_param["exp_avg"] = torch.zeros(7)


# read only by --resume (load_run reads the weights alone): rows and the optimiser's state
RESUME_FAULTS = {
    "rows of text": lambda s: s.update(rows=["x"]),
    "empty row": lambda s: s.update(rows=[{}]),
    "row of text values": lambda s: s.update(rows=[{"step": "a", "metric": "zz"}]),
    "lr text": lambda s: s["optim"]["param_groups"][0].update(lr="x"),
    "betas one number": lambda s: s["optim"]["param_groups"][0].update(betas=0.9),
    "optimiser buffers resized": _adam_buffers_resized,
}


@pytest.mark.parametrize("fault", list(RESUME_FAULTS))
def test_checkpoint_contents_resume_reads_are_checked_before_anything_is_written(
        run_folder, tmp_path, fault):
    folder = _corrupt(run_folder, tmp_path, "checkpoint.pt",
                      lambda data: _edited(data, RESUME_FAULTS[fault]))
    before = _snapshot(folder)
    r = runner.invoke(app, ["train", "adding", "--out", str(folder), "--resume", "--steps", "4"])
    assert r.exit_code == 2 and "checkpoint.pt" in r.output and "Traceback" not in r.output, \
        r.output
    assert len(r.output.strip().splitlines()) == 1 and _snapshot(folder) == before


def _saved(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _reshaped(data: bytes) -> bytes:
    import io

    state = torch.load(io.BytesIO(data), weights_only=True)
    key = next(iter(state["model"]))
    state["model"][key] = torch.zeros(3, 3, 3)
    return _saved(state)


@pytest.mark.parametrize("fault", list(CHECKPOINT_FAULTS))
def test_corrupt_checkpoint_is_one_clear_error_and_nothing_changes(run_folder, tmp_path, fault):
    folder = _corrupt(run_folder, tmp_path, "checkpoint.pt", CHECKPOINT_FAULTS[fault])
    before = _snapshot(folder)
    with pytest.raises(RunFolderError, match="checkpoint.pt"):
        load_run(folder)
    r = runner.invoke(app, ["train", "adding", "--out", str(folder), "--resume", "--steps", "4"])
    assert r.exit_code == 2 and "checkpoint.pt" in r.output and "Traceback" not in r.output
    assert _snapshot(folder) == before


ODD_FILES = {
    "folder": lambda p: p.mkdir(),
    "link to a device": lambda p: p.symlink_to("/dev/urandom"),
    "dangling link": lambda p: p.symlink_to(p.parent / "nowhere"),
}


@pytest.mark.parametrize("name", ["checkpoint.pt", "config.json", "metrics.csv"])
@pytest.mark.parametrize("kind", list(ODD_FILES))
def test_run_file_that_is_not_a_regular_file_is_refused_and_nothing_changes(
        run_folder, tmp_path, name, kind):
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    (folder / name).unlink()
    ODD_FILES[kind](folder / name)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    r = runner.invoke(app, ["train", "adding", "--out", str(folder), "--resume", "--steps", "4"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert name in r.output and "not a regular file" in r.output, r.output
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert (folder / name).is_symlink() or (folder / name).is_dir()


def test_run_killed_before_its_first_checkpoint_starts_again_with_its_saved_config(
        run_folder, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    (folder / "checkpoint.pt").unlink()
    saved = json.loads((folder / "config.json").read_text())
    before = _snapshot(folder)
    r = runner.invoke(app, ["train", "adding", "--out", str(folder), "--steps", "3"])
    assert r.exit_code == 2 and "--resume" in r.output and _snapshot(folder) == before
    r = runner.invoke(app, ["train", "adding", "--out", str(folder), "--resume", "--steps", "3"])
    assert r.exit_code == 0, r.output
    run = load_run(folder)
    assert [row["step"] for row in run.metrics][-1] == 3
    assert torch.load(folder / "checkpoint.pt", weights_only=True)["step"] == 3
    now = json.loads((folder / "config.json").read_text())
    for key in ("cell", "hidden", "T", "batch", "cell_text", "seed"):  # not the CLI defaults
        assert now[key] == saved[key], key


@pytest.mark.parametrize("option", [["--clip", "nan"], ["--lr", "inf"], ["--lr", "nan"],
                                    ["--hidden", "100000000"], ["--batch", "1000000000"],
                                    ["--dropout", "nan"], ["--steps", "0"], ["--T", "1"],
                                    ["--hidden", "4096", "--batch", "65536"]])
def test_absurd_numeric_options_are_refused_before_any_work(tmp_path, option):
    out = tmp_path / "r"
    r = runner.invoke(app, ["train", "adding", "--cell", "rnn", "--out", str(out), *option])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert option[0] in r.output and not out.exists()


def test_run_folder_names_come_from_the_cell_name(tmp_path, monkeypatch):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    cell = tmp_path / "x"  # no .cell suffix, two levels up
    cell.write_text("input x\nstate h\nnext h = tanh(W @ x + U @ h + b)\n")
    r = runner.invoke(app, ["train", "adding", "--cell", "../../x", "--steps", "1", *TINY])
    assert r.exit_code == 0, r.output
    assert [p.name for p in (work / "runs").iterdir()] == ["adding-x-h4-s0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "x"]  # nothing beside it
    out = tmp_path / "cmp"
    r = runner.invoke(app, ["compare", "adding", "--cells", str(cell), "--steps", "1",
                            "--out", str(out), *TINY])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "cmp", "x"]
    assert (out / "x-s0" / "config.json").is_file()


def test_path_helper_keeps_every_name_inside_its_parent(tmp_path):
    for hostile in ["../../etc/passwd", "/abs/path", "..", ".", "", "a/../../b", "-rf", "\x00",
                    "名前", "x" * 500]:
        name = safe_name(hostile)
        assert name and "/" not in name and not name.startswith((".", "-")) and len(name) <= 64
        assert inside(tmp_path, name).parent == tmp_path
    with pytest.raises(FileProblem, match="outside"):
        inside(tmp_path, "..", "elsewhere")
    (tmp_path / "link").symlink_to("/tmp")
    with pytest.raises(FileProblem, match="outside"):
        inside(tmp_path, "link", "x")


def test_failed_atomic_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(target, b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
    assert target.read_text() == "old"


def test_reads_refuse_devices_fifos_and_oversized_files(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path, match in [(fifo, "FIFO"), (Path("/dev/zero"), "device"), (tmp_path, "folder")]:
        with pytest.raises(FileProblem, match=match):
            read_limited(path, 100)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(FileProblem, match="too large"):
        read_limited(big, 100)
    assert read_limited(big, 101) == b"x" * 101


@pytest.mark.parametrize("data", [b"\x00\x00\x08\x03\x00\x00", b"\x00\x00\x08", b"",
                                  b"\x00\x00\x08\x00", b"\x00\x00\x08\x01" + struct.pack(">I", 9)])
def test_bad_idx_files_name_the_file(tmp_path, data):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(DataUnavailable, match="train-images-idx3-ubyte"):
        read_idx(path)


def test_csv_field_over_the_limit_names_the_file(tmp_path):
    path = tmp_path / "tweets.csv"
    path.write_text('positive,1,"' + "a" * 140_000 + '"\n')
    with pytest.raises(DataUnavailable, match="tweets.csv"):
        load_tweets("train", path)
