"""``gatelab.nn.Cell``: one step of any cell, with ``torch.nn.LSTMCell``'s API.

>>> import torch, gatelab.nn
>>> step = gatelab.nn.Cell("lstm", 3, 5)
>>> h, c = step(torch.randn(2, 3))
>>> tuple(h.shape), sorted(n for n, _ in step.named_parameters())
((2, 5), ['bias_hh', 'bias_ih', 'weight_hh', 'weight_ih'])
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..cell import Cell as CellIR
from ..cell import load_cell
from ..cell.evaluate import step
from ..engine.layout import Layout


class Cell(nn.Module):
    """A single step: ``cell(input (N, I) or (I,), hx=None) -> h'`` (one state) or a tuple of
    new states with the output state first (LSTM: ``(h', c')``). Parameters ``weight_ih``,
    ``weight_hh``, ``bias_ih``, ``bias_hh`` in the layout of :class:`gatelab.nn.RNN`."""

    def __init__(self, cell: str | Path | CellIR, input_size: int, hidden_size: int,
                 bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self.cell = load_cell(cell)
        self.layout = Layout.of(self.cell)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        out = self.cell.output
        self.state_names = ((out,) if out in self.cell.states else ()) + tuple(
            s for s in self.cell.states if s != out)
        for t, shape in self.layout.tensor_shapes(input_size, hidden_size, bias).items():
            setattr(self, t, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
        self._names = list(self.layout.tensor_shapes(input_size, hidden_size, bias))
        k = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def cell_params(self) -> dict[str, torch.Tensor]:
        """Parameters under the cell's own names (see :meth:`gatelab.nn.RNN.cell_params`)."""
        return self.layout.cell_params({t: getattr(self, t) for t in self._names},
                                       self.hidden_size)

    def forward(self, input: torch.Tensor, hx=None):
        if not torch.is_tensor(input) or input.dim() not in (1, 2) \
                or input.shape[-1] != self.input_size:
            got = tuple(input.shape) if torch.is_tensor(input) else type(input).__name__
            raise ValueError(f"input must be (N, {self.input_size}) or ({self.input_size},), "
                             f"got {got}")
        unbatched = input.dim() == 1
        x = input.unsqueeze(0) if unbatched else input
        if hx is None:
            hs = tuple(x.new_zeros(x.shape[0], self.hidden_size) for _ in self.state_names)
        else:
            hs = (hx,) if torch.is_tensor(hx) else tuple(hx)
            if len(hs) != len(self.state_names):
                raise ValueError(f"hx must give {len(self.state_names)} state(s) "
                                 f"({', '.join(self.state_names)})")
            hs = tuple(h.unsqueeze(0) if unbatched else h for h in hs)
        states = dict(zip(self.state_names, hs, strict=True))
        r = step(self.cell, {self.cell.inputs[0]: x}, states, self.cell_params())
        new = tuple(r.states[s] for s in self.state_names)
        if unbatched:
            new = tuple(s.squeeze(0) for s in new)
        return new[0] if len(new) == 1 else new
