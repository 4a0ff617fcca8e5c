"""Split one step of a cell into GEMMs and pointwise functions, from its equations.

For LSTM the plan is: before the loop ``Gx = x @ weight_ih.T + bias_ih`` for all steps (one GEMM);
per step one GEMM ``Z = Gx[t] + h @ weight_hh.T + bias_hh`` (the input part is added in the same
``addmm`` because every ``W_* @ x`` only appears summed with its ``U_* @ h``), then one pointwise
function ``(Z, c) -> (h', c')``. For MGU the vector of ``U_n @ (f*h)`` needs ``f`` first, so a step
has two GEMM stages with a pointwise "prepare" function between them::

    stage 0:  A0 = Gx[t, f rows] + h @ U_f.T             (addmm)
    prepare:  v1 = sigmoid(A0) * h                        (pointwise)
    stage 1:  A1 = Gx[t, n rows] + v1 @ U_n.T             (addmm)
    final:    h' = (1 - sigmoid(A0)) * h + sigmoid(A0) * tanh(A1)

Symbols of the pointwise functions: ``x_<W>`` (input pre-activation of matrix W, bias part
included), ``a_<U>`` (recurrent GEMM result), ``z_<U>`` (both, fused by ``addmm``), the previous
states (``s_<name>``) and standalone vectors (``p_<name>``). Names are rebuilt from the validated
IR, never taken from text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import sympy

from ..cell.functions import MatVec
from ..cell.ir import Cell
from .layout import EngineError, Layout


@dataclass
class Group:
    """One recurrent GEMM: ``A = [Gx[t, ih_rows] +] vector @ weight_hh[rows].T [+ bias_hh[rows]]``.

    ``rows``/``ih_rows`` are in units of H (block indices); ``ih_rows`` is set when fused.
    ``symbols``: one per matrix (``a_U`` or ``z_U``), the H-wide column blocks of ``A``.
    """

    vector: sympy.Expr
    matrices: list[str]
    rows: tuple[int, int]
    symbols: list[sympy.Symbol]
    stage: int = 0
    ih_rows: tuple[int, int] | None = None


@dataclass
class Plan:
    """A step as GEMM stages and pointwise functions (see the module docstring).

    Attributes:
        states: previous-state symbols, in cell state order.
        xsyms: symbol per ``weight_ih`` block that the pointwise part reads (None when fused),
            then one per hidden-size input read as itself (``x_<x>_itself``; see
            :func:`identity_blocks`).
        vectors: standalone vector symbols ``p_<name>`` (broadcast ``(H,)`` inputs).
        groups: recurrent GEMMs in evaluation order; ``group.stage`` says when they run.
        nexts: new value of each state (cell order); ``output``: the emitted expression.
    """

    layout: Layout
    bias: bool
    states: list[sympy.Symbol]
    xsyms: list[sympy.Symbol | None]
    vectors: list[sympy.Symbol]
    groups: list[Group]
    nexts: list[sympy.Expr]
    output: sympy.Expr
    vector_names: list[str] = field(default_factory=list)

    @property
    def output_index(self) -> int | None:
        """Index of the state the output is (None when the output is a gate or let)."""
        for i, e in enumerate(self.nexts):
            if e == self.output and self.layout.cell.states[i] == self.layout.cell.output:
                return i
        return None

    @classmethod
    def of(cls, layout: Layout, bias: bool = True) -> Plan:
        cell = layout.cell
        subs: dict[sympy.Expr, sympy.Expr] = {}
        states = [sympy.Symbol(f"s_{s}") for s in cell.states]
        subs.update({Cell.sym(s): st for s, st in zip(cell.states, states, strict=True)})
        xs = {w: sympy.Symbol(f"x_{w}") for w in layout.ih}
        # An input of the hidden size read as itself (`input x : hidden`, a highway term) is
        # one more block of Gx: run_fused appends an identity to weight_ih for it.
        raw = {x: sympy.Symbol(f"x_{x}_itself") for x in cell.hidden_inputs}
        subs.update({Cell.sym(x): r for x, r in raw.items()})
        vec_names = [v for v in layout.standalone if bias or v not in layout.biases]
        vectors = [sympy.Symbol(f"p_{v}") for v in vec_names]
        subs.update({Cell.sym(v): p for v, p in zip(vec_names, vectors, strict=True)})
        # Paired biases live inside the GEMMs; switched-off biases are zero.
        for b in cell.vectors:
            if b in layout.pairs or (not bias and b in layout.biases):
                subs[Cell.sym(b)] = sympy.Integer(0)
        as_ = {w: sympy.Symbol(f"a_{w}") for w in layout.hh}

        def lower(e: sympy.Expr) -> sympy.Expr:
            e = cell.inline(e)
            mv = {m: (xs[m.matrix.name] if m.matrix.name in xs else as_[m.matrix.name])
                  for m in e.atoms(MatVec)}
            # Replace innermost first: a vector may itself contain a MatVec (U @ (r*h)).
            e = e.xreplace({m: v for m, v in mv.items()})
            return e.xreplace(subs)

        nexts = [lower(cell.nexts[s]) for s in cell.states]
        output = lower(cell.definition(cell.output) if cell.output not in cell.states
                       else cell.nexts[cell.output])
        groups, row = [], 0
        for vector, mats in layout.groups:
            v = lower(vector)
            groups.append(Group(v, list(mats), (row, row + len(mats)),
                                [as_[m] for m in mats]))
            row += len(mats)
        changed = True  # stage = 1 + the latest stage whose results the vector reads
        while changed:
            changed = False
            for g in groups:
                need = [h.stage + 1 for h in groups if set(h.symbols) & g.vector.free_symbols]
                st = max(need, default=0)
                if st != g.stage:
                    g.stage, changed = st, True
        groups.sort(key=lambda g: g.stage)
        plan = cls(layout, bias, states, [*(xs[w] for w in layout.ih), *raw.values()],
                   vectors, groups, nexts,
                   output, vec_names)
        plan._fuse()
        return plan

    def exprs(self) -> list[sympy.Expr]:
        """Every expression the pointwise part computes (nexts, output, group vectors)."""
        return [*self.nexts, self.output, *(g.vector for g in self.groups)]

    def _fuse(self) -> None:
        """Add ``Gx[t]`` into a group's GEMM (``addmm``) where each ``a_U`` only ever appears as
        ``a_U + x_W`` and the ``W`` blocks are contiguous in the same order."""
        for g in self.groups:
            partners = []
            for a in g.symbols:
                found = None
                for k, x in enumerate(self.xsyms):
                    if x is None:
                        continue
                    z = sympy.Symbol("z_tmp")
                    trial = [e.xreplace({a: z - x}) for e in self.exprs()]
                    if all(x not in e.free_symbols for e in trial):
                        found = k
                        break
                partners.append(found)
            if None in partners:
                continue
            k0 = partners[0]
            if partners != list(range(k0, k0 + len(partners))):
                continue
            zs = [sympy.Symbol(f"z_{m}") for m in g.matrices]
            for a, k, z in zip(g.symbols, partners, zs, strict=True):
                x = self.xsyms[k]
                rep = {a: z - x}
                self.nexts = [e.xreplace(rep) for e in self.nexts]
                self.output = self.output.xreplace(rep)
                for h in self.groups:
                    h.vector = h.vector.xreplace(rep)
                self.xsyms[k] = None
            g.symbols, g.ih_rows = zs, (k0, k0 + len(partners))


def uses_layer_norm(cell: Cell) -> bool:
    """Whether any gate, let or update normalises over the hidden units (``layer_norm``)."""
    from ..cell.functions import layer_norm

    return any(e.has(layer_norm) for e in (*cell.gates.values(), *cell.lets.values(),
                                           *cell.nexts.values()))


def linear_recurrence(plan: Plan) -> tuple[sympy.Expr, sympy.Expr] | None:
    """``(a, b)`` when the cell is scan-parallel: one state ``s``, emitted as the output, no
    recurrent GEMM, and ``s' = a * s + b`` with neither ``a`` nor ``b`` depending on ``s`` (no gate
    or candidate reads the state). Expressions in the plan's symbols. None otherwise."""
    cell = plan.layout.cell
    if len(plan.states) != 1 or plan.groups or plan.output_index != 0:
        return None
    (s,) = plan.states
    e = plan.nexts[0]
    a = sympy.diff(e, s)
    if s in a.free_symbols:
        return None
    b = e.xreplace({s: sympy.Integer(0)})
    if s in b.free_symbols or not cell.nexts:
        return None
    return sympy.simplify(a), sympy.simplify(b)


@dataclass
class ScanFunctions:
    """The pointwise part of a scan-parallel cell: ``fwd(*inputs) -> (a, b)`` and its generated
    vector-Jacobian product ``bwd(*inputs, da, db) -> grads of wrt``; ``inputs`` are the input
    blocks ``x_<W>`` then the standalone vectors."""

    plan: Plan
    inputs: list[sympy.Symbol]
    fwd: object
    bwd: object
    wrt: list[sympy.Symbol]


@lru_cache(maxsize=256)
def scan_functions(cell: Cell, bias: bool = True, compiler: str = "torch") -> ScanFunctions:
    """Compile the ``a``, ``b`` of ``h' = a*h + b`` for a scan-parallel cell. Raises
    :class:`EngineError` when the cell is not scan-parallel."""
    from .pointwise import compile_many, vjp

    plan = Plan.of(Layout.of(cell), bias)
    ab = linear_recurrence(plan)
    if ab is None:
        raise EngineError(f"cell {cell.name!r} has no one-state fast scan (several states, a "
                          "readout or a recurrent map); gatelab.engine.scan_cells runs it")
    inputs = [*plan.xsyms, *plan.vectors]
    free = set().union(*(e.free_symbols for e in ab))
    wrt = [s for s in inputs if s in free]
    fwd, bwd = compile_many([(inputs, list(ab)), vjp(inputs, list(ab), wrt)], compiler)
    return ScanFunctions(plan, inputs, fwd, bwd, wrt)


def is_scan_parallel(cell: Cell) -> bool:
    """The analysis' verdict (one definition, :func:`gatelab.analysis.core.scan_parallel`):
    every such cell runs through a scan (:mod:`gatelab.engine.scan_cells` in general)."""
    from .scan_cells import is_scan_parallel as verdict

    return verdict(cell)


def identity_blocks(cell: Cell, w_ih, b_ih, hidden_size: int, like):
    """``weight_ih`` and ``bias_ih`` with an identity block (and zero bias) appended for each
    input the cell reads as itself (``input x : hidden``), so that ``Gx`` holds ``x`` too:
    autograd takes the gradient of the appended rows back to ``w_ih`` and ``x``."""
    import torch

    n = len(cell.hidden_inputs)
    if not n:
        return w_ih, b_ih
    H = hidden_size
    eye = torch.eye(H, dtype=like.dtype, device=like.device).repeat(n, 1)
    w = eye if w_ih is None else torch.cat([w_ih, eye])
    if b_ih is None:
        return w, None
    return w, torch.cat([b_ih, b_ih.new_zeros(n * H)])


@lru_cache(maxsize=256)
def has_fast_scan(cell: Cell) -> bool:
    """Whether a scan-parallel cell fits the one-state fast path (:func:`linear_recurrence`:
    one state, emitted as the output, no recurrent GEMM) with its generated backward."""
    return (is_scan_parallel(cell) and not cell.hidden_inputs and not uses_layer_norm(cell)
            and linear_recurrence(Plan.of(Layout.of(cell))) is not None)
