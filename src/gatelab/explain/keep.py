"""The keep gate of a cell, read from its analysis, and the bias that leans it towards keeping.

A cell's *keep gate* is the gate with one position at which the memory passes on unchanged
(``hold``: MGU ``f = 0``, GRU ``z = 1``) or with an identity path added to it (``residual_rnn``:
LSTM ``f = 1``, ``c' = c + i ⊙ g``), while its other position drops the old memory. It is the
"forget gate" of the forget-gate-bias trick (Gers et al. 2000; Jozefowicz et al. 2015 set the
LSTM's ``b_f`` to 1): a bias that pushes this gate towards its keeping position at
initialisation makes the untrained network remember by default.

>>> from gatelab import load_cell
>>> keep_gate(load_cell("lstm")), keep_gate(load_cell("gru")), keep_gate(load_cell("mgu"))
(('f', 1), ('z', 1), ('f', 0))
"""

from __future__ import annotations

import torch

from ..cell import Cell
from ..errors import UsageError
from .switches import setting_kind

KEEPING = ("hold", "residual_rnn")


def _keeps(kind: str) -> bool:
    return any(k in kind for k in KEEPING)


def keep_gate(cell: Cell) -> tuple[str, int] | None:
    """``(gate, value)``: the gate whose position ``value`` keeps the memory (alone, the other
    gates left free) and whose other position does not; ``None`` when no gate does this."""
    for g in cell.gates:
        for v in (0, 1):
            if _keeps(setting_kind(cell, {g: v})) and not _keeps(setting_kind(cell, {g: 1 - v})):
                return g, v
    return None


def gate_bias_name(cell: Cell, gate: str) -> str:
    """The vector parameter summed inside gate ``gate``'s pre-activation (``b_f`` for
    ``f = σ(W_f x + U_f h + b_f)``). Raises ``UsageError`` when there is not exactly one."""
    names = [s.name for s in cell.gates[gate].free_symbols
             if s.name in cell.params and cell.params[s.name].role == "vector"]
    if len(names) != 1:
        raise UsageError(f"gate {gate!r} of {cell.name} has {len(names)} bias vectors "
                         f"({', '.join(sorted(names)) or 'none'}); expected one")
    return names[0]


@torch.no_grad()
def shift_keep_bias(rnn: torch.nn.Module, amount: float) -> str:
    """Add ``amount`` towards keeping to the keep gate's bias in every layer of ``rnn`` (a
    ``gatelab.nn.RNN``): ``+amount`` when the gate keeps at 1, ``-amount`` when at 0, so the
    untrained gate starts near σ(±amount) on the keeping side. Returns ``"b_f += 1.0"``-style
    text. Raises ``UsageError`` for a cell without a keep gate or without that bias."""
    cell = rnn.cell
    found = keep_gate(cell)
    if found is None:
        raise UsageError(f"{cell.name} has no gate that keeps the memory at one position")
    gate, keep = found
    bias = gate_bias_name(cell, gate)
    delta = amount if keep == 1 else -amount
    layout, H = rnn.layout, rnn.hidden_size
    for layer in range(rnn.num_layers):
        for d in range(rnn.num_directions):
            packed = rnn.packed_params(layer, d)
            if bias in packed:  # a standalone vector
                packed[bias].add_(delta)
            elif bias in layout.pairs and f"bias_{layout.pairs[bias][0][0]}" in packed:
                side, matrix = layout.pairs[bias][0]  # the bias is a sum: shift one part
                packed[f"bias_{side}"][layout.rows(side, matrix, H)].add_(delta)
            else:
                raise UsageError(f"{cell.name} was built without biases: no {bias} to shift")
    return f"{bias} {'+' if delta >= 0 else '-'}= {abs(delta):g}"
