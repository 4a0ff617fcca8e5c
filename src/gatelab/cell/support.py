"""Which parts of gatelab run a cell: the language's newer features (matrix memories, sized
signals, reductions, rotations) run in the reference loop (:mod:`gatelab.cell.evaluate`) first;
the analysis, the diagram and the engine refuse such cells with one line naming what they do not
support yet, instead of computing something wrong.

>>> from gatelab.cell import parse_cell
>>> c = parse_cell("input x\\nstate C : hidden x hidden\\nlet k = W @ x\\n"
...                "next C = C + outer(k, k)\\nlet y = C @ k\\noutput y")
>>> reference_only_features(c)
('matrix signal C (hidden x hidden)', 'matrix product C @ k', 'outer')
"""

from __future__ import annotations

from functools import lru_cache

import sympy

from ..errors import GatelabError
from . import shapes
from .functions import REFERENCE_ONLY, MatApply, VecMat, by_class
from .ir import Cell

# what each command runs on; named in the refusal
COMMANDS_NEEDING_VECTOR_CELLS = ("analyze", "diagram", "explain", "train", "engine", "bench",
                                 "grad", "study", "gatelab.nn")


class UnsupportedCellError(GatelabError, ValueError):
    """A cell uses a feature of the language that this part of gatelab does not run yet."""


@lru_cache(maxsize=256)
def reference_only_features(cell: Cell) -> tuple[str, ...]:
    """The features of ``cell`` that only the reference loop runs yet, in a stable order:
    matrix and sized signals, ``S @ v`` / ``v @ S``, and the functions of
    :data:`~gatelab.cell.functions.REFERENCE_ONLY`. Empty for every cell of the vector
    language (all the zoo's)."""
    found: list[str] = []
    for name, dim in cell.dims.items():
        if shapes.is_matrix(dim):
            found.append(f"matrix signal {name} ({shapes.shape_text(dim)})")
        elif shapes.is_modern_size(dim):
            found.append(f"signal {name} of size {shapes.size_text(dim)}")
    names: set[str] = set()
    exprs = [*cell.gates.values(), *cell.lets.values(), *cell.nexts.values()]
    for e in exprs:
        for node in sympy.preorder_traversal(e):
            if isinstance(node, (MatApply, VecMat)):
                names.add(f"matrix product {node.args[0]} @ {node.args[1]}")
            fn = by_class(node)
            if fn is not None and fn.name in REFERENCE_ONLY:
                names.add(fn.name)
    return tuple(found) + tuple(sorted(names))


def require_vector_cell(cell: Cell, what: str,
                        error: type[Exception] = UnsupportedCellError) -> None:
    """Refuse (raise ``error``, one line) a cell that uses features ``what`` does not run yet:
    matrix states are not supported by the analysis, the diagram or the engine yet."""
    found = reference_only_features(cell)
    if found:
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise error(f"cell {cell.name!r}: {what} does not support {shown} yet (matrix "
                    "states, sized signals and the functions "
                    f"{', '.join(sorted(REFERENCE_ONLY))} run in the reference loop only)")
