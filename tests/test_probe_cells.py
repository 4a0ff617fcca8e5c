"""Seventeen published cells written from their papers with other names and conventions than the
zoo's and tests/published_cells.py (GRU as u/r/h_tilde, CIFG with peepholes as 1 - i, JANET's
shift in the sum, FastGRNN, gated AntisymmetricRNN, SRU's highway as x + r(tanh(c') - x), ...):
each is drawn by a diagram that computes it, and the kinds derived by hand hold."""

from __future__ import annotations

from pathlib import Path

import pytest

import gatelab
from gatelab.analysis.analyze import analyze
from gatelab.diagram.drawing import prepare

CELLS = sorted((Path(__file__).parent / "cells_probe").glob("*.cell"))

# stage 3 by hand: {setting: kind of the memory state}
HAND = {
    "gru-ur": {"r=0,u=0": "hold", "r=0,u=1": "feedforward", "r=1,u=0": "hold",
               "r=1,u=1": "rnn"},
    "janet-beta": {"f=0,g=0": "rnn", "f=0,g=1": "zero", "f=1,g=0": "residual_rnn",
                   "f=1,g=1": "hold"},
    "cifg-peep": {"i=0,o=0": "hold", "i=0,o=1": "hold", "i=1,o=0": "feedforward",
                  "i=1,o=1": "rnn"},
    "fastgrnn": {"z=0": "rnn", "z=1": "residual_rnn"},
    "antisym": {"z=0": "hold", "z=1": "residual_rnn"},
    "ugrnn2": {"keep=0": "rnn", "keep=1": "hold"},
    "ligru-relu": {"z=0": "rnn", "z=1": "hold"},
    "leaky-sqrt": {"": "rnn"},
    "elman-nobias": {"": "rnn"},
}


def _setting(mode) -> str:
    return ",".join(f"{g}={v}" for g, v in sorted(mode.gates.items()))


@pytest.mark.parametrize("path", CELLS, ids=lambda p: p.stem)
def test_probe_cell_draws_and_reads(path: Path) -> None:
    cell = gatelab.load_cell(path)
    analysis, circuit, _ = prepare(cell)  # refuses a drawing that does not compute the cell
    assert set(circuit.gates) <= set(cell.gates)
    if cell.name in HAND:
        (memory,) = analysis.memory_states
        got = {_setting(m): m.kind[memory] for m in analysis.modes}
        assert got == HAND[cell.name]


def test_probe_scan_verdicts() -> None:
    verdicts = {p.stem: analyze(gatelab.load_cell(p)).scan_parallel for p in CELLS}
    assert {n for n, v in verdicts.items() if v} == {"leaky-sqrt", "sru-hw"}
