"""Evaluate a cell's expressions on torch tensors: the reference step every engine is checked
against, and the "plain Python loop" baseline.

Shapes: inputs ``(N, I)``, states ``(N, H)``, matrices ``(H, in)``, vectors ``(H,)`` or ``(I,)``.
A matrix signal (``state C : hidden x 16``) is ``(N, H, 16)`` and a per-step scalar ``(N, 1)``;
an elementwise parameter of matrix shape is passed as ``(H, 16)``. Where a vector meets a matrix
elementwise it scales the matrix's rows (``f * C`` is ``diag(f) C``), as the shape check in
:mod:`gatelab.cell.build_shapes` promises: the evaluator is told which names are matrices
(:func:`matrix_names`) and gives the vector operands of a matrix-valued sum or product a
trailing axis. Leading axes are free (the scan engine evaluates ``(T, N, H)`` at once).
It walks the SymPy tree (a SymPy printer whose output is values, not text; no code generation),
so it is slow and obviously right.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import sympy
import torch
from sympy.printing.printer import Printer

from . import shapes
from .functions import (
    BY_NAME,
    LAYER_NORM_EPS,
    RMS_NORM_EPS,
    Fn,
    MatApply,
    MatVec,
    RegistryPrinting,
    VecMat,
    layer_norm,
    outer,
    rms_norm,
    sum_,
)
from .ir import HIDDEN, Cell


def evaluate(expr: sympy.Expr, env: dict[str, torch.Tensor],
             matrices: frozenset[str] = frozenset()) -> torch.Tensor | float:
    """Value of ``expr`` with every symbol looked up in ``env`` (signals and parameters);
    ``matrices``: the names that hold matrices (:func:`matrix_names`)."""
    return closure(expr, matrices)(env)


@functools.lru_cache(maxsize=4096)
def closure(expr: sympy.Expr, matrices: frozenset[str] = frozenset()
            ) -> Callable[[dict], torch.Tensor | float]:
    """``expr`` as a function of the environment (name -> tensor), built once per expression:
    the one evaluator behind :func:`evaluate`, :func:`step` and :func:`traceable_step`.
    ``matrices`` names the matrix-valued symbols (none for cells of vectors only)."""
    return _Closures(matrices)._print(expr)


@functools.lru_cache(maxsize=256)
def matrix_names(cell: Cell) -> frozenset[str]:
    """The names of ``cell`` whose values are matrices: matrix signals and elementwise
    parameters of matrix shape."""
    names = {n for n, d in cell.dims.items() if shapes.is_matrix(d)}
    names |= {n for n, p in cell.params.items() if p.role == "vector" and len(p.shape) == 2}
    return frozenset(names)


@dataclass
class StepResult:
    """Everything one step computed: gate and let values, new states, the output."""

    values: dict[str, torch.Tensor]
    states: dict[str, torch.Tensor]
    output: torch.Tensor


def step(cell: Cell, inputs: dict[str, torch.Tensor], states: dict[str, torch.Tensor],
         params: dict[str, torch.Tensor], force: dict[str, float] | None = None,
         gate_fn: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> StepResult:
    """One time step.

    ``force`` pins gates to constants (e.g. ``{"f": 1.0}``), as the analysis' switch settings do.
    ``gate_fn(name, value)`` replaces each computed gate value before it is used (e.g. rounding
    every gate to 0/1 to test how faithful the one-diagram reading is).
    """
    force = force or {}
    env: dict = {**batched_params(cell, params), **inputs, **states}
    mats = matrix_names(cell)
    values: dict[str, torch.Tensor] = {}
    for _, name in cell.order:
        if name in force:
            val = torch.full_like(_like(cell, name, states), float(force[name]))
        else:
            val = evaluate(cell.definition(name), env, mats)
            if not torch.is_tensor(val):
                val = torch.full_like(_like(cell, name, states), float(val))
            if gate_fn is not None and name in cell.gates:
                val = gate_fn(name, val)
        env[name] = values[name] = val
    new = {}
    for s, e in cell.nexts.items():
        v = evaluate(e, env, mats)
        new[s] = v if torch.is_tensor(v) else torch.full_like(states[s], float(v))
    out = new[cell.output] if cell.output in new else values[cell.output]
    return StepResult(values, new, out)


def batched_params(cell: Cell, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``params`` ready for the evaluator: an elementwise parameter of matrix shape ``(R, C)``
    becomes ``(1, R, C)``, so that every 2-D tensor in the environment is a batch of vectors
    and every 3-D one a batch of matrices (see :func:`_broadcast`)."""
    out = dict(params)
    for name, p in cell.params.items():
        if p.role == "vector" and len(p.shape) == 2 and name in out:
            out[name] = out[name].unsqueeze(0)
    return out


def _like(cell: Cell, name: str, states: dict[str, torch.Tensor]) -> torch.Tensor:
    """A tensor of the shape of signal ``name``, to fill with a constant."""
    dim = cell.dims.get(name, HIDDEN)
    same = [t for s, t in states.items() if cell.dims.get(s, HIDDEN) == dim]
    if same:
        return same[0]
    ref = next(iter(states.values()))
    return ref[..., :1] if dim == "1" and ref.dim() == 2 else ref


def hidden_size_of(cell: Cell, params: dict[str, torch.Tensor]) -> int:
    """The hidden size ``params`` were made for (read off a parameter with a hidden axis)."""
    for name, p in cell.params.items():
        for axis, lab in enumerate(p.shape):
            if lab == HIDDEN:
                return int(params[name].shape[axis])
    raise ValueError(f"cell {cell.name} has no parameter of the hidden size")


def init_params(cell: Cell, input_size: int, hidden_size: int, *, dtype=torch.float32,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Parameters drawn like torch's RNNs: uniform in ``±1/sqrt(hidden_size)``."""
    k = 1.0 / math.sqrt(hidden_size)
    out = {}
    for name in cell.params:
        shape = cell.param_shape(name, input_size, hidden_size)
        out[name] = (torch.rand(shape, dtype=dtype, generator=generator) * 2 - 1) * k
    return out


def iterate(cell: Cell, xs: Iterable[torch.Tensor], states: dict[str, torch.Tensor],
            params: dict[str, torch.Tensor], *, force: dict[str, float] | None = None,
            gate_fn: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
            live: torch.Tensor | None = None) -> Iterator[StepResult]:
    """Loop :func:`step` over ``xs`` (each ``(N, I)``, the cell's one input), yielding each step.

    ``live``: optional ``(T, N)`` booleans; where a row is not live (padding after the end of a
    sequence) its states are carried over unchanged, and the yielded ``states`` say so (the
    yielded ``values`` and ``output`` are what the step computed). Only cells with one input.
    """
    (inp,) = cell.inputs
    for t, x in enumerate(xs):
        r = step(cell, {inp: x}, states, params, force, gate_fn)
        if live is not None:
            r.states = {s: torch.where(live[t].view(-1, *[1] * (states[s].dim() - 1)),
                                       r.states[s], states[s]) for s in cell.states}
        states = r.states
        yield r


def run_sequence(cell: Cell, x: torch.Tensor, params: dict[str, torch.Tensor],
                 h0: dict[str, torch.Tensor] | None = None,
                 force: dict[str, float] | None = None):
    """Loop the reference step over ``x`` of shape ``(T, N, I)``.

    Returns ``(outputs (T, N, H), final states dict)``. Only cells with one input.
    """
    T, N, size = x.shape
    H = hidden_size_of(cell, params)
    states = h0 or {s: x.new_zeros(N, *shapes.shape_value(cell.dims.get(s, HIDDEN), size, H))
                    for s in cell.states}
    outs = []
    for r in iterate(cell, x, states, params, force=force):
        states = r.states
        outs.append(r.output)
    return torch.stack(outs), states


Env = dict[str, torch.Tensor]
StepFn = Callable[[Env], tuple[dict[str, torch.Tensor], torch.Tensor]]


def traceable_step(cell: Cell) -> StepFn:
    """:func:`step` (without ``force``/``gate_fn``) as plain Python closures over torch ops,
    built once from the equations: ``fn(env) -> (new states, output)`` with ``env`` holding the
    input, states and parameters by name.

    The SymPy walk happens here, not per call, so tracers that read Python bytecode
    (``torch.compile``, ``torch.export``) see only tensor operations and no SymPy objects.
    """
    mats = matrix_names(cell)
    defs = [(name, closure(cell.definition(name), mats)) for _, name in cell.order]
    nexts = [(s, closure(e, mats)) for s, e in cell.nexts.items()]
    output, states = cell.output, list(cell.states)

    def run(env: Env) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        env = batched_params(cell, env)
        for name, fn in defs:
            v = fn(env)
            env[name] = v if torch.is_tensor(v) else torch.full_like(
                _like(cell, name, {s: env[s] for s in states}), float(v))
        new = {}
        for s, fn in nexts:
            v = fn(env)
            new[s] = v if torch.is_tensor(v) else torch.full_like(env[s], float(v))
        return new, (new[output] if output in new else env[output])

    return run


class _Closures(RegistryPrinting, Printer):
    """A SymPy printer whose "text" is a function of the environment: tensors for signals,
    floats for numbers, so constant parts stay Python floats until they meet a tensor.
    ``matrices``: the matrix-valued names; a vector operand of a matrix-valued sum, product or
    ``max`` gets a trailing axis, so that it scales (or shifts) the matrix's rows."""

    def __init__(self, matrices: frozenset[str] = frozenset()):
        super().__init__()
        self.matrices = matrices
        self._matrix: dict[sympy.Basic, bool] = {}

    def is_matrix(self, e: sympy.Basic) -> bool:
        """Whether ``e``'s value is a matrix (the shape rule of the builder, read off the
        tree): a matrix name or an outer product, and what is elementwise over one."""
        if e not in self._matrix:
            if isinstance(e, sympy.Symbol):
                out = e.name in self.matrices
            elif isinstance(e, outer):
                out = True
            elif isinstance(e, (MatVec, MatApply, VecMat, sum_, rms_norm, layer_norm)) \
                    or not self.matrices:
                out = False
            else:
                out = any(self.is_matrix(a) for a in e.args)
            self._matrix[e] = out
        return self._matrix[e]

    def _operands(self, expr: sympy.Expr) -> list:
        """The closures of ``expr``'s arguments; vector ones padded when ``expr`` is a matrix."""
        parts = [self._print(a) for a in expr.args]
        if not self.is_matrix(expr):
            return parts
        return [p if self.is_matrix(a) else _rows(p) for a, p in zip(expr.args, parts,
                                                                    strict=True)]

    def emptyPrinter(self, expr: sympy.Basic):  # noqa: N802 - SymPy's name
        raise TypeError(f"cannot evaluate {type(expr).__name__}")

    def _print_Symbol(self, expr: sympy.Symbol):  # noqa: N802
        name = expr.name
        return lambda env: env[name]

    def _print_Number(self, expr: sympy.Number):  # noqa: N802
        value = float(expr)
        return lambda env: value

    def _print_MatVec(self, expr: MatVec):  # noqa: N802
        vec, mat = self._print(expr.vector), expr.matrix.name
        return lambda env: vec(env) @ env[mat].T

    def _fold(self, expr: sympy.Expr, start: float, op):
        parts = self._operands(expr)

        def run(env):
            out = start
            for p in parts:
                out = op(out, p(env))
            return out
        return run

    def _print_Add(self, expr: sympy.Add):  # noqa: N802
        return self._fold(expr, 0.0, lambda a, b: a + b)

    def _print_Mul(self, expr: sympy.Mul):  # noqa: N802
        return self._fold(expr, 1.0, lambda a, b: a * b)

    def _print_maximum(self, expr: sympy.Expr):
        a, b = self._operands(expr)

        def run(env):
            x, y = a(env), b(env)
            if not torch.is_tensor(x):
                x, y = y, x
            if not torch.is_tensor(x):
                return max(x, y)
            return torch.clamp(x, min=y) if not torch.is_tensor(y) else torch.maximum(x, y)
        return run

    def _print_MatApply(self, expr: MatApply):  # noqa: N802 - S @ v: (N, R, C) @ (N, C)
        mat, vec = (self._print(x) for x in expr.args)
        return lambda env: torch.matmul(mat(env), _tensor(vec(env)).unsqueeze(-1)).squeeze(-1)

    def _print_VecMat(self, expr: VecMat):  # noqa: N802 - v @ S = Sᵀ v: (N, R) @ (N, R, C)
        vec, mat = (self._print(x) for x in expr.args)
        return lambda env: torch.matmul(_tensor(vec(env)).unsqueeze(-2), mat(env)).squeeze(-2)

    def _print_outer(self, expr: sympy.Expr):  # (N, R) x (N, C) -> (N, R, C)
        a, b = (self._print(x) for x in expr.args)
        return lambda env: _tensor(a(env)).unsqueeze(-1) * _tensor(b(env)).unsqueeze(-2)

    def _print_sum_(self, expr: sympy.Expr):  # over the units: (N, K) -> (N, 1)
        arg = self._print(expr.args[0])
        return lambda env: _tensor(arg(env)).sum(-1, keepdim=True)

    def _print_rms_norm(self, expr: sympy.Expr):
        arg = self._print(expr.args[0])

        def norm(env):
            v = arg(env)
            return torch.nn.functional.rms_norm(v, v.shape[-1:], eps=RMS_NORM_EPS)
        return norm

    def _print_Pow(self, expr: sympy.Pow):  # noqa: N802
        base, ex = self._print(expr.base), float(expr.exp)
        if ex == 0.5:
            sqrt = BY_NAME["sqrt"].torch_fn()

            def root(env):
                b = base(env)
                return sqrt(b) if torch.is_tensor(b) else math.sqrt(b)
            return root
        return lambda env: base(env) ** ex

    def _print_layer_norm(self, expr: sympy.Expr):
        arg = self._print(expr.args[0])

        def norm(env):
            v = arg(env)
            return torch.nn.functional.layer_norm(v, v.shape[-1:], eps=LAYER_NORM_EPS)
        return norm

    def _print_registered(self, expr: sympy.Expr, fn: Fn):
        arg, torch_fn = self._print(expr.args[0]), fn.torch_fn()

        def call(env):
            a = arg(env)
            return torch_fn(a if torch.is_tensor(a) else torch.tensor(a))
        return call


def _tensor(v) -> torch.Tensor:
    return v if torch.is_tensor(v) else torch.tensor(v)


def _rows(fn):
    """``fn`` with a trailing axis on a tensor value: a vector ``(N, R)`` (or a parameter
    ``(R,)``, a per-step scalar ``(N, 1)``) that meets a matrix ``(N, R, C)`` scales its rows."""
    def run(env):
        v = fn(env)
        return v.unsqueeze(-1) if torch.is_tensor(v) else v
    return run
