"""Replaying a whole labelled data set, in padded batches, for saturation and fidelity."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from ..data.text import pad_batch
from .gates import GateFn, Trace, replay
from .model import TextModel

Texts = Sequence[str] | Sequence[torch.Tensor]


def encoded(model: TextModel, texts: Texts, max_len: int = 300) -> list[torch.Tensor]:
    """Each text's ids ``(L,)`` (texts are encoded, id tensors kept), cut to ``max_len`` tokens
    as training did."""
    return [(model.encode(t)[1] if isinstance(t, str) else t)[:max_len] for t in texts]


def batches(model: TextModel, ids: list[torch.Tensor], *, batch: int = 64,
            gate_fn: GateFn | None = None,
            progress: Callable[[int], None] | None = None) -> Iterator[Trace]:
    """Replay ``ids`` ``batch`` at a time; ``progress(n)`` is told how many were done."""
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        x, lengths = pad_batch(chunk)  # (n, L), (n,)
        yield replay(model, x.T.contiguous(), lengths, gate_fn)
        if progress is not None:
            progress(len(chunk))


def valid_mask(trace: Trace) -> torch.Tensor:
    """``(T, N)`` True at real (not padding) steps."""
    T = trace.top.shape[0]
    return torch.arange(T).unsqueeze(1) < trace.lengths.unsqueeze(0)
