"""One diagram: a cell drawn as a circuit of switches (the article's fourth step).

``draw(cell, setting=None) -> str`` gives SVG (schemdraw's SVG backend); ``save(cell, path,
setting=None)`` writes ``.svg`` or ``.png``. The drawing is derived from the analysis (memory
states, readouts substituted) and the cell's equations: inputs left, the new memory state right,
linear maps as boxes, the shared core in a red box, each gate as a switch (spst, spdt, ganged).

>>> from gatelab.diagram import draw
>>> "MGU, f=0: hold" in draw("mgu", {"f": 0})
True
"""

from .circuit import Circuit, Part, build_circuit
from .drawing import draw, figure, prepare, render, save
from .web import cell_data

__all__ = ["Circuit", "Part", "build_circuit", "cell_data", "draw", "figure", "prepare",
           "render", "save"]
