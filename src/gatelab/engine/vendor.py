"""The vendor path: run torch's own fused recurrent kernels on a cell proved equal to one of them.

torch implements four cells natively (``torch._VF.lstm``, ``gru``, ``rnn_tanh``, ``rnn_relu``:
oneDNN/MKL on CPU, cuDNN on CUDA), written here as ``.cell`` data in ``engine/torch_cells/`` in
torch's documented form and gate order. :func:`vendor_match` proves a cell equal to one of them on
the IR, never by its name:

1. *layout*: the same number of input/recurrent row blocks, every bias split over the same
   blocks (``b = bias_ih[rows] + bias_hh[rows]``, or ``b_in``/``b_hn`` alone as torch's GRU),
   one recurrent GEMM on the output state, no other parameters;
2. *names*: a bijection of input, states, matrices and biases onto the template's, searched over
   the block permutations that keep every bias on its blocks;
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
    """

    mode: str | None
    reason: str
    ih_perm: tuple[int, ...] = ()
    hh_perm: tuple[int, ...] = ()
    states: tuple[str, ...] = ()


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
    if len(layout.groups) != 1 or cell.output not in cell.states \
            or layout.groups[0][0] != Cell.sym(cell.output):
        return 2, VendorMatch(None, f"{what}'s recurrent matrices all multiply the output "
                                    "state alone (here: " + ", ".join(
                                        f"{' '.join(ws)} @ {v}" for v, ws in layout.groups) + ")")
    if layout.standalone:
        return 3, VendorMatch(None, f"{what} has no place for the parameters "
                                    f"{', '.join(layout.standalone)}")
    if len(layout.pairs) != len(tl.pairs):
        return 3, VendorMatch(None, f"{what}: biases are not split over the weight blocks as "
                                    "torch's bias_ih/bias_hh")
    others = [s for s in cell.states if s != cell.output]
    t_others = [s for s in tpl.states if s != tpl.output]
    nexts = {s: cell.inline(cell.nexts[s]) for s in cell.states}
    t_nexts = {s: tpl.inline(tpl.nexts[s]) for s in tpl.states}
    t_pairs = {frozenset(p): b for b, p in tl.pairs.items()}
    for state_perm in itertools.permutations(others):
        smap = {cell.output: tpl.output, **dict(zip(state_perm, t_others, strict=True))}
        for ih_perm in itertools.permutations(range(len(tl.ih))):
            for hh_perm in itertools.permutations(range(len(tl.hh))):
                ren = _renaming(cell, layout, tl, t_pairs, smap, ih_perm, hh_perm)
                if ren is None:
                    continue
                if all(sympy.expand(nexts[s].xreplace(ren) - t_nexts[smap[s]]) == 0
                       for s in cell.states):
                    order = tuple(sorted(cell.states, key=lambda s: tpl.states.index(smap[s])))
                    moved = ih_perm != tuple(range(len(ih_perm))) or hh_perm != tuple(
                        range(len(hh_perm)))
                    how = "; weight blocks gathered in torch's order" if moved else ""
                    return 5, VendorMatch(mode, f"proved equal to torch {mode} (equations "
                                             f"match after renaming{how})", ih_perm, hh_perm,
                                          order)
    return 4, VendorMatch(None, f"{what}: the equations differ under every matching of names "
                                "and weight blocks")


def _renaming(cell: Cell, layout: Layout, tl: Layout, t_pairs: dict, smap: dict,
              ih_perm: tuple[int, ...], hh_perm: tuple[int, ...]) -> dict | None:
    """Symbol -> template symbol for one choice of blocks, or None if a bias would straddle."""
    names = {cell.inputs[0]: tl.cell.inputs[0], **smap}
    for k, j in enumerate(ih_perm):
        names[layout.ih[j]] = tl.ih[k]
    for k, j in enumerate(hh_perm):
        names[layout.hh[j]] = tl.hh[k]
    for b, pair in layout.pairs.items():
        tb = t_pairs.get(frozenset((side, names[w]) for side, w in pair))
        if tb is None:
            return None
        names[b] = tb
    return {Cell.sym(a): Cell.sym(b) for a, b in names.items()}


def blocks(t: torch.Tensor | None, perm: tuple[int, ...], rows: int) -> torch.Tensor | None:
    """``t``'s row blocks in the order ``perm`` (``t`` itself when already in it)."""
    if t is None or perm == tuple(range(len(perm))):
        return t
    return torch.cat([t[j * rows:(j + 1) * rows] for j in perm])


def flat_weights(match: VendorMatch, tensors: list[dict[str, torch.Tensor]],
                 hidden_size: int) -> list[torch.Tensor]:
    """torch's ``_flat_weights`` from gatelab's packed tensors of each layer and direction
    (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` and ``weight_hr`` if projected)."""
    flat = []
    for t in tensors:
        flat.append(blocks(t["weight_ih"], match.ih_perm, hidden_size))
        flat.append(blocks(t["weight_hh"], match.hh_perm, hidden_size))
        if "bias_ih" in t:
            flat.append(blocks(t["bias_ih"], match.ih_perm, hidden_size))
            flat.append(blocks(t["bias_hh"], match.hh_perm, hidden_size))
        if "weight_hr" in t:
            flat.append(t["weight_hr"])
    return flat


def run_vendor(match: VendorMatch, x: torch.Tensor, batch_sizes: torch.Tensor | None,
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
    ``{"path": "vendor"|"scan"|"generated"|None, "torch": mode or None, "reason": str}``).

    >>> from gatelab import load_cell
    >>> explain_path(load_cell("gru"))["path"], explain_path(load_cell("gru-torch"))["torch"]
    ('generated', 'GRU')
    """
    from .plan import is_scan_parallel

    m = vendor_match(cell)
    if m.mode is not None:
        return {"path": "vendor", "torch": m.mode,
                "reason": f"torch's fused {m.mode} kernels: {m.reason}"}
    try:
        Layout.of(cell)
    except EngineError as e:
        return {"path": None, "torch": None, "reason": f"the engine cannot run it: {e}"}
    if is_scan_parallel(cell):
        return {"path": "scan", "torch": None,
                "reason": f"gatelab's parallel scan (scan-parallel); not torch's: {m.reason}"}
    return {"path": "generated", "torch": None,
            "reason": f"gatelab's generated engine; not torch's: {m.reason}"}
