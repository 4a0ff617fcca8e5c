"""Checks between the parsed tree and SymPy: constants, exponents, vanished parameters, sizes.

:func:`fold` walks a statement's tree before SymPy sees it and computes every constant
sub-expression on bounded floats (:mod:`gatelab.cell.limits`), so ``9 ** 9 ** 9``,
``1e999999999``, ``log(0)`` or ``sqrt(-1)`` are refused at their own column instead of hanging
SymPy or becoming numbers no printer knows. :func:`inlined_sizes` bounds how large a state
update grows once gates and lets are substituted in (a chain of lets that each use the previous
one twice doubles it at every step).
"""

from __future__ import annotations

import sympy

from .errors import ColumnError
from .limits import (
    MAX_MAGNITUDE,
    MIN_MAGNITUDE,
    ConstantError,
    check_exponent,
    check_magnitude,
    fold_binary,
    fold_call,
)
from .syntax import BinOp, Call, MatMul, Name, Neg, Node, Num


class FoldError(ColumnError):
    """A refused constant at column ``col`` of its line."""


def fold(node: Node) -> float | None:
    """The value of ``node`` when it is a constant (no names), else None; every constant part
    is checked on the way. Raises :class:`FoldError` at the column of the first bad part."""
    try:
        if isinstance(node, Num):
            # float() reads "1e999999999" as inf at once; Fraction would build the integer
            value = float(node.text)
            mantissa = node.text.lower().partition("e")[0]
            if value == 0 and mantissa.strip("0.") != "":
                raise ConstantError(f"the constant {node.text} is smaller than the limit of "
                                    f"{MIN_MAGNITUDE:g}")
            if not abs(value) <= MAX_MAGNITUDE:
                raise ConstantError(f"the constant {node.text} is beyond the limit of "
                                    f"{MAX_MAGNITUDE:g}")
            return check_magnitude(value)
        if isinstance(node, Name):
            return None
        if isinstance(node, Call):
            xs = [fold(a) for a in node.args]
            if any(x is None for x in xs):
                return None
            if node.func == "max":
                return max(xs)
            return fold_call(node.func, *xs)
        if isinstance(node, Neg):
            x = fold(node.operand)
            return None if x is None else -x
        if isinstance(node, MatMul):
            fold(node.vector)
            return None
        assert isinstance(node, BinOp)
        a, b = fold(node.left), fold(node.right)
        if node.op == "**" and b is not None:
            try:
                check_exponent(b)
            except ConstantError as e:
                raise FoldError(node.right.col, str(e), "e.g. h ** 2 or h ** 0.5") from None
        if a is None or b is None:
            return None
        return fold_binary(node.op, a, b)
    except ConstantError as e:
        raise FoldError(node.col, str(e), "a finite real constant") from None


def inlined_sizes(order: list[str], exprs: dict) -> dict:
    """Tree size of every expression in ``exprs`` (keys: gate/let names, ``("next", s)``) with
    gates and lets substituted in, computed without building the substituted trees."""
    size: dict = {}
    for key in [*order, *(k for k in exprs if isinstance(k, tuple))]:
        total = 0
        for node in sympy.preorder_traversal(exprs[key]):
            total += size.get(node.name, 1) if isinstance(node, sympy.Symbol) else 1
        size[key] = total
    return size


def expanded_terms(order: list[str], exprs: dict, gates: set[str]) -> dict:
    """An upper bound on the number of terms of every expression multiplied out, with lets
    substituted in and gates kept as symbols, as the analysis multiplies them out: ``(1 - g1) *
    ... * (1 - g20)`` has 2**20. Function calls and ``W @ v`` count as one term."""

    def terms(e: sympy.Expr) -> int:
        if isinstance(e, sympy.Symbol):
            return 1 if e.name in gates else bound.get(e.name, 1)
        if isinstance(e, sympy.Add):
            return sum(terms(a) for a in e.args)
        if isinstance(e, sympy.Mul):
            total = 1
            for a in e.args:
                total = min(total * terms(a), CAP)  # capped: the exact size does not matter
            return total
        if isinstance(e, sympy.Pow) and e.exp.is_Integer and e.exp > 0:
            return min(terms(e.base) ** int(e.exp), CAP)
        return 1

    CAP = 1 << 40
    bound: dict = {}
    for key in [*order, *(k for k in exprs if isinstance(k, tuple))]:
        bound[key] = terms(exprs[key])
    return bound
