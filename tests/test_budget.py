"""The memory budget: estimates of ``train`` against the peak memory of real runs (within a
factor of two), a refused configuration really over the budget, the budget's sources."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gatelab import budget
from gatelab.errors import UsageError
from gatelab.train.config import TASKS, TrainConfig
from hostile_cli import assert_refused, run_cli

GB = budget.GB

# (options, what the configuration exercises): the vendor path (torch's LSTM kernels), the
# generated engine, the parallel scan. Each holds a few hundred MB of activations.
MEASURED = [
    ("--cell lstm --hidden 256 --batch 256 -T 200", "vendor"),
    ("--cell mgu --hidden 128 --batch 256 -T 200", "generated"),
    ("--cell mingru --hidden 128 --batch 64 -T 1000", "scan"),
    ("--cell gru --hidden 512 --batch 2 -T 300 --eval-size 256", "evaluation"),
]


def _config(options: str) -> TrainConfig:
    args = options.split()
    kw = {k.lstrip("-").replace("-", "_"): (v if k == "--cell" else int(v))
          for k, v in zip(args[::2], args[1::2], strict=True)}
    return TrainConfig(task="copy" if "eval_size" in kw else "adding", steps=2, **kw)


@pytest.mark.slow
@pytest.mark.parametrize(("options", "path"), MEASURED, ids=[p for _, p in MEASURED])
def test_estimate_within_a_factor_of_two_of_the_peak(options, path, tmp_path):
    cfg = _config(options)
    est = budget.train_estimate(cfg)
    r = run_cli("train", cfg.task, *options.split(), "--steps", "2", "--out",
                str(tmp_path / "run"), cwd=tmp_path, env={budget.ENV: "100"}, cap=False)
    assert r.code == 0, r.stderr[-2000:]
    measured = r.peak_mb * 2**20
    assert measured / 2 <= est.bytes <= 2 * measured, (est.bytes / 1e6, r.peak_mb)


@pytest.mark.slow
def test_a_refused_run_would_have_exceeded_the_budget(tmp_path):
    """With a budget of 1 GB the LSTM configuration is refused (one line, nothing written); run
    anyway, its peak memory is over 1 GB."""
    options = MEASURED[0][0].split()
    out = tmp_path / "run"
    refused = run_cli("train", "adding", *options, "--steps", "2", "--out", str(out),
                      "--memory-budget", "1", cwd=tmp_path)
    assert_refused(refused, "over the budget of 1.0 GB", "--memory-budget")
    assert not out.exists()
    ran = run_cli("train", "adding", *options, "--steps", "2", "--out", str(out),
                  cwd=tmp_path, env={budget.ENV: "100"}, cap=False)
    assert ran.code == 0, ran.stderr[-2000:]
    assert ran.peak_mb * 2**20 > 1 * GB


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["train", "adding", "--hidden", "1024", "--batch", "2048", "-T", "1000", "--steps", "1"],
    ["train", "copy", "--hidden", "4096", "--batch", "4096", "-T", "100", "--steps", "1"],
    ["compare", "adding", "--cells", "lstm,gru", "--hidden", "2048", "--batch", "8192",
     "--steps", "1"],
    ["grad", "law", "--sigma-max", "1.1", "--steps", "5000", "--hidden", "64"],
])
def test_documented_limits_past_the_budget_are_one_line(args, tmp_path):
    """Sizes inside the option limits whose memory is past half the machine: refused in a
    process capped at 3 GiB of address space (a regression allocates and fails instead)."""
    assert_refused(run_cli(*args, cwd=tmp_path, env={budget.ENV: "8"}), "over the budget")


@given(batch=st.integers(1, 4096), hidden=st.integers(1, 2048), T=st.integers(2, 5000),
       layers=st.integers(1, 4), grow=st.sampled_from(["batch", "hidden", "T", "layers"]))
@settings(max_examples=50, deadline=None)
def test_estimate_grows_with_every_size(batch, hidden, T, layers, grow):
    try:
        cfg = TrainConfig(task="adding", steps=10, batch=batch, hidden=hidden, T=T,
                          layers=layers)
        bigger = dataclasses.replace(cfg, **{grow: getattr(cfg, grow) * 2})
    except UsageError:  # past an option's own limit
        assume(False)
    a, b = budget.train_estimate(cfg), budget.train_estimate(bigger)
    assert b.bytes > a.bytes and b.work >= a.work


@pytest.mark.parametrize("task", TASKS)
def test_every_task_has_an_estimate(task):
    est = budget.train_estimate(TrainConfig(task=task, steps=10))
    assert budget.RUNTIME_BYTES < est.bytes < 4 * GB and est.work > 0


def test_budget_sources(monkeypatch):
    monkeypatch.delenv(budget.ENV, raising=False)
    default, source = budget.memory_budget()
    assert default == int(budget.machine_memory() * budget.DEFAULT_FRACTION) and "%" in source
    monkeypatch.setenv(budget.ENV, "3.5")
    assert budget.memory_budget() == (int(3.5 * GB), budget.ENV)
    assert budget.memory_budget(2)[0] == 2 * GB  # the option wins over the environment
    for bad in ("nan", "inf", "-1", "0", "lots", "1e300"):
        monkeypatch.setenv(budget.ENV, bad)
        with pytest.raises(UsageError, match=budget.ENV):
            budget.memory_budget()


def test_check_names_the_biggest_part_and_the_options():
    est = budget.Estimate("train x", {"activations": 50 * GB, "data": 1}, 0, "--batch")
    with pytest.raises(budget.OverBudget, match=r"activations 50\.0 GB.*make --batch smaller"):
        budget.check(est, 10)
    assert budget.check(est, 100) is est


def test_work_budget(monkeypatch):
    est = budget.Estimate("grad x", {}, 1e18, "--steps")
    with pytest.raises(budget.OverBudget, match="multiply-adds"):
        budget.check(est, 100)
    monkeypatch.setenv(budget.WORK_ENV, "1e19")
    assert budget.check(est, 100) is est
