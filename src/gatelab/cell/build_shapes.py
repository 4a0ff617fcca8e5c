"""The shape check of :mod:`gatelab.cell.build`: every expression's shape, found bottom-up, and
every elementwise parameter's shape, handed down.

Shapes are the labels of :mod:`gatelab.cell.shapes`. A number or an elementwise parameter
*adapts* (its bottom-up shape is None): a parameter takes the shape of the nearest enclosing
expression whose shape is known, and a statement's parameters that meet no sized signal take the
statement's shape (its declared one, else the hidden size); a declared shape reaches them
through unary elementwise functions (``let dA : hidden x 16 = exp(-delta * exp(A_log))`` makes
``A_log`` a hidden x 16 parameter, ``delta`` a hidden vector scaling its rows). ``W @ v`` has
as many rows as the
statement it is in (``let d : 1 = softplus(w @ x + b)``: ``w`` is ``1 x I``). Each misuse is one
problem at the column of the operator or call that cannot take its operands.
"""

from __future__ import annotations

from . import shapes
from .ir import HIDDEN
from .syntax import BinOp, Call, MatMul, Name, Neg, Node, Num, Statement

# functions whose argument must be a vector (normalisations and reductions over its units)
_VECTOR_ONLY = ("layer_norm", "rms_norm", "sum", "dot", "outer")


class _Fail(Exception):
    def __init__(self, col: int, message: str, expected: str = ""):
        self.col, self.message, self.expected = col, message, expected


def _names(node: Node | None) -> list[str]:
    """Names referenced in an expression (matrices excluded), in order of appearance."""
    out: list[str] = []
    todo = [node]  # an explicit stack: long sums make deep left-leaning trees
    while todo:
        n = todo.pop()
        if isinstance(n, Name):
            if n.id not in out:
                out.append(n.id)
        elif isinstance(n, Call):
            todo += reversed(n.args)
        elif isinstance(n, Neg):
            todo.append(n.operand)
        elif isinstance(n, MatMul):
            todo.append(n.vector)
        elif isinstance(n, BinOp):
            todo += [n.right, n.left]
    return out


def _old_label(dim: str) -> str:
    return "hidden size" if dim == HIDDEN else "input size"


def _is_old(dim: str) -> bool:
    return not shapes.is_matrix(dim) and not shapes.is_modern_size(dim)


class ShapeChecks:
    """Mixin of the cell builder: needs ``kind_of``, ``dims``, ``own``, ``matmul_kind``,
    ``rows``, ``_use_param`` and ``_set_param_dim``."""

    kind_of: dict[str, str]
    dims: dict[str, str]
    own: dict[int, str | None]
    matmul_kind: dict[int, str]
    rows: str

    def _statement_shape(self, st: Statement, key, target: str | None) -> str:
        """The shape of a statement's expression (``target``: the declared shape of a sized
        gate or let, the state's shape for ``next``), with every parameter in it sized."""
        self.rows = shapes.rows(target) if target else HIDDEN
        self.own = {}
        dim = self._dim(st.expr, st.line)
        if target is None:
            final = dim or HIDDEN
        else:
            if dim is not None and shapes.broadcast(dim, target) != target:
                if isinstance(key, tuple) and target == HIDDEN and _is_old(dim):
                    raise _Fail(st.expr.col, f"next {key[1]} has the input's size, not the "
                                "hidden size", "a hidden-size expression (map inputs with a "
                                "matrix: W @ x)")
                what = f"next {key[1]}" if isinstance(key, tuple) else \
                    f"{st.keyword} {st.names[0][0]}"
                raise _Fail(st.expr.col, f"{what} is {shapes.describe(target)} but its "
                            f"expression is {shapes.describe(dim)}", "an expression of that "
                            "shape (a size-1 vector or a matrix's row vector may broadcast)")
            final = target
        self._assign(st.expr, final, st.line)
        return final

    # ---- bottom-up ---------------------------------------------------------------------------
    def _dim(self, node: Node, line: int) -> str | None:
        dim = self._dim_of(node, line)
        self.own[id(node)] = dim
        return dim

    def _dim_of(self, node: Node, line: int) -> str | None:
        if isinstance(node, Num):
            return None
        if isinstance(node, Name):
            if node.id in self.kind_of:
                return self.dims.get(node.id, HIDDEN)
            self._use_param(node.id, "vector", line, node.col)
            return None
        if isinstance(node, Call):
            return self._call_dim(node, line)
        if isinstance(node, Neg):
            return self._dim(node.operand, line)
        if isinstance(node, MatMul):
            return self._matmul_dim(node, line)
        assert isinstance(node, BinOp)
        if node.op == "**":
            if _names(node.right):
                raise _Fail(node.right.col, "exponent must be a number", "e.g. h ** 2")
            self._dim(node.right, line)
            return self._dim(node.left, line)
        return self._combine(node.op, node.col, self._dim(node.left, line),
                             self._dim(node.right, line))

    def _combine(self, op: str, col: int, dl: str | None, dr: str | None) -> str | None:
        if not (dl and dr):
            return dl or dr
        out = shapes.broadcast(dl, dr)
        if out is not None:
            return out
        if _is_old(dl) and _is_old(dr):
            raise _Fail(col, f"'{op}' combines vectors of different sizes ({_old_label(dl)} and "
                        f"{_old_label(dr)})", "map inputs to the hidden size with a matrix "
                        "first, e.g. W @ x")
        raise _Fail(col, f"'{op}' combines {shapes.describe(dl)} and {shapes.describe(dr)}",
                    "equal shapes, a size-1 vector, or a vector of a matrix's row size (it "
                    "scales the rows)")

    def _call_dim(self, node: Call, line: int) -> str | None:
        ds = [self._dim(a, line) for a in node.args]
        f = node.func
        if f in _VECTOR_ONLY:
            for a, d in zip(node.args, ds, strict=True):
                if shapes.is_matrix(d):
                    raise _Fail(a.col, f"{f} takes a vector, but this is {shapes.describe(d)}",
                                "a vector (read a matrix memory first, e.g. C @ q)")
        if f == "layer_norm" and ds[0] not in (None, HIDDEN):
            raise _Fail(node.col, "layer_norm normalises over the hidden units, but its "
                        "argument has the input's size" if _is_old(ds[0]) else "layer_norm "
                        f"normalises over the hidden units, but its argument is "
                        f"{shapes.describe(ds[0])}", "a hidden-size argument, e.g. "
                        "layer_norm(W @ x) (or rms_norm for other sizes)")
        if f in ("max", "dot"):
            both = self._combine(f, node.col, ds[0], ds[1])
            return "1" if f == "dot" else both
        if f == "sum":
            return "1"
        if f == "outer":
            for a in node.args:  # a number has no rows: outer(2, k) has no size to take
                if not _names(a):
                    raise _Fail(a.col, "outer of a constant has no size",
                                "vectors (a learned vector is a name: outer(g, k))")
            return shapes.matrix(ds[0] or HIDDEN, ds[1] or HIDDEN)
        return ds[0]

    def _matmul_dim(self, node: MatMul, line: int) -> str:
        w = node.matrix.id
        if w not in self.kind_of:  # a learned matrix: `W @ v`
            self._use_param(w, "matrix", line, node.col)
            signals = [n for n in _names(node.vector) if n in self.kind_of]
            if not signals:
                names = _names(node.vector)
                shown = ", ".join(names) if names else "only numbers"
                raise _Fail(node.vector.col, f"undefined name: right of @ is {shown}, which is "
                            "not an input, state, gate or let", "a vector expression, e.g. "
                            f"{w} @ x")
            dv = self._dim(node.vector, line)
            if shapes.is_matrix(dv):
                raise _Fail(node.vector.col, f"{w} @ ... applies a weight matrix to a vector, "
                            f"but its right side is {shapes.describe(dv)}",
                            f"a vector (read a matrix memory first, e.g. {w} @ (C @ q))")
            try:
                self._set_param_dim(w, (self.rows, dv or HIDDEN), line)
            except _Fail as e:
                raise _Fail(node.col, e.message, e.expected) from None
            self.matmul_kind[id(node)] = "param"
            return self.rows
        left = self.dims.get(w, HIDDEN)
        if not _names(node.vector):
            raise _Fail(node.vector.col, f"{w} @ ... applies to only numbers", "a vector "
                        f"expression, e.g. {w} @ q")
        dv = self._dim(node.vector, line)
        if shapes.is_matrix(left):  # `S @ v` with S a matrix signal
            if shapes.is_matrix(dv):
                raise _Fail(node.vector.col, f"{w} @ ... applies the matrix {w} to a vector, "
                            f"but its right side is {shapes.describe(dv)}", "a vector")
            if dv is not None and dv != shapes.cols(left):
                raise _Fail(node.col, f"{w} @ ...: {w} is {shapes.describe(left)}, which "
                            f"needs a vector of size {shapes.size_text(shapes.cols(left))}, "
                            f"but its right side is {shapes.describe(dv)}", "matching sizes")
            self.matmul_kind[id(node)] = "apply"
            return shapes.rows(left)
        if shapes.is_matrix(dv):  # `q @ S`: q read through S, i.e. Sᵀ q
            if left != shapes.rows(dv):
                raise _Fail(node.col, f"{w} @ ...: {w} is {shapes.describe(left)} but the "
                            f"matrix right of @ is {shapes.describe(dv)}, whose rows it must "
                            "match", "matching sizes")
            self.matmul_kind[id(node)] = "read"
            return shapes.cols(dv)
        raise _Fail(node.col, f"left of @ must be a weight matrix, but {w} is a "
                    f"{self.kind_of[w]}", f"a parameter name, e.g. W_{w} @ ..., a matrix "
                    "state, or a vector read through a matrix (q @ C)")

    # ---- top-down ----------------------------------------------------------------------------
    def _assign(self, node: Node, dim: str, line: int) -> None:
        """Give every adapting parameter below ``node`` (whose shape is ``dim``) its shape."""
        todo = [(node, dim)]  # an explicit stack: long sums make deep trees
        while todo:
            n, d = todo.pop()
            if isinstance(n, Name):
                if n.id not in self.kind_of:
                    self._set_param_dim(n.id, shapes.parts(d), line)
            elif isinstance(n, Neg):  # elementwise and unary: a declared shape passes through
                todo.append((n.operand, d))
            elif isinstance(n, BinOp) and n.op == "**":
                todo.append((n.left, d))
            elif isinstance(n, BinOp):
                todo += [(c, self.own[id(c)] or d) for c in (n.left, n.right)]
            elif isinstance(n, MatMul):
                if self.matmul_kind[id(n)] == "param":
                    fallback = HIDDEN
                elif self.matmul_kind[id(n)] == "apply":
                    fallback = shapes.cols(self.dims[n.matrix.id])
                else:
                    fallback = HIDDEN  # a matrix expression: its own shape is known
                todo.append((n.vector, self.own[id(n.vector)] or fallback))
            elif isinstance(n, Call):
                todo += self._call_args(n, d)

    def _call_args(self, n: Call, d: str) -> list[tuple[Node, str]]:
        own = [self.own[id(a)] for a in n.args]
        if n.func == "outer":
            fall = [shapes.rows(d), shapes.cols(d)]
        elif n.func in ("sum", "dot"):
            both = own[0] if len(own) == 1 else shapes.broadcast(own[0] or own[1] or HIDDEN,
                                                                 own[1] or own[0] or HIDDEN)
            fall = [both or HIDDEN] * len(own)
        elif len(n.args) == 1 and n.func not in ("layer_norm", "rms_norm"):
            return [(n.args[0], d)]  # elementwise and unary: a declared shape passes through
        else:
            fall = [d] * len(own)
        return [(a, o or f) for a, o, f in zip(n.args, own, fall, strict=True)]
