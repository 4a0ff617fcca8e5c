"""Every numeric option bounded and finite before work starts: hostile values give exit 2 and
one ``error:`` line, in a subprocess whose address space is capped (tests/hostile_cli.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatelab import budget
from gatelab.errors import UsageError
from gatelab.train.config import TrainConfig
from hostile_cli import assert_refused, run_cli

HOSTILE = [
    (["train", "adding", "--device", "cuda:99999999999999999999999", "--steps", "1"], "--device"),
    (["train", "adding", "--seed", str(2**64), "--steps", "1"], "--seed"),
    (["train", "adding", "--seed", "-1", "--steps", "1"], "--seed"),
    (["train", "adding", "--lr", "nan", "--steps", "1"], "--lr"),
    (["train", "adding", "--steps", "1", "--memory-budget", "inf"], "--memory-budget"),
    (["compare", "adding", "--seeds", "100000000", "--steps", "1"], "--seeds"),
    (["grad", "law", "--sigma-max", "1.1", "--steps", "10000000"], "--steps"),
    (["grad", "law", "--sigma-max", "inf"], "--sigma-max"),
    (["grad", "law", "--sigma-max", "1.1", "--seed", "-3"], "--seed"),
    (["grad", "law", "--sigma-max", "1.1", "--hidden", "100000"], "--hidden"),
    (["bench", "--T", "100000", "--N", "65536", "--H", "4096"], "budget"),
    (["bench", "--scan-T", "1000000", "--scan-N", "65536"], "budget"),
    (["bench", "--repeats", "1000000"], "--repeats"),
    (["bench", "--threads", "1,100000"], "--threads"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "needle"), HOSTILE, ids=[" ".join(a[:3]) for a, _ in HOSTILE])
def test_hostile_option_is_one_line_exit_2(args, needle, tmp_path):
    assert_refused(run_cli(*args, cwd=tmp_path), needle)
    assert not any(tmp_path.iterdir())  # refused before anything was written


@given(st.text(min_size=1, max_size=30))
@settings(max_examples=60, deadline=None)
def test_only_known_device_names_pass(device):
    ok = device in ("cpu", "auto", "mps", "cuda") or (
        device.startswith("cuda:") and device[5:].isdigit() and device[5:].isascii()
        and str(int(device[5:])) == device[5:] and int(device[5:]) < 1024)
    try:
        TrainConfig(task="adding", device=device, steps=1)
    except UsageError as e:
        assert not ok, e
        assert "--device" in str(e)
    else:
        assert ok


@given(st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True)))
@settings(max_examples=100, deadline=None)
def test_seed_is_a_whole_number_in_range(seed):
    ok = isinstance(seed, int) and 0 <= seed < 2**63
    try:
        TrainConfig(task="adding", seed=seed, steps=1)
    except UsageError as e:
        assert not ok and "--seed" in str(e)
    else:
        assert ok


@given(steps=st.integers(-10, 10**7), hidden=st.integers(-10, 10**5),
       seed=st.integers(-2**65, 2**65),
       sigma=st.floats())
@settings(max_examples=100, deadline=None)
def test_law_flow_clip_options_bounded(steps, hidden, seed, sigma):
    """Out of range, non-finite or past the budget: a UsageError, never an allocation."""
    for check in (
        lambda: budget.check_law(steps=steps, hidden=hidden, seed=seed, sigma_max=sigma),
        lambda: budget.check_flow(None, steps=steps, batch=8, hidden=hidden, seed=seed),
        lambda: budget.check_clip(steps=steps, seq_len=50, hidden=hidden, batch=8, seed=seed,
                                  sigma_max=sigma, lr=0.1, max_norm=1.0, clip_value=0.1),
    ):
        try:
            est = check()
        except UsageError:
            continue
        assert 0 <= seed < 2**63 and 1 <= hidden <= 4096 and 1 <= steps <= 10**6
        assert est.bytes <= budget.memory_budget()[0]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    from gatelab.data import DataUnavailable, load_drug_reviews
    from gatelab.train import train

    try:
        load_drug_reviews("test")
    except DataUnavailable as e:  # pragma: no cover - the data package is part of `make setup`
        pytest.skip(f"drug reviews not installed: {e}")
    out = tmp_path_factory.mktemp("explain") / "run"
    return train(TrainConfig(task="drugs", cell="mgu", out=str(out), steps=2, hidden=4, embed=4,
                             max_len=12, train_size=40, eval_size=24), progress=False)


def test_explain_text_bounded_in_tokens_and_bytes(text_run, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gatelab.cli import app
    from gatelab.explain import cli as explain_cli

    runner = CliRunner()

    def refused(args: list[str], needle: str) -> None:
        res = runner.invoke(app, ["explain", *args, "--run", str(text_run)])
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and needle in lines[0], res.output

    long = tmp_path / "long.txt"
    long.write_text("good " * 300_000)  # 1.5 MB
    refused(["--file", str(long)], "too large")
    refused(["word " * 60_000], "bytes")
    refused(["word " * (explain_cli.MAX_TOKENS + 1)], "tokens")
    monkeypatch.setattr(explain_cli, "MAX_TOKENS", 5)
    refused(["one two three four five six"], "6 tokens")
    res = runner.invoke(app, ["explain", "one two three four five", "--run", str(text_run)])
    assert res.exit_code == 0, res.output


@given(st.floats())
@settings(max_examples=50, deadline=None)
def test_forget_bias_finite_and_bounded(bias):
    try:
        TrainConfig(task="adding", forget_bias=bias, steps=1)
    except UsageError as e:
        assert not (abs(bias) <= 100) and "--forget-bias" in str(e)
    else:
        assert abs(bias) <= 100
