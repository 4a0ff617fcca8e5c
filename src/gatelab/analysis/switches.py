"""How each gate acts: the switches of the article's circuit.

A gate is read where it is *used*: in the state updates, with every let inlined (a let is its
expression: writing ``let n = ...`` or spelling it out gives the same switches), each let's
name kept to say where a place is and to print it. Where a gate comes from is stage 1's
business. Each place is one of:

* ``spst`` — single-pole single-throw: ``g ⊙ a`` passes ``a`` at ``g = 1`` and 0 at ``g = 0``;
* ``spdt`` — single-pole double-throw: ``g ⊙ a + (1 - g) ⊙ b`` selects ``a`` at ``g = 1``
  and ``b`` at ``g = 0`` (itself two contacts, ``g`` and ``1 - g``, ganged);
* ``value`` — the gate's value is itself a signal (FGR's ``pi' = i``);
* ``other`` — any other use (minLSTM's ``f/(f + i)``); ``at_1``/``at_0`` still say what it gives.

Sums and products are read canonically (:mod:`.canon`): as polynomials in the gate, so
``h + f ⊙ (n - h)``, ``(1 - f) ⊙ h + f ⊙ n`` and ``h - f ⊙ h + n ⊙ f`` are one spdt, and a
gate in a denominator is ``other`` however the fraction is split into lets. Gates are read as
0/1 switches, so ``g ⊙ g`` is ``g`` (:func:`~.symbols.as_switches`), and the same switched
signals found twice (inlined by hand into two updates, or a let used by two) are one place.
A gate acting in more than one place is ``ganged`` (MGU's ``f`` is ``spst`` in the candidate and
``spdt`` in the update: one gate, several switches moving together).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..cell.functions import MatVec, function_name
from ..cell.ir import Cell
from .canon import Masked, canonical, is_poly_node, key_terms, split, top_level
from .symbols import as_switches, is_scalar, tex, txt


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


# A found place: (type, term, signals, inside[, at_1, at_0]); at_1/at_0 default to the term
# with g set to 1/0.
_Found = tuple


def _fold(e: sympy.Expr, rules: dict[sympy.Expr, sympy.Symbol], gates: set[sympy.Symbol],
          top: bool = True) -> sympy.Expr:
    """Write the let names back into an inlined expression (``tanh(...)`` -> ``n``, also when
    the analysis expanded it), for printing; ``top=False`` keeps ``e`` itself unfolded (a
    place's term is never just a name)."""
    if not e.args:
        return e
    if top and (name := rules.get(canonical(e, gates))) is not None:
        return name
    return e.func(*[_fold(a, rules, gates) for a in e.args])


class _Finder:
    """The places of one gate in the cell's updates, lets inlined (a let is its expression)."""

    def __init__(self, g: sympy.Symbol, gates: set[sympy.Symbol],
                 lets: dict[sympy.Expr, str]) -> None:
        self.g, self.gates, self.lets = g, gates, lets
        self.found: list[tuple[str, _Found]] = []  # (the definition it is in, place)

    def search(self, e: sympy.Expr, in_name: str, inside: sympy.Expr | None = None) -> None:
        g = self.g
        if g not in e.free_symbols:
            return
        if e in self.lets:  # inside a let's own expression: the gate acts there
            in_name, inside = self.lets[e], None
        if e == g:
            self.found.append((in_name, ("value", e, (), inside)))
            return
        if (inner := self._confined(e)) is not None:
            self.search(inner, in_name, inside)
            return
        if not is_poly_node(e):
            # an atom (a map, a function): the gate acts inside it, on its arguments
            wrap = e if isinstance(e, MatVec) or function_name(e) else inside
            for a in e.args:
                self.search(a, in_name, wrap)
            return
        sp = split(e, g, self.gates)
        if sp is None:  # g in a denominator: f/(f + i), written any way
            odd = [t for t in sympy.Add.make_args(e) if top_level(t, g, self.gates)]
            term = sympy.Add(*odd) if isinstance(e, sympy.Add) else e
            self.found.append((in_name, ("other", term, (), inside)))
        elif sp.switched:
            common = key_terms(sympy.Add(*sp.common), self.gates)
            kept = [t for t in sympy.Add.make_args(e) if top_level(t, g, self.gates)
                    or not key_terms(t, self.gates) <= common]
            term = sympy.Add(*kept) if isinstance(e, sympy.Add) else e
            if sp.term is not None:  # a gate in series: the place is the part it multiplies
                term = sp.term
            typ = "spdt" if sp.a != 0 and sp.b != 0 else "spst"
            signals = (sp.a, sp.b) if typ == "spdt" else (sp.a if sp.a != 0 else sp.b,)
            self.found.append((in_name, (typ, term, signals, inside, sp.a, sp.b)))
        for atom in sp.atoms if sp is not None else Masked(e, self.gates).atoms.values():
            self.search(atom, in_name, inside)

    def _confined(self, e: sympy.Expr) -> sympy.Expr | None:
        """The written sum that holds every use of the gate in ``e``, when ``e`` only scales
        it or adds other terms to it: ``o ⊙ (g ⊙ c + (1 - g) ⊙ z)`` -> the sum,
        ``g1 ⊙ (g ⊙ c + (1 - g) ⊙ a) + (1 - g1) ⊙ a`` -> the same (a select nested in another
        is read where it is written, so its term at g = 0/1 is what it selects). None where the
        gate is a factor of ``e`` itself (``h + g ⊙ (n - h)`` is read whole)."""
        holders = [a for a in e.args if self.g in a.free_symbols]
        if len(holders) != 1:
            return None
        (k,) = holders
        if isinstance(e, sympy.Mul):
            # a gate-only factor (1 - g) is the switch itself, not a sum to read inside
            return k if isinstance(k, sympy.Add) and not k.free_symbols <= self.gates else None
        if isinstance(e, sympy.Add) and isinstance(k, sympy.Mul) and self._confined(k):
            return k
        return None


def _roots(cell: Cell, gates: set[sympy.Symbol]
           ) -> tuple[list[tuple[str, sympy.Expr]], dict[sympy.Dummy, sympy.Expr]]:
    """What to search: every state update with lets inlined, then each let no update uses
    (an output written as a let), inlined too. Gates stay symbols (stage 1).

    A state's new value used elsewhere (sLSTM's ``h' = o ⊙ c'/n'``) is a signal there, masked
    by a placeholder: its gates act where that state is updated, and are found there. Inlined
    into a product or a quotient it would give them one more place, ``other``. Also returns
    placeholder -> new value, to write the places back as the cell computes them."""
    keep = set(cell.gates)
    inlined = {n: as_switches(cell.inline(e, keep), gates) for n, e in cell.nexts.items()}
    signals = {e: sympy.Dummy(f"{s}'") for s, e in inlined.items()
               if e.free_symbols & gates and not is_scalar(e, gates)}
    roots = [(n, _masked(e, signals, e)) for n, e in inlined.items()]
    for n, e in cell.lets.items():
        if not any(cell.sym(n) in cell.inline(o, keep | {n}).free_symbols
                   for o in cell.nexts.values()):
            e = as_switches(cell.inline(e, keep), gates)
            roots.append((n, _masked(e, signals, e)))
    return roots, {d: e for e, d in signals.items()}


def _masked(e: sympy.Expr, signals: dict[sympy.Expr, sympy.Symbol], root: sympy.Expr
            ) -> sympy.Expr:
    """``e`` with every new value in ``signals`` replaced by its name, also where SymPy merged
    it into a larger sum or product (``c' + n'`` is one sum of both updates' terms); ``root``
    itself (a state's own update) is left whole."""
    if e in signals and e != root:
        return signals[e]
    if not e.args:
        return e
    e = e.func(*[_masked(a, signals, root) for a in e.args])
    if isinstance(e, (sympy.Add, sympy.Mul)):
        for key, name in signals.items():
            if type(key) is type(e) and key != root:
                e = _take(e, key, name)
    return e


def _take(e: sympy.Expr, key: sympy.Expr, name: sympy.Symbol) -> sympy.Expr:
    """``e`` (a sum or product holding all of ``key``'s terms or factors) with them replaced by
    ``name``; a sum may hold them scaled by one number (``c' + c'`` is ``2 c' ``, written as
    the sum of the doubled terms)."""
    if isinstance(e, sympy.Mul):
        if set(key.args) < set(e.args):
            return sympy.Mul(*[a for a in e.args if a not in key.args], name)
        return e
    first = key.args[0]
    for k in {t / first for t in e.args if (t / first).is_Number}:
        scaled = {k * a for a in key.args}
        if scaled <= set(e.args) and (k != 1 or len(scaled) < len(e.args)):
            return sympy.Add(*[a for a in e.args if a not in scaled], k * name)
    return e


def find_switches(cell: Cell) -> list[Switch]:
    """Every gate's places in the state updates (lets inlined), in cell order."""
    gates = {cell.sym(g) for g in cell.gates}
    keep = set(cell.gates)
    # A let is its expression: search inlined updates, but say which let a place is in and
    # print let names back, as the author wrote them.
    inlined = {n: as_switches(cell.inline(e, keep), gates) for n, e in cell.lets.items()}
    lets = {e: n for n, e in reversed(list(inlined.items()))
            if not e.free_symbols <= gates}  # a gate-only let is a derived gate, not a place
    rules = {canonical(e, gates): cell.sym(n) for e, n in lets.items()}
    order = {n: i for i, n in enumerate([*cell.lets, *cell.nexts])}
    roots, unmask = _roots(cell, gates)
    out = []
    for gate in cell.gates:
        g = cell.sym(gate)
        finder = _Finder(g, gates, lets)
        for name, e in roots:
            finder.search(e, name)
        places: list[Place] = []
        seen = set()
        for name, (typ, term, signals, inside, *ends) in sorted(
                finder.found, key=lambda f: order[f[0]]):
            # a masked new value written back as what it is (printed by its let, if any)
            term, signals = term.xreplace(unmask), tuple(x.xreplace(unmask) for x in signals)
            inside = None if inside is None else inside.xreplace(unmask)
            ends = [x.xreplace(unmask) for x in ends]
            at1, at0 = ends or (term.xreplace({g: sympy.S.One}), term.xreplace({g: sympy.S.Zero}))
            # One place per switched pair (what passes at 1, at 0): the same mix written twice,
            # or a let used by two updates, is one switch.
            key = (typ, *(canonical(x, gates) for x in ((at1, at0) if ends else (term,))))
            if key in seen:
                continue
            seen.add(key)
            places.append(Place(
                name, "let" if name in cell.lets else "next", typ,
                _fold(term, rules, gates, top=False), _fold(at1, rules, gates),
                _fold(at0, rules, gates), tuple(_fold(s, rules, gates) for s in signals),
                None if inside is None else _fold(inside, rules, gates, top=False)))
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
