"""`gatelab study --gpus-per-trial` values Ray would refuse only after starting (with a
traceback): refused first, one line, exit 2, nothing written, no Ray started."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gatelab.cli import app

runner = CliRunner()


def _study(tmp_path, *options: str):
    out = tmp_path / "s"
    r = runner.invoke(app, ["study", "adding", "--trials", "1", "--steps", "1", "--out", str(out),
                            *options])
    return r, out


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e309", "1.5", "65"])
def test_gpus_per_trial_out_of_rays_range_is_refused(tmp_path, value):
    r, out = _study(tmp_path, "--gpus-per-trial", value)
    assert r.exit_code == 2, r.output
    assert "--gpus-per-trial" in r.output and "Traceback" not in r.output
    assert not out.exists()


@settings(max_examples=25, deadline=None)
@given(g=st.floats(0.01, 0.99), cpus=st.integers(1, 8))
def test_a_fraction_that_makes_no_whole_gpu_total_is_refused(tmp_path_factory, g, cpus):
    """A local Ray holds CPUS x gpus-per-trial GPUs: Ray refuses a total that is not whole."""
    if abs(g * cpus - round(g * cpus)) < 1e-9:
        return  # a whole total is Ray's to run
    tmp_path = tmp_path_factory.mktemp("g")
    r, out = _study(tmp_path, "--gpus-per-trial", repr(g), "--cpus", str(cpus))
    assert r.exit_code == 2 and "whole number of GPUs" in r.output, r.output
    assert not out.exists()
