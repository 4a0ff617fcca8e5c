"""Small symbolic helpers shared by the analysis: printing, scalar factors, linear maps.

Vectors are commutative SymPy symbols and ``MatVec(W, v)`` is ``W @ v`` (see
:mod:`gatelab.cell.functions`). In the analysis a *scalar* is an expression made only of numbers
and gate symbols (stage 2 makes every gate a scalar, so it commutes with a linear map).
"""

from __future__ import annotations

import sympy

from ..cell.functions import MatVec
from ..cell.printers import expr_latex, expr_text
from ..errors import GatelabError


class AnalysisError(GatelabError, ValueError):
    """Bad input to the analysis (unknown gate, a value other than 0/1, too many gates)."""


def txt(expr: sympy.Expr, lead: frozenset[str] = frozenset()) -> str:
    """Unicode text of an expression, the cell's own printing (``σ``, ``⊙``, ``W·x``)."""
    # Plain numbers from arithmetic on settings become SymPy numbers; strict: a string is
    # refused, never parsed (sympify would eval it).
    expr = sympy.sympify(expr, strict=True)
    if expr.has(sympy.nan, sympy.zoo):
        return "undefined (0/0)"
    return expr_text(_printable(expr, lead), unicode=True, lead=lead)


def _printable(expr: sympy.Expr, lead: frozenset[str]) -> sympy.Expr:
    """Derivatives bring functions the cell language has no name for (relu' is a step, |x|'
    is sign): show them as opaque named symbols, ``step(u)``; so is a constant the algebra
    makes and the language has no name for (``exp(c)`` with ``c = 1`` is SymPy's ``E``;
    ``log(g - 1)`` at ``g = 0`` is not a real number: ``undefined``)."""
    if expr.is_number and expr.is_extended_real is False:
        return sympy.Symbol("undefined")
    if expr is sympy.E:
        return sympy.Symbol("exp(1)")
    if isinstance(expr, sympy.NumberSymbol):
        return sympy.Symbol(str(expr))
    if isinstance(expr, sympy.exp) and expr.args[0].is_number:
        # a product's printer would write exp(-1) as 1/E, a constant it cannot name
        return sympy.Symbol(f"exp({txt(expr.args[0], lead)})")
    if not expr.args:
        return expr
    if isinstance(expr, sympy.Heaviside):
        return sympy.Symbol(f"step({txt(expr.args[0], lead)})")
    if isinstance(expr, sympy.sign):
        return sympy.Symbol(f"sign({txt(expr.args[0], lead)})")
    return expr.func(*[_printable(a, lead) for a in expr.args])


def tex(expr: sympy.Expr) -> str:
    """LaTeX of an expression (elementwise products as ``\\odot``)."""
    if expr.has(sympy.nan, sympy.zoo):
        return r"\text{undefined}"
    return expr_latex(expr)


def is_scalar(expr: sympy.Expr, scalars: set[sympy.Symbol]) -> bool:
    """Whether ``expr`` is built from numbers and the given scalar (gate) symbols only."""
    return not expr.has(MatVec) and expr.free_symbols <= scalars


def split_scalar(term: sympy.Expr, scalars: set[sympy.Symbol]) -> tuple[sympy.Expr, sympy.Expr]:
    """Split a product into ``(scalar factor, the rest)``: ``f*(1-z)*h`` -> ``(f*(1-z), h)``."""
    sc, rest = [], []
    for factor in sympy.Mul.make_args(term):
        (sc if is_scalar(factor, scalars) else rest).append(factor)
    return sympy.Mul(*sc), sympy.Mul(*rest)


def linearize(expr: sympy.Expr, scalars: set[sympy.Symbol]) -> sympy.Expr:
    """Stage 2: scalar gates factor out of linear maps, and maps distribute over sums.

    ``W @ (f*h + x)`` -> ``f*(W @ h) + W @ x``; ``W @ 0`` -> ``0``. Exact when the gates are
    scalars (and therefore at every 0/1 setting).
    """
    if not expr.args:
        return expr
    expr = expr.func(*[linearize(a, scalars) for a in expr.args])
    if not isinstance(expr, MatVec):
        return expr
    out = sympy.Integer(0)
    for term in sympy.Add.make_args(expr.vector):
        coeff, rest = split_scalar(term, scalars)
        if rest == 1:  # a pure scalar fed to a map (unusual): keep it as written
            out += MatVec(expr.matrix, term) if term != 0 else 0
        elif isinstance(rest, sympy.Add):
            out += coeff * linearize(MatVec(expr.matrix, rest), scalars)
        else:
            out += coeff * MatVec(expr.matrix, rest)
    return out


def clean(expr: sympy.Expr) -> sympy.Expr:
    """Drop linear maps of zero (``W @ 0 = 0``) after gates were set, bottom up."""
    if not expr.args:
        return expr
    expr = expr.func(*[clean(a) for a in expr.args])
    if isinstance(expr, MatVec) and expr.vector == 0:
        return sympy.Integer(0)
    return expr


def unique_name(base: str, taken: set[str]) -> str:
    """``base`` or ``base_``, ``base__``… whichever is not taken yet."""
    name = base
    while name in taken:
        name += "_"
    return name


def as_switches(expr: sympy.Expr, gates: set[sympy.Symbol]) -> sympy.Expr:
    """``expr`` read with its gates as 0/1 switches (stage 3): a switch is idempotent, so
    ``g ⊙ g = g`` and ``(1 - g)² = 1 - g``, and complementary, so ``g ⊙ (1 - g) = 0``.

    >>> g, s = sympy.symbols("g s")
    >>> as_switches(g**2 * s + (1 - g)**3 * g, {g})
    g*s
    """
    if not expr.args or not (expr.free_symbols & gates):
        return expr
    expr = expr.func(*[as_switches(a, gates) for a in expr.args])
    if isinstance(expr, sympy.Pow) and expr.exp.is_Integer and expr.exp > 0:
        if expr.base in gates or any(expr.base == 1 - g for g in gates):
            return expr.base
    if isinstance(expr, sympy.Mul):
        factors = sympy.Mul.make_args(expr)
        if any(g in factors and 1 - g in factors for g in gates):
            return sympy.Integer(0)
    return expr
