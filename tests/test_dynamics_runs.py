"""The gradient lab on real training: clipping runs, trained-run spectra and flow, tour section."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from gatelab.dynamics.clip import clip_experiment


def test_unclipped_run_diverges_and_clipped_runs_do_not():
    # The defaults (σ_max 2, SGD lr 0.1) with T = 50 and 45 steps: the unclipped run has blown
    # up by then with seed 0 (at step 34).
    clip_result = clip_experiment(steps=45, seq_len=50, seed=0)
    none, norm, value = (clip_result.runs[m] for m in ("none", "norm", "value"))
    assert none.nonfinite_steps > 0 and none.first_nonfinite is not None
    assert norm.nonfinite_steps == 0 and value.nonfinite_steps == 0
    assert all(math.isfinite(v) for v in norm.loss + value.loss)
    first_loss = none.loss[0]
    assert norm.loss[0] == first_loss and value.loss[0] == first_loss  # same start
    assert none.peak_loss > 1e6 * first_loss
    assert max(norm.loss) <= first_loss * 1.5 and max(value.loss) <= first_loss * 1.5
    # JSON has no nan/inf: the blown-up steps are written as null
    text = json.dumps(clip_result.to_json(), allow_nan=False)
    data = json.loads(text)
    assert data["runs"]["none"]["loss"][-1] is None


@pytest.mark.parametrize("kwargs", [{"steps": 0}, {"seq_len": 1}, {"lr": 0.0},
                                    {"max_norm": -1.0}])
def test_clip_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        clip_experiment(**kwargs)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    train = pytest.importorskip("gatelab.train")
    out = tmp_path_factory.mktemp("runs") / "gru"
    return train.train(train.TrainConfig(task="adding", cell="gru", T=10, steps=3, hidden=6,
                                         batch=4, train_size=16, eval_size=8, out=str(out)),
                       progress=False)


def test_spectrum_of_trained_run(trained_run):
    from gatelab.dynamics.spectrum import run_spectrum
    from gatelab.train import load_run

    r = run_spectrum(trained_run)
    rnn = load_run(trained_run).model.rnn
    assert [m.name for m in r.matrices] == ["U_z", "U_r", "U_n"]
    for m in r.matrices:
        ref = torch.linalg.svdvals(rnn.cell_params(0, 0)[m.name].detach().double())
        assert max(abs(a - b) for a, b in zip(m.singular_values, ref.tolist(), strict=True)) < 1e-6


def test_cli_trained_flow_and_spectrum(trained_run, tmp_path):
    from gatelab.cli import app

    res = CliRunner().invoke(app, ["grad", "flow", "--trained", str(trained_run), "--set", "z=1",
                                   "--steps", "8", "--batch", "4", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["cell"] == "gru" and data["hidden"] == 6 and data["spread"] < 1e-6
    assert data["inputs"] == "adding evaluation data" and data["batch"] == 4
    res = CliRunner().invoke(app, ["grad", "spectrum", str(trained_run), "--format", "json",
                                   "--plot", str(tmp_path / "spec")])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["matrices"]) == 3
    assert (tmp_path / "spec.png").is_file() and (tmp_path / "spec.svg").is_file()


def test_tour_section_writes_its_figures(tmp_path, monkeypatch):
    from gatelab.dynamics import report
    from gatelab.report.page import TourContext

    small = report.clip_experiment
    monkeypatch.setattr(report, "clip_experiment",
                        lambda **kw: small(**{**kw, "steps": 40, "seq_len": 50}))
    sec = report.section(TourContext(out=tmp_path, quick=True))
    for stem in ("grad-law", "grad-flow", "grad-clip"):
        for ext in ("png", "svg", "json"):
            assert (tmp_path / f"{stem}.{ext}").is_file()
        assert f"{stem}.svg" in sec.html
    assert "short circuit" in sec.html and "non-finite at step" in sec.html


def test_replay_matches_the_trained_engine(trained_run):
    """The lab replays a trained layer with the reference step: same outputs as the engine."""
    from gatelab.dynamics.model import CellLayer, load_trained
    from gatelab.train import load_run

    cell, params, _ = load_trained(trained_run)
    rnn = load_run(trained_run).model.rnn
    x = torch.randn(3, 7, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = rnn(x)[0]
        _, out = CellLayer(cell, 2, 6, params=params[0, 0])(x)
    assert (out - ref).abs().max().item() < 1e-5
