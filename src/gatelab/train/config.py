"""What a training run is: one :class:`TrainConfig`, saved as ``config.json`` in the run folder.

Everything a run does follows from its config and its seed, so a run can be resumed, repeated
or compared exactly. The cell is stored as its ``.cell`` text too, so a run folder stays readable
even if the zoo changes or the user's file moves.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError

# Default sizes per task: (sequence length T or None, hidden, steps, batch, lr, eval_every).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "adding": {"T": 100, "hidden": 64, "steps": 2000, "batch": 64, "lr": 2e-3},
    "copy": {"T": 50, "hidden": 64, "steps": 2000, "batch": 64, "lr": 2e-3},
    "order": {"T": 100, "hidden": 64, "steps": 2000, "batch": 64, "lr": 2e-3},
    "fmnist-row": {"hidden": 128, "steps": 2000, "batch": 128, "lr": 2e-3},
    "fmnist-pixel": {"hidden": 128, "steps": 2000, "batch": 64, "lr": 1e-3},
    "fmnist-permuted": {"hidden": 128, "steps": 2000, "batch": 64, "lr": 1e-3},
    "drugs": {"hidden": 64, "steps": 600, "batch": 32, "lr": 2e-3},
    "tweets": {"hidden": 128, "steps": 2000, "batch": 64, "lr": 2e-3},
    "stdlib": {"T": 100, "hidden": 256, "steps": 2000, "batch": 32, "lr": 2e-3},
}
TASKS = tuple(TASK_DEFAULTS)


@dataclass
class TrainConfig:
    """One training run. ``T`` is the sequence length of generated tasks (and the BPTT length of
    the character model); ``steps`` wins over ``epochs`` when both are given.

    ``threads`` is torch's CPU thread count per process. It defaults to 1 because a recurrent
    step is many small GEMMs: measured here (T=50, N=64, H=32, MGU, forward+backward on a busy
    2-core machine) one thread took 6-18 ms against about 300 ms with two.
    """

    task: str = "adding"
    cell: str = "lstm"
    hidden: int | None = None
    layers: int = 1
    steps: int | None = None
    epochs: float | None = None
    batch: int | None = None
    lr: float | None = None
    clip: float | None = 1.0
    seed: int = 0
    device: str = "cpu"
    out: str | None = None
    T: int | None = None
    dropout: float = 0.0
    embed: int = 64
    max_len: int = 300
    train_size: int | None = None
    eval_size: int | None = None
    eval_every: int | None = None
    data_path: str | None = None
    nproc: int = 1
    threads: int = 1
    threshold: float | None = None
    cell_text: str = field(default="", repr=False)
    # The fields the user set (the CLI fills it from the command line); not saved. On --resume
    # the fields not given keep the run's saved values. None: every field counts as given.
    given: frozenset[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.task not in TASK_DEFAULTS:
            raise UsageError(f"unknown task {self.task!r}: choose one of {', '.join(TASKS)}")
        for k, v in TASK_DEFAULTS[self.task].items():
            if getattr(self, k) is None and not (k == "steps" and self.epochs is not None):
                setattr(self, k, v)
        checks = [("hidden", self.hidden, 1), ("layers", self.layers, 1),
                  ("batch", self.batch, 1), ("nproc", self.nproc, 1), ("embed", self.embed, 1),
                  ("max_len", self.max_len, 1),
                  ("threads", self.threads, 1)]
        if self.steps is not None:
            checks.append(("steps", self.steps, 1))
        if self.T is not None:
            checks.append(("T", self.T, 2))
        for name, value, low in checks:
            if value < low:
                raise UsageError(f"--{name.lower()} must be at least {low} (got {value})")
        if self.lr is not None and not self.lr > 0:
            raise UsageError(f"--lr must be positive (got {self.lr})")
        if self.clip is not None and self.clip <= 0:
            self.clip = None  # 0 means "no clipping"
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"--dropout must be in [0, 1) (got {self.dropout})")
        if self.batch % self.nproc:
            raise UsageError(f"--batch {self.batch} must be divisible by --nproc {self.nproc}")

    def total_steps(self, n_train: int) -> int:
        """Optimiser steps of the run: ``steps``, or ``epochs`` over ``n_train`` examples."""
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil(self.epochs * n_train / self.batch))

    def checkpoint_every(self, total: int) -> int:
        """Evaluate and checkpoint about 20 times per run unless told otherwise."""
        return self.eval_every or max(1, total // 20)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("given")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def default_out(self) -> Path:
        cell = Path(self.cell).stem if self.cell.endswith(".cell") else self.cell
        return Path("runs") / f"{self.task}-{cell}-h{self.hidden}-s{self.seed}"
