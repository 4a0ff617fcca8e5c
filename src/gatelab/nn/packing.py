"""Input plumbing shared by the recurrent layers: ``PackedSequence`` <-> padded tensors with
lengths, and per-sequence time reversal for the backward direction.

Padded tensors are time-major ``(T, N, ...)`` in the caller's batch order.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import PackedSequence


def packed_index(packed: PackedSequence) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(t_idx, n_idx, lengths)``: ``packed.data[k]`` is padded position ``(t_idx[k], n_idx[k])``
    (original batch order); ``lengths`` (N,) in original batch order, on the CPU."""
    bs = packed.batch_sizes.cpu()
    T, N = len(bs), int(bs[0])
    sorted_idx = packed.sorted_indices
    sorted_idx = torch.arange(N) if sorted_idx is None else sorted_idx.cpu()
    t_idx = torch.repeat_interleave(torch.arange(T), bs)
    ranks = torch.cat([torch.arange(int(b)) for b in bs])
    n_idx = sorted_idx[ranks]
    lengths = torch.zeros(N, dtype=torch.long)
    lengths[sorted_idx] = (bs.unsqueeze(1) > torch.arange(N).unsqueeze(0)).sum(0)
    return t_idx, n_idx, lengths


def unpack(packed: PackedSequence) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """Padded ``(T, N, F)`` input (zeros after each end), lengths ``(N,)`` and the index."""
    t_idx, n_idx, lengths = packed_index(packed)
    data = packed.data
    T, N = len(packed.batch_sizes), int(lengths.numel())
    padded = data.new_zeros(T, N, data.shape[-1])
    dev = data.device
    padded = padded.index_put((t_idx.to(dev), n_idx.to(dev)), data)
    return padded, lengths, (t_idx, n_idx)


def repack(padded: torch.Tensor, like: PackedSequence, index: tuple) -> PackedSequence:
    """The rows of ``padded`` ``(T, N, F)`` at ``like``'s positions, as a ``PackedSequence``."""
    t_idx, n_idx = (i.to(padded.device) for i in index)
    return PackedSequence(padded[t_idx, n_idx], like.batch_sizes, like.sorted_indices,
                          like.unsorted_indices)


def reverse_index(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """``(T, N)`` time index that reverses each sequence within its own length (an involution);
    padding positions stay in place."""
    t = torch.arange(T).unsqueeze(1)
    L = lengths.unsqueeze(0)
    return torch.where(t < L, L - 1 - t, t)


def time_gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``out[t, n] = x[idx[t, n], n]`` for ``x`` ``(T, N, F)``."""
    idx = idx.to(x.device).unsqueeze(-1).expand(-1, -1, x.shape[-1])
    return torch.gather(x, 0, idx)
