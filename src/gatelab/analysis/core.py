"""The shared computing core and scan-parallelism.

**Core** (the article's red box): in each memory state's stage-1 update, the block made of
linear maps of the input and of the state, plus the nonlinearity around them. For LSTM's ``c``::

    tanh(W_g·x + U_g·(o_prev ⊙ tanh(c)) + b_g)    act tanh, input map W_g, recurrent map U_g,
                                                  c enters through o_prev ⊙ tanh(c)

Gates are not part of the core (stage 1 takes them as given).

**Scan-parallel**: no gate reads a state (a readout holding a function of the previous input,
such as QRNN's ``x_{t-1}``, is the input), and every memory state's update, with gates and lets
fully inlined and readouts rewritten one step earlier, is affine in the previous memory with
coefficients that do not depend on it (``h' = a(x) ⊙ h + b(x)``, as in minGRU; QRNN's
``c' = f ⊙ c + (1 - f) ⊙ z`` with the readout ``h' = o ⊙ c'``). Coefficients may read the
previous step's gates (``o_prev``): gates are functions of the input then. Such a recurrence is
linear and a parallel scan computes it; this is the engine's definition too
(:mod:`gatelab.engine.scan_cells`).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..cell.functions import MatVec, function_name, layer_norm
from ..cell.ir import Cell
from .kinds import linear_term, map_label
from .memory import Memory
from .symbols import tex, txt


@dataclass(frozen=True)
class CoreBlock:
    """``act(pre)`` with its linear maps split into input maps and recurrent maps (a matrix
    name, or ``diag(u)`` for an elementwise ``u ⊙ h``); ``biases``: the vectors added alone."""

    act: str
    expr: sympy.Expr
    input_maps: tuple[str, ...]
    recurrent_maps: tuple[str, ...]
    through: tuple[sympy.Expr, ...]
    biases: tuple[str, ...]

    def to_dict(self, lead: frozenset[str] = frozenset()) -> dict:
        return {"act": self.act, "expr": txt(self.expr, lead), "latex": tex(self.expr),
                "input_maps": list(self.input_maps),
                "recurrent_maps": list(self.recurrent_maps),
                "through": [txt(t, lead) for t in self.through], "biases": list(self.biases)}


def _diagonal(arg: sympy.Expr, states: set[sympy.Symbol], scalars: set[sympy.Symbol]
              ) -> list[tuple[sympy.Expr, sympy.Expr]]:
    """The diagonal recurrent maps in a sum: terms ``u ⊙ g(s)`` as ``(u, g(s))``."""
    out = []
    for t in sympy.Add.make_args(arg):
        found = linear_term(t, states, scalars) if t.free_symbols & states else None
        if found is not None and found[1] is None:
            out.append((found[0], found[2]))
    return out


def _blocks(expr: sympy.Expr, recurrent_syms: set[sympy.Symbol], vectors: set[sympy.Symbol],
            scalars: set[sympy.Symbol]) -> list[CoreBlock]:
    """Outermost functions whose argument holds a linear map (a matrix, or an elementwise
    ``u ⊙ h``: the diagonal map ``diag(u)``); loose maps form identity blocks."""
    found: list[tuple[str, sympy.Expr]] = []

    def linear(e: sympy.Expr) -> bool:
        return e.has(MatVec) or bool(_diagonal(e, recurrent_syms, scalars))

    def visit(e: sympy.Expr) -> None:
        fname = function_name(e)
        if fname is not None and linear(e.args[0]):
            found.append((fname, e))
        elif isinstance(e, MatVec) or isinstance(e, sympy.Add) and (any(
                isinstance(f, MatVec) for a in e.args for f in sympy.Mul.make_args(a))
                or _diagonal(e, recurrent_syms, scalars)):
            found.append(("identity", e))  # linear maps with no nonlinearity around them
        else:
            for a in e.args:
                visit(a)

    visit(expr)
    out = []
    # dict.fromkeys: a block written twice (GRU as n + z ⊙ (h - n)) is one block
    for act, e in dict.fromkeys(found):
        arg = e.args[0] if act != "identity" else e
        maps = sorted(e.atoms(MatVec), key=sympy.default_sort_key)
        rec = [m for m in maps if m.vector.free_symbols & recurrent_syms]
        inp = [m for m in maps if m not in rec]
        diag = _diagonal(arg, recurrent_syms, scalars)
        out.append(CoreBlock(
            act, e, tuple(dict.fromkeys(m.matrix.name for m in inp)),
            tuple(dict.fromkeys([m.matrix.name for m in rec]
                                + [map_label(d, None) for d, _ in diag])),
            tuple(dict.fromkeys([m.vector for m in rec] + [t for _, t in diag])),
            tuple(sorted(t.name for t in sympy.Add.make_args(arg) if t in vectors))))
    return out


def find_core(cell: Cell, memory: Memory) -> dict[str, list[CoreBlock]]:
    """Per memory state, the core blocks of its stage-1 update."""
    rec = {cell.sym(s) for s in cell.states} | set(memory.prev_gates.values())
    vectors = {cell.sym(v) for v in cell.vectors}
    scalars = {cell.sym(g) for g in cell.gates} | set(memory.prev_gates.values())
    return {m: _blocks(memory.updates[m], rec, vectors, scalars)
            for m in memory.memory_states}


def scan_parallel(cell: Cell, memory: Memory) -> tuple[bool, list[str]]:
    """Whether the recurrence is affine in the memory with state-free coefficients; reasons."""
    states = {cell.sym(s) for s in cell.states} | set(memory.prev_gates.values())
    rewrite = {cell.sym(r): ro.previous for r, ro in memory.readouts.items()}
    reasons = []
    reads_readout = set()
    for g, e in cell.gates.items():
        inlined = cell.inline(e)
        # A gate may read a readout whose previous value is a function of the input alone
        # (QRNN of width 2: a state holding x_{t-1}); any other state makes it recurrent.
        if inlined.xreplace(rewrite).free_symbols & states:
            reads = sorted(s.name for s in inlined.free_symbols & states)
            reasons.append(f"gate {g} depends on the previous {', '.join(reads)}")
        elif inlined.free_symbols & set(rewrite):
            reads_readout.add(g)
    full = {}
    for m in memory.memory_states:
        full[m] = cell.inline(cell.nexts[m]).xreplace(rewrite)
        for g in sorted(reads_readout):  # g_prev would read the input two steps back
            if memory.prev_gates.get(g) in full[m].free_symbols:
                reasons.append(f"{m}' reads the previous {g}, which reads a previous state: "
                               "two steps back")
    for m, e in full.items():
        in_gates = {mv for g in cell.gates.values() for mv in cell.inline(g).atoms(MatVec)}
        # sorted: a set's order changes from run to run (string hashing), the report must not
        for mv in sorted(e.atoms(MatVec) - in_gates, key=sympy.default_sort_key):
            # maps inside gates are reported with the gate
            if mv.vector.free_symbols & states:
                reasons.append(f"{m}' applies the map {mv.matrix.name} to the previous state "
                               f"({txt(mv)})")
        for ln in sorted(e.atoms(layer_norm), key=sympy.default_sort_key):
            if ln.free_symbols & states:
                reasons.append(f"{m}' normalises a state-dependent vector over the hidden units "
                               f"({txt(ln)}): not elementwise, not affine")
        if any(mv.vector.free_symbols & states for mv in e.atoms(MatVec)) or any(
                ln.free_symbols & states for ln in e.atoms(layer_norm)):
            continue
        for s in memory.memory_states:
            d = sympy.diff(e, cell.sym(s))
            # o_prev in a coefficient is fine: gates read no state (else reported above)
            if d.free_symbols & {cell.sym(m) for m in cell.states}:
                reasons.append(f"{m}' is not linear in {s} (∂{m}'/∂{s} = {txt(d)})")
    reasons = list(dict.fromkeys(reasons))
    return (not reasons), reasons
