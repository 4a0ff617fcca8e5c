"""``gatelab.nn.RNN``: a multi-layer recurrent layer for any cell, with ``torch.nn.RNN``'s API.

Two ways to call it, told apart by the first argument:

* ``RNN(cell, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
  bidirectional=False, backend="auto", device=None, dtype=None)``: any cell (built-in name,
  ``.cell`` path or :class:`gatelab.Cell`);
* ``RNN(input_size, hidden_size, num_layers=1, nonlinearity="tanh", ...)``: torch's own
  signature, the Elman RNN (``tanh`` or ``relu``), so code written for ``torch.nn.RNN`` runs.

>>> import torch, gatelab.nn
>>> rnn = gatelab.nn.RNN("mgu", 3, 5, num_layers=2, batch_first=True)
>>> out, h_n = rnn(torch.randn(4, 7, 3))
>>> tuple(out.shape), tuple(h_n.shape)
((4, 7, 5), (2, 4, 5))
>>> sorted(rnn.cell_params(0))[:3]
['U_f', 'U_n', 'W_f']
>>> gatelab.nn.RNN(3, 5, nonlinearity="relu")  # printed as torch.nn.RNN prints it
RNN(3, 5)
>>> gatelab.nn.RNN(3, 5, nonlinearity="relu").nonlinearity
'relu'

Parameters are stored per layer ``k`` and direction as ``weight_ih_l{k}``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}`` (``_reverse`` for the backward direction), laid out as
:class:`gatelab.engine.layout.Layout` derives from the equations; for the LSTM, ``gru-torch``
and the Elman RNN that is exactly torch's layout, so their ``state_dict`` loads unchanged.

``backend="auto"`` runs torch's own fused kernels when :func:`gatelab.engine.vendor.vendor_match`
proves the cell equal to torch's LSTM, GRU or Elman RNN (``mode`` then says which), and
gatelab's generated engine otherwise; ``backend="generated"`` forces the engine.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import overload

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from ..cell import Cell as CellIR
from ..cell import load_cell, zoo_names
from ..cell.evaluate import traceable_step
from ..engine.layout import EngineError, Layout
from ..engine.route import Route, check_backend, graph_capture, route, traced_route, vendor_route
from ..engine.vendor import template_path, vendor_match
from .checks import check_layer_args
from .forward import layer_forward
from .state import CellPickling

State = torch.Tensor | tuple[torch.Tensor, ...]


def _cell_first(args: tuple, kwargs: dict) -> bool:
    """Whether a call uses the cell signature: a cell or path first, ``cell=``, or a name
    followed by both sizes (torch's signature needs only two arguments, never a string)."""
    if "cell" in kwargs or (args and isinstance(args[0], (Path, CellIR))):
        return True
    given = len(args) + sum(k in kwargs for k in ("input_size", "hidden_size"))
    return bool(args) and isinstance(args[0], str) and given >= 3


def _names_a_cell(name: str) -> None:
    """A string first names a cell (built-in or ``.cell`` file); a string that names neither,
    followed by two sizes, is torch's signature with a size of the wrong type: torch's
    ``TypeError``, saying what else was tried."""
    if name in zoo_names() or name.endswith(".cell") or Path(name).exists():
        return
    raise TypeError(f"input_size should be of type int, got: str ({name!r} is not a built-in "
                    "cell or a .cell file either)")


def no_projection(kwargs: dict) -> None:
    """torch's RNN and GRU refuse ``proj_size=`` as a keyword, even 0 (their first check)."""
    if "proj_size" in kwargs:
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")


def _positional_projection(proj_size) -> None:
    """``proj_size`` given by position to RNN or GRU (after ``bidirectional``): torch compares
    it with numbers (a ``TypeError`` for anything else) and builds a projection no forward
    call can run; here only 0 (or ``False``) is accepted."""
    if not isinstance(proj_size, numbers.Number):
        raise TypeError(f"'<' not supported between instances of '{type(proj_size).__name__}' "
                        "and 'int' (proj_size)")
    if proj_size != 0:
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")


def _check_hidden_input(cell: CellIR, input_size: int, hidden_size: int, num_layers: int,
                        bidirectional: bool) -> None:
    """A cell reading its input as a hidden-size vector (``input x : hidden``) needs every
    layer's input to have ``hidden_size`` features; said in the sizes the caller passed (the
    layout's own check sees a stacked layer's internal input size)."""
    if not cell.hidden_inputs:
        return
    what = f"cell {cell.name!r} declares `input {cell.hidden_inputs[0]} : hidden` (its input is " \
        "used as a hidden-size vector)"
    if input_size != hidden_size:
        raise EngineError(f"{what}, so input_size must equal hidden_size; got input_size="
                          f"{input_size}, hidden_size={hidden_size}")
    if num_layers > 1 and bidirectional:
        raise EngineError(f"{what}, so it cannot be stacked bidirectionally: layers 2 and up "
                          f"read both directions, 2 * hidden_size = {2 * hidden_size} features "
                          f"(input_size={input_size}, hidden_size={hidden_size}, num_layers="
                          f"{num_layers}); use num_layers=1 or bidirectional=False")


class RNN(CellPickling, nn.Module):
    """A recurrent layer running a cell; see the module docstring for the two signatures.

    Call as ``torch.nn.LSTM``: input ``(L, N, I)`` (``(N, L, I)`` with ``batch_first``; ``(L, I)``
    unbatched; or a ``PackedSequence``), ``hx`` the initial states ``(D*num_layers, N, H)``
    (zeros when None); a tuple for cells with several states, in the order of
    :attr:`state_names` (the output state first, e.g. LSTM ``(h, c)``). Returns ``output
    (L, N, D*H)`` and ``h_n`` in the same form as ``hx``.
    """

    _torch_name = "RNN"  # the name torch's messages and repr use for this class
    _twin = False  # True where the repr follows torch's (the classes named after torch's)

    @overload
    def __init__(self, cell: str | Path | CellIR, input_size: int, hidden_size: int,
                 num_layers: int = 1, bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, backend: str = "auto",
                 device=None, dtype=None) -> None: ...

    @overload
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None, *, backend: str = "auto") -> None: ...

    def __init__(self, *args, **kwargs) -> None:
        nn.Module.__init__(self)
        if _cell_first(args, kwargs):
            if isinstance(args[0] if args else kwargs["cell"], str):
                _names_a_cell(args[0] if args else kwargs["cell"])
            self._build(*args, **kwargs)
        else:
            self._build_elman(*args, **kwargs)

    # PLR0913: drop-in: torch's nn.RNNBase arguments
    def _build_torch(self, cell: str | Path, backend: str, input_size: int, hidden_size: int,  # noqa: PLR0913
                     num_layers: int = 1, bias: bool = True, batch_first: bool = False,
                     dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                     device=None, dtype=None) -> None:
        """torch's ``RNNBase`` positional order for a class without projections (GRU, the
        Elman RNN once ``nonlinearity`` is taken out), checked in torch's order."""
        check_layer_args(input_size, hidden_size, num_layers, bias, batch_first, dropout)
        _positional_projection(proj_size)
        self._build(cell, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                    bidirectional, backend, device, dtype)

    def _build_elman(self, *args, backend: str = "auto", **kwargs) -> None:
        # torch's RNN.__init__: the 4th positional argument is the nonlinearity
        no_projection(kwargs)
        if len(args) > 3:
            nonlinearity, args = args[3], args[:3] + args[4:]
        else:
            nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             "'relu'.")
        self.nonlinearity = nonlinearity
        self._twin = True
        cell = "rnn" if nonlinearity == "tanh" else template_path("RNN_RELU")
        self._build_torch(cell, backend, *args, **kwargs)

    # PLR0913: drop-in: torch's nn.RNNBase arguments
    def _build(self, cell: str | Path | CellIR, input_size: int, hidden_size: int,  # noqa: PLR0913
               num_layers: int = 1, bias: bool = True, batch_first: bool = False,
               dropout: float = 0.0, bidirectional: bool = False, backend: str = "auto",
               device=None, dtype=None, *, proj_size: int = 0) -> None:
        check_layer_args(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         proj_size)
        self.cell = load_cell(cell)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bool(bidirectional), proj_size
        self.backend = check_backend(backend)
        self._derive()
        if self.backend == "vendor" and self._vendor.mode is None:
            raise EngineError(f"cell {self.cell.name!r} cannot take the vendor path: "
                              f"{self._vendor.reason}")
        if proj_size and (self._vendor.mode != "LSTM" or self.backend not in ("auto", "vendor")):
            raise ValueError("proj_size > 0 runs on torch's LSTM kernels only (backend 'auto' "
                             "or 'vendor'); gatelab's engine has no projection")
        out = self.cell.output
        self.state_names = ((out,) if out in self.cell.states else ()) + tuple(
            s for s in self.cell.states if s != out)
        _check_hidden_input(self.cell, input_size, hidden_size, num_layers, self.bidirectional)
        self._flat: list[list[dict[str, str]]] = []  # [layer][direction] tensor -> attr name
        factory = {"device": device, "dtype": dtype}
        real_hidden = proj_size or hidden_size
        for k in range(num_layers):
            layer_in = input_size if k == 0 else real_hidden * self.num_directions
            per_dir = []
            for d in range(self.num_directions):
                shapes = self.layout.tensor_shapes(layer_in, hidden_size, bias)
                if proj_size:  # torch's projected LSTM: h has proj_size features
                    shapes["weight_hh"] = (shapes["weight_hh"][0], proj_size)
                    shapes["weight_hr"] = (proj_size, hidden_size)
                names = {}
                for t, shape in shapes.items():
                    attr = f"{t}_l{k}{'_reverse' if d else ''}"
                    if hasattr(self, attr):
                        raise EngineError(f"parameter name {t!r} clashes with a layer attribute;"
                                          " rename it in the cell file")
                    setattr(self, attr, nn.Parameter(torch.empty(shape, **factory)))
                    names[t] = attr
                per_dir.append(names)
            self._flat.append(per_dir)
        self.reset_parameters()

    def _derive(self) -> None:
        """What follows from the cell (rebuilt after unpickling)."""
        self.layout = Layout.of(self.cell)
        # the step as closures over torch ops, for exporters and compilers (engine.backends)
        self.layout.traceable = traceable_step(self.cell)
        self._vendor = vendor_match(self.cell)
        self._vendor_route = vendor_route(self._vendor)
        # torch's RNNBase.mode; for a cell torch does not have, the cell's name
        self.mode = self._vendor.mode or self.cell.name

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def route(self) -> Route:
        """The path calls take and why, for this module's ``backend``, device and dtype
        (:func:`gatelab.engine.route.route`, the decision the forward follows)."""
        if graph_capture():  # a tracer sees no decision made (no caches, no SymPy)
            return traced_route(self._vendor_route, self.backend)
        w = self._flat_weights[0]
        return route(self.cell, backend=self.backend, device=w.device, dtype=w.dtype)

    @property
    def path(self) -> str:
        """The path calls take: ``"vendor"`` (torch's kernels), ``"scan"``, ``"generated"``,
        ... (``self.route.path``)."""
        return self.route.path

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

    @property
    def _all_weights(self) -> list[list[str]]:
        """Parameter names per layer and direction, as ``torch.nn.LSTM._all_weights``."""
        return [list(names.values()) for per_dir in self._flat for names in per_dir]

    @property
    def _flat_weights_names(self) -> list[str]:
        return [a for names in self._all_weights for a in names]

    @property
    def _flat_weights(self) -> list[nn.Parameter]:
        return [getattr(self, a) for a in self._flat_weights_names]

    def flatten_parameters(self) -> None:
        """As ``torch.nn.LSTM.flatten_parameters``: on CUDA with cuDNN, the vendor path's weights
        (in torch's block order already) are packed into one buffer; a no-op elsewhere."""
        flat = self._flat_weights
        # loose biases (two to a gate) are the cell's own tensors, not torch's bias_ih/bias_hh
        if (self.path != "vendor" or self._vendor.loose or not flat
                or not all(w.is_cuda for w in flat)
                or any(p != tuple(range(len(p))) for p in (self._vendor.ih_perm,
                                                           self._vendor.hh_perm))
                or len({w.dtype for w in flat}) != 1
                or not all(torch.backends.cudnn.is_acceptable(w) for w in flat)
                or len({w.data_ptr() for w in flat}) != len(flat)):
            return
        import torch.backends.cudnn.rnn as cudnn_rnn

        with torch.cuda.device_of(flat[0]), torch.no_grad():
            if torch._use_cudnn_rnn_flatten_weight():
                torch._cudnn_rnn_flatten_weight(
                    flat, len(self._flat[0][0]), self.input_size,
                    cudnn_rnn.get_cudnn_mode(self.mode), self.hidden_size, self.proj_size,
                    self.num_layers, self.batch_first, self.bidirectional)

    def extra_repr(self) -> str:
        # torch's RNNBase.extra_repr, keyword for keyword and formatted as it does (str of each
        # value); torch prints no nonlinearity, so RNN(3, 4, nonlinearity="relu") shows as
        # "RNN(3, 4)" there and here. The cell signature names its cell first; ``backend``,
        # gatelab's own argument, shows when it is not the default.
        if self._twin:
            s = f"{self.input_size}, {self.hidden_size}"
            if self.proj_size != 0:
                s += f", proj_size={self.proj_size}"
        else:
            s = f"{self.cell.name!r}, {self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
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
        if self.proj_size:
            raise EngineError("a projected LSTM (proj_size > 0) is not a cell of its own: its "
                              "recurrent weights multiply the projection")
        return self.layout.cell_params(self.packed_params(layer, direction), self.hidden_size)

    # ---- forward -------------------------------------------------------------------------------
    def forward(self, input: torch.Tensor | PackedSequence, hx: State | None = None):
        return layer_forward(self, input, hx)
