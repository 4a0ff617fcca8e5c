"""One canonical reading of how a gate enters an expression, whatever way it was written.

Switch verdicts must follow from what a cell computes, not from how its author wrote it:
``h + f ⊙ (n - h)``, ``(1 - f) ⊙ h + f ⊙ n`` and ``h - f ⊙ h + n ⊙ f`` are one spdt mix. So an
expression is read as a polynomial in the gates over *atoms* (a function application, a linear
map, any other opaque node): atoms are masked by placeholder symbols, the rest is expanded, and
since a gate is a 0/1 switch every power ``g**k`` is ``g`` (``g ⊙ (1 - g) = 0`` follows).
Then ``e = A + g ⊙ B`` with ``g`` absent from ``A`` and ``B`` outside atoms; ``g`` may still act
inside an atom (MGU's ``tanh(W x + U (f ⊙ h))``), which the caller searches separately.

A gate inside a denominator (minLSTM's ``f / (f + i)``, however it is split up) makes the
expression non-polynomial in it: :func:`split` answers None and the use is ``other``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy

from ..cell.functions import MatVec

# A larger power of a sum is kept whole (an atom): expanding (a + b)**20 would take long and
# no cell mixes its gates that way (a gate's own powers were reduced before, g**k = g).
MAX_POWER = 4


def is_poly_node(e: sympy.Expr) -> bool:
    """Add, Mul and small integer powers: the nodes a polynomial (or rational) reading looks
    through; anything else is an atom."""
    if isinstance(e, (sympy.Add, sympy.Mul)):
        return True
    return isinstance(e, sympy.Pow) and e.exp.is_Integer and abs(e.exp) <= MAX_POWER


def reduce_powers(e: sympy.Expr, gates: set[sympy.Symbol]) -> sympy.Expr:
    """Each term of an expanded sum with gate powers ``g**k`` (k >= 1) made ``g``."""
    out = []
    for t in sympy.Add.make_args(e):
        factors = []
        for f in sympy.Mul.make_args(t):
            if isinstance(f, sympy.Pow) and f.base in gates and f.exp.is_Integer and f.exp > 0:
                f = f.base
            factors.append(f)
        out.append(sympy.Mul(*factors))
    return sympy.Add(*out)


def canonical(e: sympy.Expr, gates: set[sympy.Symbol] | frozenset[sympy.Symbol]
              ) -> sympy.Expr:
    """A normal form for comparing expressions: every level expanded, linear maps distributed
    over sums and numbers (``W (a + 2 b) = W a + 2 W b``), gate powers reduced. Used as a key
    (equal keys, equal values), never printed."""
    return _canonical(e, frozenset(gates))


@lru_cache(maxsize=4096)  # folding and masking ask for the same subexpressions many times
def _canonical(e: sympy.Expr, gates: frozenset[sympy.Symbol]) -> sympy.Expr:
    if not e.args:
        return e
    args = [_canonical(a, gates) for a in e.args]
    if isinstance(e, MatVec):
        out = sympy.Integer(0)
        for t in sympy.Add.make_args(args[1]):
            num, rest = t.as_coeff_Mul()
            out += num * MatVec(args[0], rest) if rest != 0 else 0
        return out
    e = e.func(*args)
    if is_poly_node(e):
        e = reduce_powers(sympy.expand(e, deep=False, power_exp=False, power_base=False,
                                       log=False), gates)
    return e


class Masked:
    """An expression with its atoms replaced by placeholders (equal atoms, one placeholder)."""

    def __init__(self, e: sympy.Expr, gates: set[sympy.Symbol]) -> None:
        self.gates = gates
        self.atoms: dict[sympy.Symbol, sympy.Expr] = {}  # placeholder -> the atom as written
        self._by_key: dict[sympy.Expr, sympy.Symbol] = {}
        self.expr = self._mask(e)

    def _mask(self, e: sympy.Expr) -> sympy.Expr:
        if isinstance(e, (sympy.Symbol, sympy.Number)):
            return e
        if is_poly_node(e):
            return e.func(*[self._mask(a) for a in e.args])
        key = canonical(e, self.gates)
        if key not in self._by_key:
            d = sympy.Dummy(f"atom{len(self.atoms)}")
            self._by_key[key] = d
            self.atoms[d] = e
        return self._by_key[key]

    def unmask(self, e: sympy.Expr) -> sympy.Expr:
        return e.xreplace(self.atoms)


@dataclass(frozen=True)
class Split:
    """``e = A + g ⊙ B`` read as a switch: ``a`` passes only at g = 1, ``b`` only at g = 0,
    ``common`` at both (terms of the expanded polynomial; ``a``/``b``/``common`` unmasked)."""

    a: sympy.Expr
    b: sympy.Expr
    common: tuple[sympy.Expr, ...]
    switched: bool  # False: g cancels outside atoms (or is absent there)
    atoms: tuple[sympy.Expr, ...]  # every atom of e, as written
    # with another gate in series: the switched part without it, which is what g = 1 / g = 0
    # turn into ``a`` / ``b`` (the written expression still holds the series gate); else None
    term: sympy.Expr | None = None


def _terms(e: sympy.Expr) -> list[sympy.Expr]:
    return [] if e == 0 else list(sympy.Add.make_args(e))


def _signal(t: sympy.Expr, gates: set[sympy.Symbol]) -> sympy.Expr:
    """A term of the expanded polynomial without its numbers and gate factors."""
    return sympy.Mul(*[f for f in sympy.Mul.make_args(t) if not f.is_Number and f not in gates])


def polynomial(m: Masked, g: sympy.Symbol) -> sympy.Expr | None:
    """``m``'s expression expanded as a polynomial in ``g`` (gate powers reduced), or None
    when ``g`` stays in a denominator (after cancelling common factors)."""
    e = m.expr
    if any(p.exp.is_negative for p in e.atoms(sympy.Pow)):
        num, den = sympy.fraction(sympy.cancel(sympy.together(e)))
        if den.free_symbols & m.gates:
            # a gate in a denominator: reduce powers there too before deciding
            den = reduce_powers(sympy.expand(den), m.gates)
        # ``h / f + n / (1 - f)``: the denominator f ⊙ (1 - f) is 0 at every setting, so it
        # reduces to 0 and holds no gate; dividing by it would give zoo (no switch reading)
        if g in den.free_symbols or den == 0:
            return None
        e = num / den
    return reduce_powers(sympy.expand(e), m.gates)


def split(e: sympy.Expr, g: sympy.Symbol, gates: set[sympy.Symbol], series: bool = True
          ) -> Split | None:
    """How ``g`` switches ``e`` outside its atoms; None where ``g`` is in a denominator.
    ``series=False`` keeps other gates that multiply every switched term in the signals."""
    m = Masked(e, gates)
    atoms = tuple(m.atoms.values())
    if g not in m.expr.free_symbols:
        return Split(sympy.Integer(0), sympy.Integer(0), (), False, atoms)
    poly = polynomial(m, g)
    if poly is None:
        return None
    rest, coef = [], []
    for t in sympy.Add.make_args(poly):
        (coef if g in t.free_symbols else rest).append(t)
    at1 = _terms(sympy.Add(*rest) + sympy.Add(*[t.xreplace({g: 1}) for t in coef]))
    at0 = _terms(sympy.Add(*rest))
    common = [t for t in at1 if t in at0]
    one = [t for t in at1 if t not in common]
    zero = [t for t in at0 if t not in common]
    # A signal that passes at both settings but also appears switched (g1 ⊙ (g0 ⊙ c + (1 - g0)
    # ⊙ a) + (1 - g1) ⊙ a: ``a`` at g1 = 0, ``g0 ⊙ c + (1 - g0) ⊙ a`` at g1 = 1) is part of what
    # g selects: taking it out would leave a and b that are not the term at g = 1 and g = 0.
    shared = {_signal(t, gates) for t in common} & {_signal(t, gates) for t in one + zero}
    if shared:
        one, zero, common = at1, at0, []
    # Another gate multiplying every switched term is a switch in series (its own place):
    # o ⊙ (f ⊙ c + (1 - f) ⊙ z) and o⊙f⊙c + o⊙z - o⊙f⊙z both have f select c or z.
    series = set.intersection(*[set(sympy.Mul.make_args(t)) & gates for t in one + zero]) \
        if series and (one or zero) else set()
    scale = sympy.Mul(*series)
    one, zero = [t / scale for t in one], [t / scale for t in zero]
    a, b = m.unmask(sympy.Add(*one)), m.unmask(sympy.Add(*zero))
    switched = bool(one or zero)
    term = None if scale == 1 else m.unmask(reduce_powers(sympy.expand(
        (poly - sympy.Add(*common)) / scale), gates))
    return Split(a, b, tuple(m.unmask(t) for t in common), switched, atoms, term)


def top_level(e: sympy.Expr, g: sympy.Symbol, gates: set[sympy.Symbol]) -> bool:
    """Whether ``g`` appears in ``e`` outside every atom (as a factor, not inside a map)."""
    return g in Masked(e, gates).expr.free_symbols


def key_terms(e: sympy.Expr, gates: set[sympy.Symbol]) -> set[sympy.Expr]:
    """The canonical terms of ``e``: two sums with the same set add up the same terms."""
    return set(_terms(canonical(e, gates)))
