"""A JAX peer of a cell: the same cell in ``jax.lax.scan`` under ``jax.jit``, generated from its
SymPy equations (never written by hand per cell), for ``gatelab bench --peer jax``.

What a researcher who wants a fast custom cell writes in JAX today, derived from the ``Cell``:

- every product ``W @ v`` whose vector reads only the input is hoisted out of the loop, the
  matrices that multiply the same vector stacked into one GEMM over all ``T`` steps;
- inside the step, the products of one vector (``U_i @ h``, ``U_f @ h``, ...) are one GEMM too,
  computed where the step first needs them (MGU's ``U_n @ (f*h)`` after ``f``);
- gates, lets, next states and the output in the cell's evaluation order
  (:func:`gatelab.cell.evaluate.step`'s semantics), printed by :class:`JaxCellPrinter`, a
  subclass of SymPy's ``JaxPrinter`` with the project's function registry
  (:class:`gatelab.cell.functions.RegistryPrinting`).

Shapes: ``X (T, N, I)`` time-major; states ``(N, H)``, zero at ``t = 0``; ``W (H, K)`` acts on
row vectors as ``v @ W.T``. The stacked matrices are the timed function's parameters (packed
once, as a JAX user stores them); :meth:`JaxPeer.grads` differentiates through the packing to
give gradients under the cell's own names.
"""

from __future__ import annotations

import sympy
from sympy.printing.numpy import JaxPrinter

from ..cell.functions import LAYER_NORM_EPS, Fn, MatVec, RegistryPrinting
from ..cell.ir import Cell
from .layout import EngineError

# jax spellings of the registry's functions (per function, never per cell)
JAX_FUNCTIONS = {"sigmoid": "jax.nn.sigmoid", "tanh": "jnp.tanh", "relu": "jax.nn.relu",
                 "softplus": "jax.nn.softplus", "exp": "jnp.exp", "log": "jnp.log",
                 "abs": "jnp.abs", "sign": "jnp.sign", "layer_norm": "_layer_norm"}


class JaxCellPrinter(RegistryPrinting, JaxPrinter):
    """``jax.numpy`` source of one expression of a cell: symbols by ``names``, each product
    ``W @ v`` by the name of its precomputed value in ``products``."""

    def __init__(self, names: dict[sympy.Symbol, str], products: dict[MatVec, str]) -> None:
        super().__init__()
        self.names, self.products = names, products

    def _print_registered(self, e: sympy.Expr, fn: Fn) -> str:
        if fn.name not in JAX_FUNCTIONS:
            raise EngineError(f"the JAX peer has no spelling of {fn.name!r}")
        return f"{JAX_FUNCTIONS[fn.name]}({self._print(e.args[0])})"

    def _print_Symbol(self, e: sympy.Symbol) -> str:  # noqa: N802
        if e not in self.names:
            raise EngineError(f"the JAX peer cannot place the symbol {e} here")
        return self.names[e]

    def _print_MatVec(self, e: MatVec) -> str:  # noqa: N802
        return self.products[e]


def _products(expr: sympy.Expr) -> list[MatVec]:
    """The products in ``expr``, inner ones (inside another's vector) first, else in SymPy's
    canonical order (the generated source is the same in every process)."""
    return sorted(expr.atoms(MatVec), key=lambda m: (len(m.vector.atoms(MatVec)),
                                                     sympy.default_sort_key(m)))


def peer_source(cell: Cell, H: int) -> str:
    """The generated module: ``pack(P)``, ``hoist(Q, X)``, ``step(Q, carry, xs)`` and
    ``forward(Q, X) -> (outputs (T, N, H), final states)``, for hidden size ``H``."""
    if len(cell.inputs) != 1:
        raise EngineError(f"the JAX peer runs cells with one input, not {len(cell.inputs)}")
    (inp,) = cell.inputs
    x = sympy.Symbol(inp)
    exprs = [cell.definition(n) for _, n in cell.order] + list(cell.nexts.values())
    loop_names = {sympy.Symbol(s) for s in cell.states} | {sympy.Symbol(n) for _, n in cell.order}
    # group the products by their vector: hoisted (the vector reads only the input) or not
    groups: dict[sympy.Expr, list[MatVec]] = {}
    for e in exprs:
        for m in _products(e):
            members = groups.setdefault(m.vector, [])
            if m not in members:
                members.append(m)
    hoisted = [v for v in groups if x in v.free_symbols and not (v.free_symbols & loop_names)
               and not v.atoms(MatVec)]
    names = {sympy.Symbol(p): f"P[{p!r}]" for p in cell.params}
    kept = [p for p, par in cell.params.items() if par.role != "matrix"]  # matrices: stacked
    lines = ["def pack(P):", f"    Q = {{p: P[p] for p in {kept!r}}}"]
    for k, v in enumerate(groups):
        mats = ", ".join(f"P[{str(m.matrix)!r}]" for m in groups[v])
        lines.append(f"    Q['_stack{k}'] = jnp.concatenate([{mats}], axis=0).T")
    lines += ["    return Q", "", "def hoist(Q, X):", "    P = Q"]
    products: dict[MatVec, str] = {}
    hoisted_names = []
    for k, v in enumerate(groups):
        if v in hoisted:
            vec = JaxCellPrinter({**names, x: "X"}, products).doprint(v)
            lines.append(f"    g{k} = ({vec}) @ Q['_stack{k}']")
            hoisted_names.append(f"g{k}")
    outside = [e.xreplace({m: sympy.Integer(0) for m in e.atoms(MatVec)}) for e in exprs]
    reads_x = any(x in e.free_symbols for e in outside + [v for v in groups if v not in hoisted])
    xs = hoisted_names + (["X"] if reads_x else [])
    lines += [f"    return ({', '.join(xs)},)", "", "def step(Q, carry, xs):", "    P = Q",
              f"    {', '.join(f's{i}' for i in range(len(cell.states)))}, = carry",
              f"    {', '.join(f'{n}_t' for n in xs)}, = xs"]
    names.update({sympy.Symbol(s): f"s{i}" for i, s in enumerate(cell.states)})
    names[x] = "X_t"
    for k, v in enumerate(groups):
        if v in hoisted:
            for j, m in enumerate(groups[v]):
                products[m] = f"g{k}_t[:, {j * H}:{(j + 1) * H}]"
    done: set[int] = set()
    printer = JaxCellPrinter(names, products)

    def emit(e: sympy.Expr) -> str:
        for m in _products(e):
            k = list(groups).index(m.vector)
            if m in products or k in done:
                continue
            lines.append(f"    r{k} = ({printer.doprint(m.vector)}) @ Q['_stack{k}']")
            done.add(k)
            for j, mm in enumerate(groups[m.vector]):
                products[mm] = f"r{k}[:, {j * H}:{(j + 1) * H}]"
        return printer.doprint(e)

    for i, (_, n) in enumerate(cell.order):
        names[sympy.Symbol(n)] = f"v{i}"
        lines.append(f"    v{i} = {emit(cell.definition(n))}")
    new = []
    for i, s in enumerate(cell.states):
        lines.append(f"    n{i} = _full({emit(cell.nexts[s])}, s{i})")
        new.append(f"n{i}")
    out = (f"n{cell.states.index(cell.output)}" if cell.output in cell.nexts
           else f"_full({names[sympy.Symbol(cell.output)]}, s0)")
    lines += [f"    return ({', '.join(new)},), {out}", "",
              "def forward(Q, X):",
              "    init = tuple(jnp.zeros((X.shape[1], "
              f"{H}), X.dtype) for _ in range({len(cell.states)}))",
              "    final, outs = jax.lax.scan(lambda c, xs: step(Q, c, xs), init, hoist(Q, X))",
              "    return outs, final", ""]
    return "\n".join(lines)


class JaxPeer:
    """A cell's JAX peer for hidden size ``H``: ``value_and_grad`` of ``sum(outputs)`` under
    ``jax.jit`` with respect to the packed parameters (:meth:`loss_and_grads`), the forward,
    and the gradients under the cell's own names (:meth:`grads`)."""

    def __init__(self, cell: Cell, H: int) -> None:
        import jax
        import jax.numpy as jnp

        self.cell, self.H = cell, H
        self.source = peer_source(cell, H)
        namespace = {"jax": jax, "jnp": jnp, "_layer_norm": _layer_norm_fn(jnp),
                     "_full": lambda v, like: jnp.broadcast_to(jnp.asarray(v, like.dtype),
                                                               like.shape)}
        # source generated from the cell's SymPy expressions by the printer above, no user text
        exec(compile(self.source, f"<jax peer of {cell.name}>", "exec"), namespace)
        self.pack = jax.jit(namespace["pack"])
        self.forward = jax.jit(namespace["forward"])

        def loss(Q, X):
            return namespace["forward"](Q, X)[0].sum()

        self.loss_and_grads = jax.jit(jax.value_and_grad(loss))
        self.grads = jax.jit(jax.grad(lambda P, X: loss(namespace["pack"](P), X)))


def _layer_norm_fn(jnp):
    def layer_norm(v):  # over the hidden units (last axis), as gatelab.cell.functions.layer_norm
        mean = v.mean(axis=-1, keepdims=True)
        var = ((v - mean) ** 2).mean(axis=-1, keepdims=True)
        return (v - mean) / jnp.sqrt(var + LAYER_NORM_EPS)
    return layer_norm
