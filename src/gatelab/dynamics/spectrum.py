"""Singular values of every recurrent matrix of a trained run (or of any parameters).

The recurrent matrices are derived from the cell (:func:`~gatelab.dynamics.model.
recurrent_matrices`: every ``W @ v`` whose ``v`` depends on a state). By the law of
:mod:`gatelab.dynamics.law`, a recurrent matrix with ``σ_max > 1`` can make gradients explode
along its path and one with ``σ_max < 1`` makes them vanish unless a gate opens a short circuit
around it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..cell import Cell
from .model import Stack, json_safe, load_trained, recurrent_matrices


@dataclass
class MatrixSpectrum:
    """Singular values (descending) of one recurrent matrix of layer ``layer``, direction
    ``direction`` (0 forward, 1 backward)."""

    layer: int
    direction: int
    name: str
    shape: list[int]
    singular_values: list[float]
    sigma_max: float
    sigma_min: float
    above_one: int  # how many σ_i exceed 1 (directions that can grow)


@dataclass
class SpectrumResult:
    cell: str
    run: str | None
    matrices: list[MatrixSpectrum] = field(default_factory=list)

    def to_json(self) -> dict:
        return json_safe(asdict(self))


def matrix_spectra(cell: Cell, params: Stack, *, run: str | None = None) -> SpectrumResult:
    """SVD of each recurrent matrix in ``params`` (``(layer, direction)`` -> the parameters
    under the cell's names, as :func:`~gatelab.dynamics.model.load_trained` gives them)."""
    out = SpectrumResult(cell=cell.name, run=run)
    names = recurrent_matrices(cell)
    for (layer, direction), p in sorted(params.items()):
        for name in names:
            w = p[name].detach().double()
            s = torch.linalg.svdvals(w)
            out.matrices.append(MatrixSpectrum(
                layer=layer, direction=direction, name=name,
                shape=list(w.shape), singular_values=s.tolist(), sigma_max=float(s[0]),
                sigma_min=float(s[-1]), above_one=int((s > 1).sum()),
            ))
    return out


def run_spectrum(path: str | Path) -> SpectrumResult:
    """:func:`matrix_spectra` of a trained run folder (via ``gatelab.train.load_run``)."""
    cell, params, _ = load_trained(path)
    return matrix_spectra(cell, params, run=str(path))
