"""The model every task trains: (embedding) → ``gatelab.nn.RNN`` → linear read-out.

The recurrent layer is ``model.rnn``, a ``gatelab.nn.RNN`` built from the cell's equations, so
``model.rnn.cell_params(layer, direction)`` names its weights as the cell does and
``gatelab.cell.evaluate.step`` can replay any step of a trained model on ``model.embed(ids)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..cell import Cell
from .tasks import Task


class SequenceModel(nn.Module):
    """``x`` ``(N, T, I)`` floats or ``(N, T)`` token ids → ``(N, n_out)`` read at each
    sequence's last real step, or ``(N, T, n_out)`` at every step (``per_step``).

    Padding sits at the right end, and the recurrence is causal, so the output at step
    ``length - 1`` does not depend on the padding: no packing is needed.
    """

    def __init__(self, cell: Cell, *, input_size: int, vocab_size: int, embed: int, hidden: int,
                 layers: int, n_out: int, per_step: bool, dropout: float = 0.0) -> None:
        super().__init__()
        from ..nn import RNN  # the engine (imported here so data-only uses do not need it)

        self.per_step = per_step
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=0) if vocab_size else None
        rnn_in = embed if vocab_size else input_size
        # A cell reading its input as a hidden-size vector (`input x : hidden`, SRU's highway
        # term) gets a learned projection to the hidden size first, as the SRU paper does.
        self.lift = nn.Linear(rnn_in, hidden) if cell.hidden_inputs and rnn_in != hidden \
            else None
        if self.lift is not None:
            rnn_in = hidden
        self.rnn = RNN(cell, rnn_in, hidden, num_layers=layers, batch_first=True,
                       dropout=dropout)
        self.head = nn.Linear(hidden, n_out)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the recurrent layer reads: ``(N, T, I)``."""
        x = self.embed(x) if self.embed is not None else x
        return self.lift(x) if self.lift is not None else x

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        out = self.rnn(self.features(x))
        if isinstance(out, tuple):
            out = out[0]
        if self.per_step:
            return self.head(out)
        if lengths is None:
            last = out[:, -1]
        else:
            last = out[torch.arange(out.shape[0], device=out.device), lengths - 1]
        return self.head(last)


def build_model(cell: Cell, task: Task, hidden: int, layers: int, embed: int,
                dropout: float = 0.0) -> SequenceModel:
    """The model for ``task`` (sizes from the task: input features, vocabulary, classes)."""
    vocab_size = len(task.vocab) if task.vocab is not None else 0
    return SequenceModel(cell, input_size=task.input_size, vocab_size=vocab_size, embed=embed,
                         hidden=hidden, layers=layers, n_out=task.n_out,
                         per_step=task.per_step, dropout=dropout)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
