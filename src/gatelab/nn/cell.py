"""One step of a cell: the generic ``gatelab.nn.Cell`` and torch's ``RNNCell``, ``LSTMCell``,
``GRUCell`` as its subclasses.

>>> import torch, gatelab.nn
>>> step = gatelab.nn.Cell("lstm", 3, 5)
>>> h, c = step(torch.randn(2, 3))
>>> tuple(h.shape), sorted(n for n, _ in step.named_parameters())
((2, 5), ['bias_hh', 'bias_ih', 'weight_hh', 'weight_ih'])
>>> gatelab.nn.GRUCell(3, 5).path
'vendor'
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import _VF, nn

from ..cell import Cell as CellIR
from ..cell import load_cell
from ..cell.evaluate import traceable_step
from ..engine.layout import Layout
from ..engine.vendor import bias_blocks, blocks, template_path, vendor_match
from .checks import check_cell_shapes, check_cell_sizes, check_cell_step, check_hx_as_given
from .state import CellPickling

CELL_KERNELS = {"LSTM": _VF.lstm_cell, "GRU": _VF.gru_cell, "RNN_TANH": _VF.rnn_tanh_cell,
                "RNN_RELU": _VF.rnn_relu_cell}


class Cell(CellPickling, nn.Module):
    """A single step: ``cell(input (N, I) or (I,), hx=None) -> h'`` (one state) or a tuple of
    new states with the output state first (LSTM: ``(h', c')``), as torch's cells return.
    ``cell(input, hx, return_output=True) -> (y, states)`` also gives the step's output ``y``
    ``(N, H)`` (the cell's ``output`` line): the output state's new value, or the let it names
    (an LRU's ``y = C @ h' + D * u``), which the states alone do not give. Parameters ``weight_ih``,
    ``weight_hh``, ``bias_ih``, ``bias_hh`` in the layout of :class:`gatelab.nn.RNN`
    (``bias_ih``/``bias_hh`` are None with ``bias=False``, as torch's cells).

    A cell proved equal to torch's (:func:`gatelab.engine.vendor.vendor_match`) steps with
    torch's cell kernel (``path == "vendor"``); any other with the reference step of
    :func:`gatelab.cell.evaluate.step`, checked first for what torch's kernels check.
    """

    _torch_name = "Cell"
    _twin = False

    def __init__(self, cell: str | Path | CellIR, input_size: int, hidden_size: int,
                 bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self._build(cell, input_size, hidden_size, bias, device, dtype)

    def _build(self, cell, input_size: int, hidden_size: int, bias: bool, device,
               dtype) -> None:
        check_cell_sizes(input_size, hidden_size)
        self.cell = load_cell(cell)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self._derive()
        out = self.cell.output
        self.state_names = ((out,) if out in self.cell.states else ()) + tuple(
            s for s in self.cell.states if s != out)
        shapes = self.layout.tensor_shapes(input_size, hidden_size, True)
        kept = self.layout.tensor_shapes(input_size, hidden_size, bool(bias))
        for t, shape in shapes.items():
            if t in kept:
                setattr(self, t, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
            else:
                self.register_parameter(t, None)
        self._names = list(kept)
        self.reset_parameters()

    def _derive(self) -> None:
        self.layout = Layout.of(self.cell)
        # the step as closures over torch ops, for exporters and compilers (engine.backends)
        self.layout.traceable = traceable_step(self.cell)
        self._vendor = vendor_match(self.cell)

    @property
    def path(self) -> str:
        """``"vendor"`` (torch's cell kernel) or ``"reference"`` (gatelab's step)."""
        return "vendor" if self._vendor.mode is not None else "reference"

    def reset_parameters(self) -> None:
        # torch's RNNCellBase.reset_parameters: an empty cell (hidden_size 0) gets bound 0
        k = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def extra_repr(self) -> str:
        # torch's RNNCellBase.extra_repr (values unquoted: "nonlinearity=relu"), the cell's name
        # first for gatelab's own signature
        s = f"{self.input_size}, {self.hidden_size}"
        if not self._twin:
            s = f"{self.cell.name!r}, " + s
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def cell_params(self) -> dict[str, torch.Tensor]:
        """Parameters under the cell's own names (see :meth:`gatelab.nn.RNN.cell_params`)."""
        return self.layout.cell_params({t: getattr(self, t) for t in self._names},
                                       self.hidden_size)

    def forward(self, input: torch.Tensor, hx=None, *, return_output: bool = False):
        n = len(self.state_names)
        several = n > 1
        # torch checks every entry of hx as it iterates (the rows of a tensor given by mistake)
        check_cell_step(self._torch_name, input,
                        None if hx is None else (tuple(hx) if several else (hx,)), several)
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        if hx is None:
            zeros = torch.zeros(x.size(0), self.hidden_size, dtype=x.dtype, device=x.device)
            hs = tuple(zeros for _ in self.state_names)
        elif not several:
            hs = (hx if batched else hx.unsqueeze(0),)
        elif batched:  # torch hands hx to its kernel as given: a stacked tensor is refused
            kernel = f"{(self._vendor.mode or self.cell.name).lower()}_cell"
            check_hx_as_given(hx, n, kernel)
            hs = tuple(hx)
        else:  # torch indexes hx[0], hx[1] to unsqueeze them (extra entries are ignored)
            hs = tuple(hx[i].unsqueeze(0) for i in range(n))
        if self.path == "vendor":
            new = self._vendor_step(x, hs)
            y = new[0]  # torch's cells emit their (first) state
        else:
            check_cell_shapes(x, hs, self.input_size, self.hidden_size)
            states = dict(zip(self.state_names, hs, strict=True))
            # the reference step, as closures (no SymPy per call: torch.compile sees tensors)
            nxt, y = self.layout.traceable({**self.cell_params(), **states,
                                            self.cell.inputs[0]: x})
            new = tuple(nxt[s] for s in self.state_names)
        if not batched:
            new, y = tuple(s.squeeze(0) for s in new), y.squeeze(0)
        states = new if several else new[0]
        return (y, states) if return_output else states

    def _vendor_step(self, x: torch.Tensor, hs: tuple[torch.Tensor, ...]) -> tuple:
        v, H = self._vendor, self.hidden_size
        w_ih = blocks(self.weight_ih, v.ih_perm, H)
        w_hh = blocks(self.weight_hh, v.hh_perm, H)
        # packed biases as torch's, or the cell's own ones (two to a gate) gathered into them
        b_ih, b_hh = bias_blocks(v, {t: getattr(self, t) for t in self._names}, H) or (None, None)
        res = CELL_KERNELS[v.mode](x, hs if v.mode == "LSTM" else hs[0], w_ih, w_hh, b_ih, b_hh)
        return tuple(res) if v.mode == "LSTM" else (res,)


class RNNCell(Cell):
    """Drop-in ``torch.nn.RNNCell(input_size, hidden_size, bias=True, nonlinearity="tanh",
    device=None, dtype=None)``."""

    _torch_name = "RNNCell"
    _twin = True

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None) -> None:
        nn.Module.__init__(self)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        self.nonlinearity = nonlinearity
        cell = "rnn" if nonlinearity == "tanh" else template_path("RNN_RELU")
        self._build(cell, input_size, hidden_size, bias, device, dtype)


class LSTMCell(Cell):
    """Drop-in ``torch.nn.LSTMCell(input_size, hidden_size, bias=True, device=None,
    dtype=None)``: returns ``(h', c')``."""

    _torch_name = "LSTMCell"
    _twin = True

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        nn.Module.__init__(self)
        self._build("lstm", input_size, hidden_size, bias, device, dtype)


class GRUCell(Cell):
    """Drop-in ``torch.nn.GRUCell(input_size, hidden_size, bias=True, device=None,
    dtype=None)``."""

    _torch_name = "GRUCell"
    _twin = True

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        nn.Module.__init__(self)
        self._build("gru-torch", input_size, hidden_size, bias, device, dtype)
