"""Thread settings shared by the gradient lab (``gatelab.dynamics``) and the explainer
(``gatelab.explain``): both replay tiny recurrent models step by step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the setting.

    The gradient lab's and the explainer's tensors are tiny (H ≈ 32, ``(N, H)`` per step):
    splitting them over threads only adds synchronisation, and on a loaded machine OpenMP's
    spinning threads made one clipping run 20–50× slower (measured: 1.05 s on one thread vs
    21.6 s on two, 100 SGD steps) and the explainer's replay about 100× slower (1.6 s against
    18 ms for 50 steps of a 32-unit MGU on 64 texts, 2 cores under load).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
