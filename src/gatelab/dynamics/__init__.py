"""The gradient lab: the ``σ_max^t`` law, gradient flow through time for any cell (gates free or
forced), gradient clipping on real runs, and the spectra of trained recurrent matrices.

>>> from gatelab.dynamics import measure_law
>>> round(measure_law(0.9, steps=50, hidden=8).fitted_rate, 6)
0.9
"""

from .clip import ClipResult, ClipRun, clip_experiment
from .flow import (
    FlowResult,
    gradient_flow,
    hold_setting,
    memory_state,
    parse_settings,
    trained_flow,
)
from .law import LawResult, measure_law
from .model import CellLayer, load_trained, recurrent_matrices
from .spectrum import SpectrumResult, matrix_spectra, run_spectrum

__all__ = [
    "CellLayer", "ClipResult", "ClipRun", "FlowResult", "LawResult", "SpectrumResult",
    "clip_experiment", "gradient_flow", "hold_setting", "load_trained", "matrix_spectra",
    "measure_law", "memory_state", "parse_settings", "recurrent_matrices", "run_spectrum",
    "trained_flow",
]
