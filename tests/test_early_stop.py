"""Early stopping: patience on the validation metric, the best checkpoint, resume after a kill,
and validation splits distinct from the test splits."""

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gatelab.errors import UsageError
from gatelab.train import trainer
from gatelab.train.config import TrainConfig
from gatelab.train.early_stop import best_row, outcome, patience_exhausted
from gatelab.train.runs import RunFolderError, load_checkpoint, load_run, read_metrics
from gatelab.train.tasks import make_task

# tiny runs: an evaluation every 5 steps on 32 validation/test sequences of length 12
TINY = dict(task="adding", cell="lstm", hidden=6, T=12, batch=8, eval_every=5, eval_size=32)


def _rows(values, steps=None):
    return [{"step": (steps or range(1, len(values) + 1))[k], "metric": 0.0, "valid_metric": v}
            for k, v in enumerate(values)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=30),
       st.integers(1, 6), st.booleans())
def test_patience_counts_evaluations_since_the_strict_best(values, patience, higher):
    """For any validation curve: the best row is the first strict optimum, and patience runs
    out exactly when ``patience`` rows follow it."""
    rows = _rows(values)
    best = best_row(rows, higher)
    target = max(values) if higher else min(values)
    assert values[best] == target and target not in values[:best]
    assert patience_exhausted(rows, patience, higher) == (len(values) - 1 - best >= patience)


def test_no_finite_validation_value_has_no_best_and_runs_out_of_patience():
    rows = _rows([math.nan, math.inf])
    assert best_row(rows, False) is None
    assert patience_exhausted(rows, 2, False)
    assert outcome(rows, 2, False, None)["best_step"] is None


def test_a_plateau_stops_by_patience(tmp_path):
    """A learning rate far below float32's resolution of the weights leaves them unchanged, so
    the validation metric never improves after the first evaluation: the run stops after
    exactly ``patience`` more evaluations, long before its step cap."""
    out = tmp_path / "flat"
    trainer.train(TrainConfig(**TINY, steps=1000, lr=1e-20, patience=3, out=str(out)),
                  progress=False)
    result = json.loads((out / "config.json").read_text())["outcome"]
    assert result["stop_reason"] == "patience"
    assert result["best_step"] == 5 and result["steps"] == 20
    assert [r["step"] for r in read_metrics(out / "metrics.csv")] == [5, 10, 15, 20]


def test_the_step_cap_is_a_stop_reason_and_plain_runs_record_their_outcome(tmp_path):
    trainer.train(TrainConfig(**TINY, steps=10, lr=1e-20, patience=50, out=str(tmp_path / "a")),
                  progress=False)
    trainer.train(TrainConfig(**TINY, steps=10, out=str(tmp_path / "b")), progress=False)
    a = json.loads((tmp_path / "a" / "config.json").read_text())["outcome"]
    b = json.loads((tmp_path / "b" / "config.json").read_text())["outcome"]
    assert a["stop_reason"] == b["stop_reason"] == "max_steps"
    assert a["steps"] == b["steps"] == 10
    assert b["test_metric"] == read_metrics(tmp_path / "b" / "metrics.csv")[-1]["metric"]
    assert not (tmp_path / "b" / "best.pt").exists()


def _learning(out, **kw):
    return TrainConfig(**{**TINY, "steps": 400, "lr": 0.05, "patience": 2, "out": str(out),
                          **kw})


def test_reported_test_metric_is_the_best_validation_checkpoints(tmp_path):
    out = tmp_path / "run"
    trainer.train(_learning(out), progress=False)
    result = json.loads((out / "config.json").read_text())["outcome"]
    rows = read_metrics(out / "metrics.csv")
    best = next(r for r in rows if r["step"] == result["best_step"])
    assert result["valid_metric"] == best["valid_metric"] == min(r["valid_metric"] for r in rows)
    # the best weights, evaluated on the test split again: the reported number
    run = load_run(out, "best.pt")
    task = make_task(run.train_config())
    metric, _ = trainer._evaluate(run.model, task, 256, torch.device("cpu"))
    assert result["test_metric"] == pytest.approx(metric, rel=1e-6)
    assert result["test_metric"] == pytest.approx(best["metric"], rel=1e-6)
    assert load_checkpoint(out / "best.pt")["step"] == result["best_step"]


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


@pytest.mark.parametrize("when", ["after_checkpoint", "between_best_and_checkpoint"])
def test_resume_after_a_kill_continues_the_patience_count(tmp_path, monkeypatch, when):
    """Killed after its 3rd evaluation's checkpoint (or after that evaluation's best weights but
    before its checkpoint), resumed: the same rows, stop step, best step and test metric as a run
    never stopped."""
    whole = tmp_path / "whole"
    trainer.train(_learning(whole), progress=False)
    expect = json.loads((whole / "config.json").read_text())["outcome"]
    assert expect["stop_reason"] == "patience" and expect["steps"] > 15  # a real early stop

    real = trainer.save_checkpoint
    saves = []

    def save(path, state):
        saves.append(path.name)
        if when == "between_best_and_checkpoint" and path.name == "checkpoint.pt" \
                and state["step"] == 15:
            raise Killed
        real(path, state)
        if when == "after_checkpoint" and path.name == "checkpoint.pt" and state["step"] == 15:
            raise Killed

    monkeypatch.setattr(trainer, "save_checkpoint", save)
    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        trainer.train(_learning(killed), progress=False)
    monkeypatch.setattr(trainer, "save_checkpoint", real)
    trainer.train(_learning(killed), progress=False, resume=True)
    got = json.loads((killed / "config.json").read_text())["outcome"]
    assert got == expect
    a, b = read_metrics(killed / "metrics.csv"), read_metrics(whole / "metrics.csv")
    assert [(r["step"], r["valid_metric"]) for r in a] == [(r["step"], r["valid_metric"])
                                                          for r in b]


def test_resuming_a_run_whose_patience_ran_out_trains_no_further(tmp_path):
    out = tmp_path / "flat"
    cfg = dict(**TINY, lr=1e-20, patience=2, out=str(out))
    trainer.train(TrainConfig(**cfg, steps=1000), progress=False)
    before = read_metrics(out / "metrics.csv")
    trainer.train(TrainConfig(**cfg, steps=2000), progress=False, resume=True)
    assert read_metrics(out / "metrics.csv") == before
    assert json.loads((out / "config.json").read_text())["outcome"]["stop_reason"] == "patience"


def test_best_weights_of_another_step_are_refused(tmp_path):
    out = tmp_path / "run"
    trainer.train(_learning(out), progress=False)
    state = load_checkpoint(out / "best.pt")
    state["step"] += 5
    trainer.save_checkpoint(out / "best.pt", state)
    with pytest.raises(RunFolderError, match="best validation row"):
        trainer.train(_learning(out), progress=False, resume=True)


@pytest.mark.parametrize("task", ["adding", "copy", "order"])
def test_generated_tasks_validate_on_other_sequences_than_the_test(task):
    t = make_task(TrainConfig(task=task, T=12, steps=10, eval_size=40))
    valid = torch.cat([b.x for b in t.valid_batches(16)])
    test = torch.cat([b.x for b in t.eval_batches(16)])
    assert valid.shape == test.shape and not torch.equal(valid, test)
    rows = {tuple(r.flatten().tolist()) for r in test}
    assert not any(tuple(r.flatten().tolist()) in rows for r in valid)


def test_character_model_validates_on_held_out_text_after_the_test(tmp_path):
    text = "".join(chr(97 + (k * 7) % 26) for k in range(4000))
    path = tmp_path / "text.txt"
    path.write_text(text)
    from gatelab.data import load_stdlib_text

    try:
        load_stdlib_text(str(path), max_chars=4000)
    except Exception:  # noqa: BLE001 - the loader may want another layout
        pytest.skip("load_stdlib_text does not read a plain file")
    t = make_task(TrainConfig(task="stdlib", T=10, steps=5, eval_size=10, train_size=4000,
                              data_path=str(path)))
    cut = int(len(text) * 0.9)
    assert len(t.test_ids) == 110 and len(t.valid_ids) == 110
    assert t.test_ids.data_ptr() != t.valid_ids.data_ptr()
    assert sum(1 for _ in t.valid_batches(4)) == sum(1 for _ in t.eval_batches(4))
    assert cut + 220 <= len(text)


def test_a_task_without_a_validation_split_refuses_patience_before_writing(tmp_path,
                                                                        monkeypatch):
    from gatelab.train.tasks import AddingTask, Task

    monkeypatch.setattr(AddingTask, "valid_batches", Task.valid_batches)
    out = tmp_path / "run"
    with pytest.raises(UsageError, match="no validation split"):
        trainer.train(TrainConfig(**TINY, steps=10, patience=2, out=str(out)), progress=False)
    assert not (out / "config.json").exists()


def test_patience_is_refused_with_ddp():
    with pytest.raises(UsageError, match="--nproc 1"):
        trainer.train(TrainConfig(**TINY, steps=10, patience=2, nproc=2), progress=False)


def test_cli_patience_reports_the_best_checkpoints_test_metric(tmp_path):
    from typer.testing import CliRunner

    from gatelab.cli import app

    out = tmp_path / "cli"
    args = ["train", "adding", "--hidden", "6", "-T", "12", "--batch", "8", "--eval-every", "5",
            "--eval-size", "32", "--steps", "1000", "--lr", "1e-20", "--patience", "2",
            "--out", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    result = json.loads((out / "config.json").read_text())["outcome"]
    assert "stopped: patience; best validation at step 5" in " ".join(r.output.split())
    assert f"{result['test_metric']:.4f}" in r.output
    assert json.loads((out / "config.json").read_text())["patience"] == 2


@pytest.mark.slow  # reads the corpus (its cache is keyed by the files' digests)
def test_jsb_validates_on_other_chorales_than_the_test():
    from gatelab.data.errors import DataUnavailable

    try:
        t = make_task(TrainConfig(task="jsb", steps=5))
        valid = [b.x for b in t.valid_batches(64)]
    except DataUnavailable as e:
        pytest.skip(f"JSB data not available here: {e}")
    test_rolls = {r.numpy().tobytes() for r in t.test_rolls}
    assert t.valid_rolls and not any(r.numpy().tobytes() in test_rolls for r in t.valid_rolls)
    assert sum(len(v) for v in valid) == len(t.valid_rolls)
