"""Compile the pointwise part of a step, forward and backward, from SymPy expressions.

``compile_pointwise(inputs, outputs, backend)`` returns ``fn(*tensors) -> tuple`` that evaluates
every output elementwise; arguments are ``(N, H)`` tensors or ``(H,)`` vectors broadcast along the
rows. Outputs that are constants come back as Python floats (callers treat 0.0 as "no gradient").
``vjp(inputs, outputs, wrt)`` builds the backward expressions by SymPy differentiation:
``grad_u = sum_j g_j * d out_j / d u`` with one cotangent symbol ``g_j`` per output, so the same
compiler produces both directions.

Backends:
  * ``"torch"``: Python source generated from the common-subexpression-eliminated expressions
    (``sympy.cse``), one torch call per operation. The source is built from the validated IR only:
    every symbol is renamed ``v0, v1, ...`` and every function is spelled from the registry in
    ``gatelab.cell.functions`` (:class:`TorchPrinter`), so no
    user text reaches ``compile``.
  * ``"c"``: one multi-threaded C kernel per function (:mod:`gatelab.engine.c_pointwise`),
    CPU float32/float64; :func:`compile_many` puts all functions of a step in one library (one
    compiler run, cached on disk).
  * ``"triton"``: ``gatelab.engine.triton_pointwise.compile_triton_pointwise(inputs, outputs)``
    (imported lazily), with the same calling convention and only non-constant outputs.
"""

from __future__ import annotations

import itertools
import linecache
from collections.abc import Callable, Sequence

import sympy
import torch
from sympy.printing.printer import Printer

from ..cell.functions import BY_NAME, LAYER_NORM_EPS, Fn, RegistryPrinting

PointwiseFn = Callable[..., tuple]
Lazy = Callable[[], Sequence[sympy.Expr]]

_counter = itertools.count()


def vjp(inputs: Sequence[sympy.Symbol], outputs: Sequence[sympy.Expr],
        wrt: Sequence[sympy.Symbol]) -> tuple[list[sympy.Symbol], list[sympy.Expr]]:
    """Backward expressions: returns ``(inputs + cotangents, [d/du for u in wrt])``."""
    gs = [sympy.Symbol(f"g{j}__") for j in range(len(outputs))]
    # Signals are real: differentiate with real twins of the symbols, or SymPy writes d|u|/du
    # with re(u) and im(u) instead of sign(u).
    free = set().union(*(y.free_symbols for y in outputs))
    real = {s: sympy.Dummy(s.name, real=True) for s in free}
    back = {d: s for s, d in real.items()}
    grads = []
    for u in wrt:
        total = sympy.Integer(0)
        for g, y in zip(gs, outputs, strict=True):
            if u in y.free_symbols:
                total += g * sympy.diff(y.xreplace(real), real[u]).xreplace(back)
        # Common factors pulled out of sums (``g*s*(1-s)*a - g*s*(1-s)*b`` -> ``g*s*(1-s)*(a-b)``):
        # fewer elementwise operations per backward step (counted: LSTM 38 -> 32, MGU 22 -> 19).
        grads.append(sympy.factor_terms(total))
    return [*inputs, *gs], grads


def compile_pointwise(inputs: Sequence[sympy.Symbol], outputs: Sequence[sympy.Expr],
                      backend: str = "torch") -> PointwiseFn:
    """``fn(*tensors) -> tuple`` evaluating ``outputs`` elementwise (see the module docstring)."""
    return compile_many([(inputs, outputs)], backend)[0]


def compile_many(specs: Sequence[tuple[Sequence[sympy.Symbol], Sequence[sympy.Expr] | Lazy]],
                 backend: str = "torch", key: str | None = None) -> list[PointwiseFn]:
    """:func:`compile_pointwise` of each ``(inputs, outputs)``; the ``"c"`` backend builds them
    all into one library (one compiler run). ``outputs`` may be a function returning them (e.g.
    a :func:`vjp`), called only when needed: with ``key`` (a hash of everything the outputs
    derive from) the ``"c"`` backend first looks for a library built for that key in an earlier
    process and then skips the SymPy work."""
    if backend == "c" and key is not None:
        from .c_pointwise import load_step

        got = load_step(key, [len(ins) for ins, _ in specs])
        if got is not None:
            lib, metas = got
            return [_with_constants(lib.function(k, len(m["live"]), m["used"]),
                                    [sympy.Float(m["consts"][str(i)]) if str(i) in m["consts"]
                                     else None for i in range(m["n_out"])], m["live"])
                    for k, m in enumerate(metas)]
    specs = [(list(i), [o if isinstance(o, sympy.Basic) else sympy.sympify(o, strict=True)
                        for o in (outs() if callable(outs) else outs)]) for i, outs in specs]
    lives = [[i for i, o in enumerate(outs) if not o.is_Number] for _, outs in specs]
    if backend == "c":
        from .c_pointwise import build_step

        lib, metas = build_step(specs, lives, key)
        inners = [lib.function(k, len(m["live"]), m["used"]) for k, m in enumerate(metas)]
    elif backend == "triton":
        from .triton_pointwise import compile_triton_pointwise

        inners = [compile_triton_pointwise(ins, [outs[i] for i in live])
                  for (ins, outs), live in zip(specs, lives, strict=True)]
    elif backend == "torch":
        inners = [_compile_torch(ins, [outs[i] for i in live])
                  for (ins, outs), live in zip(specs, lives, strict=True)]
    else:
        raise ValueError(f"unknown pointwise backend {backend!r}; expected 'torch', 'c' or "
                         "'triton'")
    return [_with_constants(inner, outs, live)
            for inner, (_, outs), live in zip(inners, specs, lives, strict=True)]


def _with_constants(inner: PointwiseFn, outputs: list[sympy.Expr | None],
                    live: list[int]) -> PointwiseFn:
    """``inner`` computes the outputs at positions ``live``; the others are constants that come
    back as Python floats."""
    consts = {i: float(o) for i, o in enumerate(outputs) if i not in live}
    if not consts:
        return inner

    def fn(*args):  # no ``out=``: constant outputs are not tensors
        got = iter(inner(*args) if live else ())
        return tuple(consts[i] if i in consts else next(got) for i in range(len(outputs)))

    return fn


# ---- the torch backend: generated source ---------------------------------------------------------
def _compile_torch(inputs: list[sympy.Symbol], outputs: list[sympy.Expr]) -> PointwiseFn:
    names = {s: sympy.Symbol(f"v{k}") for k, s in enumerate(inputs)}
    exprs = [o.xreplace(names) for o in outputs]
    repl, reduced = sympy.cse(exprs, symbols=sympy.numbered_symbols("t"))
    lines = [f"def pointwise({''.join(str(names[s]) + ', ' for s in inputs)}out=None):",
             "    if out is None:"]
    for sym, e in repl:
        lines.append(f"        {sym} = {_emit(e)}")
    lines.append(f"        return ({''.join(_emit(e) + ', ' for e in reduced)})")
    # ``out``: one preallocated tensor per output (none aliasing an input); the last operation
    # of each output writes into it (no temporary, no copy), else the value is copied in. A
    # common subexpression that is itself an output is computed straight into its tensor.
    direct = {e: j for j, e in enumerate(reduced) if isinstance(e, sympy.Symbol)
              and any(e == sym for sym, _ in repl)}
    for sym, e in repl:
        if sym in direct:
            lines.append(f"    {_emit_into(e, f'out[{direct[sym]}]')}")
            lines.append(f"    {sym} = out[{direct[sym]}]")
        else:
            lines.append(f"    {sym} = {_emit(e)}")
    for j, e in enumerate(reduced):
        if direct.get(e) != j:
            lines.append(f"    {_emit_into(e, f'out[{j}]')}")
    lines.append("    return out")
    src = "\n".join(lines) + "\n"
    filename = f"<gatelab-pointwise-{next(_counter)}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    namespace: dict = {"torch": torch}
    exec(compile(src, filename, "exec"), namespace)  # source built from the IR, see docstring
    fn = namespace["pointwise"]
    fn.source = src
    fn.supports_out = True
    return fn


class TorchPrinter(RegistryPrinting, Printer):
    """Python/torch source of one expression whose symbols are already ``v*``/``t*`` names.

    Functions are spelled from the registry (``gatelab.cell.functions``); the overrides are
    the fusions: sums fold products into ``torch.addcmul``, ``1 - f`` is one ``torch.rsub``,
    ``tanh`` goes through ``sigmoid``.
    """

    def emptyPrinter(self, e: sympy.Basic) -> str:  # noqa: N802 - SymPy's name
        raise TypeError(f"the pointwise compiler does not know {type(e).__name__} ({e})")

    def _print_Symbol(self, e: sympy.Symbol) -> str:  # noqa: N802
        return e.name

    def _print_Number(self, e: sympy.Number) -> str:  # noqa: N802
        return repr(float(e))

    def _print_registered(self, e: sympy.Expr, fn: Fn) -> str:
        return f"{fn.torch}({self._print(e.args[0])})"

    def _print_tanh(self, e: sympy.tanh) -> str:  # noqa: N802
        # tanh(x) = 2 sigmoid(2x) - 1: torch.tanh of this CPU build (2.13, MKL) measured 20-40x
        # slower than torch.sigmoid on (64, 256) float32; the identity is exact in real numbers
        # and loses at most a few ulp of the [-1, 1] range in floating point.
        return f"(2.0 * {BY_NAME['sigmoid'].torch}(2.0 * {self._print(e.args[0])}) - 1.0)"

    def _print_layer_norm(self, e: sympy.Expr) -> str:
        v = self._print(e.args[0])  # over the hidden units (the last axis) of each row
        return f"torch.nn.functional.layer_norm({v}, ({v}).shape[-1:], eps={LAYER_NORM_EPS!r})"

    def _print_Heaviside(self, e: sympy.Heaviside) -> str:  # noqa: N802
        arg = self._print(e.args[0])  # relu' (value 0 at 0, as torch's relu backward)
        return f"({arg} > 0).to({arg}.dtype)"

    def _print_Mul(self, e: sympy.Mul) -> str:  # noqa: N802
        coeff, rest = e.as_coeff_Mul()
        num = [f for f in sympy.Mul.make_args(rest) if not _is_reciprocal(f)]
        den = [1 / f for f in sympy.Mul.make_args(rest) if _is_reciprocal(f)]
        s = " * ".join(self._print(f) for f in num) if num else None
        if coeff != 1:
            s = f"{float(coeff)!r} * {s}" if s else repr(float(coeff))
        if den:
            d = " * ".join(self._print(f) for f in den)
            d = f"({d})" if len(den) > 1 else d
            s = f"{s} / {d}" if s else f"torch.reciprocal({d})"
        return f"({s})"

    def _print_Pow(self, e: sympy.Pow) -> str:  # noqa: N802
        base, ex = self._print(e.base), e.exp
        if ex == sympy.Rational(1, 2):
            return f"{BY_NAME['sqrt'].torch}({base})"
        if ex == -sympy.Rational(1, 2):
            return f"torch.rsqrt({base})"
        if ex == -1:
            return f"torch.reciprocal({base})"
        if ex == 2:
            return f"torch.square({base})"
        return f"torch.pow({base}, {float(ex)!r})"

    def _print_Add(self, e: sympy.Add) -> str:  # noqa: N802
        return self.add(e)

    def add(self, e: sympy.Add, out: str | None = None) -> str:
        """A sum; each ``c * a * b`` term after the first becomes one ``torch.addcmul`` (one
        kernel instead of two: on CPU every torch call costs a few microseconds of dispatch).
        ``out``: the last operation writes into that tensor (``out=``)."""
        p = self._print
        const = float(sum(a for a in e.args if a.is_Number))
        terms = [a.as_coeff_Mul() for a in e.args if not a.is_Number]

        def pair(rest: sympy.Expr) -> list[sympy.Expr] | None:
            fs = list(sympy.Mul.make_args(rest))
            if len(fs) == 2 and not any(_is_reciprocal(f) for f in fs):
                return fs
            return None

        # Start from a term that is not a two-factor product, if any (it cannot fold).
        terms.sort(key=lambda cr: (pair(cr[1]) is not None, float(cr[0]) < 0))
        o = "" if out is None else f", out={out}"
        c0, r0 = terms[0]
        last = len(terms) == 1 and not const
        if c0 == 1:
            acc = p(r0)
        elif c0 == -1 and const:  # 1 - f: one rsub
            if len(terms) == 1 and out is not None:
                return f"torch.neg({p(r0)}{o}).add_({const!r})"
            # torch.rsub, not ``c - t``: Tensor.__rsub__ is a Python wrapper (~2 us more per call)
            acc, const = f"torch.rsub({p(r0)}, {const!r})", 0.0
        elif last and out is not None:
            return f"torch.mul({p(r0)}, {float(c0)!r}{o})"
        else:
            acc = f"({float(c0)!r} * {p(r0)})"
        for i, (c, r) in enumerate(terms[1:]):
            fin = out is not None and i == len(terms) - 2 and not const
            fs = pair(r)
            if fs is not None:
                value = "" if c == 1 else f", value={float(c)!r}"
                acc = f"torch.addcmul({acc}, {p(fs[0])}, {p(fs[1])}{value}{o if fin else ''})"
            elif fin:
                alpha = "" if c == 1 else f", alpha={float(c)!r}"
                acc = f"torch.add({acc}, {p(r)}{alpha}{o})"
            elif c == 1:
                acc = f"({acc} + {p(r)})"
            elif c == -1:
                acc = f"({acc} - {p(r)})"
            else:
                acc = f"({acc} + {float(c)!r} * {p(r)})"
        if const:
            if out is not None:
                return f"torch.add({acc}, {const!r}{o})"
            acc = f"({acc} + {const!r})" if const > 0 else f"({acc} - {-const!r})"
        elif out is not None and len(terms) == 1:
            return f"{out}.copy_({acc})"
        return acc


class _IntoPrinter(RegistryPrinting, Printer):
    """A statement writing an expression into the tensor ``out`` with its last operation
    (``out=``); what has no ``out=`` form is computed, then copied in."""

    def __init__(self, out: str):
        super().__init__()
        self.out = out
        self.inner = TorchPrinter()

    def emptyPrinter(self, e: sympy.Basic) -> str:  # noqa: N802 - SymPy's name
        return f"{self.out}.copy_({self.inner._print(e)})"

    _print_tanh = emptyPrinter  # printed through sigmoid, see TorchPrinter

    def _print_Add(self, e: sympy.Add) -> str:  # noqa: N802
        return self.inner.add(e, self.out)

    def _print_Mul(self, e: sympy.Mul) -> str:  # noqa: N802
        coeff, rest = e.as_coeff_Mul()
        fs = list(sympy.Mul.make_args(rest))
        if coeff == 1 and len(fs) >= 2 and not any(_is_reciprocal(f) for f in fs):
            head = " * ".join(self.inner._print(f) for f in fs[:-1])
            return f"torch.mul({head}, {self.inner._print(fs[-1])}, out={self.out})"
        return self.emptyPrinter(e)

    def _print_registered(self, e: sympy.Expr, fn: Fn) -> str:
        if fn.torch_out and not isinstance(e.args[0], sympy.Symbol):
            return f"{fn.torch}({self.inner._print(e.args[0])}, out={self.out})"
        return self.emptyPrinter(e)


def _emit(e: sympy.Expr) -> str:
    return TorchPrinter()._print(e)


def _emit_into(e: sympy.Expr, out: str) -> str:
    return _IntoPrinter(out)._print(e)


def _is_reciprocal(f: sympy.Expr) -> bool:
    return isinstance(f, sympy.Pow) and f.exp.is_Number and f.exp < 0 and f.exp != -sympy.Rational(
        1, 2)
