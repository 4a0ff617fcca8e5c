"""Memory states and readouts, found from the equations (never from names).

A state ``r`` is a **readout** when its new value is a function of the gates, the inputs and the
*new* values of other states only, never of a previous state: LSTM's ``h' = o ⊙ tanh(c')`` reads
out the memory ``c``; SRU's ``h' = r ⊙ tanh(c') + (1 - r) ⊙ x`` reads out ``c`` and the input.
Every other state is a **memory state**. A state whose update is made of gates only (FGR's
``pi' = i``) is a readout of the gates: it just carries the previous step's gate values. Whether
the output is written as a state or as a ``let`` does not change the memory: a readout nobody
reads is exactly a ``let`` output.

The cell is then rewritten in terms of its memory states, as the article does for LSTM
(docs/design.md, "The article", point 4): the previous value of a readout is its expression
one step earlier, ``h_{t-1} = o_{t-1} ⊙ tanh(c_{t-1})``. The previous step's gates become new
scalar symbols (``o_prev``); a switch setting holds at every step, so ``o_prev`` takes ``o``'s
value. A readout that reads the input and feeds back is rewritten with the previous input
(``x_prev``), a free vector like the input itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from ..cell.ir import Cell
from .symbols import is_scalar, unique_name


@dataclass(frozen=True)
class Readout:
    """``state' = expr`` with ``expr`` in the gates and the memory states' new values ``m'``.

    ``of``: the memory states it reads (empty for a copy of gate values); ``previous``: the
    state's value at the previous step, in the previous memory and the previous gates.
    """

    state: str
    of: tuple[str, ...]
    expr: sympy.Expr
    previous: sympy.Expr


@dataclass(frozen=True)
class Memory:
    """The cell seen through its memory states (stage 1: gates are free symbols).

    ``original[s]``: every state's update with lets inlined and gates kept as symbols.
    ``updates[s]``: memory states rewritten in memory states only; readouts as ``expr`` in ``m'``.
    ``prev_gates``: gate name -> the symbol of its previous-step value (``o`` -> ``o_prev``).
    ``via[m]``: the readouts whose previous value was substituted into ``m``'s update.
    ``prev_inputs``: input name -> the symbol of its previous-step value (``x`` -> ``x_prev``),
    for readouts that read the input and whose previous value is used.
    """

    memory_states: tuple[str, ...]
    readouts: dict[str, Readout]
    prev_gates: dict[str, sympy.Symbol]
    original: dict[str, sympy.Expr]
    updates: dict[str, sympy.Expr]
    via: dict[str, tuple[str, ...]]
    prev_inputs: dict[str, sympy.Symbol] = field(default_factory=dict)


def new_symbol(state: str) -> sympy.Symbol:
    """The symbol of a state's new value: ``c'``."""
    return sympy.Symbol(f"{state}'")


def _as_readout(expr: sympy.Expr, others: dict[str, sympy.Expr], allowed: set[sympy.Symbol]
                ) -> tuple[sympy.Expr, tuple[str, ...]] | None:
    """``expr`` rewritten in the new values of ``others`` if that leaves only ``allowed`` names
    (and reads at least one of them)."""
    repl = {e: new_symbol(m) for m, e in others.items()}
    for attempt in (lambda: expr.xreplace(repl), lambda: expr.subs(repl)):
        out = attempt()
        used = tuple(m for m in others if new_symbol(m) in out.free_symbols)
        if used and out.free_symbols <= allowed | {new_symbol(m) for m in used}:
            return out, used
    return None


def find_memory(cell: Cell) -> Memory:
    """Split the states into memory states and readouts and rewrite the updates (stage 1)."""
    gates = {cell.sym(g) for g in cell.gates}
    params = {cell.sym(p) for p in cell.params}
    inputs = {cell.sym(x) for x in cell.inputs}
    states = {cell.sym(s) for s in cell.states}
    original = {s: cell.inline(e, keep=set(cell.gates)) for s, e in cell.nexts.items()}
    readouts: dict[str, tuple[sympy.Expr, tuple[str, ...]]] = {}
    gate_only = {s for s, e in original.items()
                 if e.free_symbols and is_scalar(e, gates | params) and e.free_symbols & gates}
    for s in cell.states:
        if s in gate_only:
            readouts[s] = (original[s], ())
            continue
        others = {m: original[m] for m in cell.states
                  if m != s and m not in readouts and m not in gate_only}
        found = _as_readout(original[s], others, gates | params | inputs) if others else None
        if found is not None:
            readouts[s] = found
    # A state computed from the input and gates alone (no previous state, no new memory) is a
    # readout of nothing, as long as some state still carries memory.
    for s in cell.states:
        if s not in readouts and not (original[s].free_symbols & states) and any(
                m not in readouts and m != s for m in cell.states):
            readouts[s] = (original[s], ())
    memory_states = tuple(s for s in cell.states if s not in readouts)
    # A readout may have been written in the new value of a state found to be a readout later
    # (h = o ⊙ c' + (1 - o) ⊙ p' with p' = x): write it in memory, gates and inputs alone.
    # No cycles: a readout only reads states that were not readouts when it was found.
    new_of = {new_symbol(r): e for r, (e, _) in readouts.items()}
    for r, (e, _) in list(readouts.items()):
        for _ in range(len(new_of)):
            if not (e.free_symbols & set(new_of)):
                break
            e = e.xreplace(new_of)
        readouts[r] = (e, tuple(m for m in memory_states if new_symbol(m) in e.free_symbols))

    # The previous step's gates and inputs, for readouts that mention them
    # (h_{t-1} = o_{t-1} tanh(c_{t-1}); SRU: h_{t-1} = ... + (1 - r_{t-1}) x_{t-1}).
    taken = {*cell.inputs, *cell.states, *cell.gates, *cell.lets, *cell.params}
    used = set().union(*(expr.free_symbols for expr, _ in readouts.values()))

    def prev_of(names) -> dict[str, sympy.Symbol]:
        out = {}
        for n in names:
            if cell.sym(n) in used:
                name = unique_name(f"{n}_prev", taken)
                taken.add(name)
                out[n] = sympy.Symbol(name)
        return out

    prev_gates, prev_inputs = prev_of(cell.gates), prev_of(cell.inputs)
    back = {cell.sym(g): p for g, p in (prev_gates | prev_inputs).items()}
    back.update({new_symbol(m): cell.sym(m) for m in memory_states})
    outs = {s: Readout(s, of, expr, expr.xreplace(back)) for s, (expr, of) in readouts.items()}

    rewrite = {cell.sym(r): ro.previous for r, ro in outs.items()}
    updates: dict[str, sympy.Expr] = {}
    via: dict[str, tuple[str, ...]] = {}
    for s in cell.states:
        if s in outs:
            updates[s] = outs[s].expr
        else:
            updates[s] = original[s].xreplace(rewrite)
            via[s] = tuple(r for r in outs if cell.sym(r) in original[s].free_symbols)
    return Memory(memory_states, outs, prev_gates, original, updates, via, prev_inputs)
