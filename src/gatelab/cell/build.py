"""Check parsed statements and build a :class:`~gatelab.cell.ir.Cell`.

Every check reports ``PATH:LINE:COL: what is wrong; what was expected`` and all problems of a file
are collected before raising one :class:`~gatelab.cell.errors.CellError`.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import sympy

from ..files import FileProblem, read_limited
from . import shapes
from .build_shapes import ShapeChecks, _Fail, _names
from .errors import CellError, Problem
from .fold import FoldError, expanded_terms, fold, inlined_sizes
from .functions import FUNCTIONS, MatApply, MatVec, VecMat
from .ir import HIDDEN, Cell, Param
from .limits import (
    MAX_BYTES,
    MAX_DEFINITIONS,
    MAX_INLINED,
    MAX_NAME_CHARS,
    MAX_PARAMS,
    MAX_TERMS,
    constant_problem,
)
from .syntax import (
    BinOp,
    Call,
    MatMul,
    Name,
    Neg,
    Node,
    Num,
    Statement,
    parse_statements,
    split_lines,
)


def parse_cell(text: str | bytes, path: str = "<string>", default_name: str = "cell",
               _verify: bool = True) -> Cell:
    """Parse ``.cell`` text into a validated :class:`Cell`. Raises :class:`CellError`.

    >>> cell = parse_cell("input x\\nstate h\\nnext h = tanh(W @ x + U @ h + b)\\noutput h")
    >>> cell.nexts["h"]
    tanh(b + MatVec(U, h) + MatVec(W, x))
    """
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise CellError([Problem(path, 1, 1, f"file is too large ({len(text)} bytes)",
                                     f"a cell file of at most {MAX_BYTES} bytes")])
        if b"\x00" in text:
            line = text[: text.index(b"\x00")].count(b"\n") + 1
            raise CellError([Problem(path, line, 1, "binary data (NUL byte) in a cell file",
                                     "UTF-8 text")])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            line = text[: e.start].count(b"\n") + 1
            col = e.start - (text.rfind(b"\n", 0, e.start) + 1) + 1
            raise CellError([Problem(path, line, col, "not valid UTF-8 text",
                                     "UTF-8 text")]) from None
    if len(text) > MAX_BYTES:
        raise CellError([Problem(path, 1, 1, f"text is too large ({len(text)} characters)",
                                 f"a cell of at most {MAX_BYTES} characters")])
    for lineno, line in enumerate(split_lines(text), start=1):
        for col, ch in enumerate(line, start=1):
            if not ch.isprintable() and ch != "\t":
                raise CellError([Problem(path, lineno, col, f"control character {ch!r}",
                                         "printable text")])
    statements, doc, problems = parse_statements(text, path)
    if not statements and not problems:
        raise CellError([Problem(path, 1, 1, "empty cell file",
                                 "at least `input`, `state`, `next` and `output` lines")])
    builder = _Builder(path, statements, doc, default_name)
    cell = builder.build(problems)
    if problems:
        raise CellError(problems)
    assert cell is not None
    if _verify:
        from .roundtrip import check_printable

        check_printable(cell, path, parse_cell)
    return cell


def load_file(path: str | Path) -> Cell:
    """Read and parse a ``.cell`` file (the file stem is the default cell name)."""
    p = Path(path)
    try:
        data = read_limited(p, MAX_BYTES, "cell file")
    except FileProblem as e:  # the message already starts with the path
        raise CellError([Problem(str(p), 0, 0, str(e).removeprefix(f"{p}: "),
                                 "a readable .cell file")]) from None
    return dataclasses.replace(parse_cell(data, str(p), default_name=name_from_stem(p.stem)),
                               source=str(p))


def name_from_stem(stem: str) -> str:
    """A valid cell name made from a file name (used when the file has no ``name`` line):
    runs of characters a name cannot hold become one ``-``.

    >>> name_from_stem("my cell (v2)")
    'my-cell-v2'
    """
    out = "".join(c if c.isalnum() or c in "_.-" else " " for c in stem)
    name = "-".join(out.split()).lstrip("_.-")
    return name[:MAX_NAME_CHARS].rstrip("_.-") or "cell"


class _Builder(ShapeChecks):
    def __init__(self, path: str, statements: list[Statement], doc: list[str], default_name: str):
        self.path, self.statements, self.doc = path, statements, doc
        self.default_name = default_name
        self.problems: list[Problem] = []
        self.kind_of: dict[str, str] = {}  # signal name -> input/state/gate/let
        self.where: dict[str, tuple[int, int]] = {}  # name -> (line, col) of its definition
        self.defs: dict[str, Statement] = {}  # gate/let name -> statement
        self.next_of: dict[str, Statement] = {}
        self.dims: dict[str, str] = {}
        self.param_role: dict[str, tuple[str, tuple[int, int]]] = {}
        self.param_dims: dict[str, tuple[str, ...]] = {}
        self.matrix_vector: dict[str, tuple[sympy.Expr, int]] = {}  # first vector, its line
        self.own: dict[int, str | None] = {}  # id(node) -> its shape found bottom-up
        self.matmul_kind: dict[int, str] = {}  # id(MatMul node) -> "param", "apply", "read"
        self.rows = HIDDEN  # the rows of `W @ v` in the statement being checked

    def fail(self, line: int, col: int, message: str, expected: str = "") -> None:
        self.problems.append(Problem(self.path, line, col, message, expected))

    # ---- declarations ------------------------------------------------------------------------
    def build(self, problems: list[Problem]) -> Cell | None:
        self.problems = problems
        name, output = None, None
        inputs: list[str] = []
        states: list[str] = []
        hidden_inputs: set[str] = set()
        state_shapes: dict[str, str] = {}
        for st in self.statements:
            kw = st.keyword
            if kw == "name":
                if name is not None:
                    self.fail(st.line, st.col, "duplicate `name` line", "one `name` line")
                name = st.names[0][0]
            elif kw in ("input", "state"):
                for n, col in st.names:
                    if self._declare(n, kw, st.line, col):
                        (inputs if kw == "input" else states).append(n)
                        if st.size == "hidden":
                            hidden_inputs.add(n)
                        if st.shape:
                            state_shapes[n] = st.shape
            elif kw in ("gate", "let"):
                n, col = st.names[0]
                if self._declare(n, kw, st.line, col):
                    self.defs[n] = st
            elif kw == "next":
                n, col = st.names[0]
                if n in self.next_of:
                    first = self.next_of[n].line
                    self.fail(st.line, col, f"duplicate `next {n}` (first on line {first})",
                              "one `next` per state")
                else:
                    self.next_of[n] = st
            elif kw == "output":
                if output is not None:
                    self.fail(st.line, st.col, "duplicate `output` line", "one `output` line")
                else:
                    output = st.names[0]
        for n, st in self.next_of.items():
            if self.kind_of.get(n) != "state":
                what = f"{n} is a {self.kind_of[n]}" if n in self.kind_of else f"{n} is undeclared"
                self.fail(st.line, st.names[0][1], f"`next {n}` for a name that is not a state "
                          f"({what})", f"a `state {n}` line")
        for s in states:
            if s not in self.next_of:
                line, col = self.where[s]
                self.fail(line, col, f"state {s} has no `next {s} = ...` update",
                          f"a line `next {s} = <expression>`")
        last_line = self.statements[-1].line if self.statements else 1
        if not inputs:
            self.fail(1, 1, "the cell declares no input", "an `input x` line")
        if not states:
            self.fail(1, 1, "the cell declares no state", "a `state h` line")
        if output is None:
            if len(states) == 1:
                output = (states[0], 0)
            elif states:
                self.fail(last_line, 1, "the cell has several states and no `output` line",
                          "`output NAME`")
        elif self.kind_of.get(output[0]) in (None, "input"):
            out_line = next(s.line for s in self.statements if s.keyword == "output")
            what = "an input" if output[0] in self.kind_of else "undefined"
            self.fail(out_line, output[1], f"output {output[0]} is {what}",
                      "a state, gate or let name")
        if len(self.kind_of) > MAX_DEFINITIONS:
            self.fail(1, 1, f"the cell defines {len(self.kind_of)} inputs, states, gates and "
                      f"lets, over the limit of {MAX_DEFINITIONS}", "a smaller cell")
            return None
        for n in inputs:
            self.dims[n] = HIDDEN if n in hidden_inputs else (
                "I" if len(inputs) == 1 else f"I_{n}")
        for n in states:
            self.dims[n] = state_shapes.get(n, HIDDEN)
        order = self._order()
        if self.problems or order is None:
            return None
        exprs = self._check_expressions(order)
        if self.problems:
            return None
        params = {n: Param(n, self.param_role[n][0], self.param_dims[n])
                  for n in self._param_order(order, states, exprs)}
        if output and shapes.is_matrix(self.dims.get(output[0])):
            out_line = next((s.line for s in self.statements if s.keyword == "output"),
                            self.where[output[0]][0])
            self.fail(out_line, output[1] or 1, f"output {output[0]} is "
                      f"{shapes.describe(self.dims[output[0]])}", "a vector (read a matrix "
                      "memory first, e.g. `let y = C @ q`)")
            return None
        self._derived_gates_are_lets(order, exprs)
        return Cell(
            name=name or self.default_name,
            doc=tuple(self.doc),
            inputs=tuple(inputs),
            states=tuple(states),
            gates={n: exprs[n] for n in self.defs if self.kind_of[n] == "gate"},
            lets={n: exprs[n] for n in self.defs if self.kind_of[n] == "let"},
            nexts={s: exprs[("next", s)] for s in states},
            output=output[0] if output else states[0],
            params=params,
            order=tuple((self.kind_of[n], n) for n in order),
            dims=dict(self.dims),
            source=self.path,
        )

    def _param_order(self, order: list[str], states: list[str], exprs: dict) -> list[str]:
        """The parameters in the order the printer writes them back (the gates and lets in
        evaluation order, then the next-state lines; within a line, by first use in the file), so
        that the normalised text parses to the same cell: the order fixes the packed layout. A
        parameter whose every use folded away (``(U @ x) ** 0``) comes last."""
        rank = {n: k for k, n in enumerate(self.param_role)}
        out: list[str] = []
        for expr in [exprs[n] for n in order] + [exprs[("next", st)] for st in states]:
            used = {sym.name for sym in expr.free_symbols} & rank.keys()
            out += sorted(used - set(out), key=rank.__getitem__)
        return out + [n for n in self.param_role if n not in set(out)]

    def _derived_gates_are_lets(self, order: list[str], exprs: dict) -> None:
        """A ``gate`` computed from other gates alone (``gate i = 1 - f``: CIFG) is no switch of
        its own: at every 0/1 setting its value follows theirs, so it is read as a ``let``
        (enumerating it separately would add settings the cell cannot take)."""
        gateish = {n for n, k in self.kind_of.items() if k == "gate"}
        for n in order:
            if self.kind_of.get(n) not in ("gate", "let"):
                continue
            names = {s.name for s in exprs[n].free_symbols}
            if names and names <= gateish - {n}:
                self.kind_of[n] = "let"
                gateish.add(n)

    def _declare(self, n: str, kind: str, line: int, col: int) -> bool:
        if n in self.kind_of:
            first_line = self.where[n][0]
            self.fail(line, col, f"duplicate definition of {n} (already a {self.kind_of[n]} on "
                      f"line {first_line})", "each name defined once")
            return False
        self.kind_of[n] = kind
        self.where[n] = (line, col)
        return True

    # ---- dependency order --------------------------------------------------------------------
    def _order(self) -> list[str] | None:
        deps = {n: [m for m in _names(st.expr) if m in self.defs] for n, st in self.defs.items()}
        if any(st.broken for st in self.statements):
            return None  # a syntax error is already reported; deeper checks would only add noise
        order: list[str] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(n: str, stack: list[str]) -> bool:
            if state.get(n) == 2:
                return True
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                st = self.defs[n]
                self.fail(st.line, st.names[0][1], "cyclic definition: " + " -> ".join(cycle),
                          "gates and lets that do not depend on themselves (use a state for "
                          "values from the previous step)")
                return False
            state[n] = 1
            ok = all(visit(m, stack + [n]) for m in deps[n])
            state[n] = 2
            order.append(n)
            return ok

        ok = all([visit(n, []) for n in self.defs])
        return order if ok else None

    # ---- expressions -------------------------------------------------------------------------
    def _check_expressions(self, order: list[str]) -> dict:
        exprs: dict = {}
        todo = [(n, self.defs[n]) for n in order]
        todo += [(("next", s), st) for s, st in self.next_of.items() if s in self.dims]
        for key, st in todo:
            try:
                target = self.dims[key[1]] if isinstance(key, tuple) else st.shape
                dim = self._statement_shape(st, key, target)
                if not isinstance(key, tuple):
                    self.dims[key] = dim
                fold(st.expr)  # constants checked on bounded floats before SymPy folds them
                exprs[key] = _to_sympy(st.expr, self.matmul_kind)
                bad = constant_problem(exprs[key])
                if bad:
                    raise _Fail(st.expr.col, bad, "finite real constants within the limits")
                self._check_maps(exprs[key], st)
            except FoldError as e:
                self.fail(st.line, e.col or st.col, e.message, e.expected)
            except _Fail as e:
                self.fail(st.line, e.col or st.col, e.message, e.expected)
        if len(self.param_role) > MAX_PARAMS:
            name, (_, (line, col)) = list(self.param_role.items())[MAX_PARAMS]
            self.fail(line, col, f"parameter {name} is one more than the limit of {MAX_PARAMS} "
                      "learned parameters per cell", "a smaller cell")
        if not self.problems:
            self._check_used(exprs)
            self._check_inputs_reach(order, exprs, todo)
            sizes = inlined_sizes(order, exprs)
            terms = expanded_terms(order, exprs, {n for n, k in self.kind_of.items()
                                                  if k == "gate"})
            for key, st in todo:
                if sizes[key] > MAX_INLINED:
                    self.fail(st.line, st.col, f"with its gates and lets substituted in, this "
                              f"expression has {sizes[key]} parts, over the limit of "
                              f"{MAX_INLINED}", "fewer repeated uses of long lets")
                elif terms[key] > MAX_TERMS:
                    self.fail(st.line, st.col, f"multiplied out, this expression has up to "
                              f"{terms[key]} terms, over the limit of {MAX_TERMS}",
                              "fewer products of sums (the analysis multiplies them out)")
        return exprs

    def _check_maps(self, expr: sympy.Expr, st: Statement) -> None:
        """Every ``W @ v`` must still apply to a signal once constants are folded; a matrix
        multiplies one vector (the engine stacks each matrix by the vector it multiplies)."""
        signals = {sympy.Symbol(n) for n in self.kind_of}
        for mv in sorted(expr.atoms(MatVec), key=sympy.default_sort_key):
            w, v = mv.matrix.name, mv.vector
            if not v.free_symbols & signals:
                raise _Fail(st.expr.col, f"{w} @ ... applies to the constant {v} once "
                            "constants are folded", "a vector expression, e.g. W @ x")
            first = self.matrix_vector.setdefault(w, (v, st.line))
            if first[0] != v:
                raise _Fail(st.expr.col, f"matrix {w} multiplies {v} here but {first[0]} on "
                            f"line {first[1]}", "one matrix per vector (rename one of them)")

    def _check_inputs_reach(self, order: list[str], exprs: dict, todo: list) -> None:
        """Every state update must depend on an input or a state (else it is a constant) and
        the cell must learn something."""
        if not self.param_role:
            self.fail(1, 1, "the cell has no learned parameters", "e.g. W @ x or a bias b")
        signals = {sympy.Symbol(n) for n, k in self.kind_of.items() if k in ("input", "state")}
        reach: dict = {}
        for key, st in todo:
            syms = exprs[key].free_symbols
            reach[key] = (syms & signals).union(*(reach.get(s.name, set()) for s in syms))
            if isinstance(key, tuple) and not reach[key]:
                self.fail(st.line, st.expr.col, f"next {key[1]} depends on no input or state, "
                          "so it is a constant", "an update that reads an input or a state")

    def _check_used(self, exprs: dict) -> None:
        """A parameter the folded equations no longer mention (``0 * b``, ``b - b``) would have
        no place in the engine: refused where it is first used."""
        used: set[sympy.Symbol] = set()
        for e in exprs.values():
            used |= e.free_symbols
        for name, (_, (line, col)) in self.param_role.items():
            if sympy.Symbol(name) not in used:
                self.fail(line, col, f"parameter {name} vanishes from the equations once "
                          "constants are folded (e.g. it is multiplied by 0 or cancels)",
                          "every parameter to take part in the cell")

    def _set_param_dim(self, p: str, shape: tuple[str, ...], line: int) -> None:
        old = self.param_dims.get(p)
        if old is not None and old != shape:
            raise _Fail(0, f"parameter {p} is used with two sizes ({_shape(old)} and "
                        f"{_shape(shape)})", "one size per parameter")
        self.param_dims[p] = shape

    def _use_param(self, name: str, role: str, line: int, col: int) -> None:
        if name in self.param_role and self.param_role[name][0] != role:
            first_role, (fl, _) = self.param_role[name]
            raise _Fail(col, f"{name} is used as a {role} here but as a {first_role} on line "
                        f"{fl}", "one role per parameter (rename one of them)")
        self.param_role.setdefault(name, (role, (line, col)))


def _shape(shape: tuple[str, ...]) -> str:
    return "x".join(shape)


def _to_sympy(node: Node, kinds: dict[int, str]) -> sympy.Expr:
    """Build SymPy from a checked tree. Only whitelisted node types exist, so nothing runs.
    ``kinds`` says what each ``@`` is (found by the shape check): a learned matrix applied to a
    vector (``MatVec``), a matrix signal applied to one (``MatApply``) or read through
    (``VecMat``)."""
    if isinstance(node, Num):
        return sympy.Rational(Fraction(node.text))
    if isinstance(node, Name):
        return sympy.Symbol(node.id)
    if isinstance(node, Call):
        return FUNCTIONS[node.func](*(_to_sympy(a, kinds) for a in node.args))
    if isinstance(node, Neg):
        return -_to_sympy(node.operand, kinds)
    if isinstance(node, MatMul):
        left, right = sympy.Symbol(node.matrix.id), _to_sympy(node.vector, kinds)
        kind = kinds.get(id(node), "param")
        return (MatVec if kind == "param" else MatApply if kind == "apply" else VecMat)(
            left, right)
    assert isinstance(node, BinOp)
    a, b = _to_sympy(node.left, kinds), _to_sympy(node.right, kinds)
    if node.op == "+":
        return a + b
    if node.op == "-":
        return a - b
    if node.op == "*":
        return a * b
    if node.op == "/":
        if b == 0:
            raise _Fail(node.col, "division by zero", "a non-zero divisor")
        return a / b
    return a**b
