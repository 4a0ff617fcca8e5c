"""The cell language: parse ``.cell`` text into a validated symbolic :class:`Cell`."""

from .build import load_file, parse_cell
from .errors import CellError, Problem
from .functions import FUNCTIONS, MatVec, relu, sigmoid, softplus
from .ir import HIDDEN, Cell, Param
from .printers import cell_latex, cell_text, cell_unicode, expr_latex, expr_text
from .zoo import load_cell, zoo_names

__all__ = [
    "FUNCTIONS", "HIDDEN", "Cell", "CellError", "MatVec", "Param", "Problem", "cell_latex",
    "cell_text", "cell_unicode", "expr_latex", "expr_text", "load_cell", "load_file",
    "parse_cell", "relu", "sigmoid", "softplus", "zoo_names",
]
