"""Sizes and shapes of a cell's signals and parameters, as hashable labels.

A *size* label is ``"H"`` (the hidden size), ``"<k>*H"`` (a multiple of it, ``let z :
2*hidden``), a positive integer written in digits (``"16"``, ``"1"``: a per-step scalar) or an
input's label (``"I"``, ``"I_<name>"``). A *shape* label is one size (a vector) or two sizes
joined by ``×`` (a matrix, ``"H×16"``). At run time a vector signal is a tensor ``(N, size)``,
a matrix signal ``(N, rows, cols)``.

Broadcasting (elementwise ``+ - * /``, ``max``): equal shapes combine; a size-1 vector combines
with anything (a per-step scalar); a vector combines with a matrix when its size is the
matrix's number of rows, and then scales (or shifts) the matrix's rows: ``f * C`` is
``diag(f) C``.

>>> broadcast("H", "H×16"), broadcast("1", "H"), broadcast("H", "16")
('H×16', 'H', None)
>>> size_value("2*H", input_size=5, hidden_size=3), shape_text("H×16")
(6, 'hidden x 16')
"""

from __future__ import annotations

from .ir import HIDDEN

SEP = "×"
MAX_SIZE = 4096  # a size written as a number, or the factor of `k*hidden`


def parts(shape: str) -> tuple[str, ...]:
    """The size labels of a shape: one for a vector, two for a matrix."""
    return tuple(shape.split(SEP))


def is_matrix(shape: str | None) -> bool:
    return shape is not None and SEP in shape


def matrix(rows: str, cols: str) -> str:
    return f"{rows}{SEP}{cols}"


def rows(shape: str) -> str:
    return parts(shape)[0]


def cols(shape: str) -> str:
    return parts(shape)[-1]


def is_modern_size(size: str) -> bool:
    """A size the language had before matrix memories did not know (multiples, numbers)."""
    return size != HIDDEN and not size.startswith("I")


def broadcast(a: str, b: str) -> str | None:
    """The shape of an elementwise combination of shapes ``a`` and ``b``, or None if they do not
    combine (see the module docstring)."""
    if a == b:
        return a
    if a == "1":
        return b
    if b == "1":
        return a
    if is_matrix(a) and not is_matrix(b):
        return a if rows(a) == b else None
    if is_matrix(b) and not is_matrix(a):
        return b if rows(b) == a else None
    return None


def size_value(size: str, input_size: int, hidden_size: int) -> int:
    """The number a size label stands for."""
    if size == HIDDEN:
        return hidden_size
    if size.endswith("*" + HIDDEN):
        return int(size[: -len(HIDDEN) - 1]) * hidden_size
    if size.isdigit():
        return int(size)
    return input_size


def shape_value(shape: str, input_size: int, hidden_size: int) -> tuple[int, ...]:
    """The tensor shape (without the batch dimension) a shape label stands for."""
    return tuple(size_value(s, input_size, hidden_size) for s in parts(shape))


def size_text(size: str) -> str:
    """A size as written in a ``.cell`` file: ``hidden``, ``2*hidden``, ``16``, ``input``."""
    if size == HIDDEN:
        return "hidden"
    if size.endswith("*" + HIDDEN):
        return size[: -len(HIDDEN)] + "hidden"
    if size.isdigit():
        return size
    return "input"


def shape_text(shape: str) -> str:
    """A shape as written after ``:`` in a ``.cell`` file: ``hidden x 16``."""
    return " x ".join(size_text(s) for s in parts(shape))


def describe(shape: str) -> str:
    """A shape in an error message: ``a hidden x 16 matrix``, ``a vector of size 1``."""
    if is_matrix(shape):
        return f"a {shape_text(shape)} matrix"
    if shape == HIDDEN:
        return "a vector of the hidden size"
    if shape.startswith("I"):
        return "a vector of the input's size"
    return f"a vector of size {size_text(shape)}"
