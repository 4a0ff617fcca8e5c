"""The built-in cells: ``.cell`` data files shipped in ``gatelab/cell/zoo``."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from .build import load_file
from .errors import CellError, Problem
from .ir import Cell

ZOO_DIR = Path(str(resources.files("gatelab.cell") / "zoo"))

# Display order: the article's cells first, then the variants.
ORDER = ["rnn", "lstm", "gru", "mgu", "gru-torch", "gru-chung", "lstm-peephole", "nig", "nfg",
         "nog", "niaf", "noaf", "cifg", "fgr", "mgu1", "mgu2", "mgu3", "mingru", "minlstm",
         "janet", "ugrnn", "mut1", "mut2", "mut3", "indrnn", "delta-rnn", "sru", "qrnn",
         "lstm-ln"]


def zoo_names() -> list[str]:
    """Names of every built-in cell, article cells first."""
    found = {p.stem for p in ZOO_DIR.glob("*.cell")}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


@cache
def _load_builtin(name: str) -> Cell:
    return load_file(ZOO_DIR / f"{name}.cell")


def load_cell(name_or_path: str | Path | Cell) -> Cell:
    """A built-in cell by name (``"lstm"``) or a ``.cell`` file by path.

    >>> load_cell("lstm").states
    ('h', 'c')
    """
    if isinstance(name_or_path, Cell):
        return name_or_path
    text = str(name_or_path)
    if text in zoo_names():
        return _load_builtin(text)
    p = Path(text)
    if p.suffix == ".cell" or p.exists() or "/" in text:
        return load_file(p)
    raise CellError([Problem(text, 0, 0, f"no built-in cell or file named {text!r}",
                             "one of " + ", ".join(zoo_names()) + ", or a path to a .cell file")])
