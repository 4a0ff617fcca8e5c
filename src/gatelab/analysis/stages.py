"""Stage 3: a 0/1 setting of the gates, reduced to its simplest form (one *mode*).

Starting from the stage-2 updates (gates are scalars that factor out of the linear maps), the
gates in the setting are replaced by 0 or 1 and the updates simplify: GRU at ``z = 1`` gives
``h' = h``. Gates left out of a partial setting stay free symbols. The previous step's gates
(``o_prev``, introduced by the memory rewrite) follow their gate: a setting holds at every step.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product

import sympy

from .kinds import KindInfo, classify
from .memory import Memory
from .paths import Gradient, gradient
from .symbols import AnalysisError, clean, tex, txt

MAX_GATES = 10  # 2**10 = 1024 modes; beyond that, ask for specific settings
# Every search over settings (all modes in `analyze`, the hold setting of `grad flow --set
# hold`, the diagram's modes) spends from one budget: at most this many reductions and seconds.
MAX_REDUCTIONS = 4096
MAX_SECONDS = 20.0


class Budget:
    """A bound on a search over gate settings: :meth:`spend` before each reduction raises
    :class:`AnalysisError` once ``reductions`` were spent or ``seconds`` have passed, so a
    many-gate or very long cell ends with a clear message instead of running for hours.

    >>> b = Budget("demo", reductions=1)
    >>> b.spend(); b.spend()  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    AnalysisError: demo: stopped after 1 reductions
    """

    def __init__(self, what: str, reductions: int = MAX_REDUCTIONS,
                 seconds: float = MAX_SECONDS) -> None:
        self.what, self.limit, self.seconds = what, reductions, seconds
        self.spent = 0
        self.deadline = time.monotonic() + seconds

    def spend(self) -> None:
        if self.spent >= self.limit or time.monotonic() > self.deadline:
            raise AnalysisError(f"{self.what}: stopped after {self.spent} reductions (the budget "
                                f"is {self.limit} reductions or {self.seconds:g} s); ask for "
                                "specific settings with --set")
        self.spent += 1


@dataclass
class Mode:
    """One gate setting and what the cell reduces to under it.

    ``updates``: every state's reduced update (memory states in memory states; readouts in the
    new memory ``m'``). ``kinds``/``gradients``: per memory state.
    """

    gates: dict[str, int]
    updates: dict[str, sympy.Expr]
    kinds: dict[str, KindInfo]
    gradients: dict[str, Gradient]
    note: str
    free_gates: tuple[str, ...] = field(default_factory=tuple)
    lead: frozenset[str] = frozenset()  # gate names, printed first in products: f ⊙ c
    via: dict[str, dict[str, str]] = field(default_factory=dict)  # state -> {readout: previous}

    @property
    def kind(self) -> dict[str, str]:
        return {s: k.kind for s, k in self.kinds.items()}

    @property
    def identity_path(self) -> dict[str, bool]:
        return {s: g.identity_path for s, g in self.gradients.items()}

    @property
    def label(self) -> str:
        """``i=1, f=0, o=1``."""
        return ", ".join(f"{g}={v}" for g, v in self.gates.items()) or "(no gates)"

    def to_dict(self) -> dict:
        """The JSON of one mode (see docs/analysis.md)."""
        details = {}
        for s, k in self.kinds.items():
            d = {"description": k.description, "depends_on": list(k.depends_on)}
            if k.rnn is not None:
                d["rnn"] = k.rnn.to_dict(s, self.lead)
                d["via"] = dict(self.via.get(s, {}))
            details[s] = d
        return {
            "gates": dict(self.gates),
            "free_gates": list(self.free_gates),
            "updates": {s: txt(e, self.lead) for s, e in self.updates.items()},
            "updates_latex": {s: tex(e) for s, e in self.updates.items()},
            "kind": self.kind,
            "identity_path": self.identity_path,
            "gradient": {s: g.text() for s, g in self.gradients.items()},
            "direct_gain": {s: txt(g.gain, self.lead) for s, g in self.gradients.items()},
            "details": details,
            "note": self.note,
        }


def _check_gate(name: str, gates: Sequence[str]) -> None:
    if name not in gates:
        known = ", ".join(gates) if gates else "none: this cell has no gates"
        raise AnalysisError(f"unknown gate {name!r}; the cell's gates are {known}")


def check_setting(setting: Mapping[str, object], gates: tuple[str, ...]) -> dict[str, int]:
    """Validate ``{"f": 1, "i": 0}``: known gates (in cell order), values 0 or 1."""
    out: dict[str, int] = {}
    for name, value in setting.items():
        _check_gate(name, gates)
        if isinstance(value, str):
            value = value.strip()
        if value not in (0, 1, "0", "1"):
            raise AnalysisError(f"gate {name} = {value!r}: a switch setting is 0 or 1")
        out[name] = int(value)
    return {g: out[g] for g in gates if g in out}


def read_setting(text: str, gates: Sequence[str]) -> dict[str, str]:
    """The ``--set`` syntax of every command: ``"f=1, i=0"`` -> ``{"f": "1", "i": "0"}``.

    Pairs come in the order written; each gate must be one of ``gates`` and appear once. Values
    stay text for the caller to check: :func:`parse_setting` takes 0/1, ``gatelab grad flow``
    also fractions.

    >>> read_setting("f=1,f=0", ("f",))
    Traceback (most recent call last):
    ...
    gatelab.analysis.symbols.AnalysisError: gate f is set twice: f=1 and f=0
    """
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = (s.strip() for s in part.partition("="))
        if not eq or not name:
            raise AnalysisError(f"cannot read {part!r}; write gate=0 or gate=1, e.g. f=1,i=0")
        _check_gate(name, gates)
        if name in pairs:
            raise AnalysisError(f"gate {name} is set twice: {name}={pairs[name]} and "
                                f"{name}={value}")
        pairs[name] = value
    return pairs


def parse_setting(text: str, gates: tuple[str, ...]) -> dict[str, int]:
    """``"f=1,i=0"`` -> ``{"i": 0, "f": 1}`` (cell order), with clear errors."""
    return check_setting(read_setting(text, gates), gates)


def all_settings(gates: tuple[str, ...]) -> list[dict[str, int]]:
    """Every 0/1 setting, gates in cell order, settings in binary order (first gate = MSB)."""
    if len(gates) > MAX_GATES:
        raise AnalysisError(
            f"{len(gates)} gates make {2 ** len(gates)} settings; stage 3 enumerates at most "
            f"{MAX_GATES} gates ({2 ** MAX_GATES} modes). Ask for specific settings instead "
            "(reduce_setting, or --set g=0,h=1)")
    return [dict(zip(gates, bits, strict=True)) for bits in product((0, 1), repeat=len(gates))]


def reduce(memory: Memory, stage2: dict[str, sympy.Expr], gates: tuple[str, ...],
           setting: dict[str, int]) -> Mode:
    """Reduce the stage-2 updates under a (validated, possibly partial) setting."""
    subs: dict[sympy.Symbol, sympy.Integer] = {}
    for g, v in setting.items():
        subs[sympy.Symbol(g)] = sympy.Integer(v)
        if g in memory.prev_gates:
            subs[memory.prev_gates[g]] = sympy.Integer(v)
    free = tuple(g for g in gates if g not in setting)
    scalars = {sympy.Symbol(g) for g in free}
    scalars |= {p for g, p in memory.prev_gates.items() if g in free}
    updates = {s: clean(e.xreplace(subs)) for s, e in stage2.items()}
    kinds, grads = {}, {}
    for m in memory.memory_states:
        kinds[m] = classify(updates[m], m, memory.memory_states, scalars)
        grads[m] = gradient(updates[m], sympy.Symbol(m), scalars)
    lead = frozenset(gates) | frozenset(p.name for p in memory.prev_gates.values())
    via = {m: {r: txt(memory.readouts[r].previous, lead) for r in memory.via.get(m, ())}
           for m in memory.memory_states}
    mode = Mode(dict(setting), updates, kinds, grads, "", free, lead, via)
    mode.note = _note(mode, memory, setting)
    return mode


def _note(mode: Mode, memory: Memory, setting: dict[str, int]) -> str:
    """Plain-words summary of a mode, generated from its results."""
    parts = []
    for m, k in mode.kinds.items():
        text = f"{m}' = {txt(mode.updates[m], mode.lead)} ({k.kind}: {k.description})"
        via = memory.via.get(m, ())
        if via and k.kind in ("rnn", "residual_rnn"):
            text += " (via " + ", ".join(
                f"{r} = {txt(memory.readouts[r].previous, mode.lead)}" for r in via) + ")"
        g = mode.gradients[m]
        if g.identity_path:
            text += f"; identity path {m} → {m}' (∂{m}'/∂{m} = I + …, no weight on it)"
        elif g.gain != 0:
            text += (f"; direct path gain {txt(g.gain, mode.lead)} "
                     "(no weight on it, but not the identity)")
        parts.append(text)
    for r, ro in memory.readouts.items():
        reads = f"reads out {', '.join(ro.of)}" if ro.of else "copies gate values"
        parts.append(f"{r}' = {txt(mode.updates[r], mode.lead)} (readout: {reads})")
    held = [f"{p.name} = {setting[g]}" for g, p in memory.prev_gates.items() if g in setting]
    if held:
        parts.append("the previous step's gates are held at the same setting: " + ", ".join(held))
    if mode.free_gates:
        parts.append("free gates (not set): " + ", ".join(mode.free_gates))
    return "; ".join(parts)
