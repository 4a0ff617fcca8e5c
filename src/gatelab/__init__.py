"""gatelab: define, explain, train and inspect gated recurrent networks.

>>> import gatelab
>>> cell = gatelab.load_cell("lstm")
>>> print(gatelab.cell_unicode(cell).splitlines()[0])
i = σ(W_i·x + U_i·h + b_i)
"""

from .cell import (
    Cell,
    CellError,
    cell_latex,
    cell_text,
    cell_unicode,
    load_cell,
    parse_cell,
    zoo_names,
)

__version__ = "0.1.0"


def analyze(cell):  # noqa: ANN001 - thin lazy wrapper, see gatelab.analysis.analyze
    """Run the three simplifications on a cell (see :func:`gatelab.analysis.analyze`)."""
    from .analysis import analyze as _analyze

    return _analyze(load_cell(cell))


def draw(cell, setting=None):  # noqa: ANN001, ANN201 - thin lazy wrapper
    """The cell's circuit (see :func:`gatelab.diagram.drawing.figure`): a ``Figure`` that shows
    itself as SVG in a notebook; ``setting`` fixes gates to 0/1 (``{"f": 0}``)."""
    from .diagram.drawing import figure

    return figure(cell, setting)


__all__ = ["Cell", "CellError", "analyze", "cell_latex", "cell_text", "cell_unicode", "draw",
           "load_cell", "parse_cell", "zoo_names", "__version__"]
