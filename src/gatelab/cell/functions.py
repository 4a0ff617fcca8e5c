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


class layer_norm(sympy.Function):  # noqa: N801
    """Normalisation over the hidden units: ``(v - mean(v)) / sqrt(var(v) + 1e-5)``, the
    statistics taken across the H units of each row (Ba, Kiros & Hinton 2016). Not elementwise:
    the learned gain and bias are written beside it as vectors, ``g ⊙ layer_norm(W @ x) + b``.
    The analysis reads ``layer_norm(U @ h)`` as a (normalised) linear map of ``h``."""

    nargs = 1

    @classmethod
    def eval(cls, x: sympy.Expr):
        if x.is_zero:  # (0 - 0) / sqrt(0 + eps)
            return sympy.Integer(0)
        return None


LAYER_NORM_EPS = 1e-5  # as torch.nn.LayerNorm

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
    "layer_norm": layer_norm,
}

# Unicode spellings accepted in cell files.
FUNCTION_ALIASES = {"σ": "sigmoid"}


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
