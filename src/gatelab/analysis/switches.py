"""How each gate acts: the switches of the article's circuit.

A gate is read where it is *used* (the lets and state updates as the author wrote them; where a
gate comes from is stage 1's business). Each place is one of:

* ``spst`` — single-pole single-throw: ``g ⊙ a`` passes ``a`` at ``g = 1`` and 0 at ``g = 0``;
* ``spdt`` — single-pole double-throw: ``g ⊙ a + (1 - g) ⊙ b`` selects ``a`` at ``g = 1``
  and ``b`` at ``g = 0`` (itself two contacts, ``g`` and ``1 - g``, ganged);
* ``value`` — the gate's value is itself a signal (FGR's ``pi' = i``);
* ``other`` — any other use (minLSTM's ``f/(f + i)``); ``at_1``/``at_0`` still say what it gives.

Gates are read as 0/1 switches, so ``g ⊙ g`` is ``g`` (:func:`~.symbols.as_switches`), and
the same switched term written twice (inlined by hand into two updates) is one place.
A gate acting in more than one place is ``ganged`` (MGU's ``f`` is ``spst`` in the candidate and
``spdt`` in the update: one gate, several switches moving together).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..cell.functions import MatVec, function_name
from ..cell.ir import Cell
from .symbols import as_switches, tex, txt


@dataclass(frozen=True)
class Place:
    """One place where a gate acts, inside the definition of ``in_name`` (a let or a state)."""

    in_name: str
    in_kind: str  # "let" or "next"
    type: str  # spst | spdt | value | other
    term: sympy.Expr  # the sub-expression the gate acts in
    at_1: sympy.Expr  # what that sub-expression becomes at gate = 1
    at_0: sympy.Expr  # ... and at gate = 0
    signals: tuple[sympy.Expr, ...]  # spst: (a,); spdt: (a at 1, b at 0); value: (); other: ()
    inside: sympy.Expr | None  # innermost enclosing linear map or function, if any

    @property
    def closed_at(self) -> int | None:
        """For spst: the gate value at which the signal passes (1 for ``g ⊙ a``, 0 for
        ``(1 - g) ⊙ a``); None for other types."""
        if self.type != "spst":
            return None
        return 1 if self.at_0 == 0 else 0

    def to_dict(self, lead: frozenset[str] = frozenset()) -> dict:
        return {
            "in": self.in_name,
            "in_kind": self.in_kind,
            "type": self.type,
            "term": txt(self.term, lead),
            "term_latex": tex(self.term),
            "signals": [txt(s, lead) for s in self.signals],
            "at_1": txt(self.at_1, lead),
            "at_0": txt(self.at_0, lead),
            "inside": None if self.inside is None else txt(self.inside, lead),
            "closed_at": self.closed_at,
        }


@dataclass(frozen=True)
class Switch:
    """A gate and every place it acts. ``type``: spst | spdt | ganged | value | other | unused."""

    gate: str
    type: str
    where: tuple[Place, ...]

    @property
    def contacts(self) -> int:
        return sum(2 if p.type == "spdt" else 1 for p in self.where if p.type != "value")

    def to_dict(self) -> dict:
        return {"gate": self.gate, "type": self.type, "contacts": self.contacts,
                "where": [p.to_dict(frozenset({self.gate})) for p in self.where]}


def _strip(term: sympy.Expr, factor: sympy.Expr, g: sympy.Symbol) -> sympy.Expr | None:
    """``term / factor`` if ``factor`` is a plain factor of ``term`` and the rest is free of g."""
    args = list(sympy.Mul.make_args(term))
    if factor not in args:
        return None
    args.remove(factor)
    rest = sympy.Mul(*args)
    return None if g in rest.free_symbols else rest


# A found place: (type, term, signals, inside[, at_1, at_0]); at_1/at_0 default to the term
# with g set to 1/0.
_Found = tuple


def _places(e: sympy.Expr, g: sympy.Symbol, inside: sympy.Expr | None = None) -> list[_Found]:
    """Every place ``g`` acts in ``e`` (``inside``: the enclosing map or function)."""
    if g not in e.free_symbols:
        return []
    if e == g:
        return [("value", e, (), inside)]
    if isinstance(e, sympy.Add):
        return _places_in_sum(e, g, inside)
    if isinstance(e, sympy.Mul):
        for factor in (g, 1 - g):  # g ⊙ a closes at g = 1; (1 - g) ⊙ a closes at g = 0
            a = _strip(e, factor, g)
            if a is not None:
                return [("spst", e, (a,), inside)] + _places(a, g, inside)
        with_g = [f for f in e.args if g in f.free_symbols]
        if len(with_g) == 1 and not isinstance(with_g[0], sympy.Pow):
            return _places(with_g[0], g, inside)
        return [("other", e, (), inside)]  # g divides or multiplies itself: f/(f + i)
    if isinstance(e, sympy.Pow):
        return [("other", e, (), inside)]
    wrap = e if isinstance(e, MatVec) or function_name(e) else inside
    return [p for a in e.args for p in _places(a, g, wrap)]


def _terms(parts: list[sympy.Expr]) -> list[sympy.Expr]:
    """The terms of a sum, each part expanded one level the same way (``n ⊙ (1 - k)`` gives
    ``n - k ⊙ n`` whether it stands alone or beside other terms)."""
    return list(sympy.Add.make_args(sympy.Add(*[sympy.expand(t, deep=False) for t in parts])))


def _places_in_sum(e: sympy.Add, g: sympy.Symbol, inside: sympy.Expr | None) -> list[_Found]:
    """The place where ``g`` switches the terms of a sum, whatever way the author wrote it.

    Terms with a factor ``g`` contribute their rest to what passes at ``g = 1``, terms with a
    factor ``1 - g`` to what passes at ``g = 0``, other terms to both. Terms common to both
    sides always pass; what is left selects ``a`` (at 1) or ``b`` (at 0): spdt if both are
    nonzero, else spst. ``z*h + (1-z)*n``, ``h - z*h + z*n`` and ``h + z*(n - h)`` all give the
    same spdt.
    """
    at1, at0, direct, rests, odd = [], [], [], [], []
    found: list[_Found] = []
    for t in e.args:
        if (a := _strip(t, g, g)) is not None:
            at1.append(a)
            direct.append(t)
            rests.append(a)
        elif (b := _strip(t, 1 - g, g)) is not None:
            at0.append(b)
            direct.append(t)
            rests.append(b)
        else:
            at1.append(t)
            at0.append(t)
            sub = _places(t, g, inside)
            if any(p[0] == "other" and p[1] == t for p in sub):
                odd.append(t)  # grouped below: one mixing place per sum
            else:
                found += sub
    if direct:
        one, zero = _terms(at1), _terms(at0)
        removed = []
        for t in list(one):
            if t in zero:  # passes at both settings: not switched by g
                one.remove(t)
                zero.remove(t)
                removed.append(t)
        a, b = sympy.Add(*one), sympy.Add(*zero)
        common = [t for t in e.args if t not in direct
                  and all(u in removed for u in _terms([t]))]
        term = e - sympy.Add(*common)  # the part of the sum that g switches
        if a != 0 and b != 0:
            found.append(("spdt", term, (a, b), inside, a, b))
        elif a != 0 or b != 0:
            found.append(("spst", term, (a if a != 0 else b,), inside, a, b))
        for r in rests:
            found += _places(r, g, inside)
    if odd:
        found.append(("other", sympy.Add(*odd), (), inside))
    return found


def find_switches(cell: Cell) -> list[Switch]:
    """Every gate's places in the lets and state updates, in cell order."""
    gates = {cell.sym(g) for g in cell.gates}
    # Switches are 0/1: g ⊙ g acts as g (one switch, not a squared one).
    defs = [(n, "let", as_switches(e, gates)) for n, e in cell.lets.items()]
    defs += [(n, "next", as_switches(e, gates)) for n, e in cell.nexts.items()]
    out = []
    for gate in cell.gates:
        g = cell.sym(gate)
        places: list[Place] = []
        for name, kind, expr in defs:
            for typ, term, signals, inside, *ends in _places(expr, g):
                if any(p.type == typ and p.term == term for p in places):
                    continue  # the same switched term written twice is one switch
                at1, at0 = ends or (term.xreplace({g: sympy.S.One}),
                                    term.xreplace({g: sympy.S.Zero}))
                places.append(Place(name, kind, typ, term, at1, at0, signals, inside))
        # A gate's value copied into a state (FGR's pi' = i) is a signal, not a contact.
        contacts = [p for p in places if p.type != "value"]
        if not places:
            typ = "unused"
        elif not contacts:
            typ = "value"
        elif len(contacts) > 1:
            typ = "ganged"
        else:
            typ = contacts[0].type
        out.append(Switch(gate, typ, tuple(places)))
    return out
