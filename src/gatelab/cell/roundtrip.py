"""The last check of :func:`gatelab.cell.parse_cell`: a valid cell prints in every form and its
normalised text parses back to the same cell, so ``check`` passing means ``show``, ``train``
(which stores that text in the run folder) and every later command can use it."""

from __future__ import annotations

from collections.abc import Callable

from .errors import CellError, Problem
from .ir import Cell
from .limits import MAX_BYTES


def check_printable(cell: Cell, path: str, parse_cell: Callable[..., Cell]) -> None:
    """``check`` passing must mean every command works: the cell must print in every form, and
    its normalised text (what a run folder stores) must parse back to the same cell."""
    from .printers import cell_latex, cell_text, cell_unicode

    try:
        text = cell_text(cell)
        cell_unicode(cell)
        cell_latex(cell)
    except (TypeError, ValueError, RecursionError) as e:
        raise CellError([Problem(path, 1, 1, f"the cell cannot be printed ({e})",
                                 "simpler expressions")]) from None
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise CellError([Problem(path, 1, 1, f"the normalised cell text would be {len(text)} "
                                 f"characters, over the limit of {MAX_BYTES}",
                                 "a smaller cell")])
    try:
        again = parse_cell(text, path, cell.name, _verify=False)
    except CellError as e:
        raise CellError([Problem(path, 1, 1, "the normalised cell text does not parse again ("
                                 f"{e.problems[0].message})", "simpler expressions")]) from None
    if not again.same_equations(cell):
        raise CellError([Problem(path, 1, 1, "the normalised cell text parses to a different "
                                 "cell", "simpler expressions")])
