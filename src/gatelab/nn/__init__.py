"""Drop-in torch layers for any cell.

torch's recurrent classes have twins of the same name, constructor, call, parameters and errors
(``RNN``, ``LSTM``, ``GRU``, ``RNNCell``, ``LSTMCell``, ``GRUCell``); ``RNN(cell, ...)`` and
``Cell(cell, ...)`` run any cell; ``MGU`` is the zoo's minimal gated unit; ``from_torch`` copies
a torch module.

>>> import torch, gatelab.nn
>>> lstm = gatelab.nn.LSTM(3, 5, batch_first=True)
>>> out, (h_n, c_n) = lstm(torch.randn(2, 4, 3))
>>> tuple(out.shape), tuple(c_n.shape)
((2, 4, 5), (1, 2, 5))
"""

from .cell import Cell, GRUCell, LSTMCell, RNNCell
from .layers import GRU, LSTM, MGU
from .rnn import RNN
from .torch_compat import PUBLIC_CLASSES, from_torch

__all__ = ["GRU", "LSTM", "MGU", "PUBLIC_CLASSES", "RNN", "Cell", "GRUCell", "LSTMCell",
           "RNNCell", "from_torch"]
