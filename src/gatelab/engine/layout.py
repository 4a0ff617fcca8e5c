"""Where a cell's parameters live inside a layer: packed, torch-style tensors derived from the
equations.

Every matrix that multiplies the input (``W @ x``) becomes a block of rows of ``weight_ih``
``(G_x*H, I)``; every other matrix (``U @ h``, ``U @ (r*h)``, ...) a block of ``weight_hh``
``(G_h*H, H)``, grouped by the vector it multiplies so each group is one contiguous slice (one
GEMM). A bias that is a plain summand next to matrices (``W @ x + U @ h + b``) is split like torch
does: one part per matrix in ``bias_ih``/``bias_hh`` (rows aligned with the weights), so the cell's
``b = bias_ih[rows of W] + bias_hh[rows of U]``. For the LSTM this is exactly ``torch.nn.LSTM``'s
layout (gate order i, f, g, o), for ``gru-torch`` exactly ``torch.nn.GRU``'s (r, z, n with
``b_in``/``b_hn`` in the n rows), derived rather than tabulated.

Vectors that are not such biases (peepholes ``p * c``, ``sigmoid(b)``) are stored alone. When some
matrix has no companion bias (or two), every vector is stored alone ("standalone" mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy
import torch

from ..cell.functions import MatVec
from ..cell.ir import Cell
from ..cell.support import require_vector_cell
from ..errors import GatelabError


class EngineError(GatelabError, ValueError):
    """A cell the engine cannot lay out or run; the message says why and what is supported."""


def _all_exprs(cell: Cell) -> list[sympy.Expr]:
    return [*cell.gates.values(), *cell.lets.values(), *cell.nexts.values()]


@dataclass
class Layout:
    """The packed parameter layout of one layer/direction of a cell.

    Attributes:
        ih: input matrices in ``weight_ih`` row-block order.
        hh: recurrent matrices in ``weight_hh`` row-block order (grouped by vector).
        pairs: bias name -> ``[("ih"|"hh", matrix), ...]``: the row blocks whose sum is the bias.
        standalone: vector parameters stored as their own tensors.
        biases: vectors that only ever appear as plain summands (dropped when ``bias=False``).
        groups: ``(vector, matrices)`` of ``weight_hh`` in row order: one GEMM each.
    """

    cell: Cell
    ih: list[str]
    hh: list[str]
    pairs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    standalone: list[str] = field(default_factory=list)
    biases: set[str] = field(default_factory=set)
    groups: list[tuple[sympy.Expr, list[str]]] = field(default_factory=list)

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def of(cls, cell: Cell) -> Layout:
        """Derive the layout from the cell's equations. Raises :class:`EngineError`."""
        require_vector_cell(cell, "the engine (train, gatelab.nn, bench, grad)", EngineError)
        if len(cell.inputs) != 1:
            raise EngineError(f"cell {cell.name!r} has {len(cell.inputs)} inputs; the recurrent "
                              "layers take cells with exactly one input")
        x = Cell.sym(cell.inputs[0])
        vector_of: dict[str, sympy.Expr] = {}
        for e in _all_exprs(cell):
            for mv in e.atoms(MatVec):
                w = mv.matrix.name
                if w in vector_of and vector_of[w] != mv.vector:
                    raise EngineError(f"matrix {w!r} multiplies two different vectors "
                                      f"({vector_of[w]} and {mv.vector}); use one matrix per use")
                vector_of[w] = mv.vector
        ih, hh_groups = [], {}
        for w in cell.matrices:
            v = vector_of[w]
            if v == x:
                ih.append(w)
            elif cell.params[w].shape[1] != "H":
                raise EngineError(f"matrix {w!r} multiplies {v}, an input-sized vector other "
                                  f"than the input {x}; write it as {w} @ {x}")
            else:
                hh_groups.setdefault(v, []).append(w)
        hh = [w for ws in hh_groups.values() for w in ws]
        layout = cls(cell, ih, hh, groups=list(hh_groups.items()))
        layout._find_biases()
        return layout

    def _find_biases(self) -> None:
        cell = self.cell
        vectors = set(cell.vectors)
        summand_adds: dict[str, set[sympy.Add]] = {v: set() for v in vectors}
        other_use: set[str] = set()
        # Every sum (or None: not a plain summand) each matrix's product appears in. A bias part
        # is added inside the matrix's GEMM, so it may only be split onto a matrix whose every
        # use sits in that bias's own sum (``tanh(U@h + b) - tanh(U@h)`` must not get b twice).
        matvec_parents: dict[str, set[sympy.Add | None]] = {w: set() for w in cell.matrices}

        def walk(e: sympy.Expr, parent_is_add: sympy.Add | None) -> None:
            if isinstance(e, MatVec):
                matvec_parents[e.matrix.name].add(parent_is_add)
            if isinstance(e, sympy.Symbol):
                if e.name in vectors:
                    if parent_is_add is not None:
                        summand_adds[e.name].add(parent_is_add)
                    else:
                        other_use.add(e.name)
                return
            for a in e.args:
                walk(a, e if isinstance(e, sympy.Add) else None)

        for e in _all_exprs(cell):
            walk(e, None)
        self.biases = {v for v in vectors if v not in other_use and summand_adds[v]}
        # A bias pairs with the matrices summed next to it, if it sits in exactly one sum.
        pair_of: dict[str, list[str]] = {w: [] for w in cell.matrices}
        pairs: dict[str, list[tuple[str, str]]] = {}
        for b in sorted(self.biases, key=cell.vectors.index):
            if len(summand_adds[b]) != 1:
                continue
            (add,) = summand_adds[b]
            mats = [a.matrix.name for a in add.args if isinstance(a, MatVec)]
            if not mats or any(matvec_parents[w] != {add} for w in mats):
                continue
            for w in mats:
                pair_of[w].append(b)
            pairs[b] = [("ih" if w in self.ih else "hh", w) for w in mats]
        if all(len(bs) == 1 for bs in pair_of.values()):
            self.pairs = pairs
        self.standalone = [v for v in cell.vectors if v not in self.pairs]

    def bias_flag(self, tensors: dict[str, torch.Tensor]) -> bool:
        """The ``bias`` argument the packed ``tensors`` were made with."""
        if self.pairs:
            return "bias_ih" in tensors or "bias_hh" in tensors
        return all(v in tensors for v in self.standalone if v in self.biases)

    # ---- shapes and views --------------------------------------------------------------------
    def tensor_shapes(self, input_size: int, hidden_size: int,
                      bias: bool = True) -> dict[str, tuple[int, ...]]:
        """Packed tensor name (without layer suffix) -> shape. A cell with an input of the
        hidden size (``input x : hidden``) needs ``input_size == hidden_size``."""
        H = hidden_size
        if self.cell.hidden_inputs and input_size != hidden_size:
            raise EngineError(
                f"cell {self.cell.name!r} declares `input {self.cell.hidden_inputs[0]} : hidden` "
                f"(its input is used as a hidden-size vector), so input_size must equal "
                f"hidden_size; got input_size={input_size}, hidden_size={hidden_size}")
        shapes: dict[str, tuple[int, ...]] = {}
        if self.ih:
            shapes["weight_ih"] = (len(self.ih) * H, input_size)
        if self.hh:
            shapes["weight_hh"] = (len(self.hh) * H, H)
        if bias and self.pairs:
            if self.ih:
                shapes["bias_ih"] = (len(self.ih) * H,)
            if self.hh:
                shapes["bias_hh"] = (len(self.hh) * H,)
        for v in self.standalone:
            if bias or v not in self.biases:
                shapes[v] = self.cell.param_shape(v, input_size, hidden_size)
        return shapes

    def rows(self, side: str, matrix: str, hidden_size: int) -> slice:
        """The rows of ``weight_<side>``/``bias_<side>`` that belong to ``matrix``."""
        k = (self.ih if side == "ih" else self.hh).index(matrix)
        return slice(k * hidden_size, (k + 1) * hidden_size)

    def cell_params(self, tensors: dict[str, torch.Tensor],
                    hidden_size: int) -> dict[str, torch.Tensor]:
        """The cell's own parameters (``W_i``, ``b_o``, ...) from the packed tensors.

        Matrices are views; a split bias is the sum of its parts (autograd flows to both);
        a bias switched off by ``bias=False`` is a zero vector.
        """
        H = hidden_size
        out: dict[str, torch.Tensor] = {}
        for w in self.ih:
            out[w] = tensors["weight_ih"][self.rows("ih", w, H)]
        for w in self.hh:
            out[w] = tensors["weight_hh"][self.rows("hh", w, H)]
        ref = next(iter(tensors.values()))
        for b in self.cell.vectors:
            if b in tensors:
                out[b] = tensors[b]
            elif b in self.pairs and f"bias_{self.pairs[b][0][0]}" in tensors:
                parts = [tensors[f"bias_{side}"][self.rows(side, w, H)]
                         for side, w in self.pairs[b]]
                out[b] = parts[0] if len(parts) == 1 else sum(parts[1:], parts[0])
            else:
                out[b] = ref.new_zeros(self.cell.param_shape(b, H, H))
        return {name: out[name] for name in self.cell.params}
