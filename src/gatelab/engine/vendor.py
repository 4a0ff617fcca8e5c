"""The vendor path: run torch's own fused recurrent kernels on a cell proved equal to one of them.

torch implements four cells natively (``torch._VF.lstm``, ``gru``, ``rnn_tanh``, ``rnn_relu``:
oneDNN/MKL on CPU, cuDNN on CUDA), written here as ``.cell`` data in ``engine/torch_cells/`` in
torch's documented form and gate order. :func:`vendor_match` proves a cell equal to one of them on
the IR, never by its name:

1. *layout*: the same number of input/recurrent row blocks, every bias split over the same
   blocks (``b = bias_ih[rows] + bias_hh[rows]``, or ``b_in``/``b_hn`` alone as torch's GRU),
   one recurrent GEMM on the output state, no other parameters. A cell written as torch's
   documentation writes it, two biases to a gate (``W_ii x + b_ii + W_hi h + b_hi``), has its
   biases stored alone (:class:`~gatelab.engine.layout.Layout` packs one bias per gate only);
   each such "loose" bias fills one block of ``bias_ih`` or ``bias_hh``: the block of a matrix
   summed next to it, the k-th bias written in a sum taking the k-th matrix written there (a block
   no bias fills is zeros);
2. *names*: a bijection of input, states, matrices and biases (or, loose, bias blocks) onto the
   template's, searched over the block permutations that keep every bias on its blocks;
3. *equations*: after renaming, every next-state expression (gates and lets inlined) minus the
   template's expands to 0 (SymPy), so the two cells compute the same function.

A match records the block permutations, so a renamed, reordered LSTM runs torch's kernel on its
own parameters (the blocks are gathered in torch's order, a view when already in it); the
results are torch's, with torch's double backward, packed sequences and ``proj_size``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

import sympy
import torch
from torch import _VF

from ..cell import Cell, load_file
from ..cell.functions import MatVec
from .layout import EngineError, Layout

TEMPLATE_DIR = Path(str(resources.files("gatelab.engine") / "torch_cells"))
TEMPLATES = {"LSTM": "lstm.cell", "GRU": "gru.cell", "RNN_TANH": "rnn_tanh.cell",
             "RNN_RELU": "rnn_relu.cell"}
KERNELS = {"LSTM": _VF.lstm, "GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu}


@dataclass(frozen=True)
class VendorMatch:
    """Whether and how a cell runs on torch's kernel.

    Attributes:
        mode: torch's name (``"LSTM"``, ``"GRU"``, ``"RNN_TANH"``, ``"RNN_RELU"``) or None.
        reason: one line saying why (the proof, or the first thing that differs).
        ih_perm, hh_perm: torch's row block ``k`` is the cell's block ``ih_perm[k]``.
        states: the cell's state names in torch's order (``h`` first, then ``c``).
        ih_bias, hh_bias: for a cell whose biases are stored alone (two to a gate, as torch's
            documentation writes them): the cell's vector that is torch's ``bias_ih``/``bias_hh``
            row block ``k`` (None: zeros); empty when the biases are packed like torch's.
    """

    mode: str | None
    reason: str
    ih_perm: tuple[int, ...] = ()
    hh_perm: tuple[int, ...] = ()
    states: tuple[str, ...] = ()
    ih_bias: tuple[str | None, ...] = ()
    hh_bias: tuple[str | None, ...] = ()

    @property
    def loose(self) -> bool:
        """Whether the cell's biases are its own tensors, gathered into torch's per call."""
        return bool(self.ih_bias or self.hh_bias)


@cache
def template(mode: str) -> Cell:
    """torch's cell ``mode`` as gatelab equations (``engine/torch_cells/*.cell``)."""
    return load_file(TEMPLATE_DIR / TEMPLATES[mode])


def template_path(mode: str) -> Path:
    """The ``.cell`` file of torch's cell ``mode`` (``nn.RNN(nonlinearity="relu")`` runs it)."""
    return TEMPLATE_DIR / TEMPLATES[mode]


@lru_cache(maxsize=256)
def vendor_match(cell: Cell) -> VendorMatch:
    """Prove ``cell`` equal to one of torch's cells (see the module docstring), or say why not.

    >>> from gatelab import load_cell
    >>> vendor_match(load_cell("lstm")).mode, vendor_match(load_cell("lstm-peephole")).mode
    ('LSTM', None)
    """
    try:
        layout = Layout.of(cell)
    except EngineError as e:
        return VendorMatch(None, f"no packed layout: {e}")
    misses = []
    for mode in TEMPLATES:
        depth, m = _match(cell, layout, mode)
        if m.mode is not None:
            return m
        misses.append((depth, m.reason))
    # The template the cell came closest to says best why it is not torch's.
    return VendorMatch(None, max(misses, key=lambda dm: dm[0])[1])


def _match(cell: Cell, layout: Layout, mode: str) -> tuple[int, VendorMatch]:
    """``(how far the proof got, result)`` against one template."""
    tpl = template(mode)
    tl = Layout.of(tpl)
    what = f"torch {mode}"
    if len(cell.states) != len(tpl.states):
        return 0, VendorMatch(None, f"{what} has {len(tpl.states)} state(s)")
    if (len(layout.ih), len(layout.hh)) != (len(tl.ih), len(tl.hh)):
        return 1, VendorMatch(None, f"{what} has {len(tl.ih)}+{len(tl.hh)} weight blocks, "
                                 f"the cell {len(layout.ih)}+{len(layout.hh)}")
    output = output_state(cell)
    if len(layout.groups) != 1 or output is None or layout.groups[0][0] != Cell.sym(output):
        return 2, VendorMatch(None, f"{what}'s recurrent matrices all multiply the output "
                                    "state alone (here: " + ", ".join(
                                        f"{' '.join(ws)} @ {v}" for v, ws in layout.groups) + ")")
    loose = _loose_sums(cell, layout)
    if layout.standalone and loose is None:
        return 3, VendorMatch(None, f"{what} has no place for the parameters "
                                    f"{', '.join(layout.standalone)}")
    if loose is None and len(layout.pairs) != len(tl.pairs):
        return 3, VendorMatch(None, f"{what}: biases are not split over the weight blocks as "
                                    "torch's bias_ih/bias_hh")
    others = [s for s in cell.states if s != output]
    t_others = [s for s in tpl.states if s != tpl.output]
    nexts = {s: cell.inline(cell.nexts[s]) for s in cell.states}
    t_nexts = {s: tpl.inline(tpl.nexts[s]) for s in tpl.states}
    t_pairs = {frozenset(p): b for b, p in tl.pairs.items()}
    if loose is not None:
        # Loose biases are proved against the template with every bias written as its blocks
        # (``b_i -> bias_ih[0] + bias_hh[0]``): the cell's biases land on single blocks.
        t_nexts = {s: e.xreplace({Cell.sym(b): sum((_slot(side, tl, w) for side, w in p),
                                                   sympy.Integer(0))
                                  for b, p in tl.pairs.items()})
                   for s, e in t_nexts.items()}
    for state_perm in itertools.permutations(others):
        smap = {output: tpl.output, **dict(zip(state_perm, t_others, strict=True))}
        for ih_perm in itertools.permutations(range(len(tl.ih))):
            for hh_perm in itertools.permutations(range(len(tl.hh))):
                if loose is None:
                    ren = _renaming(cell, layout, tl, t_pairs, smap, ih_perm, hh_perm)
                    filled: dict[sympy.Symbol, str] = {}
                else:
                    got = _loose_renaming(cell, layout, tl, t_pairs, loose, smap, ih_perm,
                                          hh_perm)
                    ren, filled = got if got is not None else (None, {})
                if ren is None:
                    continue
                # blocks no loose bias fills are zeros in the tensors torch gets
                unfilled = {_slot(side, tl, w): sympy.Integer(0)
                            for p in tl.pairs.values() for side, w in p
                            if _slot(side, tl, w) not in filled} if loose is not None else {}
                if all(sympy.expand(nexts[s].xreplace(ren)
                                    - t_nexts[smap[s]].xreplace(unfilled)) == 0
                       for s in cell.states):
                    order = tuple(sorted(cell.states, key=lambda s: tpl.states.index(smap[s])))
                    moved = ih_perm != tuple(range(len(ih_perm))) or hh_perm != tuple(
                        range(len(hh_perm)))
                    how = "; weight blocks gathered in torch's order" if moved else ""
                    ih_bias, hh_bias = (), ()
                    if loose is not None:
                        how += "; the cell's own biases gathered into bias_ih/bias_hh"
                        ih_bias = tuple(filled.get(_slot("ih", tl, w)) for w in tl.ih)
                        hh_bias = tuple(filled.get(_slot("hh", tl, w)) for w in tl.hh)
                    return 5, VendorMatch(mode, f"proved equal to torch {mode} (equations "
                                             f"match after renaming{how})", ih_perm, hh_perm,
                                          order, ih_bias, hh_bias)
    return 4, VendorMatch(None, f"{what}: the equations differ under every matching of names "
                                "and weight blocks")


def output_state(cell: Cell) -> str | None:
    """The state the cell emits: its output when that is a state, or the state whose new value
    the output is (``let y = o * tanh(c')``, ``next h = y``, ``output y``: the same readout by
    another name), else None."""
    if cell.output in cell.states:
        return cell.output
    value = cell.inline(cell.definition(cell.output))
    for s in cell.states:
        if sympy.expand(cell.inline(cell.nexts[s]) - value) == 0:
            return s
    return None


def _renaming(cell: Cell, layout: Layout, tl: Layout, t_pairs: dict, smap: dict,
              ih_perm: tuple[int, ...], hh_perm: tuple[int, ...]) -> dict | None:
    """Symbol -> template symbol for one choice of blocks, or None if a bias would straddle."""
    names = _matrix_names(cell, layout, tl, smap, ih_perm, hh_perm)
    for b, pair in layout.pairs.items():
        tb = t_pairs.get(frozenset((side, names[w]) for side, w in pair))
        if tb is None:
            return None
        names[b] = tb
    return {Cell.sym(a): Cell.sym(b) for a, b in names.items()}


def _matrix_names(cell: Cell, layout: Layout, tl: Layout, smap: dict,
                  ih_perm: tuple[int, ...], hh_perm: tuple[int, ...]) -> dict[str, str]:
    """The cell's input, states and matrices -> the template's, for one choice of blocks."""
    names = {cell.inputs[0]: tl.cell.inputs[0], **smap}
    for k, j in enumerate(ih_perm):
        names[layout.ih[j]] = tl.ih[k]
    for k, j in enumerate(hh_perm):
        names[layout.hh[j]] = tl.hh[k]
    return names


def _slot(side: str, tl: Layout, w: str) -> sympy.Symbol:
    """The symbol of torch's ``bias_<side>`` block of the template matrix ``w`` (a name no cell
    symbol can have, so renamed cell expressions never collide with it)."""
    return sympy.Symbol(f"bias_{side}[{(tl.ih if side == 'ih' else tl.hh).index(w)}]")


# a sum holding loose biases: (its matrices in writing order, its biases in writing order)
LooseSum = tuple[tuple[str, ...], tuple[str, ...]]


def _loose_sums(cell: Cell, layout: Layout) -> list[LooseSum] | None:
    """The sums of a cell whose biases the layout stores alone, when each could be torch's:
    every stored vector a plain summand of exactly one sum, next to at most as many matrices'
    products in that sum. None when the biases are packed (or a vector has no place in torch)."""
    if layout.pairs or not layout.standalone \
            or any(v not in layout.biases for v in layout.standalone):
        return None
    vectors = set(layout.standalone)
    sums: dict[str, set[sympy.Add]] = {v: set() for v in vectors}

    def walk(e: sympy.Expr) -> None:
        if isinstance(e, sympy.Add):
            for a in e.args:
                if isinstance(a, sympy.Symbol) and a.name in vectors:
                    sums[a.name].add(e)
        for a in e.args:
            walk(a)

    for e in [*cell.gates.values(), *cell.lets.values(), *cell.nexts.values()]:
        walk(e)
    if any(len(adds) != 1 for adds in sums.values()):
        return None
    # "Writing order" is the order of first use (cell.params); SymPy's sums keep no order. It
    # only decides which of two summed blocks a bias fills, where either computes the same.
    rank = {p: k for k, p in enumerate(cell.params)}
    out: list[LooseSum] = []
    for add in {next(iter(adds)) for adds in sums.values()}:
        mats = tuple(sorted((a.matrix.name for a in add.args if isinstance(a, MatVec)),
                            key=rank.__getitem__))
        bs = tuple(sorted((v for v in vectors if add in sums[v]), key=rank.__getitem__))
        if len(bs) > len(mats):
            return None
        out.append((mats, bs))
    return sorted(out, key=lambda mb: rank[mb[1][0]])


def _loose_renaming(cell: Cell, layout: Layout, tl: Layout, t_pairs: dict,
                    loose: list[LooseSum], smap: dict, ih_perm: tuple[int, ...],
                    hh_perm: tuple[int, ...]) -> tuple[dict, dict[sympy.Symbol, str]] | None:
    """Symbol -> template symbol (loose biases -> bias blocks) for one choice of blocks, and the
    blocks filled (block symbol -> cell bias); None if a sum's matrices are not one template
    bias's blocks (torch adds a gate's bias inside its GEMMs: it cannot straddle gates)."""
    names = _matrix_names(cell, layout, tl, smap, ih_perm, hh_perm)
    ren = {Cell.sym(a): Cell.sym(b) for a, b in names.items()}
    filled: dict[sympy.Symbol, str] = {}
    for mats, bs in loose:
        sides = {w: "ih" if w in layout.ih else "hh" for w in mats}
        if frozenset((sides[w], names[w]) for w in mats) not in t_pairs:
            return None
        for w, b in zip(mats, bs, strict=False):
            slot = _slot(sides[w], tl, names[w])
            filled[slot] = b
            ren[Cell.sym(b)] = slot
    return ren, filled


def blocks(t: torch.Tensor | None, perm: tuple[int, ...], rows: int) -> torch.Tensor | None:
    """``t``'s row blocks in the order ``perm`` (``t`` itself when already in it)."""
    if t is None or perm == tuple(range(len(perm))):
        return t
    return torch.cat([t[j * rows:(j + 1) * rows] for j in perm])


def bias_blocks(match: VendorMatch, tensors: dict[str, torch.Tensor],
                hidden_size: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """torch's ``(bias_ih, bias_hh)`` in torch's block order from gatelab's tensors of one layer
    and direction, or None with ``bias=False``. Packed biases are gathered blocks (views when
    already in order); loose ones (two to a gate) are concatenated, zeros where none is."""
    if not match.loose:
        if "bias_ih" not in tensors:
            return None
        return (blocks(tensors["bias_ih"], match.ih_perm, hidden_size),
                blocks(tensors["bias_hh"], match.hh_perm, hidden_size))
    names = [b for b in (*match.ih_bias, *match.hh_bias) if b is not None]
    if not any(b in tensors for b in names):
        return None
    ref = tensors[names[0]]
    zeros = ref.new_zeros(hidden_size)
    return (torch.cat([zeros if b is None else tensors[b] for b in match.ih_bias]),
            torch.cat([zeros if b is None else tensors[b] for b in match.hh_bias]))


def flat_weights(match: VendorMatch, tensors: list[dict[str, torch.Tensor]],
                 hidden_size: int) -> list[torch.Tensor]:
    """torch's ``_flat_weights`` from gatelab's packed tensors of each layer and direction
    (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` (or the cell's loose biases) and
    ``weight_hr`` if projected)."""
    flat = []
    for t in tensors:
        flat.append(blocks(t["weight_ih"], match.ih_perm, hidden_size))
        flat.append(blocks(t["weight_hh"], match.hh_perm, hidden_size))
        biases = bias_blocks(match, t, hidden_size)
        if biases is not None:
            flat.extend(biases)
        if "weight_hr" in t:
            flat.append(t["weight_hr"])
    return flat


# PLR0913: the arguments of torch's own RNN kernels, passed through
def run_vendor(match: VendorMatch, x: torch.Tensor, batch_sizes: torch.Tensor | None,  # noqa: PLR0913
               hx: tuple[torch.Tensor, ...], flat: list[torch.Tensor], bias: bool,
               num_layers: int, dropout: float, training: bool, bidirectional: bool,
               batch_first: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """torch's kernel on all layers at once: ``x`` as ``torch.nn.LSTM`` passes it (padded with
    ``batch_first``, or the data of a packed sequence with its ``batch_sizes``), ``hx`` in torch's
    state order. Returns ``(output, final states in torch's order)``."""
    kernel = KERNELS[match.mode]
    h = hx if match.mode == "LSTM" else hx[0]
    if batch_sizes is None:
        res = kernel(x, h, flat, bias, num_layers, dropout, training, bidirectional, batch_first)
    else:
        res = kernel(x, batch_sizes, h, flat, bias, num_layers, dropout, training, bidirectional)
    return res[0], tuple(res[1:])


def explain_path(cell: Cell) -> dict:
    """Which path ``backend="auto"`` takes for ``cell`` on the CPU, and why (plain data:
    ``{"path": "vendor"|"scan"|"generated"|..., "torch": mode or None, "reason": str}``, path
    None for a cell the engine cannot run): :func:`gatelab.engine.route.describe`.

    >>> from gatelab import load_cell
    >>> explain_path(load_cell("gru-torch"))["path"], explain_path(load_cell("gru-torch"))["torch"]
    ('vendor', 'GRU')
    """
    from .route import describe  # the route imports this module

    return describe(cell)
