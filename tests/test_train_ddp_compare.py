"""DDP with two CPU processes (gloo) and the cell-vs-cell leaderboard."""

import json

import pytest

from gatelab.train import TrainConfig, train
from gatelab.train.compare import markdown, run_compare, steps_to
from gatelab.train.runs import read_metrics

TINY = dict(task="adding", T=10, hidden=8, batch=16, eval_size=64)


def test_ddp_two_processes_match_one(tmp_path):
    """DDP averages the gradients of two half batches: the same step as one process on the
    whole batch, so the metrics agree up to float rounding."""
    two = train(TrainConfig(cell="gru", steps=8, eval_every=4, nproc=2,
                            out=str(tmp_path / "ddp"), **TINY), progress=False)
    one = train(TrainConfig(cell="gru", steps=8, eval_every=4, out=str(tmp_path / "one"),
                            **TINY), progress=False)
    a, b = read_metrics(two / "metrics.csv"), read_metrics(one / "metrics.csv")
    assert [r["step"] for r in a] == [4, 8]
    diff = max(abs(ra[c] - rb[c]) for ra, rb in zip(a, b, strict=True) for c in ("loss", "metric"))
    assert diff < 1e-4, f"max abs diff {diff}"
    assert json.loads((two / "config.json").read_text())["nproc"] == 2


def test_ddp_refuses_an_uneven_batch():
    with pytest.raises(ValueError, match="divisible"):
        TrainConfig(batch=15, nproc=2)


def test_compare_writes_a_leaderboard(tmp_path):
    custom = tmp_path / "myrnn.cell"
    custom.write_text("name myrnn\ninput x\nstate h\nnext h = tanh(W @ x + U @ h + b)\n"
                      "output h\n")
    base = TrainConfig(steps=6, eval_every=2, threshold=0.5, **TINY)
    board = run_compare(base, ["mgu", str(custom)], seeds=2, out=tmp_path / "cmp",
                        progress=False)
    assert {r["cell"] for r in board["rows"]} == {"mgu", "myrnn"}
    finals = [r["final"] for r in board["rows"]]
    assert finals == sorted(finals)  # MSE: lower is better, best first
    for r in board["rows"]:
        assert len(r["finals"]) == 2 and r["params"] > 0 and r["ms_per_step"] > 0
        assert r["reached"] in ("0/2", "1/2", "2/2")
    for name in ("leaderboard.md", "leaderboard.json", "curves.png"):
        assert (tmp_path / "cmp" / name).stat().st_size > 0
    md = (tmp_path / "cmp" / "leaderboard.md").read_text()
    assert "| 1 |" in md and "myrnn" in md and md == markdown(board)


def test_steps_to_threshold():
    rows = [{"step": 10, "metric": 0.3}, {"step": 20, "metric": 0.05}, {"step": 30,
                                                                        "metric": 0.2}]
    assert steps_to(rows, 0.1, higher=False) == 20
    assert steps_to(rows, 0.01, higher=False) is None
    assert steps_to(rows, 0.25, higher=True) == 10
    assert steps_to(rows, None, higher=True) is None


def test_compare_cli(tmp_path):
    from typer.testing import CliRunner

    from gatelab.cli import app

    runner = CliRunner()
    args = ["compare", "adding", "-T", "6", "--hidden", "4", "--steps", "4", "--batch", "8",
            "--eval-size", "16", "--out", str(tmp_path / "c")]
    r = runner.invoke(app, [*args, "--cells", "rnn,mgu"])
    assert r.exit_code == 0, r.output
    assert "| rnn |" in r.output and "| mgu |" in r.output
    board = json.loads((tmp_path / "c" / "leaderboard.json").read_text())
    assert {row["cell"] for row in board["rows"]} == {"rnn", "mgu"}
    r = runner.invoke(app, [*args, "--cells", "rnn,mgu"])  # same folder, no --resume
    assert r.exit_code == 2 and "--resume" in r.output
    r = runner.invoke(app, [*args, "--cells", "rnn,mgu", "--resume"])  # reuses the runs
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*args, "--cells", " , "])
    assert r.exit_code == 2 and "at least one cell" in r.output


def test_compare_checks_every_cell_before_training(tmp_path):
    from typer.testing import CliRunner

    from gatelab.cli import app

    runner = CliRunner()
    out = tmp_path / "c"
    args = ["compare", "adding", "-T", "6", "--hidden", "4", "--steps", "2", "--batch", "8",
            "--eval-size", "16", "--out", str(out)]

    def refused(cells, *texts):
        r = runner.invoke(app, [*args, "--cells", cells])
        assert r.exit_code == 2, r.output
        assert "Traceback" not in r.output
        for t in texts:
            assert t in r.output, r.output
        assert not any(out.glob("*-s0")), "a run was trained before the bad cell was found"

    refused("mgu,gru,lstmm", "no built-in cell or file named 'lstmm'")
    refused("nosuch1,mgu,nosuch2", "named 'nosuch1'", "named 'nosuch2'")  # all of them at once
    refused("mgu,lstm,mgu", "--cells lists 'mgu' twice")
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.cell").write_text("name x\ninput x\nstate h\n"
                                             "next h = tanh(W @ x + U @ h + b)\noutput h\n")
    a, b = tmp_path / "a" / "x.cell", tmp_path / "b" / "x.cell"
    refused(f"{a},{b}", f"has '{a}' and '{b}', which both get the label 'x'")
    broken = tmp_path / "broken.cell"
    broken.write_text("name broken\ninput x\nstate h\nnext h = tanh(W @ x + U @ q)\n"
                      "output h\n")
    refused(f"mgu,{broken}", str(broken))


def test_compare_resume_keeps_runs_that_went_further(tmp_path):
    """A compare resumed with fewer steps than a run already has keeps that run as it is."""
    base = TrainConfig(steps=4, eval_every=2, **TINY)
    run_compare(base, ["rnn"], seeds=1, out=tmp_path / "c", progress=False)
    longer = TrainConfig(cell="mgu", steps=6, eval_every=2, out=str(tmp_path / "c" / "mgu-s0"),
                         **TINY)
    train(longer, progress=False)
    board = run_compare(base, ["rnn", "mgu"], seeds=1, out=tmp_path / "c", progress=False,
                        resume=True)
    assert {r["cell"] for r in board["rows"]} == {"rnn", "mgu"}
    steps = [row["step"] for row in read_metrics(tmp_path / "c" / "mgu-s0" / "metrics.csv")]
    assert steps == [2, 4, 6]
    assert "±" not in markdown(board)  # one seed: no spread to show
