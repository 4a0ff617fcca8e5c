"""Drop-in torch layers for any cell: ``RNN(cell, ...)``, ``LSTM``, ``GRU``, ``MGU``, ``Cell``
and ``from_torch``.

>>> import torch, gatelab.nn
>>> lstm = gatelab.nn.LSTM(3, 5, batch_first=True)
>>> out, (h_n, c_n) = lstm(torch.randn(2, 4, 3))
>>> tuple(out.shape), tuple(c_n.shape)
((2, 4, 5), (1, 2, 5))
"""

from .cell import Cell
from .rnn import GRU, LSTM, MGU, RNN
from .torch_compat import from_torch

__all__ = ["GRU", "LSTM", "MGU", "RNN", "Cell", "from_torch"]
