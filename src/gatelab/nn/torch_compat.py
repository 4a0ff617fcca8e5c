"""Bring torch's recurrent modules over: their ``state_dict`` loads into gatelab's twins unchanged
(same names, layouts and gate order, derived by :class:`~gatelab.engine.layout.Layout`), and
:func:`from_torch` builds the matching twin with the same weights.

:data:`PUBLIC_CLASSES` are the only globals a pickled gatelab module references (its cell is
pickled as ``.cell`` text, rebuilt by the whitelist parser; everything else is tensors and plain
data), so importing :mod:`gatelab.nn` registers them with
``torch.serialization.add_safe_globals``: a script that swaps ``from torch.nn import LSTM`` for
``from gatelab.nn import LSTM`` reloads its whole saved model with ``torch.load(f,
weights_only=True)``, whatever its own ``safe_globals`` list names (torch's classes, say).
"""

from __future__ import annotations

import torch
from torch import nn

from .cell import Cell, GRUCell, LSTMCell, RNNCell
from .layers import GRU, LSTM, MGU
from .rnn import RNN

PUBLIC_CLASSES = (RNN, LSTM, GRU, MGU, Cell, RNNCell, LSTMCell, GRUCell)
# safe to unpickle: __setstate__ (gatelab.nn.state) parses the cell text, nothing else runs
torch.serialization.add_safe_globals(list(PUBLIC_CLASSES))


def from_torch(module: nn.Module, backend: str = "auto") -> RNN | Cell:
    """A gatelab twin equal to a torch ``RNN``/``LSTM``/``GRU`` or ``*Cell`` (weights copied;
    ``backend`` applies to the layers).

    >>> import torch
    >>> t = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)
    >>> g = from_torch(t)
    >>> type(g).__name__, g.num_layers, g.bidirectional, g.path
    ('GRU', 2, True, 'vendor')
    """
    p = next(module.parameters())
    factory = {"device": p.device, "dtype": p.dtype}
    if isinstance(module, nn.RNNBase):
        common = (module.input_size, module.hidden_size, module.num_layers)
        flags = dict(bias=module.bias, batch_first=module.batch_first,
                     dropout=float(module.dropout), bidirectional=module.bidirectional,
                     backend=backend, **factory)
        if isinstance(module, nn.LSTM):
            out = LSTM(*common, proj_size=module.proj_size, **flags)
        elif isinstance(module, nn.GRU):
            out = GRU(*common, **flags)
        elif isinstance(module, nn.RNN):
            out = RNN(*common, nonlinearity=module.nonlinearity, **flags)
        else:
            raise TypeError(f"from_torch: unknown recurrent module {type(module).__name__}")
    elif isinstance(module, nn.RNNCellBase):
        args = (module.input_size, module.hidden_size, module.bias)
        if isinstance(module, nn.LSTMCell):
            out = LSTMCell(*args, **factory)
        elif isinstance(module, nn.GRUCell):
            out = GRUCell(*args, **factory)
        else:
            out = RNNCell(*args, nonlinearity=module.nonlinearity, **factory)
    else:
        raise TypeError(f"from_torch takes one of torch.nn's recurrent modules (RNN, LSTM, GRU, "
                        f"RNNCell, LSTMCell, GRUCell), got {type(module).__name__}")
    out.load_state_dict(module.state_dict())
    out.train(module.training)
    return out
