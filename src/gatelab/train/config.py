"""What a training run is: one :class:`TrainConfig`, saved as ``config.json`` in the run folder.

Everything a run does follows from its config and its seed, so a run can be resumed, repeated
or compared exactly. The cell is stored as its ``.cell`` text too, so a run folder stays readable
even if the zoo changes or the user's file moves.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..files import inside, safe_name

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
    "jsb": {"hidden": 64, "steps": 500, "batch": 16, "lr": 2e-3},
}
TASKS = tuple(TASK_DEFAULTS)

# Range of every numeric field (inclusive). Generous for real runs, small enough that a typo
# cannot ask for terabytes: a 4096-wide hidden layer is already 67M weights per LSTM layer.
LIMITS: dict[str, tuple[float, float]] = {
    "hidden": (1, 4096), "layers": (1, 16), "steps": (1, 10**9), "epochs": (1e-6, 1e6),
    "batch": (1, 65536), "lr": (0, 10.0), "clip": (0, 1e9), "seed": (0, 2**63 - 1),
    "T": (2, 10**6), "dropout": (0, 1), "embed": (1, 4096), "max_len": (1, 10**6),
    "train_size": (1, 10**9), "eval_size": (1, 10**9), "eval_every": (1, 10**9),
    "nproc": (1, 256), "threads": (1, 1024), "threshold": (-1e12, 1e12),
    "forget_bias": (-100, 100), "patience": (1, 10**6),
}
OPTIONAL = {"steps", "epochs", "lr", "clip", "T", "train_size", "eval_size", "eval_every",
            "threshold", "patience"}
REAL = {"epochs", "lr", "clip", "dropout", "threshold", "forget_bias"}
DEVICE = r"auto|cpu|mps|cuda(:(0|[1-9][0-9]{0,2}))?"  # a GPU index torch can parse
MAX_ACTIVATIONS = 2**31  # batch x T x hidden x layers: about 8 GB of float32 per saved tensor


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
    # Added at initialisation to the bias of the cell's forget gate, the gate the analysis finds
    # to set how much memory is kept (gatelab.train.forget); 0: the layer's own initialisation.
    forget_bias: float = 0.0
    # Early stopping: stop after this many evaluations without a better validation metric;
    # ``steps`` is then the step cap (gatelab.train.trainer). None: run all ``steps``.
    patience: int | None = None
    cell_text: str = field(default="", repr=False)
    # The fields the user set (the CLI fills it from the command line); not saved. On --resume
    # the fields not given keep the run's saved values. None: every field counts as given.
    given: frozenset[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.task, str) or self.task not in TASK_DEFAULTS:
            raise UsageError(f"unknown task {self.task!r}: choose one of {', '.join(TASKS)}")
        for k, v in TASK_DEFAULTS[self.task].items():
            if getattr(self, k) is None and not (k == "steps" and self.epochs is not None):
                setattr(self, k, v)
        self._validate()
        if self.clip is not None and self.clip == 0:
            self.clip = None  # 0 means "no clipping"
        if self.batch % self.nproc:
            raise UsageError(f"--batch {self.batch} must be divisible by --nproc {self.nproc}")

    def _validate(self) -> None:
        """Every field of the right type, finite and in its range (:data:`LIMITS`): a typo
        (``--hidden 100000000``), a ``nan`` or a hand-edited ``config.json`` is refused here
        with the option's name, before any memory is allocated."""
        for name in ("task", "cell", "device", "cell_text"):
            if not isinstance(getattr(self, name), str):
                raise UsageError(f"--{name} must be text (got {getattr(self, name)!r})")
        for name in ("out", "data_path"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise UsageError(f"--{name} must be a path (got {getattr(self, name)!r})")
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if value is None and name in OPTIONAL:
                continue
            whole = name not in REAL
            ok_type = isinstance(value, int) if whole else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok_type:
                kind = "a whole number" if whole else "a number"
                raise UsageError(f"--{name.replace('_', '-')} must be {kind} (got {value!r})")
            flag = "--" + name.replace("_", "-")
            if not math.isfinite(value):
                raise UsageError(f"{flag} must be a finite number (got {value!r})")
            if value < low:
                raise UsageError(f"{flag} must be at least {low:g} (got {value!r})")
            if value > high:
                raise UsageError(f"{flag} must be at most {high:g} (got {value!r})")
        if re.fullmatch(r"cuda:[0-9]+", self.device) and not re.fullmatch(DEVICE, self.device):
            raise UsageError(f"--device {self.device[:40]}: a GPU index is at most 1023")
        if not re.fullmatch(DEVICE, self.device):
            raise UsageError(f"--device {self.device[:40]!r} is not a device this trainer can "
                             "use: use cpu, cuda, cuda:N (N: the GPU's index), mps or auto")
        if self.lr is not None and not self.lr > 0:
            raise UsageError(f"--lr must be positive (got {self.lr})")
        if not self.dropout < 1.0:
            raise UsageError(f"--dropout must be in [0, 1) (got {self.dropout})")
        cells = self.batch * (self.T or 1) * self.hidden * self.layers
        if cells > MAX_ACTIVATIONS:
            raise UsageError(f"--batch {self.batch} x T {self.T or 1} x --hidden {self.hidden} x "
                             f"--layers {self.layers} = {cells:.3g} values per step's activations"
                             f", over the limit of {MAX_ACTIVATIONS:.3g}: make one smaller")

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
        """The config saved in a run folder; ``ValueError`` when it is not one (not an object,
        a field of the wrong type or out of range)."""
        if not isinstance(data, dict):
            raise UsageError(f"holds {type(data).__name__}, not a JSON object of settings")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def default_out(self, cell_name: str | None = None) -> Path:
        """``runs/TASK-CELL-hH-sSEED``, CELL being the cell's *name* (``cell_name``; else the
        file stem), made a safe folder name: whatever the cell's path, the run lands in
        ``runs/``."""
        cell = safe_name(cell_name or Path(self.cell).stem)
        return inside(Path("runs"), f"{self.task}-{cell}-h{self.hidden}-s{self.seed}")
