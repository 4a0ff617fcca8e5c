"""Compare two cells through their switches: is one the other with gates ganged?

The article's closing exercise (docs/design.md, "The article", point 6) asks what MGU is.
Matching MGU's switch places against GRU's (same definition, same switch type) says which GRU
gate each contact plays, and whether with the same or the reversed sense (``z = 1 - f``).
Substituting that ganging into the reference cell's stage-1 updates and comparing symbolically
checks the claim exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .analyze import Analysis


@dataclass(frozen=True)
class Ganging:
    """``ref_gate -> expression in the target's gates`` and whether the substitution is exact."""

    target: str
    reference: str
    mapping: dict[str, sympy.Expr]
    # (target gate, place, reference gate, "same" or "reversed")
    roles: list[tuple[str, str, str, str]]
    exact: bool


def find_ganging(target: Analysis, reference: Analysis) -> Ganging | None:
    """How ``target``'s gates play ``reference``'s gates, or None if some place has no match."""
    mapping: dict[str, sympy.Expr] = {}
    roles = []
    for sw in target.switches:
        g = sympy.Symbol(sw.gate)
        for p in sw.where:
            match = None
            for rsw in reference.switches:
                for q in rsw.where:
                    if (q.in_name, q.in_kind, q.type) != (p.in_name, p.in_kind, p.type):
                        continue
                    if q.signals == p.signals:
                        match = (rsw.gate, "same", g)
                    elif q.type == "spdt" and q.signals == p.signals[::-1]:
                        match = (rsw.gate, "reversed", 1 - g)
            if match is None:
                return None
            ref_gate, sense, expr = match
            if mapping.get(ref_gate, expr) != expr:
                return None
            mapping[ref_gate] = expr
            roles.append((sw.gate, f"{p.type} in {p.in_name}", ref_gate, sense))
    if set(mapping) != set(reference.gates):
        return None
    subs = {sympy.Symbol(k): v for k, v in mapping.items()}
    exact = set(target.cell.states) == set(reference.cell.states) and all(
        sympy.expand(reference.stage1[s].xreplace(subs) - target.stage1[s]) == 0
        for s in target.cell.states)
    return Ganging(target.cell.name, reference.cell.name, mapping, roles, exact)
