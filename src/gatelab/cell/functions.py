"""The symbolic vocabulary of a cell: the linear map ``MatVec`` and the function registry.

Vectors are plain commutative SymPy symbols and every arithmetic operator is elementwise, so the
pointwise algebra of a cell is ordinary scalar algebra. The one non-elementwise operation, a
learned matrix applied to a vector (``W @ v`` in a ``.cell`` file), is the uninterpreted function
``MatVec(W, v)``: linear in ``v``, opaque otherwise.

:data:`REGISTRY` is the one table of elementwise functions. Each :class:`Fn` entry names the SymPy
class that represents the function in expressions, its derivative (the class's ``fdiff``, SymPy's
own for SymPy's classes) and how every printer spells it: torch (generated code and the reference
evaluator), Triton, LaTeX and Unicode. Every printer (``cell/printers.py``, ``cell/evaluate.py``,
``engine/pointwise.py``, ``engine/triton_codegen.py``) gets one ``_print_<Class>`` method per
entry from :class:`RegistryPrinting`, so adding a function is one entry here plus its tests.

>>> import sympy
>>> W, h, f = sympy.symbols("W h f")
>>> MatVec(W, h)
MatVec(W, h)
>>> sigmoid(h).diff(h)
(1 - sigmoid(h))*sigmoid(h)
>>> by_class(relu(h)).triton.format(x="a0")
'tl.maximum(a0, 0.0)'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce

import sympy
import torch


class MatVec(sympy.Function):
    """``MatVec(W, v)`` is ``W @ v``: a learned matrix ``W`` (a Symbol) applied to vector ``v``."""

    nargs = 2

    @property
    def matrix(self) -> sympy.Symbol:
        return self.args[0]

    @property
    def vector(self) -> sympy.Expr:
        return self.args[1]


class sigmoid(sympy.Function):  # noqa: N801 - named as written in cell files
    """Logistic function ``1 / (1 + exp(-x))``."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        s = sigmoid(self.args[0])
        return s * (1 - s)

    @classmethod
    def eval(cls, x: sympy.Expr):
        if x.is_zero:
            return sympy.Rational(1, 2)
        return None


class tanh(sympy.tanh):  # noqa: N801
    """``tanh`` with cheap construction. SymPy's own class answers "is the argument real?" by
    reducing its imaginary part modulo ``iπ`` (a polynomial gcd per level), which makes nested
    ``tanh(tanh(...))`` cost exponential time to build and to differentiate; a cell's
    arguments never need that, so each question is passed straight to the argument."""

    @classmethod
    def eval(cls, x: sympy.Expr):
        if x.is_zero:
            return sympy.Integer(0)
        if x.could_extract_minus_sign():  # odd, as SymPy's tanh: tanh(-v) = -tanh(v)
            return -cls(-x)
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return 1 - tanh(self.args[0]) ** 2

    def _eval_is_extended_real(self) -> bool | None:
        return self.args[0].is_extended_real

    _eval_is_real = _eval_is_extended_real

    def _eval_is_finite(self) -> bool | None:
        return True if self.args[0].is_extended_real else None

    def _eval_is_positive(self) -> bool | None:
        return self.args[0].is_extended_positive if self.args[0].is_extended_real else None

    def _eval_is_negative(self) -> bool | None:
        return self.args[0].is_extended_negative if self.args[0].is_extended_real else None

    def _eval_is_zero(self) -> bool | None:
        return self.args[0].is_zero


class Abs(sympy.Abs):
    """``|x|`` of a real signal. SymPy's own class treats an argument it cannot prove real as
    complex: it folds ``|exp(v)|`` to ``exp(re(v))`` and differentiates ``|sigmoid(v)|`` into
    ``re``/``im`` parts no printer can spell (and deep nests of them take minutes). Every
    signal of a cell is real, so this one keeps ``|x|`` as written and its derivative is
    ``sign(x) * x'``."""

    @classmethod
    def eval(cls, x: sympy.Expr):
        if x.is_Number:
            return sympy.Abs(x)
        if x.could_extract_minus_sign():  # even: |-v| = |v|
            return cls(-x)
        if isinstance(x, sympy.Abs):  # ||v|| = |v|
            return x
        return None

    def _eval_derivative(self, s: sympy.Symbol) -> sympy.Expr:
        return sympy.sign(self.args[0]) * self.args[0].diff(s)

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.sign(self.args[0])


class relu(sympy.Function):  # noqa: N801
    """``max(x, 0)``; its derivative is the Heaviside step (0 at 0, as torch's relu backward)."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.Heaviside(self.args[0], 0)


class softplus(sympy.Function):  # noqa: N801
    """``log(1 + exp(x))``; its derivative is ``sigmoid(x)``."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sigmoid(self.args[0])


class layer_norm(sympy.Function):  # noqa: N801
    """Normalisation over the hidden units: ``(v - mean(v)) / sqrt(var(v) + 1e-5)``, the
    statistics taken across the H units of each row (Ba, Kiros & Hinton 2016). Not elementwise:
    the learned gain and bias are written beside it as vectors, ``g ⊙ layer_norm(W @ x) + b``.
    The analysis reads ``layer_norm(U @ h)`` as a (normalised) linear map of ``h``. It has no
    elementwise derivative: the printers that need one refuse it (see its registry entry)."""

    nargs = 1

    @classmethod
    def eval(cls, x: sympy.Expr):
        if x.is_Number:  # a constant is the same in every unit: (c - c) / sqrt(0 + eps)
            return sympy.Integer(0)
        return None


LAYER_NORM_EPS = 1e-5  # as torch.nn.LayerNorm


class MatApply(sympy.Function):
    """``MatApply(S, v)`` is ``S @ v`` for a matrix *signal* ``S`` (a matrix state or a let of
    matrix shape, ``(N, rows, cols)``) and a vector ``v`` of ``cols`` units: ``(N, rows)``.
    Unlike :class:`MatVec` the matrix is computed, not learned."""

    nargs = 2


class VecMat(sympy.Function):
    """``VecMat(v, S)`` is ``v @ S``, i.e. ``Sᵀ v``: a vector ``v`` of ``rows`` units read
    through a matrix signal ``S`` (GLA's and RetNet's ``o = q S``): ``(N, cols)``."""

    nargs = 2


class outer(sympy.Function):  # noqa: N801 - named as written in cell files
    """``outer(a, b) = a bᵀ``: vectors of sizes A and B give an A x B matrix (also written
    ``a ⊗ b``)."""

    nargs = 2


class sum_(sympy.Function):  # noqa: N801
    """``sum(v)``: the sum over the units of a vector, a per-step scalar (size 1).
    ``dot(a, b)`` is written ``sum(a*b)``."""

    nargs = 1


class rms_norm(sympy.Function):  # noqa: N801
    """RMSNorm over the units of a vector (Zhang & Sennrich 2019): ``v / sqrt(mean(v²) +
    1e-6)``; the learned gain is written beside it, ``g * rms_norm(v)``."""

    nargs = 1


RMS_NORM_EPS = 1e-6


class maximum(sympy.Function):  # noqa: N801
    """``max(a, b)``, elementwise (sLSTM's stabiliser, mLSTM's ``max(|nᵀq|, 1)``). Its own class
    rather than SymPy's ``Max``, which the engine's printers already spell for derivatives."""

    nargs = 2

    @classmethod
    def eval(cls, a: sympy.Expr, b: sympy.Expr):
        if a.is_Number and b.is_Number:
            return sympy.Max(a, b)
        return None


def _dot(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    return sum_(a * b)


@dataclass(frozen=True)
class Fn:
    """One elementwise function of the cell language (or of the derivatives the engine prints).

    ``make`` builds the expression from its argument (the parser calls it); ``cls`` is the SymPy
    class at the head of the result, whose ``fdiff`` is the derivative (``sqrt`` builds a
    ``Pow(x, 1/2)`` and is printed with the powers). ``torch`` is a dotted torch callable;
    ``torch_out``: it accepts ``out=``. ``triton``, ``latex``: templates over ``{x}``.
    ``cell``: a name cells may call (``sign`` only appears in derivatives). ``c``: a C template
    over ``{x}`` for the engine's C kernels (``real`` is the precision's float type, ``EXP`` etc.
    its libm functions; see ``gatelab.engine.c_pointwise``). ``arity``: the number of arguments
    (``{x}``, ``{y}`` in the templates). Entries with empty ``triton``/``c`` templates are the
    functions of matrix memories and reductions, which only the reference evaluator runs yet.
    """

    name: str
    make: Callable[[sympy.Expr], sympy.Expr]
    cls: type[sympy.Basic] | None
    torch: str
    torch_out: bool
    triton: str
    latex: str
    unicode: str
    cell: bool = True
    c: str = ""
    arity: int = 1

    def torch_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The torch callable named by ``torch``."""
        return reduce(getattr, self.torch.split(".")[1:], torch)


REGISTRY: tuple[Fn, ...] = (
    Fn("sigmoid", sigmoid, sigmoid, "torch.sigmoid", True, "_sigmoid({x})",
       r"\sigma\left({x}\right)", "σ", c="(((real)1)/(((real)1) + EXP(-({x}))))"),
    Fn("tanh", tanh, tanh, "torch.tanh", True, "_tanh({x})",
       r"\tanh{{\left({x} \right)}}", "tanh", c="TANH({x})"),
    Fn("relu", relu, relu, "torch.relu", False, "tl.maximum({x}, 0.0)",
       r"\operatorname{{relu}}\left({x}\right)", "relu",
       c="(({x}) > 0 ? ({x}) : ((real)0))"),
    Fn("softplus", softplus, softplus, "torch.nn.functional.softplus", False, "_softplus({x})",
       r"\operatorname{{softplus}}\left({x}\right)", "softplus",
       # log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|)
       c="((({x}) > 0 ? ({x}) : ((real)0)) + LOG1P(EXP(-FABS({x}))))"),
    Fn("exp", sympy.exp, sympy.exp, "torch.exp", True, "tl.exp({x})", r"e^{{{x}}}", "exp",
       c="EXP({x})"),
    Fn("log", sympy.log, sympy.log, "torch.log", True, "tl.log({x})",
       r"\log{{\left({x} \right)}}", "log", c="LOG({x})"),
    Fn("sqrt", sympy.sqrt, None, "torch.sqrt", True, "tl.sqrt({x})", r"\sqrt{{{x}}}", "sqrt",
       c="SQRT({x})"),
    Fn("abs", Abs, Abs, "torch.abs", True, "tl.abs({x})",
       r"\left|{{{x}}}\right|", "abs", c="FABS({x})"),
    # A row reduction, not elementwise: the reference evaluator and the torch printer spell it
    # themselves (_print_layer_norm: normalised over the last axis), the Triton printer refuses
    # it, and the generated steps are refused before any printing (engine/plan.py).
    Fn("layer_norm", layer_norm, layer_norm, "torch.nn.functional.layer_norm", False,
       "layer_norm({x})", r"\operatorname{{LN}}\left({x}\right)", "layer_norm"),
    # d|x|/dx for real x; not a name cells may call.
    Fn("sign", sympy.sign, sympy.sign, "torch.sign", True, "_sign({x})",
       r"\operatorname{{sign}}\left({x}\right)", "sign", cell=False,
       c="((real)((({x}) > 0) - (({x}) < 0)))"),
    # The functions of matrix memories, reductions and rotations (the cells of 2023-2025): the
    # reference evaluator runs them; the engine, the analysis and the diagram refuse cells that
    # use them (gatelab.cell.support.require_vector_cell).
    Fn("cos", sympy.cos, sympy.cos, "torch.cos", True, "", r"\cos{{\left({x} \right)}}", "cos"),
    Fn("sin", sympy.sin, sympy.sin, "torch.sin", True, "", r"\sin{{\left({x} \right)}}", "sin"),
    Fn("max", maximum, maximum, "torch.maximum", True, "",
       r"\max\left({x}, {y}\right)", "max", arity=2),
    Fn("sum", sum_, sum_, "torch.sum", False, "", r"\textstyle\sum\left({x}\right)", "sum"),
    Fn("dot", _dot, None, "torch.linalg.vecdot", False, "", r"{x}^\top {y}", "dot", arity=2),
    Fn("rms_norm", rms_norm, rms_norm, "torch.nn.functional.rms_norm", False, "",
       r"\operatorname{{RMS}}\left({x}\right)", "rms_norm"),
    Fn("outer", outer, outer, "torch.outer", False, "", r"{x} {y}^\top", "outer", arity=2),
)

# The classes of the matrix-memory operators (besides the registry's functions).
MATRIX_OPS: tuple[type[sympy.Basic], ...] = (MatApply, VecMat)

# Name in a cell file -> how to build it. The only callables a cell can name.
FUNCTIONS: dict[str, Callable[[sympy.Expr], sympy.Expr]] = {
    f.name: f.make for f in REGISTRY if f.cell}
# Unicode spellings accepted in cell files.
FUNCTION_ALIASES = {f.unicode: f.name for f in REGISTRY if f.cell and f.unicode != f.name
                    and f.unicode.isidentifier()}
BY_NAME = {f.name: f for f in REGISTRY}
# Functions only the reference evaluator runs yet (no kernel template): cells that use them are
# refused by the engine, the analysis and the diagram (gatelab.cell.support).
REFERENCE_ONLY = frozenset(f.name for f in REGISTRY if f.cell and not f.triton)
_BY_CLASS = {f.cls: f for f in REGISTRY if f.cls is not None}
_BY_CLASS[sympy.tanh] = BY_NAME["tanh"]  # SymPy's own, as written by hand in Python
_BY_CLASS[sympy.Abs] = BY_NAME["abs"]


def by_class(expr: sympy.Basic) -> Fn | None:
    """The registry entry of the function at the head of ``expr`` (None if it is not one)."""
    return _BY_CLASS.get(type(expr))


def function_name(expr: sympy.Expr) -> str | None:
    """The cell-file name of the function at the head of ``expr`` (None if it is not a call)."""
    fn = by_class(expr)
    return fn.name if fn is not None and fn.cell else None


class RegistryPrinting:
    """Mixin for ``sympy.printing.Printer`` subclasses: a ``_print_<Class>`` method for every
    registry class, calling ``self._print_registered(expr, entry)``. A subclass that defines a
    ``_print_<Class>`` itself (e.g. a faster spelling of one function) keeps its own."""

    def _print_registered(self, expr: sympy.Basic, fn: Fn):  # pragma: no cover - abstract
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for fn in REGISTRY:
            if fn.cls is None:
                continue
            meth = f"_print_{fn.cls.__name__}"
            if any(meth in vars(k) for k in cls.__mro__ if k is not RegistryPrinting
                   and issubclass(k, RegistryPrinting)):
                continue
            setattr(cls, meth, _dispatcher(fn))


def _dispatcher(fn: Fn):
    def method(self, expr: sympy.Basic, *args, **kwargs):
        return self._print_registered(expr, fn, *args, **kwargs)

    method.__name__ = f"_print_{fn.cls.__name__}"
    return method
