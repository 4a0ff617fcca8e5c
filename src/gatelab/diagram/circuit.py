"""The circuit of a cell: its memory-state updates as a tree of drawable parts.

The article's first simplification treats the gates as given, so a memory state's update is an
expression in the input ``x``, the previous memory state(s) and free gate symbols. For LSTM (with
the readout ``h = o ⊙ tanh(c)`` substituted, as the article does)::

    c' = f ⊙ c + i ⊙ tanh(W_g·x + U_g·(o ⊙ tanh(c)) + b_g)

That expression is read as a tree of parts, each one a circuit symbol:

    source  x, c (left terminals)      map     W·v (labelled box)
    func    tanh, σ, ... (box)         sum     + (circle); ``-t`` enters through a ``scale -1``
    switch  g ⊙ v or (1-g) ⊙ v         select  g ⊙ a + (1-g) ⊙ b (single-pole double-throw)
    scale   p ⊙ v for a non-gate factor p      product  u ⊙ v of two signals

Biases are left out, as in the article's pictures (each part keeps the ones it leaves out in
``bias``); everything else is drawn, numbers included (``1 + tanh(…)``, ``sqrt(1 - λ²)``). A tree
reads back as an expression (:mod:`.readback`), and a circuit that does not compute the cell is
refused. Nothing here knows a cell by name: the same reading applies to any valid cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count

import sympy

from ..analysis import Analysis
from ..analysis.canon import split
from ..analysis.symbols import as_switches
from ..cell import Cell, MatVec
from ..cell.functions import by_class
from ..cell.printers import expr_text
from ..cell.support import require_vector_cell
from ..errors import GatelabError
from .readback import check_circuit

MAX_PARTS = 400  # circuit symbols in one drawing (README "Limits")


class DiagramTooLarge(GatelabError, ValueError):
    """A cell whose circuit would have more than :data:`MAX_PARTS` symbols."""


@dataclass(eq=False)
class Part:
    """One circuit symbol. ``children`` feed it from the left.

    ``kind`` is one of source, map, func, sum, switch, select, scale, product, const.
    ``label`` is plain text (``"W_g"``, ``"tanh"``, ``"1-f"``). For a switch ``coef`` is the
    gate-only factor it multiplies by; for a select ``gate`` names the gate and ``children`` are
    ``[signal when gate=1, signal when gate=0]``.
    """

    kind: str
    label: str
    children: list[Part] = field(default_factory=list)
    gate: str | None = None
    coef: sympy.Expr | None = None
    name: str | None = None  # source: the signal's name
    id: int = 0
    # What the part computes with besides its children (see :mod:`.readback`): a const's
    # value, a map's matrix, a func's ``Lambda``, a scale's factor.
    value: sympy.Basic | None = None
    bias: sympy.Expr = sympy.S.Zero  # the biases left out of the picture, added to its value

    def walk(self):
        """This part and every part below it, parents first."""
        yield self
        for c in self.children:
            yield from c.walk()


@dataclass
class Circuit:
    """The drawable form of a cell: one tree per drawn state (the memory states)."""

    cell: Cell
    roots: dict[str, Part]  # drawn state -> tree of its update
    sources: list[str]  # left terminals, top first: memory states, then inputs
    analysis: Analysis
    gates: list[str]  # gates that appear as switches, in the cell's order
    exprs: dict[str, sympy.Expr] = field(default_factory=dict)  # what each root was read from

    def parts(self):
        for root in self.roots.values():
            yield from root.walk()

    def switches(self, gate: str | None = None) -> list[Part]:
        """Switch and select parts (of one gate, or all)."""
        return [p for p in self.parts() if p.kind in ("switch", "select")
                and (gate is None or p.gate == gate)]

    def ganged(self) -> set[str]:
        """Gates that drive more than one switch (drawn linked)."""
        seen: dict[str, int] = {}
        for p in self.switches():
            seen[p.gate] = seen.get(p.gate, 0) + 1
        return {g for g, n in seen.items() if n > 1}


# ---- what to draw: the analysis's memory states, readouts substituted --------------------------

def drawn_expressions(analysis: Analysis) -> dict[str, sympy.Expr]:
    """Each memory state's update in the memory states (stage 1 of the analysis), with the
    previous step's gates named as the gates themselves: a switch holds its setting at every
    step, so LSTM's ``o_prev`` is drawn as the switch ``o``."""
    same = {prev: sympy.Symbol(g) for g, prev in analysis.memory.prev_gates.items()}
    gates = {sympy.Symbol(g) for g in analysis.gates}
    return {m: as_switches(analysis.memory.updates[m].xreplace(same), gates)
            for m in analysis.memory_states}


# ---- expression -> parts ------------------------------------------------------------------------

def _label(e: sympy.Expr, unicode: bool = False) -> str:
    """A constant's text: the cell syntax where it has one; SymPy's own name for what the
    algebra alone makes (``zoo`` from a denominator that is 0 at every gate setting)."""
    try:
        return expr_text(e, unicode=unicode)
    except TypeError:
        return str(e)


class _Reader:
    def __init__(self, cell: Cell, sources: list[str], outer: dict[str, int] | None = None):
        self.cell = cell
        self.gates = {sympy.Symbol(g) for g in cell.gates}
        self.sources = set(sources)
        self.vectors = {sympy.Symbol(v) for v in cell.vectors}
        self.ids = count(1)
        self.outer = outer or {}  # gate -> rank: lower is read first (the outer selector)

    def part(self, kind: str, label: str, children=(), **kw) -> Part:
        pid = next(self.ids)
        if pid > MAX_PARTS:  # sums of many switched copies of one signal nest 2^gates deep
            raise DiagramTooLarge(
                f"cell {self.cell.name!r} draws as more than {MAX_PARTS} circuit symbols (the "
                f"zoo's largest has 18): too large to draw readably; `gatelab analyze` still "
                "reads it")
        return Part(kind, label, list(children), id=pid, **kw)

    def gate_only(self, e: sympy.Expr) -> bool:
        return bool(e.free_symbols) and e.free_symbols <= self.gates

    def read(self, e: sympy.Expr) -> Part:
        if isinstance(e, sympy.Symbol):
            name = e.name
            if name in self.sources:
                return self.part("source", name, name=name)
            return self.part("const", name, value=e)
        if e.is_Number:
            return self.part("const", _label(e), value=e)
        if isinstance(e, MatVec):
            return self.part("map", str(e.matrix), [self.read(e.vector)], value=e.matrix)
        if isinstance(e, sympy.Add):
            return self.read_sum(e)
        if isinstance(e, sympy.Mul):
            if (spread := self.spread(e)) is not None:
                return self.read(spread)
            return self.read_product(e)
        if isinstance(e, sympy.Pow):
            base, power = e.args
            d = sympy.Dummy("v")
            return self.part("func", f"(·)^{_label(power)}", [self.read(base)],
                             value=sympy.Lambda(d, d**power))
        if not e.args:  # zoo, nan, pi, E...: any leaf the algebra can make is a constant
            return self.part("const", _label(e), value=e)
        fn = by_class(e)
        label = fn.unicode if fn is not None else type(e).__name__.lower()
        slots = sympy.symbols(f"v:{len(e.args)}", cls=sympy.Dummy)
        return self.part("func", label, [self.read(a) for a in e.args],
                         value=sympy.Lambda(slots, e.func(*slots)))

    def split(self, term: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr, sympy.Expr]:
        """``term = number * gate_coef * rest``."""
        num, gate, rest = sympy.Integer(1), sympy.Integer(1), sympy.Integer(1)
        for f in sympy.Mul.make_args(term):
            if f.is_Number:
                num *= f
            elif self.gate_only(f):
                gate *= f
            else:
                rest *= f
        return num, gate, rest

    def spread(self, e: sympy.Expr) -> sympy.Expr | None:
        """A gate quotient over a sum, ``(f ⊙ h + i ⊙ n) / (f + i)``, as the sum of its
        terms each over the quotient (``f/(f+i) ⊙ h + i/(f+i) ⊙ n``, minLSTM written with lets
        ``f/(f+i)``): the analysis reads a gate in a denominator the same however it is split
        (``other``), so the drawing does too. None for anything else (``o ⊙ (f ⊙ c + …)`` stays
        a switch in series with the sum)."""
        num, gate, rest = self.split(e)
        if not isinstance(rest, sympy.Add) or not (sympy.denom(gate).free_symbols & self.gates):
            return None
        return sympy.Add(*[num * gate * t for t in rest.args])

    def is_bias(self, t: sympy.Expr) -> bool:
        """A bias, alone or gated (torch's GRU ``r ⊙ b_hn``): left out, as in the article."""
        return self.split(t)[2] in self.vectors

    def read_sum(self, e: sympy.Expr) -> Part:
        """A sum: its biases left out of the picture (kept in ``bias``, as the article draws
        no biases), every other term drawn, numbers included (``1 + tanh(…)``)."""
        terms = [t for t in sympy.Add.make_args(e) if not self.is_bias(t)]
        bias = sympy.Add(*[t for t in sympy.Add.make_args(e) if self.is_bias(t)])
        if not terms:
            return self.part("const", "b", value=e)
        if (mix := self.read_mix(e)) is not None:
            return mix
        # g*a + (1-g)*b with one gate g: a single-pole double-throw selector.
        by_coef = {}
        for t in terms:
            num, gate, rest = self.split(t)
            if num == 1 and gate != 1:
                by_coef.setdefault(gate, []).append(t)
        children = []
        used = set()
        for g in sorted(self.gates, key=str):
            one, zero = by_coef.get(g), by_coef.get(1 - g)
            if one and zero and one[0] not in used and zero[0] not in used:
                used.update({one[0], zero[0]})
                a, b = self.split(one[0])[2], self.split(zero[0])[2]
                children.append(self.part("select", g.name, [self.read(a), self.read(b)],
                                          gate=g.name))
        # Terms switched by one gate factor are one switch over their sum, as the analysis
        # reads them (one place): ``r ⊙ (W·h) + r ⊙ (V·x)`` is r switching ``W·h + V·x``.
        groups: dict[sympy.Expr, list[sympy.Expr]] = {}
        for t in terms:
            if t not in used:
                groups.setdefault(self.split(t)[1], []).append(t)
        for gate, ts in groups.items():
            if gate == 1 or len(ts) == 1:
                children.extend(self.read_term(t) for t in ts)
            else:
                rest = sympy.Add(*[t / gate for t in ts])
                children.append(self.switch(gate, self.read(rest)))
        return self.adder(children, bias)

    def adder(self, children: list[Part], bias: sympy.Expr = sympy.S.Zero) -> Part:
        """One adder over ``children`` (a child that is itself a sum joins it, biases too);
        a single child is returned as is, carrying the biases."""
        if len(children) == 1:
            children[0].bias += bias
            return children[0]
        flat = []
        for c in children:  # a term that multiplied out into a sum (read_product) joins this one
            if c.kind == "sum":
                flat.extend(c.children)
                bias += c.bias
            else:
                flat.append(c)
        out = self.part("sum", "+", flat)
        out.bias = bias
        return out

    def read_mix(self, e: sympy.Expr) -> Part | None:
        """A sum in which a gate selects between two signals, however it is written
        (``g ⊙ a + (1 - g) ⊙ b``, ``b + g ⊙ (a - b)``, ``b - g ⊙ b + g ⊙ a``): one selector,
        as the analysis reads it (:func:`~gatelab.analysis.canon.split`), plus the terms that
        pass at both settings (biases left out, in ``bias``). None when no gate mixes this
        sum."""
        for g in sorted(self.gates & e.free_symbols,
                        key=lambda g: (self.outer.get(g.name, 0), str(g))):
            sp = split(e, g, self.gates, series=False)
            if sp is None or not sp.switched or sp.a == 0 or sp.b == 0:
                continue
            select = self.part("select", g.name, [self.read(sp.a), self.read(sp.b)], gate=g.name)
            rest = [t for t in sp.common if t not in self.vectors]
            bias = sympy.Add(*[t for t in sp.common if t in self.vectors])
            if not rest:
                select.bias = bias
                return select
            return self.adder([select, self.read(sympy.Add(*rest))], bias)
        return None

    def read_term(self, t: sympy.Expr) -> Part:
        num, gate, rest = self.split(t)
        if num == 1 and gate == 1:
            return self.read(t) if not isinstance(t, sympy.Mul) else self.read_product(t)
        inner = self.read_product(rest) if isinstance(rest, sympy.Mul) else self.read(rest)
        if gate != 1:
            inner = self.switch(gate, inner)
        if num != 1:
            inner = self.part("scale", _label(num, unicode=True), [inner], value=num)
        return inner

    def switch(self, coef: sympy.Expr, inner: Part) -> Part:
        gates = sorted(coef.free_symbols, key=str)
        gate = gates[0].name if len(gates) == 1 else None
        label = _label(coef, unicode=True).replace(" ", "")
        return self.part("switch", label, [inner], gate=gate if gate else label, coef=coef)

    def read_product(self, e: sympy.Expr) -> Part:
        num, gate, rest = self.split(e)
        if num != 1 or gate != 1:
            return self.read_term(e)
        factors = list(sympy.Mul.make_args(rest))
        for f in factors:
            if isinstance(f, sympy.Add) and any(self.is_bias(t) for t in f.args):
                # A bias inside a factor is a path of its own, not a shift to leave out:
                # (α ⊙ V·h + β) ⊙ W·x carries β ⊙ W·x (Delta-RNN), so multiply it out.
                others = sympy.Mul(*[g for g in factors if g is not f])
                return self.read(sympy.Add(*[t * others for t in f.args]))
        scales = [f for f in factors if f in self.vectors]
        signals = [f for f in factors if f not in self.vectors]
        if len(signals) == 1:
            inner = self.read(signals[0])
        else:
            inner = self.part("product", "×", [self.read(f) for f in signals])
        for s in scales:  # a learned elementwise scale (peephole-like p ⊙ v)
            inner = self.part("scale", s.name, [inner], value=s)
        return inner


def _is_new_state(cell: Cell, name: str) -> bool:
    """Whether the let ``name`` is exactly some state's new value (LSTM's ``let hh = o ⊙
    tanh(c')``, ``next h = hh``, ``output hh``): that state is already drawn (or left out) as
    a state output would be, so a second tree would only repeat it, with its gates ganged."""
    keep = set(cell.gates)
    mine = cell.inline(cell.definition(name), keep=keep)
    return any(sympy.expand(cell.inline(e, keep=keep) - mine) == 0 for e in cell.nexts.values())


def drawn_readouts(analysis: Analysis, drawn_gates: set[str]) -> dict[str, sympy.Expr]:
    """Readouts drawn as trees of their own, in the new memory ``c'`` (a source on the left):
    those that never feed back (QRNN's ``h' = o ⊙ c'``, SRU's ``h``), those holding a gate
    that no memory update shows, and an output written as a ``let`` (the same readout by
    another name), so that every gate appears as a switch."""
    gates = {sympy.Symbol(g) for g in analysis.gates}
    fed_back = {r for rs in analysis.memory.via.values() for r in rs}
    out = {}
    for r, ro in analysis.readouts.items():
        names = {s.name for s in ro.expr.free_symbols}
        if r not in fed_back or names & (set(analysis.gates) - drawn_gates):
            out[r] = as_switches(ro.expr, gates)
    cell, mem = analysis.cell, analysis.memory
    if cell.output not in cell.states and not _is_new_state(cell, cell.output):
        # an output written as a let: a readout by another name
        new = {mem.original[m]: sympy.Symbol(f"{m}'") for m in analysis.memory_states}
        expr = cell.inline(cell.definition(cell.output), keep=set(cell.gates)).xreplace(new)
        out[cell.output] = as_switches(expr.xreplace(
            {cell.sym(r): ro.previous for r, ro in mem.readouts.items()}), gates)
    return out


def outer_rank(analysis: Analysis) -> dict[str, int]:
    """Selects nested in one another (``g1 ⊙ (g0 ⊙ c + (1 - g0) ⊙ a) + (1 - g1) ⊙ a``) add up
    to a polynomial symmetric in the gates; draw them nested as the analysis places them: the
    gate whose place holds more other gates is the outer selector (sort key, lower first)."""
    cell, keep = analysis.cell, set(analysis.cell.gates)
    gates = {cell.sym(g) for g in cell.gates}
    return {sw.gate: -max((len(cell.inline(p.term, keep=keep).free_symbols & gates)
                           for p in sw.where), default=0) for sw in analysis.switches}


def build_circuit(analysis: Analysis) -> Circuit:
    """Read an analysed cell into a :class:`Circuit`: one tree per memory state, readouts
    substituted as the analysis does (LSTM: ``h_{t-1} → o ⊙ tanh(c_{t-1})``), then one tree per
    readout that never feeds back (or holds a gate not drawn yet), reading the new memory.

    Raises :class:`~.readback.DiagramMismatch` if a tree does not read back as the expression
    it was read from (biases aside): the drawing must compute the cell."""
    cell = analysis.cell
    require_vector_cell(cell, "the diagram")
    memory = list(analysis.memory_states)
    exprs = drawn_expressions(analysis)
    shown = {g for e in exprs.values() for g in analysis.gates if sympy.Symbol(g) in e.free_symbols}
    exprs.update(drawn_readouts(analysis, shown))
    used = set().union(*(e.free_symbols for e in exprs.values())) if exprs else set()
    used_names = {str(s) for s in used}
    states = [s for s in cell.states if s in memory or s in used_names]
    new = [f"{m}'" for m in memory if f"{m}'" in used_names]
    sources = states + new + [x for x in cell.inputs if x in used_names]
    reader = _Reader(cell, sources, outer_rank(analysis))
    roots = {m: reader.read(e) for m, e in exprs.items()}
    circuit = Circuit(cell, roots, sources, analysis, [], exprs)
    drawn = {p.gate for p in circuit.switches()}
    circuit.gates = [g for g in cell.gates if g in drawn]
    check_circuit(circuit)  # a drawing that does not compute the cell is refused, never shown
    return circuit
