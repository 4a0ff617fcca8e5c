"""Print elementwise SymPy expressions as the source of one Triton kernel.

:func:`kernel_source` runs ``sympy.cse`` over all outputs, then :class:`_Printer` emits one SSA
statement per remaining node. Inputs become ``a0, a1, ...``, common subexpressions ``t0, ...``,
intermediate values ``v0, ...``; numbers are printed with ``repr(float)``; functions are spelled
from the registry in :mod:`gatelab.cell.functions` (``tl.*`` calls and the numerically stable
helpers of ``_PRELUDE``). No name or other text
from a cell reaches the code (names only appear in a comment, filtered to identifier characters),
so nothing a user writes can be executed. Compiling and launching is
:mod:`gatelab.engine.triton_pointwise`'s job.

>>> import sympy
>>> x = sympy.Symbol("x")
>>> print(kernel_source([x], [sympy.tanh(x) ** 2]).splitlines()[-2])
    v1 = v0 * v0
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sympy
from sympy.printing.printer import Printer

from ..cell.functions import REGISTRY, Fn, MatVec, RegistryPrinting
from .layout import EngineError

__all__ = ["TritonCodegenError", "kernel_source"]


class TritonCodegenError(EngineError):
    """An expression uses something the Triton printer cannot translate."""


# Device helpers shared by every generated kernel. Fixed text: never built from input.
_PRELUDE = '''\
import triton
import triton.language as tl


@triton.jit
def _sigmoid(x):
    # 1 / (1 + exp(-x)) without overflow: exp is only taken of -|x|.
    e = tl.exp(-tl.abs(x))
    return tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@triton.jit
def _tanh(x):
    # (1 - e) / (1 + e) with e = exp(-2|x|) never overflows; near 0 it cancels, so a Taylor
    # polynomial (truncation error about 2e-10 relative at |x| = 0.1) takes over there.
    ax = tl.abs(x)
    e = tl.exp(-2.0 * ax)
    big = (1.0 - e) / (1.0 + e)
    x2 = ax * ax
    small = ax * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))))
    t = tl.where(ax < 0.1, small, big)
    return tl.where(x >= 0, t, -t)


@triton.jit
def _softplus(x):
    # log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)).
    return tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))


@triton.jit
def _heaviside(x, at_zero):
    return tl.where(x > 0, 1.0, tl.where(x == 0, at_zero, 0.0))


@triton.jit
def _sign(x):
    return tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, 0.0))
'''

_SUPPORTED = ("+ - * / and integer or rational powers, "
              + ", ".join(f.name for f in REGISTRY) + ", Heaviside, Max, Min")


class _Printer(RegistryPrinting, Printer):
    """Turns SymPy expressions into straight-line Triton statements (one SSA variable per node).

    ``names`` maps input symbols and CSE symbols to the variables already holding their values.
    Functions are spelled from the registry (``gatelab.cell.functions``).
    """

    def __init__(self, names: dict[sympy.Basic, str]):
        super().__init__()
        self.names = dict(names)
        self.lines: list[str] = []
        self._memo: dict[sympy.Basic, str] = {}
        self._count = 0

    def _tmp(self, code: str) -> str:
        name = f"v{self._count}"
        self._count += 1
        self.lines.append(f"{name} = {code}")
        return name

    def value(self, expr: sympy.Basic) -> str:
        """A variable name or float literal holding ``expr``'s value (emitting lines as needed)."""
        if expr in self.names:
            return self.names[expr]
        if expr in self._memo:
            return self._memo[expr]
        if expr.is_number and not expr.free_symbols:
            out = self._literal(expr)
        else:
            out = self._print(expr)
        self._memo[expr] = out
        return out

    def _literal(self, expr: sympy.Basic) -> str:
        val = float(expr)
        if val != val or val in (float("inf"), float("-inf")):
            raise TritonCodegenError(f"the constant {expr} is not a finite number")
        return repr(val)

    def emptyPrinter(self, e: sympy.Basic) -> str:  # noqa: N802 - SymPy's name
        raise TritonCodegenError(f"cannot generate Triton code for {type(e).__name__} "
                                 f"(in {e}); supported: {_SUPPORTED}")

    def _print_Symbol(self, e: sympy.Symbol) -> str:  # noqa: N802
        raise TritonCodegenError(f"the symbol {e} is not among the kernel's inputs")

    def _print_MatVec(self, e: MatVec) -> str:  # noqa: N802
        raise TritonCodegenError("W @ v (MatVec) must be replaced by a symbol before "
                                 "generating a pointwise kernel")

    def _print_registered(self, e: sympy.Expr, fn: Fn) -> str:
        if not fn.triton:  # a function the reference loop alone computes (cos, sin, max, ...)
            raise TritonCodegenError(f"cannot generate Triton code for {fn.name} (in {e}); "
                                     f"supported: {_SUPPORTED}")
        return self._tmp(fn.triton.format(x=self.value(e.args[0])))

    def _print_layer_norm(self, e: sympy.Expr) -> str:
        raise TritonCodegenError(
            "layer_norm is a reduction over the hidden units, not a pointwise operation; the "
            "Triton backend does not generate it yet (use backend='reference')")

    def _print_Heaviside(self, e: sympy.Heaviside) -> str:  # noqa: N802
        at_zero = e.args[1] if len(e.args) > 1 else sympy.Rational(1, 2)
        if not at_zero.is_number:
            raise TritonCodegenError(f"Heaviside's value at 0 must be a number in {e}")
        return self._tmp(f"_heaviside({self.value(e.args[0])}, {self._literal(at_zero)})")

    def _print_MinMaxBase(self, e: sympy.Max | sympy.Min) -> str:  # noqa: N802
        fn = "tl.maximum" if isinstance(e, sympy.Max) else "tl.minimum"
        acc = self.value(e.args[0])
        for a in e.args[1:]:
            acc = self._tmp(f"{fn}({acc}, {self.value(a)})")
        return acc

    def _print_Pow(self, e: sympy.Pow) -> str:  # noqa: N802
        return self._pow(e.base, e.exp)

    def _print_Add(self, e: sympy.Add) -> str:  # noqa: N802
        # a + (-1)*b is printed as a - b.
        code = ""
        for a in e.args:
            c, rest = a.as_coeff_Mul()
            if c == -1:
                code += f" - {self.value(rest)}" if code else f"-{self.value(rest)}"
            else:
                code += f" + {self.value(a)}" if code else self.value(a)
        return self._tmp(code)

    def _print_Mul(self, e: sympy.Mul) -> str:  # noqa: N802
        # Factors with negative integer powers go to one denominator: a*b/(c*d), not a*b*(1/c)*...
        num, den = [], []
        for f in e.args:
            if isinstance(f, sympy.Pow) and f.exp.is_Integer and f.exp < 0:
                den.append(self._pow(f.base, -f.exp))
            else:
                num.append(self.value(f))
        if num and num[0] == "-1.0":
            num = num[1:]
            sign = "-"
        else:
            sign = ""
        top = sign + (" * ".join(num) if num else "1.0")
        if not den:
            return self._tmp(top)
        return self._tmp(f"{top} / ({' * '.join(den)})")

    def _pow(self, base: sympy.Expr, exp: sympy.Expr) -> str:
        if base.is_number and not exp.is_number:  # c ** x = exp(x * log(c)), log(c) folded
            if not base.is_positive:
                raise TritonCodegenError(f"a power of the non-positive number {base} ({base}**"
                                         f"{exp}) is not real")
            return self._tmp(f"tl.exp({self.value(exp)} * {self._literal(sympy.log(base))})")
        b = self.value(base)
        if exp.is_Integer:
            n = int(exp)
            if n == 0:
                return "1.0"
            if n < 0:
                return self._tmp(f"1.0 / ({self._pow(base, -exp)})")
            # Square-and-multiply: exact for negative bases, unlike exp(n * log(b)).
            acc, sq = None, b
            while n:
                if n & 1:
                    acc = sq if acc is None else self._tmp(f"{acc} * {sq}")
                n >>= 1
                if n:
                    sq = self._tmp(f"{sq} * {sq}")
            return acc
        if exp == sympy.Rational(1, 2):
            return self._tmp(f"tl.sqrt({b})")
        if exp == sympy.Rational(-1, 2):
            return self._tmp(f"1.0 / tl.sqrt({b})")
        if exp.is_number:
            return self._tmp(f"tl.exp({self._literal(exp)} * tl.log({b}))")
        return self._tmp(f"tl.exp(({self.value(exp)}) * tl.log({b}))")


def kernel_source(inputs: Sequence[sympy.Symbol], outputs: Sequence[sympy.Expr]) -> str:
    """The Python/Triton source of the fused kernel ``_kernel`` for these expressions.

    Signature ``_kernel(p0, ..., q0, ..., s0, ..., r0, ..., numel, H, BLOCK)``: input pointers,
    output pointers, each input's and each output's row stride, then the ``N*H`` elements it runs
    over. Element ``(n, j)`` of input ``k`` is at ``p_k + n * s_k + j``: a contiguous ``(N, H)``
    tensor has ``s_k = H``, a column slice of a wider tensor (``A[:, j*H:(j+1)*H]``) its row
    pitch, and an ``(H,)`` vector broadcast along rows ``s_k = 0``: one kernel serves every
    layout. Outputs likewise (``q_k + n * r_k + j``), so results can go straight into slices of
    preallocated buffers.
    """
    inputs = list(inputs)
    # Plain Python numbers are allowed as constant outputs (never strings: nothing is parsed).
    outputs = [sympy.Float(o) if isinstance(o, float) else sympy.Integer(o)
               if isinstance(o, int) else o for o in outputs]
    if not all(isinstance(o, sympy.Basic) for o in outputs):
        raise TritonCodegenError("kernel outputs must be SymPy expressions or numbers")
    if len(set(inputs)) != len(inputs):
        raise TritonCodegenError("the kernel's input symbols must be distinct")
    for s in inputs:
        if not isinstance(s, sympy.Symbol):
            raise TritonCodegenError(f"kernel inputs must be SymPy symbols, got {s!r}")
    if any(o.atoms(MatVec) for o in outputs):
        raise TritonCodegenError("W @ v (MatVec) must be replaced by a symbol before "
                                 "generating a pointwise kernel")
    missing = set().union(*(o.free_symbols for o in outputs)) - set(inputs) if outputs else set()
    if missing:
        names = ", ".join(sorted(str(m) for m in missing))
        raise TritonCodegenError(f"the expressions use symbols that are not inputs: {names}")

    temps, reduced = sympy.cse(outputs, symbols=sympy.numbered_symbols("t", cls=sympy.Dummy))
    names: dict[sympy.Basic, str] = {s: f"a{k}" for k, s in enumerate(inputs)}
    used = set().union(*(o.free_symbols for o in outputs)) if outputs else set()

    body = ["pid = tl.program_id(0).to(tl.int64)",
            "offs = pid * BLOCK + tl.arange(0, BLOCK)",
            "mask = offs < numel",
            "row = offs // H",
            "col = offs - row * H"]
    for k, s in enumerate(inputs):
        if s in used:
            body.append(f"a{k} = tl.load(p{k} + row * s{k} + col, mask=mask, other=1.0)"
                        ".to(tl.float32)")
    pr = _Printer(names)
    for k, (sym, expr) in enumerate(temps):
        val = pr.value(expr)
        pr.lines.append(f"t{k} = {val}")
        pr.names[sym] = f"t{k}"
    results = [pr.value(o) for o in reduced]
    body += pr.lines
    for k, val in enumerate(results):
        if _is_literal(val):  # a constant output still needs a full block
            val = f"tl.zeros([BLOCK], tl.float32) + {val}"
        body.append(f"tl.store(q{k} + row * r{k} + col, ({val}).to(q{k}.dtype.element_ty), "
                    "mask=mask)")

    params = ([f"p{k}" for k in range(len(inputs))] + [f"q{k}" for k in range(len(outputs))]
              + [f"s{k}" for k in range(len(inputs))] + [f"r{k}" for k in range(len(outputs))])
    # Names in the comment are filtered to identifier characters (cell names already are).
    shown = ", ".join(f"a{k}={_safe(str(s))}" for k, s in enumerate(inputs))
    lines = [_PRELUDE, "", f"# inputs: {shown}", "@triton.jit",
             f"def _kernel({', '.join(params + ['numel', 'H', 'BLOCK: tl.constexpr'])}):"]
    lines += ["    " + ln for ln in body]
    return "\n".join(lines) + "\n"


def _is_literal(val: str) -> bool:
    try:
        float(val)
    except ValueError:
        return False
    return True


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)[:40]
