"""Bring ``torch.nn.LSTM``/``GRU`` models over: their ``state_dict`` loads into gatelab's layers
unchanged (same names, layouts and gate order, derived by :class:`~gatelab.engine.layout.Layout`),
and :func:`from_torch` builds the matching layer with the same weights.
"""

from __future__ import annotations

from torch import nn

from .rnn import GRU, LSTM, RNN


def from_torch(module: nn.Module, backend: str = "auto") -> RNN:
    """A gatelab layer equal to a ``torch.nn.LSTM`` or ``torch.nn.GRU`` (weights copied).

    >>> import torch
    >>> t = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)
    >>> g = from_torch(t)
    >>> type(g).__name__, g.num_layers, g.bidirectional
    ('GRU', 2, True)
    """
    if isinstance(module, nn.LSTM):
        if getattr(module, "proj_size", 0):
            raise ValueError("torch.nn.LSTM with proj_size > 0 has no gatelab equivalent")
        cls = LSTM
    elif isinstance(module, nn.GRU):
        cls = GRU
    else:
        raise TypeError(f"from_torch takes a torch.nn.LSTM or torch.nn.GRU, got "
                        f"{type(module).__name__}")
    p = next(module.parameters())
    out = cls(module.input_size, module.hidden_size, module.num_layers, module.bias,
              module.batch_first, float(module.dropout), module.bidirectional, backend,
              device=p.device, dtype=p.dtype)
    out.load_state_dict(module.state_dict())
    out.train(module.training)
    return out
