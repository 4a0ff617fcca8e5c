"""torch's recurrent layers as gatelab classes: ``LSTM``, ``GRU`` (and ``MGU``), each a plain
subclass of :class:`gatelab.nn.RNN` running a built-in cell with torch's constructor.

>>> import torch, gatelab.nn
>>> lstm = gatelab.nn.LSTM(3, 5, proj_size=2)
>>> out, (h_n, c_n) = lstm(torch.randn(4, 3))
>>> tuple(out.shape), tuple(c_n.shape), lstm.path
((4, 2), (1, 5), 'vendor')
"""

from __future__ import annotations

from torch import nn

from .rnn import RNN, no_projection


class LSTM(RNN):
    """Drop-in ``torch.nn.LSTM(input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None)``
    (plus ``backend``): the zoo cell ``lstm``, parameters in torch's layout and gate order
    (``weight_hr_l{k}`` when ``proj_size > 0``); returns ``output, (h_n, c_n)``."""

    _torch_name = "LSTM"
    _twin = True

    # PLR0913: drop-in: torch's nn.RNNBase signature
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,  # noqa: PLR0913
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 *, backend: str = "auto") -> None:
        nn.Module.__init__(self)
        self._build("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                    bidirectional, backend, device, dtype, proj_size=proj_size)


class GRU(RNN):
    """Drop-in ``torch.nn.GRU(input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None)`` (in torch's
    positions: ``proj_size`` after ``bidirectional``, 0 only; plus the keyword ``backend``):
    the zoo cell ``gru-torch`` (torch/cuDNN convention), blocks ``r, z, n``."""

    _torch_name = "GRU"
    _twin = True

    def __init__(self, *args, backend: str = "auto", **kwargs) -> None:
        nn.Module.__init__(self)
        no_projection(kwargs)
        self._build_torch("gru-torch", backend, *args, **kwargs)


class MGU(RNN):
    """Minimal Gated Unit layer (zoo cell ``mgu``) with ``torch.nn.GRU``'s constructor (the
    same arguments, in the same positions)."""

    _torch_name = "MGU"
    _twin = True

    def __init__(self, *args, backend: str = "auto", **kwargs) -> None:
        nn.Module.__init__(self)
        no_projection(kwargs)
        self._build_torch("mgu", backend, *args, **kwargs)
