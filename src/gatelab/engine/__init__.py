"""The engine: a cell's equations turned into a fast, differentiable recurrent layer.

``layout`` packs parameters torch-style, ``plan`` splits a step into GEMMs and pointwise work,
``pointwise`` compiles the pointwise part (forward and SymPy-derived backward), ``autograd`` runs
the time loop as one ``torch.autograd.Function``, ``scan`` trains scan-parallel cells,
``backends`` picks the path. The torch-facing layers are in :mod:`gatelab.nn`.
"""

from .layout import EngineError, Layout

__all__ = ["EngineError", "Layout"]
