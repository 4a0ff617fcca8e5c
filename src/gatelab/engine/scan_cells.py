"""The parallel scan for every cell the analysis calls scan-parallel, not only one-state cells.

The analysis (:func:`gatelab.analysis.core.scan_parallel`) is the one definition: no gate reads a
state, and every memory state's update, readouts rewritten as one step earlier
(``h_{t-1} = o_{t-1} ⊙ c_{t-1}``), is affine in the previous memory with coefficients that read
no state. Then for the memory vector ``m = (m_1, …, m_K)`` of each hidden unit::

    m_t = A_t m_{t-1} + B_t,   A_t[i][j] = ∂m_i'/∂m_j,   B_t[i] = m_i' at m = 0,

``A`` and ``B`` functions of ``x_t``, ``x_{t-1}`` and the previous gates (themselves functions of
``x_{t-1}``), derived here by SymPy from the equations. How a layer runs (QRNN, SRU, several
memory states, readouts with output gates)::

    step 0        the cell's own step from the given initial states (the rewrite of a readout
                  holds from step 1 on: the initial h need not equal o ⊙ c)
    A, B          for t = 1..T-1, evaluated on whole sequences at once
    scan          K independent scans (:func:`~gatelab.engine.scan.linear_scan`) when A is
                  diagonal, else a doubling scan over K×K matrices (K ≤ 4; more coupled
                  memories go step by step over A's nonzero entries, for memory's sake)
    readouts      their new values from the new memory, gates and inputs (no previous state)
    outputs       one vectorised step over all (t, n) rows from the previous states just found

Padding (``mask``) carries the states: ``A = I``, ``B = 0`` and a readout keeps its last live
value. Padding after the end of each sequence (what packed sequences give) is scanned; any other
mask (a live step after a padded one, where ``x_{t-1}`` would be the wrong previous input) runs
through the step-by-step torch backend instead, which carries states through any mask.
Autograd differentiates the whole computation (the one-state fast path of
:mod:`gatelab.engine.scan` keeps its generated backward).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy
import torch

from ..analysis.core import scan_parallel
from ..analysis.memory import find_memory, new_symbol
from ..analysis.symbols import unique_name
from ..cell.evaluate import evaluate, step
from ..cell.ir import Cell
from .layout import EngineError, Layout


@lru_cache(maxsize=256)
def is_scan_parallel(cell: Cell) -> bool:
    """The analysis' verdict (``Analysis.scan_parallel``), without the mode enumeration."""
    return scan_parallel(cell, find_memory(cell))[0]


@dataclass(frozen=True)
class Recurrence:
    """``m_t = A m_{t-1} + B`` over the memory states ``memory`` (see the module docstring).

    ``A[i][j]``, ``B[i]``: SymPy in the inputs, their previous values ``prev[x]`` and the
    parameters. ``readouts[r]``: the readout's new value in the inputs, parameters and the new
    memory ``m'``. ``diagonal``: no memory state's update reads another memory state.
    """

    memory: tuple[str, ...]
    A: tuple[tuple[sympy.Expr, ...], ...]
    B: tuple[sympy.Expr, ...]
    prev: dict[str, str]
    readouts: dict[str, sympy.Expr]
    diagonal: bool


@lru_cache(maxsize=256)
def recurrence(cell: Cell) -> Recurrence:
    """Derive ``A``, ``B`` and the readouts of a scan-parallel cell from its equations."""
    if not is_scan_parallel(cell):
        reasons = "; ".join(scan_parallel(cell, find_memory(cell))[1])
        raise EngineError(f"cell {cell.name!r} is not scan-parallel ({reasons}); "
                          "use backend='torch'")
    mem = find_memory(cell)
    taken = {*cell.inputs, *cell.states, *cell.gates, *cell.lets, *cell.params}
    taken |= {s.name for s in (*mem.prev_gates.values(), *mem.prev_inputs.values())}
    prev = {}
    for x in cell.inputs:  # the previous input: the rewrite's x_prev, or a fresh name
        prev[x] = mem.prev_inputs[x].name if x in mem.prev_inputs else unique_name(
            f"{x}_prev", taken)
        taken.add(prev[x])
    to_prev = {cell.sym(x): sympy.Symbol(p) for x, p in prev.items()}
    rewrite = {cell.sym(r): ro.previous for r, ro in mem.readouts.items()}
    gates_then = {p: cell.inline(cell.gates[g]).xreplace(to_prev)
                  for g, p in mem.prev_gates.items()}
    ms = [cell.sym(m) for m in mem.memory_states]
    A, B = [], []
    for m in mem.memory_states:
        full = cell.inline(cell.nexts[m]).xreplace(rewrite).xreplace(gates_then)
        row = tuple(sympy.diff(full, s) for s in ms)
        if any(a.free_symbols & set(ms) for a in row):  # the analysis said affine: never here
            raise EngineError(f"cell {cell.name!r}: {m}' is not affine in the memory")
        A.append(row)
        B.append(full.xreplace({s: sympy.Integer(0) for s in ms}))
    # a gate inside a readout may read another readout's previous value (QRNN of width 2:
    # x_{t-1}), rewritten like the memory updates
    readouts = {r: cell.inline(ro.expr).xreplace(rewrite) for r, ro in mem.readouts.items()}
    diagonal = all(A[i][j] == 0 for i in range(len(ms)) for j in range(len(ms)) if i != j)
    return Recurrence(mem.memory_states, tuple(A), tuple(B), prev, readouts, diagonal)


def _value(v, like: torch.Tensor) -> torch.Tensor:
    """A computed coefficient as a tensor of ``like``'s shape (numbers and (H,) broadcast)."""
    if not torch.is_tensor(v):
        return torch.full_like(like, float(v))
    return v.expand_as(like) if v.shape != like.shape else v


def matrix_scan(A: torch.Tensor, B: torch.Tensor, m0: torch.Tensor) -> torch.Tensor:
    """``m_t = A_t m_{t-1} + B_t`` for K×K coefficients: ``A (T, ..., K, K)``, ``B (T, ..., K)``,
    ``m0 (..., K)`` -> ``(T, ..., K)``, by doubling (Hillis–Steele, ``log2 T`` rounds of batched
    matrix products; differentiable by autograd).

    >>> A = torch.tensor([[[0.5, 0.0], [1.0, 1.0]]]).repeat(3, 1, 1)
    >>> matrix_scan(A, torch.ones(3, 2), torch.zeros(2))[:, 1].tolist()
    [1.0, 3.0, 5.5]
    """
    T = A.shape[0]
    a, b = A, B
    k = 1
    while k < T:  # after the round, (a_t, b_t) composes steps t-2k+1 .. t
        a_new = torch.cat([a[:k], a[k:] @ a[:-k]])
        b_new = torch.cat([b[:k], (a[k:] @ b[:-k].unsqueeze(-1)).squeeze(-1) + b[k:]])
        a, b, k = a_new, b_new, 2 * k
    return (a @ m0.unsqueeze(-1).unsqueeze(0)).squeeze(-1) + b


MAX_DENSE_K = 4  # coupled memories scanned as K×K matrices; more go step by step


def _sparse_steps(A: list[list[torch.Tensor | None]], B: list[torch.Tensor],
                  m0: list[torch.Tensor]) -> list[torch.Tensor]:
    """``m_t = A_t m_{t-1} + B_t`` one step at a time over the nonzero entries of ``A``
    (``A[i][j]``, ``B[i]``: ``(T, N, H)``; ``m0[i]``: ``(N, H)``) -> ``[(T, N, H)] * K``. The
    doubling scan over K×K matrices keeps ``T·N·H·K²·log T`` values for autograd (20 coupled
    memories at hidden 8 peaked at 2.1 GB); this keeps ``T·N·H·(K + nonzeros)``."""
    K, T = len(B), B[0].shape[0]
    cur, out = list(m0), [[] for _ in range(K)]
    for t in range(T):
        cur = [B[i][t] + sum((A[i][j][t] * cur[j] for j in range(K) if A[i][j] is not None),
                             torch.zeros_like(cur[i])) for i in range(K)]
        for i in range(K):
            out[i].append(cur[i])
    return [torch.stack(o) for o in out]


def _carry_index(mask: torch.Tensor) -> torch.Tensor:
    """``(T, N)`` index of the last live step at or before each step (0 when none: step 0's
    value already carries the initial state)."""
    T = mask.shape[0]
    t = torch.arange(T, device=mask.device).unsqueeze(1).expand_as(mask)
    return torch.where(mask, t, torch.zeros_like(t)).cummax(0).values


def run_scan_cells(layout: Layout, tensors: dict[str, torch.Tensor], x: torch.Tensor,
                   state0: tuple[torch.Tensor, ...], mask: torch.Tensor | None):
    """One direction of one layer of any scan-parallel cell (contract of :mod:`backends`)."""
    cell = layout.cell
    rec = recurrence(cell)
    if mask is not None and bool((mask[1:] & ~mask[:-1]).any()):
        from .autograd import run_fused  # not padding at the end: see the module docstring

        return run_fused(layout, tensors, x, state0, mask, compiler="torch")
    T, N, _ = x.shape
    H = state0[0].shape[-1]
    params = layout.cell_params(tensors, H)
    (inp,) = cell.inputs
    init = dict(zip(cell.states, state0, strict=True))
    first = step(cell, {inp: x[0]}, init, params)
    live0 = None if mask is None else mask[0].unsqueeze(-1)
    s0 = {s: v if live0 is None else torch.where(live0, v, init[s])
          for s, v in first.states.items()}
    out0 = first.output if mask is None else first.output * live0
    if T == 1:
        return out0.unsqueeze(0), tuple(s0[s] for s in cell.states)

    env = {**params, inp: x[1:], rec.prev[inp]: x[:-1]}
    like = x.new_empty(T - 1, N, H)
    K = len(rec.memory)
    # coefficients that are 0 in the equations stay None: no tensor, no work (a cell whose
    # memories each read one other has K nonzero entries of K²)
    A = [[None if a == 0 else _value(evaluate(a, env), like) for a in row] for row in rec.A]
    B = [_value(evaluate(b, env), like) for b in rec.B]
    zero = like.new_zeros(like.shape)
    if mask is not None:  # padding: carry (A = I, B = 0)
        live = mask[1:].unsqueeze(-1)
        A = [[None if a is None and i != j else torch.where(live, zero if a is None else a,
                                                            float(i == j))
              for j, a in enumerate(row)] for i, row in enumerate(A)]
        B = [torch.where(live, b, 0.0) for b in B]
    if rec.diagonal:
        from .scan import linear_scan

        mem = [linear_scan((zero if A[i][i] is None else A[i][i]).contiguous(),
                           B[i].contiguous(), s0[m]) for i, m in enumerate(rec.memory)]
    elif K > MAX_DENSE_K:
        mem = _sparse_steps(A, B, [s0[m] for m in rec.memory])
    else:
        A = [[zero if a is None else a for a in row] for row in A]
        At = torch.stack([torch.stack(row, -1) for row in A], -2)  # (T-1, N, H, K, K)
        Bt = torch.stack(B, -1)
        m0 = torch.stack([s0[m] for m in rec.memory], -1)
        got = matrix_scan(At, Bt, m0)
        mem = [got[..., i] for i in range(K)]
    new = dict(zip(rec.memory, mem, strict=True))
    states_at: dict[str, torch.Tensor] = {}  # every state's value at steps 0..T-1
    for m in rec.memory:
        states_at[m] = torch.cat([s0[m].unsqueeze(0), new[m]])
    renv = {**env, **{new_symbol(m).name: v for m, v in new.items()}}
    for r, e in rec.readouts.items():
        vals = torch.cat([s0[r].unsqueeze(0), _value(evaluate(e, renv), like)])
        if mask is not None:  # a padded step keeps the readout's last live value
            idx = _carry_index(mask).unsqueeze(-1).expand(T, N, H)
            vals = vals.gather(0, idx)
        states_at[r] = vals
    prev = {s: states_at[s][:-1].reshape((T - 1) * N, H) for s in cell.states}
    rest = step(cell, {inp: x[1:].reshape((T - 1) * N, -1)}, prev, params)
    out = rest.output.reshape(T - 1, N, H)
    if mask is not None:
        out = out * mask[1:].unsqueeze(-1)
    outs = torch.cat([out0.unsqueeze(0), out])
    return outs, tuple(states_at[s][-1] for s in cell.states)
