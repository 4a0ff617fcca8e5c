"""Gradient paths: the Jacobian ∂s'/∂s written as a sum of paths, and its identity term.

Every operator of a cell is elementwise except the linear maps, so the Jacobian of an update with
respect to a state is a sum over paths, each a product of diagonal factors ``diag(a)`` and weight
matrices ``W``::

    c' = f ⊙ c + i ⊙ tanh(W·x + U·(o_prev ⊙ tanh(c)) + b)
    ∂c'/∂c = diag(f) + diag(i ⊙ tanh'(…)) · U · diag(o_prev ⊙ tanh'(c))

A linear map is opaque: the derivative through ``W @ v`` always carries ``W``; so does
``layer_norm`` (its Jacobian mixes the units: the factor ``J_layer_norm``). A path that
crosses no matrix and whose diagonal factors are made of gates and numbers only is *direct*; the
sum of the direct paths is the **direct gain**, and the update has an **identity path** when that
gain is exactly 1 (``∂s'/∂s = I + …``: gradient passes unchanged, as in a ResNet shortcut).

A factor the cell multiplies by is read as the sum it is, however it is written: HGRN's
``f = lb + (1 - lb) ⊙ μ`` is ``μ + lb ⊙ (1 - μ)``, a direct path ``μ`` beside one through the
learned ``lb``, exactly as the expanded ``μ ⊙ h + lb ⊙ h - lb ⊙ μ ⊙ h`` reads. So the direct
gain at stage 2, with a gate set, is the direct gain stage 3 finds at that setting. A
nonlinearity's derivative (``tanh'(…)``) stays one opaque factor: direct only when it is made of
gates alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..cell.functions import MatVec, layer_norm
from .symbols import is_scalar, txt

# A path: factors from the output side to the state side; each is ("diag", expr) for a factor
# multiplied by, ("fn", expr) for a function's derivative, or ("mat", W).
Factor = tuple[str, sympy.Expr]
Path = tuple[Factor, ...]


def paths(expr: sympy.Expr, s: sympy.Symbol) -> list[Path]:
    """Every path from ``s`` to ``expr`` (empty list: ``expr`` does not depend on ``s``)."""
    if expr == s:
        return [()]
    if s not in expr.free_symbols:
        return []
    if isinstance(expr, sympy.Add):
        return [p for a in expr.args for p in paths(a, s)]
    if isinstance(expr, sympy.Mul):
        out = []
        for k, a in enumerate(expr.args):
            rest = sympy.Mul(*(expr.args[:k] + expr.args[k + 1:]))
            out += [(("diag", rest),) + p for p in paths(a, s)]
        return out
    if isinstance(expr, MatVec):
        return [(("mat", expr.matrix),) + p for p in paths(expr.vector, s)]
    if isinstance(expr, sympy.Pow) and s not in expr.exp.free_symbols:
        d = expr.exp * expr.base ** (expr.exp - 1)
        return [(("diag", d),) + p for p in paths(expr.base, s)]
    if isinstance(expr, layer_norm):  # a full (not diagonal) Jacobian, like a map: never direct
        return [(("mat", sympy.Symbol("J_layer_norm")),) + p for p in paths(expr.args[0], s)]
    if isinstance(expr, sympy.Function) and len(expr.args) == 1:
        return [(("fn", expr.fdiff(1)),) + p for p in paths(expr.args[0], s)]
    # Anything else (a power with a state-dependent exponent...): one opaque elementwise factor.
    return [(("fn", sympy.Symbol(f"∂({txt(expr)})/∂{s.name}")),)]


def _merged(path: Path) -> list[Factor]:
    """Adjacent diagonal factors multiplied together; ``diag(1)`` dropped."""
    out: list[Factor] = []
    for kind, e in path:
        kind = "diag" if kind == "fn" else kind
        if kind == "diag" and out and out[-1][0] == "diag":
            out[-1] = ("diag", out[-1][1] * e)
        else:
            out.append((kind, e))
    return [(k, e) for k, e in out if not (k == "diag" and e == 1)]


@dataclass(frozen=True)
class Gradient:
    """∂s'/∂s as paths. ``gain``: the sum of the direct (weight-free, gate-only) paths."""

    paths: tuple[Path, ...]
    gain: sympy.Expr

    @property
    def identity_path(self) -> bool:
        return self.gain == 1  # gain is expanded: the identity shows as exactly 1

    def text(self) -> str:
        """``diag(f) + diag(i ⊙ (1 - tanh(…)**2))·U·diag(…)``; ``I`` for the identity, ``0``."""
        terms = []
        for p in self.paths:
            fs = _merged(p)
            if any(k == "diag" and e == 0 for k, e in fs):
                continue
            shown = [e.name if k == "mat" else f"diag({txt(e)})" for k, e in fs]
            terms.append("·".join(shown) if shown else "I")
        return " + ".join(terms) if terms else "0"


def scalar_part(e: sympy.Expr, scalars: set[sympy.Symbol]) -> sympy.Expr:
    """The terms of ``e``, multiplied out, made of numbers and ``scalars`` only:
    ``lb + (1 - lb) ⊙ μ`` -> ``μ``. Read term by term (the scalar part of a product is the
    product of its factors' scalar parts), so a product of many sums is never multiplied out."""
    if is_scalar(e, scalars):
        return e
    if isinstance(e, sympy.Add):
        return sympy.Add(*[scalar_part(a, scalars) for a in e.args])
    if isinstance(e, sympy.Mul):
        return sympy.Mul(*[scalar_part(a, scalars) for a in e.args])
    if isinstance(e, sympy.Pow) and e.exp.is_Integer and e.exp > 0:
        return scalar_part(e.base, scalars) ** e.exp
    return sympy.Integer(0)  # a signal, a map, a function of signals, a division by one


def gradient(expr: sympy.Expr, s: sympy.Symbol, scalars: set[sympy.Symbol]) -> Gradient:
    """The paths of ∂expr/∂s and their direct gain (``scalars``: gate symbols and numbers)."""
    ps = tuple(paths(expr, s))
    gain = sympy.Integer(0)
    for p in ps:
        if any(k == "mat" for k, _ in p):
            continue
        gain += sympy.Mul(*(scalar_part(e, scalars) if k == "diag"
                            else e if is_scalar(e, scalars) else 0 for k, e in p))
    return Gradient(ps, sympy.expand(gain))
