"""Print cells and expressions: ``.cell`` text (round-trips), Unicode, and LaTeX.

>>> from gatelab import load_cell
>>> cell = load_cell("gru")
>>> print(expr_text(cell.nexts["h"]))
h*z + n*(1 - z)
>>> print(expr_text(cell.lets["n"], unicode=True, lead=frozenset({"r"}), inputs=frozenset({"x"})))
tanh(W_n·x + U_n·(r ⊙ h) + b_n)
"""

from __future__ import annotations

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.printer import Printer

from .functions import BY_NAME, Fn, MatApply, MatVec, RegistryPrinting, VecMat
from .ir import Cell
from .limits import MAX_LITERAL_CHARS

# Binding strength, loosest first; mirrors the grammar in syntax.py.
ADD, MUL, NEG, MATMUL, POW, ATOM = range(6)


def decimal_text(r: sympy.Rational) -> str | None:
    """A number as a decimal literal of the cell language, as people write it: ``21/500`` ->
    ``0.042``, ``10**20`` -> ``1e20`` (the parser reads every literal as an exact rational, so
    the text reads back as the same number). None when no decimal is exact (``1/3``) or the
    literal would exceed the parser's limit.
    """
    p, q = abs(int(r.p)), int(r.q)
    twos = fives = 0
    while q % 2 == 0:
        q, twos = q // 2, twos + 1
    while q % 5 == 0:
        q, fives = q // 5, fives + 1
    if q != 1:
        return None
    if p == 0:
        return "0"
    k = max(twos, fives)  # r = digits * 10**-k
    digits = p * 10 ** k // int(r.q)
    while digits % 10 == 0:
        digits, k = digits // 10, k - 1
    d = str(digits)
    lead = len(d) - 1 - k  # power of ten of the leading digit
    if -5 <= lead < 16:  # positional, as Python writes floats
        if k <= 0:
            text = d + "0" * -k
        elif len(d) > k:
            text = f"{d[:-k]}.{d[-k:]}"
        else:
            text = "0." + "0" * (k - len(d)) + d
    else:
        text = f"{d[0]}{'.' + d[1:] if len(d) > 1 else ''}e{lead}"
    return text if len(text) <= MAX_LITERAL_CHARS else None


def _decimal_coeff(e: sympy.Mul) -> tuple[str, sympy.Expr] | None:
    """``(decimal, rest)`` when a product's number is a fraction with an exact decimal
    (``0.042*h`` rather than ``21*h/500``)."""
    coeff, rest = e.as_coeff_Mul()
    if coeff.is_Rational and not coeff.is_Integer and rest != 1:
        text = decimal_text(coeff)
        if text is not None:
            return ("-" if coeff < 0 else "") + text, rest
    return None


def expr_text(expr: sympy.Expr, unicode: bool = False, lead: frozenset[str] = frozenset(),
              inputs: frozenset[str] = frozenset(), first_use: dict[str, int] | None = None
              ) -> str:
    """Render an expression in cell syntax (ASCII, parseable) or in Unicode (σ, ⊙, ·).

    Factors made only of the names in ``lead`` (a cell's gates) are written first: ``f*c``;
    linear maps of ``inputs`` come before the other linear maps: ``W·x + U·h + b``.
    ``first_use`` (parameter name -> rank) overrides that order among the terms and factors that
    hold those parameters, so they are written in that order (what :func:`cell_text` needs: the
    order of first use fixes a cell's packed parameter layout).
    """
    return _Printer(unicode, lead, inputs, first_use).show(expr)[0]


class _Printer(RegistryPrinting, Printer):
    """Cell syntax; every ``_print_*`` returns ``(text, binding strength)``."""

    def __init__(self, unicode: bool, lead: frozenset[str] = frozenset(),
                 inputs: frozenset[str] = frozenset(), first_use: dict[str, int] | None = None):
        super().__init__()
        self.u = unicode
        self.first_use = {sympy.Symbol(n): k for n, k in (first_use or {}).items()}
        self.lead = {sympy.Symbol(n) for n in lead}
        self.inputs = {sympy.Symbol(n) for n in inputs}
        self.mul = " ⊙ " if unicode else "*"
        self.matmul = "·" if unicode else " @ "

    def _term_rank(self, t: sympy.Expr) -> float:
        """Sum order: maps of inputs, other linear maps, other terms, lone biases, subtractions."""
        if t.could_extract_minus_sign():
            return 4
        if isinstance(t, MatVec):
            return 0 if t.vector.free_symbols <= self.inputs else 1
        if isinstance(t, sympy.Symbol) or t.is_Number:
            return 3
        return 2

    def _in_use_order(self, items: list[sympy.Expr]) -> list[sympy.Expr]:
        """``items`` (already in reading order) with those holding a ``first_use`` parameter
        put, within their own slots, in the order of their earliest such parameter."""
        ranks = [min((self.first_use[s] for s in t.free_symbols if s in self.first_use),
                     default=None) for t in items]
        slots = [i for i, r in enumerate(ranks) if r is not None]
        out = list(items)
        for i, j in zip(slots, sorted(slots, key=lambda k: ranks[k]), strict=True):
            out[i] = items[j]
        return out

    def wrap(self, expr: sympy.Expr, at_least: int) -> str:
        text, prec = self.show(expr)
        return f"({text})" if prec < at_least else text

    def show(self, e: sympy.Expr) -> tuple[str, int]:
        return self._print(e)

    def emptyPrinter(self, e: sympy.Basic) -> tuple[str, int]:  # noqa: N802 - SymPy's name
        raise TypeError(f"cannot print {type(e).__name__} in cell syntax")

    def _print_Symbol(self, e: sympy.Symbol) -> tuple[str, int]:  # noqa: N802
        return e.name, ATOM

    def _print_Integer(self, e: sympy.Integer) -> tuple[str, int]:  # noqa: N802
        text = decimal_text(e) or str(abs(e))
        return (text, ATOM) if e >= 0 else (f"-{text}", NEG)

    def _print_Rational(self, e: sympy.Rational) -> tuple[str, int]:  # noqa: N802
        # a decimal where one is exact (what a person wrote: 0.042), else a fraction (1/3)
        text = decimal_text(e)
        if text is not None:
            return (text, ATOM) if e > 0 else (f"-{text}", NEG)
        text = f"{abs(e.p)}/{e.q}"
        return (text, MUL) if e > 0 else (f"-{text}", NEG)

    def _print_Float(self, e: sympy.Float) -> tuple[str, int]:  # noqa: N802
        return (repr(float(e)), ATOM) if e >= 0 else (repr(float(e)), NEG)

    def _print_MatVec(self, e: MatVec) -> tuple[str, int]:  # noqa: N802
        return f"{e.matrix.name}{self.matmul}{self.wrap(e.vector, MATMUL)}", MATMUL

    def _print_registered(self, e: sympy.Expr, fn: Fn) -> tuple[str, int]:
        if not fn.cell:
            raise TypeError(f"{fn.name} is not a function of the cell language")
        shown = fn.unicode if self.u else fn.name
        return f"{shown}({', '.join(self.show(a)[0] for a in e.args)})", ATOM

    def _print_MatApply(self, e: MatApply) -> tuple[str, int]:  # noqa: N802 - S @ v
        return f"{self.wrap(e.args[0], ATOM)}{self.matmul}{self.wrap(e.args[1], MATMUL)}", MATMUL

    def _print_VecMat(self, e: VecMat) -> tuple[str, int]:  # noqa: N802 - v @ S, i.e. Sᵀ v
        vec, mat = e.args
        if self.u:
            return f"{self.wrap(mat, ATOM)}ᵀ·{self.wrap(vec, MATMUL)}", MATMUL
        return f"{self.wrap(vec, ATOM)} @ {self.wrap(mat, MATMUL)}", MATMUL

    def _print_Add(self, e: sympy.Add) -> tuple[str, int]:  # noqa: N802
        terms = sympy.Add.make_args(e)
        # positive terms first reads naturally: "1 - z" rather than "-z + 1"
        terms = self._in_use_order(sorted(terms, key=self._term_rank))
        out = self.wrap(terms[0], ADD + 1) if not terms[0].could_extract_minus_sign() \
            else self.show(terms[0])[0]
        for t in terms[1:]:
            if t.could_extract_minus_sign():
                out += " - " + self.wrap(-t, MUL)
            else:
                out += " + " + self.wrap(t, ADD + 1)
        return out, ADD

    def _print_Mul(self, e: sympy.Mul) -> tuple[str, int]:  # noqa: N802
        if e.could_extract_minus_sign():
            return "-" + self.wrap(-e, MUL + 1), NEG
        decimal = _decimal_coeff(e)
        if decimal is not None:
            return f"{decimal[0]}{self.mul}{self.wrap(decimal[1], MUL)}", MUL
        num, den = sympy.fraction(e)
        if den != 1:
            if num != den and self._in_use_order([num, den])[0] is den:
                # the denominator holds the earlier parameter: write it first, 1/b*h
                return f"1/{self.wrap(den, MUL + 1)}{self.mul}{self.wrap(num, MUL)}", MUL
            return f"{self.wrap(num, MUL)}/{self.wrap(den, MUL + 1)}", MUL
        factors = self._in_use_order(sorted(sympy.Mul.make_args(e), key=self._factor_rank))
        return self.mul.join(self.wrap(f, MUL + 1) for f in factors), MUL

    def _print_Pow(self, e: sympy.Pow) -> tuple[str, int]:  # noqa: N802
        base, ex = e.args
        if ex == sympy.Rational(1, 2):
            sqrt = BY_NAME["sqrt"]
            return f"{sqrt.unicode if self.u else sqrt.name}({self.show(base)[0]})", ATOM
        if ex.is_negative:
            return f"1/{self.wrap(base ** (-ex), MUL + 1)}", MUL
        return f"{self.wrap(base, ATOM)}**{self.wrap(ex, ATOM)}", POW

    def _factor_rank(self, f: sympy.Expr) -> int:
        if f.is_Number:
            return 0
        return 1 if f.free_symbols and f.free_symbols <= self.lead else 2


def cell_text(cell: Cell) -> str:
    """The cell as ``.cell`` source; ``parse_cell(cell_text(c)) == c``.

    Parameters are written in the cell's order of first use (each line puts the terms holding
    its new parameters in that order), so the text parses back with the same parameter order,
    hence the same packed layout. Where SymPy's normal form mixes one line's new parameters
    across nested terms that no term order can untangle, the parse keeps the same equations in
    another order (:meth:`Cell.same_equations`); run folders and pickles store the order too.
    """
    lead, ins = frozenset(cell.gates), frozenset(cell.inputs)
    rank = {p: k for k, p in enumerate(cell.params)}
    seen: set[str] = set()

    def text(e: sympy.Expr) -> str:
        names = {s.name for s in e.free_symbols} & rank.keys()
        out = expr_text(e, lead=lead, inputs=ins,
                        first_use={p: rank[p] for p in names - seen})
        seen.update(names)
        return out

    lines = [f"# {d}".rstrip() for d in cell.doc]
    lines.append(f"name   {cell.name}")
    lines += [f"input  {n}" + (" : hidden" if n in cell.hidden_inputs else "")
              for n in cell.inputs]
    lines += [f"state  {n}{_size(cell, n)}" for n in cell.states]
    for kind, n in cell.order:
        lines.append(f"{kind:<6} {n}{_size(cell, n)} = {text(cell.definition(n))}")
    lines += [f"next   {s} = {text(e)}" for s, e in cell.nexts.items()]
    lines.append(f"output {cell.output}")
    return "\n".join(lines) + "\n"



def _size(cell: Cell, name: str) -> str:
    """`` : hidden x 16`` for a signal of a shape other than the hidden or an input's size
    (declaring the shape it was found to have does not change the cell)."""
    from .shapes import is_matrix, is_modern_size, shape_text

    dim = cell.dims.get(name, "H")
    return f" : {shape_text(dim)}" if is_matrix(dim) or is_modern_size(dim) else ""


def cell_unicode(cell: Cell) -> str:
    """Equations for people: ``f = σ(W_f·x + U_f·h + b_f)``, ``h' = …``."""
    lead, ins = frozenset(cell.gates), frozenset(cell.inputs)
    lines = []
    for _, n in cell.order:
        lines.append(f"{n} = {expr_text(cell.definition(n), unicode=True, lead=lead, inputs=ins)}")
    for s, e in cell.nexts.items():
        lines.append(f"{s}' = {expr_text(e, unicode=True, lead=lead, inputs=ins)}")
    return "\n".join(lines)


def _raised(text: str, exp: str | None) -> str:
    """SymPy's LaTeX printer passes ``exp`` when a function is raised to a power."""
    return text if exp is None else rf"\left({text}\right)^{{{exp}}}"


class _Latex(RegistryPrinting, LatexPrinter):
    def _print_Rational(self, e: sympy.Rational) -> str:  # noqa: N802 - SymPy's name
        text = decimal_text(e)
        if text is None:
            return super()._print_Rational(e)
        if "e" in text:
            m, p = text.split("e")
            text = rf"{m} \cdot 10^{{{p}}}"
        return ("-" if e < 0 else "") + text

    def _print_Mul(self, e: sympy.Mul) -> str:  # noqa: N802
        decimal = _decimal_coeff(e)
        if decimal is None:
            return super()._print_Mul(e)
        num = self._print_Rational(e.as_coeff_Mul()[0])
        return f"{num} {self.parenthesize(decimal[1], PRECEDENCE['Mul'])}"

    def _print_MatVec(self, e: MatVec, exp: str | None = None) -> str:  # noqa: N802 - SymPy
        v = self._print(e.vector)
        if not isinstance(e.vector, sympy.Symbol):
            v = rf"\left({v}\right)"
        return _raised(f"{self._print(e.matrix)} {v}", exp)

    def _print_MatApply(self, e: MatApply, exp: str | None = None) -> str:  # noqa: N802
        return _raised(rf"{self._print(e.args[0])} \left({self._print(e.args[1])}\right)", exp)

    def _print_VecMat(self, e: VecMat, exp: str | None = None) -> str:  # noqa: N802
        return _raised(rf"\left({self._print(e.args[1])}\right)^\top {self._print(e.args[0])}",
                       exp)

    def _print_registered(self, e: sympy.Expr, fn: Fn, exp: str | None = None) -> str:
        text = fn.latex.format(**dict(zip("xy", (self._print(a) for a in e.args),
                                          strict=False)))
        return text if exp is None else rf"\left({text}\right)^{{{exp}}}"


def expr_latex(expr: sympy.Expr) -> str:
    """LaTeX for one expression (products of vectors are elementwise: printed with ⊙)."""
    return _Latex({"mul_symbol": r" \odot "}).doprint(expr)


def cell_latex(cell: Cell) -> str:
    """The cell's equations as a LaTeX ``aligned`` block."""
    rows = [f"{_Latex().doprint(cell.sym(n))} &= {expr_latex(cell.definition(n))}"
            for _, n in cell.order]
    rows += [f"{_Latex().doprint(cell.sym(s))}_t &= {expr_latex(e)}"
             for s, e in cell.nexts.items()]
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"
