"""Gate settings on a circuit: switch positions, live and dead wires, the identity path.

A setting maps gate names to 0 or 1 (the article's third simplification); gates left out stay
symbolic (their switches are drawn in the neutral position and count as possibly closed). Every
full setting, with its kind, is one of the analysis' modes (``analyze(cell).modes``).
"""

from __future__ import annotations

import sympy

from .circuit import Circuit, Part

Setting = dict[str, int]


def setting_text(setting: Setting, gates: list[str]) -> str:
    """``"i=1 f=0 o=1"`` in the cell's gate order."""
    return " ".join(f"{g}={setting[g]}" for g in gates if g in setting)


def switch_value(part: Part, setting: Setting) -> float | None:
    """What a switch multiplies by under ``setting`` (None while a gate in it is unset; NaN for
    an undefined value such as ``f/(f+i)`` at ``f=i=0``). A selector gives its gate's value."""
    if part.kind == "select":
        v = setting.get(part.gate)
        return None if v is None else float(v)
    names = {str(s) for s in part.coef.free_symbols}
    if not names <= set(setting):
        return None
    v = part.coef.xreplace({sympy.Symbol(g): sympy.Integer(setting[g]) for g in names})
    return float(v) if v.is_number and v.is_finite else float("nan")


def live_parts(circuit: Circuit, setting: Setting) -> set[int]:
    """Ids of the parts whose value reaches a drawn state's new value under ``setting``."""
    live: set[int] = set()

    def visit(p: Part) -> None:
        live.add(p.id)
        v = switch_value(p, setting) if p.kind in ("switch", "select") else None
        for i, c in enumerate(p.children):
            if p.kind == "switch" and v == 0:
                continue
            if p.kind == "select" and v is not None and (v == 1) != (i == 0):
                continue
            visit(c)

    for root in circuit.roots.values():
        visit(root)
    return live


def identity_uses(circuit: Circuit, setting: Setting) -> dict[str, list[Part]]:
    """Per drawn state, the uses of its own previous value that reach its new value through
    sums and closed switches only (no weight, no nonlinearity): the identity path(s)."""
    out: dict[str, list[Part]] = {}
    for state, root in circuit.roots.items():
        found = list(_identity_walk(root, state, setting))
        if found:
            out[state] = found
    return out


def _identity_walk(p: Part, state: str, setting: Setting):
    if p.kind == "source":
        if p.name == state:
            yield p
        return
    if p.kind == "sum":
        for c in p.children:
            yield from _identity_walk(c, state, setting)
    elif p.kind in ("switch", "select"):
        v = switch_value(p, setting)
        for i, c in enumerate(p.children):
            through = v == 1 if p.kind == "switch" else (v == 1) == (i == 0)
            if v is None or through:
                yield from _identity_walk(c, state, setting)


def path_ids(circuit: Circuit, leaf: Part) -> set[int]:
    """Ids of a use and of every part from it up to its tree's root."""
    parent = {c.id: p for p in circuit.parts() for c in p.children}
    ids = {leaf.id}
    p = leaf
    while p.id in parent:
        p = parent[p.id]
        ids.add(p.id)
    return ids
