"""``analyze(cell) -> Analysis``: the three simplifications of docs/design.md ("The analysis")
for any cell.

>>> from gatelab import load_cell
>>> a = analyze(load_cell("lstm"))
>>> a.memory_states, list(a.readouts)
(('c',), ['h'])
>>> reduce_setting(a, {"i": 1, "f": 0, "o": 1}).kind
{'c': 'rnn'}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import sympy

from ..cell import Cell, cell_unicode, load_cell
from ..cell.support import require_vector_cell
from .core import CoreBlock, find_core, scan_parallel
from .memory import Memory, find_memory
from .paths import gradient
from .stages import MAX_GATES, Budget, Mode, all_settings, check_setting, reduce
from .switches import Switch, find_switches
from .symbols import AnalysisError, linearize, tex, txt

SCHEMA_VERSION = 1


@dataclass
class Analysis:
    """Everything the analysis derives from one cell (JSON via :meth:`to_dict`).

    ``stage1[s]``/``stage2[s]``: every state's update with gates as free symbols, before and
    after the gates factor out of the linear maps (memory states rewritten in memory states,
    readouts in the new memory ``m'``). ``modes``: every full 0/1 setting, in binary order.
    """

    cell: Cell
    memory: Memory
    gate_reads: dict[str, tuple[str, ...]]
    stage1: dict[str, sympy.Expr]
    stage2: dict[str, sympy.Expr]
    modes: list[Mode]
    switches: list[Switch]
    scan_parallel: bool
    scan_reasons: list[str]
    core: dict[str, list[CoreBlock]]
    modes_skipped: str | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def gates(self) -> tuple[str, ...]:
        return tuple(self.cell.gates)

    @property
    def memory_states(self) -> tuple[str, ...]:
        return self.memory.memory_states

    @property
    def readouts(self) -> dict:
        return self.memory.readouts

    @property
    def scalars(self) -> set[sympy.Symbol]:
        """Gate symbols and previous-step gate symbols: the scalars of stage 2."""
        return {sympy.Symbol(g) for g in self.gates} | set(self.memory.prev_gates.values())

    def mode(self, **setting: int) -> Mode:
        """The mode of a full or partial setting: ``a.mode(f=1)``."""
        return reduce_setting(self, setting)

    def switch(self, gate: str) -> Switch:
        return next(s for s in self.switches if s.gate == gate)

    def _repr_markdown_(self) -> str:
        """The analysis' tables, rendered when an analysis ends a Jupyter cell."""
        from .render import markdown

        return markdown(self)

    def to_dict(self) -> dict:
        """The documented JSON (docs/analysis.md)."""
        c, mem = self.cell, self.memory
        lead = frozenset(c.gates) | frozenset(p.name for p in mem.prev_gates.values())
        direct = {m: gradient(self.stage2[m], sympy.Symbol(m), self.scalars)
                  for m in mem.memory_states}
        return {
            "schema": SCHEMA_VERSION,
            "cell": c.name,
            "title": c.title,
            "equations": cell_unicode(c),
            "inputs": list(c.inputs),
            "gates": list(c.gates),
            "states": list(c.states),
            "memory_states": list(mem.memory_states),
            "readouts": [{"state": r, "of": list(ro.of), "expr": txt(ro.expr, lead),
                          "latex": tex(ro.expr), "previous": txt(ro.previous, lead)}
                         for r, ro in mem.readouts.items()],
            "prev_gates": {g: p.name for g, p in mem.prev_gates.items()},
            "stages": {
                "1": {
                    "description": "gates are free symbols (where they come from is ignored); "
                                   "readouts are rewritten in terms of the memory states",
                    "gates": [{"name": g, "expr": txt(c.gates[g]), "latex": tex(c.gates[g]),
                               "depends_on_state": bool(self.gate_reads[g]),
                               "reads": list(self.gate_reads[g])} for g in c.gates],
                    "rewrite": {r: txt(ro.previous, lead) for r, ro in mem.readouts.items()},
                    "updates": {s: txt(e, lead) for s, e in self.stage1.items()},
                    "updates_latex": {s: tex(e) for s, e in self.stage1.items()},
                },
                "2": {
                    "description": "each gate is a scalar, so it factors out of linear maps: "
                                   "W·(f ⊙ h) = f ⊙ (W·h)",
                    "updates": {s: txt(e, lead) for s, e in self.stage2.items()},
                    "updates_latex": {s: tex(e) for s, e in self.stage2.items()},
                    "gradient": {m: g.text() for m, g in direct.items()},
                    "direct_gain": {m: txt(g.gain, lead) for m, g in direct.items()},
                },
                "3": {
                    "description": "each gate is a 0/1 switch: every setting, reduced",
                    "count": len(self.modes),
                    "skipped": self.modes_skipped,
                },
            },
            "modes": [m.to_dict() for m in self.modes],
            "modes_skipped": self.modes_skipped,
            "switches": [s.to_dict() for s in self.switches],
            "scan_parallel": self.scan_parallel,
            "scan_parallel_reasons": self.scan_reasons,
            "engine": _engine_path(self.cell),
            "core": {m: [b.to_dict(lead) for b in blocks] for m, blocks in self.core.items()},
        }


def _engine_path(cell: Cell) -> dict:
    from ..engine.route import describe  # the engine's one route, stated by the engine

    return describe(cell)


def analyze(cell: Cell | str) -> Analysis:
    """Run the three simplifications on a cell (a :class:`Cell`, a zoo name or a path).

    Cached per cell (cells are immutable and hash by their equations).
    """
    return _analyze(load_cell(cell))


@lru_cache(maxsize=64)
def _analyze(cell: Cell) -> Analysis:
    require_vector_cell(cell, "the analysis (analyze, diagram, explain)", AnalysisError)
    memory = find_memory(cell)
    # Stage 1 sets the gates aside; remember which of them read the previous state.
    gate_reads = {g: tuple(s for s in cell.states if cell.sym(s) in cell.inline(e).free_symbols)
                  for g, e in cell.gates.items()}
    scalars = {cell.sym(g) for g in cell.gates} | set(memory.prev_gates.values())
    stage2 = {s: linearize(e, scalars) for s, e in memory.updates.items()}
    sp, reasons = scan_parallel(cell, memory)
    a = Analysis(cell, memory, gate_reads, dict(memory.updates), stage2, [],
                 find_switches(cell), sp, reasons, find_core(cell, memory))
    budget = Budget(f"stage 3 of {cell.name}")
    try:
        for s in all_settings(tuple(cell.gates)):
            budget.spend()
            a.modes.append(reduce(memory, stage2, a.gates, s))
    except AnalysisError as e:  # too many gates, or the budget ran out: no partial mode list
        a.modes_skipped = str(e)
        a.modes = []
    for m in a.modes:
        a._cache[tuple(sorted(m.gates.items()))] = m
    return a


def reduce_setting(cell_or_analysis: Analysis | Cell | str, setting: Mapping[str, object]
                   ) -> Mode:
    """The mode of any 0/1 setting, full or partial: ``reduce_setting("lstm", {"f": 1})``.

    Raises :class:`AnalysisError` for an unknown gate or a value other than 0/1.
    """
    a = cell_or_analysis if isinstance(cell_or_analysis, Analysis) else analyze(cell_or_analysis)
    checked = check_setting(setting, a.gates)
    key = tuple(sorted(checked.items()))
    if key not in a._cache:
        a._cache[key] = reduce(a.memory, a.stage2, a.gates, checked)
    return a._cache[key]


__all__ = ["MAX_GATES", "Analysis", "AnalysisError", "analyze", "reduce_setting"]
