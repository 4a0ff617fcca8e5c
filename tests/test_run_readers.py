"""Run-folder readers validate field by field: a damaged metrics file, optimiser state,
vocabulary or class list is one ``error:`` line naming the file (exit 2, no traceback), and
nothing in the folder changes."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gatelab.cli import app
from gatelab.train import TrainConfig, load_run, train
from gatelab.train.runs import RunFolderError, load_checkpoint, read_metrics, save_checkpoint

TINY = dict(task="adding", cell="mgu", T=6, hidden=4, batch=4, eval_size=8)
runner = CliRunner()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "good"
    train(TrainConfig(steps=4, eval_every=2, out=str(out), **TINY), progress=False)
    return out


def _copy(run_folder: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _refused_by_the_cli(folder: Path, name: str) -> None:
    """`grad spectrum` (load_run) and `train --resume` both refuse with one line naming
    ``name``, and leave the folder as it was."""
    before = _snapshot(folder)
    for args in (["grad", "spectrum", str(folder)],
                 ["train", "adding", "--out", str(folder), "--resume", "--steps", "6"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output, r.exception)
        assert "Traceback" not in r.output and name in r.output, r.output
        assert r.output.count("error:") == 1, r.output
    assert _snapshot(folder) == before


BAD_STEPS = ["inf", "-inf", "nan", "1e400", "-3", "0", "2.5", "abc", ""]


@pytest.mark.parametrize("step", BAD_STEPS)
def test_a_metrics_row_with_a_bad_step_is_refused(run_folder, tmp_path, step):
    folder = _copy(run_folder, tmp_path)
    lines = (folder / "metrics.csv").read_text().splitlines()
    row = lines[1].split(",")
    row[0] = step
    lines[1] = ",".join(row)
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunFolderError, match="metrics.csv"):
        load_run(folder)
    before = _snapshot(folder)
    r = runner.invoke(app, ["grad", "spectrum", str(folder)])
    assert r.exit_code == 2 and "metrics.csv" in r.output and "Traceback" not in r.output
    assert _snapshot(folder) == before


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                          st.integers(-10**30, 10**30), st.text(max_size=5)),
                min_size=1, max_size=4))
def test_metrics_steps_of_any_kind_read_or_refuse(tmp_path_factory, steps):
    """Any ``step`` column: rows of whole increasing steps >= 1, or RunFolderError."""
    path = tmp_path_factory.mktemp("m") / "metrics.csv"
    path.write_text("step,loss\n" + "".join(f"{s},0.5\n" for s in steps))
    try:
        rows = read_metrics(path)
    except RunFolderError as e:
        assert "metrics.csv" in str(e)
        return
    got = [r["step"] for r in rows]
    assert all(isinstance(s, int) and s >= 1 for s in got) and got == sorted(set(got))


def test_metrics_with_steps_out_of_order_or_extra_columns_are_refused(run_folder, tmp_path):
    texts = ("step,loss\n4,0.1\n2,0.2\n", "step,loss,evil\n1,0.1,2\n", "step,loss\n1,0.1,9\n")
    for k, text in enumerate(texts):
        folder = _copy(run_folder, tmp_path / str(k))
        (folder / "metrics.csv").write_text(text)
        with pytest.raises(RunFolderError, match="metrics.csv"):
            load_run(folder)


def _tamper(optim: dict, how: str) -> None:
    s0, g0 = optim["state"][0], optim["param_groups"][0]
    {
        "step is text": lambda: s0.__setitem__("step", "x"),
        "step negative": lambda: s0.__setitem__("step", torch.tensor(-5.0)),
        "step nan": lambda: s0.__setitem__("step", torch.tensor(float("nan"))),
        "step a vector": lambda: s0.__setitem__("step", torch.ones(3)),
        "exp_avg an int": lambda: s0.__setitem__("exp_avg", 5),
        "exp_avg a scalar": lambda: s0.__setitem__("exp_avg", torch.tensor(1.0)),
        "exp_avg integer": lambda: s0.__setitem__("exp_avg", s0["exp_avg"].long()),
        "exp_avg complex": lambda: s0.__setitem__("exp_avg", s0["exp_avg"].cfloat()),
        "exp_avg nan": lambda: s0["exp_avg"].fill_(float("nan")),
        "exp_avg_sq negative": lambda: s0["exp_avg_sq"].fill_(-1.0),
        "exp_avg missing": lambda: s0.pop("exp_avg"),
        "state a list": lambda: optim.__setitem__("state", [1, 2]),
        "state key out of range": lambda: optim["state"].__setitem__(999, s0),
        "state key text": lambda: optim["state"].__setitem__("a", s0),
        "state entry an int": lambda: optim["state"].__setitem__(0, 3),
        "no groups": lambda: optim.__setitem__("param_groups", []),
        "groups an int": lambda: optim.__setitem__("param_groups", 3),
        "params text": lambda: g0.__setitem__("params", "abc"),
        "amsgrad on": lambda: g0.__setitem__("amsgrad", True),
        "amsgrad text": lambda: g0.__setitem__("amsgrad", "yes"),
        "capturable on": lambda: g0.__setitem__("capturable", True),
        "maximize a number": lambda: g0.__setitem__("maximize", 3),
        "lr negative": lambda: g0.__setitem__("lr", -1.0),
        "lr a tensor": lambda: g0.__setitem__("lr", torch.tensor([1.0, 2.0])),
        "betas above one": lambda: g0.__setitem__("betas", (5.0, 0.9)),
        "eps negative": lambda: g0.__setitem__("eps", -1.0),
        "an unknown setting": lambda: g0.__setitem__("zzz", 1),
        "no state key": lambda: optim.pop("state"),
    }[how]()


TAMPERS = ["step is text", "step negative", "step nan", "step a vector", "exp_avg an int",
           "exp_avg a scalar", "exp_avg integer", "exp_avg complex", "exp_avg nan",
           "exp_avg_sq negative", "exp_avg missing", "state a list", "state key out of range",
           "state key text", "state entry an int", "no groups", "groups an int", "params text",
           "amsgrad on", "amsgrad text", "capturable on", "maximize a number", "lr negative",
           "lr a tensor", "betas above one", "eps negative", "an unknown setting",
           "no state key"]


@pytest.mark.parametrize("how", TAMPERS)
def test_a_tampered_optimiser_state_is_refused_on_resume(run_folder, tmp_path, how):
    folder = _copy(run_folder, tmp_path)
    state = load_checkpoint(folder / "checkpoint.pt")
    optim = copy.deepcopy(state["optim"])
    _tamper(optim, how)
    save_checkpoint(folder / "checkpoint.pt", {**state, "optim": optim})
    before = _snapshot(folder)
    r = runner.invoke(app, ["train", "adding", "--out", str(folder), "--resume", "--steps", "6"])
    assert r.exit_code == 2, (r.output, r.exception)
    assert "Traceback" not in r.output and "checkpoint.pt" in r.output, r.output
    assert "optimiser" in r.output, r.output
    assert _snapshot(folder) == before


def test_an_untouched_optimiser_state_resumes(run_folder, tmp_path):
    folder = _copy(run_folder, tmp_path)
    train(TrainConfig(steps=6, eval_every=2, out=str(folder), **TINY), progress=False,
          resume=True)
    assert [r["step"] for r in read_metrics(folder / "metrics.csv")] == [2, 4, 6]


@pytest.mark.parametrize("tokens", [["<pad>", "<unk>", "a"], ["<pad>", "<unk>"] + ["t"] * 50])
def test_a_vocabulary_that_does_not_fit_the_embedding_is_refused(run_folder, tmp_path,
                                                                  tokens):
    """The adding run has no embedding (vocab_size 0); a text run's vocabulary must have
    exactly vocab_size tokens, else ids past the embedding would be looked up."""
    folder = _copy(run_folder, tmp_path)
    (folder / "vocab.json").write_text(json.dumps({"itos": tokens, "level": "char"}))
    with pytest.raises(RunFolderError, match="vocab.json"):
        load_run(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"]["vocab_size"] = len(tokens) - 1  # one token past the embedding
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunFolderError, match="vocab.json"):
        load_run(folder)


@pytest.mark.parametrize("classes", [["a", "b"], ["a", "b", "c"], "ab", [1], [None]])
def test_a_class_list_of_the_wrong_length_or_kind_is_refused(run_folder, tmp_path, classes):
    folder = _copy(run_folder, tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model"]["n_out"] == 1
    cfg["classes"] = classes
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunFolderError, match="config.json"):
        load_run(folder)
    _refused_by_the_cli(folder, "config.json")


def test_a_run_without_a_checkpoint_is_refused_by_its_readers(run_folder, tmp_path):
    """`grad spectrum` used to print the spectrum of random initial weights with exit 0."""
    folder = _copy(run_folder, tmp_path)
    (folder / "checkpoint.pt").unlink()
    with pytest.raises(RunFolderError, match="checkpoint.pt"):
        load_run(folder)
    r = runner.invoke(app, ["grad", "spectrum", str(folder)])
    assert r.exit_code == 2 and "checkpoint.pt" in r.output and "Traceback" not in r.output
    assert "σ_max" not in r.output
