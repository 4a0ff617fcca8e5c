"""``gatelab.nn.RNN``: a multi-layer recurrent layer for any cell, with ``torch.nn.LSTM``'s API.

>>> import torch, gatelab.nn
>>> rnn = gatelab.nn.RNN("mgu", 3, 5, num_layers=2, batch_first=True)
>>> out, h_n = rnn(torch.randn(4, 7, 3))
>>> tuple(out.shape), tuple(h_n.shape)
((4, 7, 5), (2, 4, 5))
>>> sorted(rnn.cell_params(0))[:3]
['U_f', 'U_n', 'W_f']

Parameters are stored per layer ``k`` and direction as ``weight_ih_l{k}``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}`` (``_reverse`` for the backward direction), laid out as
:class:`gatelab.engine.layout.Layout` derives from the equations; for the LSTM and ``gru-torch``
that is exactly ``torch.nn.LSTM``/``GRU``'s layout, so their ``state_dict`` loads unchanged.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from ..cell import Cell, load_cell
from ..engine.backends import check_backend, run_layer
from ..engine.layout import EngineError, Layout
from .packing import repack, reverse_index, time_gather, unpack

State = torch.Tensor | tuple[torch.Tensor, ...]


class RNN(nn.Module):
    """A recurrent layer running ``cell`` (built-in name, ``.cell`` path or :class:`Cell`).

    Arguments and call follow ``torch.nn.LSTM``: input ``(L, N, I)`` (``(N, L, I)`` with
    ``batch_first``; ``(L, I)`` unbatched; or a ``PackedSequence``), ``hx`` the initial states
    ``(D*num_layers, N, H)`` (zeros when None); a tuple for cells with several states, in the
    order of :attr:`state_names` (the output state first, e.g. LSTM ``(h, c)``). Returns
    ``output (L, N, D*H)`` and ``h_n`` in the same form as ``hx``.
    """

    def __init__(self, cell: str | Path | Cell, input_size: int, hidden_size: int,
                 num_layers: int = 1, bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, backend: str = "auto",
                 device=None, dtype=None) -> None:
        super().__init__()
        self.cell = load_cell(cell)
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (isinstance(dropout, (int, float)) and 0 <= dropout <= 1):
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        self.layout = Layout.of(self.cell)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = 0  # read by code written for torch.nn.LSTM
        self.backend = check_backend(backend)
        out = self.cell.output
        self.state_names = ((out,) if out in self.cell.states else ()) + tuple(
            s for s in self.cell.states if s != out)
        self._flat: list[list[dict[str, str]]] = []  # [layer][direction] tensor -> attr name
        factory = {"device": device, "dtype": dtype}
        for k in range(num_layers):
            layer_in = input_size if k == 0 else hidden_size * self.num_directions
            per_dir = []
            for d in range(self.num_directions):
                names = {}
                for t, shape in self.layout.tensor_shapes(layer_in, hidden_size, bias).items():
                    attr = f"{t}_l{k}{'_reverse' if d else ''}"
                    if hasattr(self, attr):
                        raise EngineError(f"parameter name {t!r} clashes with a layer attribute;"
                                          " rename it in the cell file")
                    setattr(self, attr, nn.Parameter(torch.empty(shape, **factory)))
                    names[t] = attr
                per_dir.append(names)
            self._flat.append(per_dir)
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def reset_parameters(self) -> None:
        """Uniform in ``±1/sqrt(hidden_size)``, as torch's recurrent layers."""
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Parameters per layer and direction, as ``torch.nn.LSTM.all_weights``."""
        return [list(self.packed_params(k, d).values()) for k in range(self.num_layers)
                for d in range(self.num_directions)]

    def flatten_parameters(self) -> None:
        """No-op, for code written for ``torch.nn.LSTM`` (parameters are already packed)."""

    def extra_repr(self) -> str:
        s = f"{self.cell.name!r}, {self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("backend", "auto")):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s

    # ---- parameters under the cell's names -----------------------------------------------------
    def packed_params(self, layer: int = 0, direction: int = 0) -> dict[str, torch.Tensor]:
        """Packed tensors (``weight_ih``, ``bias_hh``, vectors) of one layer and direction."""
        if not (0 <= layer < self.num_layers and 0 <= direction < self.num_directions):
            raise IndexError(f"no layer {layer} direction {direction} (num_layers="
                             f"{self.num_layers}, directions={self.num_directions})")
        return {t: getattr(self, a) for t, a in self._flat[layer][direction].items()}

    def cell_params(self, layer: int = 0, direction: int = 0) -> dict[str, torch.Tensor]:
        """That layer's parameters under the cell's own names (``W_i``, ``U_f``, ``b_o``...),
        ready for :func:`gatelab.cell.evaluate.step`. Matrices are views of the packed weights;
        split biases are sums of their parts; autograd reaches the module's parameters."""
        return self.layout.cell_params(self.packed_params(layer, direction), self.hidden_size)

    # ---- forward -------------------------------------------------------------------------------
    def forward(self, input: torch.Tensor | PackedSequence, hx: State | None = None):
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            x, lengths, index = unpack(input)
            unbatched = False
        else:
            if not torch.is_tensor(input):
                raise TypeError(f"input must be a Tensor or PackedSequence, got "
                                f"{type(input).__name__}")
            if input.dim() not in (2, 3):
                raise ValueError(f"input must have 2 (unbatched) or 3 dimensions, got shape "
                                 f"{tuple(input.shape)}")
            unbatched = input.dim() == 2
            x = input.unsqueeze(1) if unbatched else (
                input.transpose(0, 1) if self.batch_first else input)
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input has {x.shape[-1]} features, expected input_size="
                             f"{self.input_size}")
        if x.shape[0] == 0:
            raise ValueError("input sequence length must be at least 1")
        p = next(self.parameters())
        if x.dtype != p.dtype or x.device != p.device:
            raise ValueError(f"input is {x.dtype} on {x.device} but the layer's parameters are "
                             f"{p.dtype} on {p.device}; convert one of them (e.g. .to(...))")
        T, N = x.shape[0], x.shape[1]
        states0 = self._initial_states(hx, N, x, unbatched)
        mask = None
        if lengths is not None:
            mask = (torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)).to(x.device)
            rev = reverse_index(lengths, T)
        final: list[list[torch.Tensor]] = [[] for _ in self.state_names]
        layer_in = x
        for k in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                i = k * self.num_directions + d
                s0 = tuple(s[i] for s in states0)
                xin = layer_in
                if d == 1:
                    xin = layer_in.flip(0) if lengths is None else time_gather(layer_in, rev)
                out, sn = run_layer(self.layout, self.packed_params(k, d), xin,
                                    self._cell_order(s0), mask, self.backend)
                if d == 1:
                    out = out.flip(0) if lengths is None else time_gather(out, rev)
                outs.append(out)
                for j, s in enumerate(self._state_order(sn)):
                    final[j].append(s)
            layer_in = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
            if self.dropout and self.training and k < self.num_layers - 1:
                layer_in = nn.functional.dropout(layer_in, self.dropout, training=True)
        h_n = tuple(torch.stack(f) for f in final)
        if packed:
            output = repack(layer_in, input, index)
        elif unbatched:
            output = layer_in.squeeze(1)
            h_n = tuple(s.squeeze(1) for s in h_n)
        else:
            output = layer_in.transpose(0, 1) if self.batch_first else layer_in
        return output, (h_n[0] if len(h_n) == 1 else h_n)

    def _cell_order(self, states: tuple) -> tuple:
        by_name = dict(zip(self.state_names, states, strict=True))
        return tuple(by_name[s] for s in self.cell.states)

    def _state_order(self, states: tuple) -> tuple:
        by_name = dict(zip(self.cell.states, states, strict=True))
        return tuple(by_name[s] for s in self.state_names)

    def _initial_states(self, hx: State | None, N: int, x: torch.Tensor,
                        unbatched: bool) -> tuple[torch.Tensor, ...]:
        L = self.num_layers * self.num_directions
        if hx is None:
            z = x.new_zeros(L, N, self.hidden_size)
            return tuple(z for _ in self.state_names)
        hs = (hx,) if torch.is_tensor(hx) else tuple(hx)
        if len(hs) != len(self.state_names):
            raise ValueError(f"hx must give {len(self.state_names)} state(s) "
                             f"({', '.join(self.state_names)}), got {len(hs)}")
        want = (L, self.hidden_size) if unbatched else (L, N, self.hidden_size)
        out = []
        for name, h in zip(self.state_names, hs, strict=True):
            if not torch.is_tensor(h) or tuple(h.shape) != want:
                got = tuple(h.shape) if torch.is_tensor(h) else type(h).__name__
                raise ValueError(f"initial state {name!r} must have shape {want}, got {got}")
            out.append(h.unsqueeze(1) if unbatched else h)
        return tuple(out)


def _named(cell_name: str, doc: str):
    class _Layer(RNN):
        def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                     bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                     bidirectional: bool = False, backend: str = "auto", device=None,
                     dtype=None) -> None:
            super().__init__(cell_name, input_size, hidden_size, num_layers, bias, batch_first,
                             dropout, bidirectional, backend, device, dtype)

    _Layer.__doc__ = doc
    return _Layer


LSTM = _named("lstm", "Drop-in ``torch.nn.LSTM``: the zoo cell ``lstm``; returns "
                      "``output, (h_n, c_n)``; parameters in torch's layout and gate order.")
LSTM.__name__ = LSTM.__qualname__ = "LSTM"
GRU = _named("gru-torch", "Drop-in ``torch.nn.GRU``: the zoo cell ``gru-torch`` (torch/cuDNN "
                          "convention); parameters in torch's layout (r, z, n).")
GRU.__name__ = GRU.__qualname__ = "GRU"
MGU = _named("mgu", "Minimal Gated Unit layer (zoo cell ``mgu``) with ``torch.nn.GRU``'s API.")
MGU.__name__ = MGU.__qualname__ = "MGU"
