"""The documented limits of the cell language, and the checks that keep every constant finite.

A cell file is data written by anyone, so every size the parser or SymPy works on is bounded
before the work starts: a file is at most :data:`MAX_BYTES`, an expression nests at most
:data:`MAX_DEPTH` levels and has at most :data:`MAX_NODES` parts, a number literal has at most
:data:`MAX_LITERAL_CHARS` characters and every constant lies within ``±MAX_MAGNITUDE`` (and is 0
or at least :data:`MIN_MAGNITUDE` in size). An exponent is a rational number of size at most
:data:`MAX_EXPONENT` with a denominator of at most :data:`MAX_EXPONENT`. Constant arithmetic
(``2 ** 0.5``, ``log(0)``) is first done here on bounded floats, so ``9 ** 9 ** 9`` is refused
before SymPy would try to compute it, and ``sqrt(-1)`` is refused instead of becoming the
imaginary unit that no printer or engine knows.

>>> constant_problem(sympy.Integer(3) * sympy.Symbol("h"))
>>> constant_problem(sympy.Rational(10) ** 40 * sympy.Symbol("h"))
'the constants fold to 1e+40, beyond the limit of 1e+15'
"""

from __future__ import annotations

import math

import sympy

from ..errors import GatelabError
from .functions import MATRIX_OPS, REGISTRY, MatVec

MAX_BYTES = 64 * 1024  # a cell file (or cell text), in bytes
MAX_DEPTH = 32  # nesting: parentheses, calls, unary minus, `@` and `**` chains
MAX_NODES = 500  # numbers, names and operators in one expression
MAX_LITERAL_CHARS = 30  # characters of one number literal
MAX_NAME_CHARS = 64  # characters of one name
MAX_MAGNITUDE = 1e15  # largest size of any constant, written or folded
MIN_MAGNITUDE = 1e-15  # smallest size of a non-zero constant
MAX_EXPONENT = 4  # |exponent| and its denominator; (a + b + ...)**k is expanded by the analysis
MAX_DEFINITIONS = 64  # inputs, states, gates and lets in one cell
MAX_PARAMS = 32  # learned parameters: SymPy's polynomial algebra grows fast in their number
MAX_INLINED = 20_000  # size of a state update with every gate and let substituted in
MAX_TERMS = 4096  # terms of an update multiplied out (lets substituted in, gates as symbols)

# SymPy node types a cell's expressions may contain after folding: what every printer and the
# engine know. Anything else (the imaginary unit, zoo, nan, e, pi, floats) is refused.
# The heads a folded expression may have: the language's functions, from the one registry.
_FUNCTIONS = tuple(fn.cls for fn in REGISTRY if fn.cell and fn.cls is not None)
_ALLOWED = (sympy.Symbol, sympy.Add, sympy.Mul, sympy.Pow, MatVec, *MATRIX_OPS, *_FUNCTIONS)


class ConstantError(GatelabError, ValueError):
    """A constant the language refuses: ``str()`` says what is wrong."""


def check_magnitude(value: float) -> float:
    """``value`` if it is finite and 0 or of size in [MIN_MAGNITUDE, MAX_MAGNITUDE]."""
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise ConstantError(f"the constant {value:.6g} is beyond the limit of "
                            f"{MAX_MAGNITUDE:g}")
    if value != 0 and abs(value) < MIN_MAGNITUDE:
        raise ConstantError(f"the constant {value:.6g} is smaller than the limit of "
                            f"{MIN_MAGNITUDE:g} (write 0 if you mean 0)")
    return value


def check_exponent(value: float) -> None:
    """An exponent must be a small rational: |e| <= MAX_EXPONENT, denominator <= MAX_EXPONENT."""
    if not math.isfinite(value) or abs(value) > MAX_EXPONENT:
        raise ConstantError(f"the exponent {value:.6g} is beyond the limit of ±{MAX_EXPONENT}")
    den = min(range(1, MAX_EXPONENT + 1), key=lambda d: abs(value * d - round(value * d)))
    if abs(value * den - round(value * den)) > 1e-9:
        raise ConstantError(f"the exponent {value:.6g} is not a fraction with a denominator "
                            f"of at most {MAX_EXPONENT}")


def fold_call(func: str, x: float, *more: float) -> float:
    """The value of ``func(x)`` for a constant ``x``, refused outside the function's domain."""
    if func == "sqrt":
        if x < 0:
            raise ConstantError(f"sqrt of the negative constant {x:g} is not a real number")
        return check_magnitude(math.sqrt(x))
    if func == "log":
        if x <= 0:
            raise ConstantError(f"log of the constant {x:g} is not a finite real number")
        return check_magnitude(math.log(x))
    if func == "exp":
        if x > math.log(MAX_MAGNITUDE):
            raise ConstantError(f"exp({x:g}) is beyond the limit of {MAX_MAGNITUDE:g}")
        return check_magnitude(math.exp(x))
    table = {"tanh": math.tanh, "abs": abs, "relu": lambda v: max(v, 0.0),
             "sigmoid": lambda v: 1 / (1 + math.exp(-v)) if v > -700 else 0.0,
             "softplus": lambda v: v + math.log1p(math.exp(-v)) if v > 0 else
             math.log1p(math.exp(v)),
             # a constant is the same in every unit: (c - mean) / sqrt(var + eps) = 0
             "layer_norm": lambda v: 0.0, "cos": math.cos, "sin": math.sin}
    if func not in table or more:  # a function added to the registry without its constant fold
        raise ConstantError(f"{func} of the constant {x:g} cannot be folded")
    value = table[func](x)
    # an underflow to (nearly) 0 is what the function does, not an error: sigmoid(-100)
    return 0.0 if abs(value) < MIN_MAGNITUDE else check_magnitude(value)


def fold_binary(op: str, a: float, b: float) -> float:
    """``a op b`` for two constants, refused when it is not a finite real number."""
    if op == "+":
        value = a + b
    elif op == "-":
        value = a - b
    elif op == "*":
        value = a * b
    elif op == "/":
        if b == 0:
            raise ConstantError("division by zero")
        value = a / b
    else:
        check_exponent(b)
        if a == 0 and b < 0:
            raise ConstantError("0 raised to a negative power is not a number")
        if a < 0 and b != int(b):
            raise ConstantError(f"the negative constant {a:g} raised to {b:g} is not a real "
                                "number")
        try:
            value = a ** b
        except OverflowError:
            raise ConstantError(f"{a:g} ** {b:g} is beyond the limit of {MAX_MAGNITUDE:g}"
                                ) from None
    if value != 0 and abs(value) < MIN_MAGNITUDE:
        return 0.0 if op in "+-" else check_magnitude(value)
    return check_magnitude(value)


def _hint(node: sympy.Expr) -> str:
    try:
        return f"write its value as a number ({float(node):.6g})"
    except (TypeError, ValueError):  # relu has no numeric evaluation in SymPy
        return "write its value as a number"


def constant_problem(expr: sympy.Expr) -> str | None:
    """What is wrong with an expression after SymPy folded it, or None: every node must be one
    the printers and the engine know, every number within the magnitude limits, every
    exponent a small rational."""
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Rational):
            if node != 0 and not MIN_MAGNITUDE <= abs(node) <= MAX_MAGNITUDE:
                big = abs(node) > 1
                return (f"the constants fold to {float(node):.6g}, "
                        f"{'beyond' if big else 'below'} the limit of "
                        f"{MAX_MAGNITUDE if big else MIN_MAGNITUDE:g}")
        elif not isinstance(node, _ALLOWED):
            return (f"the expression folds to {node}, which is not a finite real number "
                    "gatelab can compute")
        elif isinstance(node, (sympy.Pow, *_FUNCTIONS)) and not node.free_symbols:
            # the engine computes on tensors: a constant must reach it as a plain number
            return f"{node} is a constant the engine would have to compute; " + _hint(node)
        elif isinstance(node, sympy.Pow):
            ex = node.exp
            if not isinstance(ex, sympy.Rational) or abs(ex) > MAX_EXPONENT \
                    or ex.q > MAX_EXPONENT:
                return (f"the expression folds to the power {node}, beyond the exponent limit "
                        f"(a fraction of size at most {MAX_EXPONENT}, denominator at most "
                        f"{MAX_EXPONENT})")
    return None
