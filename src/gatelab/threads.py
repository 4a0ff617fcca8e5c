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
    spinning threads make such runs many times slower (figures in benchmarks/RESULTS-speed.md,
    "Measurements behind the engine's choices").
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
