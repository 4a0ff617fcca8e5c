"""The symbolic vocabulary of a cell: the linear map ``MatVec`` and the allowed functions.

Vectors are plain commutative SymPy symbols and every arithmetic operator is elementwise, so the
pointwise algebra of a cell is ordinary scalar algebra. The one non-elementwise operation, a
learned matrix applied to a vector (``W @ v`` in a ``.cell`` file), is the uninterpreted function
``MatVec(W, v)``: linear in ``v``, opaque otherwise.

>>> import sympy
>>> W, h, f = sympy.symbols("W h f")
>>> MatVec(W, h)
MatVec(W, h)
>>> sigmoid(h).diff(h)
(1 - sigmoid(h))*sigmoid(h)
"""

from __future__ import annotations

import sympy


class MatVec(sympy.Function):
    """``MatVec(W, v)`` is ``W @ v``: a learned matrix ``W`` (a Symbol) applied to vector ``v``."""

    nargs = 2

    @property
    def matrix(self) -> sympy.Symbol:
        return self.args[0]

    @property
    def vector(self) -> sympy.Expr:
        return self.args[1]


class sigmoid(sympy.Function):  # noqa: N801 - named as written in cell files
    """Logistic function ``1 / (1 + exp(-x))``."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        s = sigmoid(self.args[0])
        return s * (1 - s)

    @classmethod
    def eval(cls, x: sympy.Expr):
        if x.is_zero:
            return sympy.Rational(1, 2)
        return None


class relu(sympy.Function):  # noqa: N801
    """``max(x, 0)``; its derivative is the Heaviside step (0 at 0)."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.Heaviside(self.args[0], 0)


class softplus(sympy.Function):  # noqa: N801
    """``log(1 + exp(x))``; its derivative is ``sigmoid(x)``."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sigmoid(self.args[0])


# Name in a cell file -> SymPy function. The only callables a cell can name.
FUNCTIONS: dict[str, type[sympy.Function] | object] = {
    "sigmoid": sigmoid,
    "tanh": sympy.tanh,
    "relu": relu,
    "softplus": softplus,
    "exp": sympy.exp,
    "log": sympy.log,
    "sqrt": sympy.sqrt,
    "abs": sympy.Abs,
}

# Unicode spellings accepted in cell files.
FUNCTION_ALIASES = {"σ": "sigmoid"}


def real_diff(expr: sympy.Expr, u: sympy.Symbol) -> sympy.Expr:
    """``d expr / d u`` with every symbol taken as real, as every value of a cell is: SymPy's
    derivative of ``Abs`` on an unconstrained symbol is written with ``re``/``im``, which no
    engine computes; on reals it is ``sign``.

    >>> x = sympy.Symbol("x")
    >>> real_diff(sympy.Abs(2 * x), x)
    2*sign(x)
    """
    real = {s: sympy.Dummy(s.name, real=True) for s in expr.free_symbols | {u}}
    return sympy.diff(expr.xreplace(real), real[u]).xreplace({v: k for k, v in real.items()})


def function_name(expr: sympy.Expr) -> str | None:
    """The cell-file name of the function at the head of ``expr`` (None if it is not a call)."""
    if isinstance(expr, sympy.Abs):
        return "abs"
    for name, fn in FUNCTIONS.items():
        if name == "sqrt":
            continue
        if isinstance(fn, type) and isinstance(expr, fn):
            return name
    return None
