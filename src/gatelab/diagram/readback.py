"""Reading a drawing back: the expression a circuit computes, checked against the cell's.

Every part of a circuit stands for an operation (``Part.value`` holds what it needs besides its
children), so a tree reads back as a SymPy expression::

    source  its signal           const   its value           map     W @ child
    func    value(*children)     sum     Σ children          product Π children
    scale   value ⊙ child        switch  coef ⊙ child        select  g ⊙ a + (1 - g) ⊙ b

plus the biases the drawing leaves out (``Part.bias``, as the article's pictures do). A drawing
*computes the cell* when that expression equals the one the circuit was read from (the stage-1
update of each drawn state, gates as 0/1 switches). :func:`check_circuit` tests this numerically
on random values, with the cell's own reference evaluator (:func:`gatelab.cell.evaluate.evaluate`):
signals are random vectors, matrices random matrices, gates random 0/1 switches. A circuit that
fails is refused (:class:`DiagramMismatch`): a wrong drawing is never shown.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import sympy
import torch

from ..analysis.canon import canonical, reduce_powers
from ..cell.evaluate import evaluate
from ..cell.functions import MatVec
from ..errors import GatelabError

if TYPE_CHECKING:
    from .circuit import Circuit, Part

SAMPLES = 48  # random points per check; every gate takes both values among them
WIDTH = 3  # units per vector: enough for a matrix to mix them


class DiagramMismatch(GatelabError, ArithmeticError):
    """The drawing of a cell does not compute the cell (a reading the diagram got wrong)."""


def readback(p: Part, biases: bool = True) -> sympy.Expr:
    """The expression ``p``'s tree computes; ``biases=False``: as drawn, biases left out."""
    kids = [readback(c, biases) for c in p.children]
    if p.kind == "source":
        out = sympy.Symbol(p.name)
    elif p.kind == "const":
        out = p.value
    elif p.kind == "map":
        out = MatVec(p.value, kids[0])
    elif p.kind == "func":
        out = p.value(*kids)
    elif p.kind == "sum":
        out = sympy.Add(*kids)
    elif p.kind == "product":
        out = sympy.Mul(*kids)
    elif p.kind == "scale":
        out = p.value * kids[0]
    elif p.kind == "switch":
        out = p.coef * kids[0]
    elif p.kind == "select":
        g = sympy.Symbol(p.gate)
        out = g * kids[0] + (1 - g) * kids[1]
    else:
        raise ValueError(f"unknown part kind {p.kind!r}")
    return out + p.bias if biases else out


def _env(exprs: list[sympy.Expr], switches: set[str], g: torch.Generator, low: float
         ) -> dict[str, torch.Tensor]:
    """Random values for every name in ``exprs``: ``(SAMPLES, WIDTH)`` float64 vectors in
    ``[low, 1]``, ``(WIDTH, WIDTH)`` matrices, 0/1 switches (one value per sample, every
    unit)."""
    matrices = {m.matrix.name for e in exprs for m in e.atoms(MatVec)}
    names = {s.name for e in exprs for s in e.free_symbols} - matrices
    env: dict[str, torch.Tensor] = {_ONES.name: torch.ones(SAMPLES, WIDTH, dtype=torch.float64)}
    for n in sorted(matrices):
        env[n] = torch.randn(WIDTH, WIDTH, generator=g, dtype=torch.float64) / math.sqrt(WIDTH)
    for n in sorted(names):
        if n in switches:
            bits = torch.randint(0, 2, (SAMPLES, 1), generator=g).double()
            env[n] = bits.expand(SAMPLES, WIDTH)
        else:
            env[n] = low + torch.rand(SAMPLES, WIDTH, generator=g, dtype=torch.float64) * (1 - low)
    return env


_ONES = sympy.Dummy("ones")  # a vector of ones: ``W @ 1`` maps a vector, not the number


def _value(e: sympy.Expr, env: dict[str, torch.Tensor]) -> torch.Tensor:
    e = e.xreplace({m: MatVec(m.matrix, m.vector * _ONES) for m in e.atoms(MatVec)
                    if not m.vector.free_symbols})
    v = evaluate(e, env)
    return v if torch.is_tensor(v) else torch.full((SAMPLES, WIDTH), float(v),
                                                   dtype=torch.float64)


def same_function(drawn: sympy.Expr, cell: sympy.Expr, switches: set[str], seed: int = 0
                  ) -> bool:
    """Whether ``drawn`` computes ``cell``: the same canonical form (:mod:`..analysis.canon`),
    else the same values at random points (``switches`` at 0/1) wherever the cell's value is
    finite: ``0 ⊙ log(v)`` is NaN for a negative ``v`` in the cell but 0 in a
    drawing that left the switched-off ``log`` out. Values in [-1, 1] first, then in
    [0.1, 1] (inside sqrt's and log's domain) if the cell is nowhere finite on the first."""
    gates = {sympy.Symbol(n) for n in switches}
    if drawn == cell or canonical(drawn, gates) == canonical(cell, gates):
        return True
    g = torch.Generator().manual_seed(seed)
    for low in (-1.0, 0.1):
        env = _env([drawn, cell], switches, g, low)
        try:
            a, b = _value(drawn, env), _value(cell, env)
        except (TypeError, ValueError, RuntimeError):
            break  # not a tensor expression (``zoo``, a symbolic power): compare symbolically
        finite = torch.isfinite(b)
        if bool(finite.any()):
            # rounding grows with the size of what cancels: tolerate it relative to the values
            scale = 1 + float(b[finite].abs().max())
            return bool(torch.allclose(a[finite], b[finite], rtol=1e-9, atol=1e-9 * scale))
    return reduce_powers(sympy.expand(drawn - cell), gates) == 0


def check_circuit(circuit: Circuit) -> None:
    """Refuse a circuit whose trees do not compute what they were read from."""
    switches = set(circuit.cell.gates) | {
        p.name for p in circuit.analysis.memory.prev_gates.values()}
    for name, root in circuit.roots.items():
        want = circuit.exprs[name]
        if not same_function(readback(root), want, switches):
            raise DiagramMismatch(
                f"cell {circuit.cell.name!r}: the drawing of {name}' would not compute the "
                f"cell (it reads back as {readback(root)}, the cell has {want}); refused "
                "rather than drawn wrong. Please report this cell; `gatelab analyze` still "
                "reads it")
