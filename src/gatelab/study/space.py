"""The search space of a study and its plan: which trials run, with which hyperparameters.

Defaults follow Greff et al. (2017, "LSTM: A Search Space Odyssey"), adapted to gatelab's trainer
(Adam instead of SGD with momentum, so the learning-rate range sits higher, and CPU-sized
networks):

========== ===================== ===========================================================
name       default               note
========== ===================== ===========================================================
lr         log-uniform 1e-4–3e-2 Greff: log-uniform 1e-6–1e-2 for SGD + momentum
hidden     log-uniform 16–128    Greff: log-uniform 20–200 (int)
clip       log-uniform 0.1–10    gradient-norm clipping (Greff clipped at a fixed 1)
batch      one of 8, 16, 32, 64  Greff: 1 (online) for JSB
forget_bias uniform 0–3          only for cells with a forget gate (found by the analysis)
dropout    uniform 0–0.5         only with ``layers > 1`` (dropout acts between layers)
========== ===================== ===========================================================

A config file (TOML or JSON) may narrow or widen a range, or fix a value::

    [space]
    lr = {low = 1e-4, high = 1e-2}
    batch = {choices = [16, 32]}
    [fixed]
    steps = 300
    T = 100

Trials to convergence: ``patience = 10`` (evaluations without a better validation metric) and
``max_steps = 20000`` (the step cap; the same as ``steps``, give one of them) in ``[fixed]``;
each trial then reports the test metric of its best-validation checkpoint, its step count, its
best step and why it stopped (:mod:`gatelab.train.early_stop`).

Values given on the command line (``--steps``, ``--hidden``, ``-T`` ...) fix that value too and
win over the file. Draw ``k`` uses the same random numbers for every cell (a paired design: all
cells see the same ``k``-th configuration), so differences between cells are not draws' luck.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..files import read_limited, safe_name
from ..train.config import TrainConfig
from ..train.forget import forget_gate

KINDS = ("loguniform", "uniform", "int_loguniform", "choice")
MAX_CONFIG_BYTES = 1 << 20  # a study config is a few lines


class StudyError(UsageError):
    """A study that cannot be planned, started or continued (one readable line)."""


def finite_number(x: Any) -> bool:
    """Whether ``x`` is an int or float (not a bool) with a finite value: what a range end, a
    choice or a trial's metric read from a JSON/TOML file must be."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Dim:
    """One hyperparameter: a ``TrainConfig`` field and how to draw it."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise StudyError(f"space.{self.name}: unknown kind {self.kind!r} "
                             f"(choose {', '.join(KINDS)})")
        if self.kind == "choice":
            if not self.choices:
                raise StudyError(f"space.{self.name}: give a non-empty list of choices")
            if not all(finite_number(c) for c in self.choices):
                raise StudyError(f"space.{self.name}: choices must be finite numbers "
                                 f"(got {list(self.choices)!r})")
            return
        for end in ("low", "high"):
            if not finite_number(getattr(self, end)):
                raise StudyError(f"space.{self.name}: {end} must be a finite number "
                                 f"(got {getattr(self, end)!r})")
        if not self.low <= self.high:
            raise StudyError(f"space.{self.name}: need low <= high (got {self.low}, {self.high})")
        if self.kind != "uniform" and self.low <= 0:
            raise StudyError(f"space.{self.name}: a log scale needs low > 0 (got {self.low})")

    def sample(self, u: float) -> Any:
        """The value at quantile ``u`` in [0, 1) of this dimension."""
        if self.kind == "choice":
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        if self.kind == "uniform":
            return float(self.low + u * (self.high - self.low))
        v = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        return int(round(v)) if self.kind == "int_loguniform" else float(v)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["choices"] = list(self.choices)
        return d


DEFAULT_SPACE: dict[str, Dim] = {
    "lr": Dim("lr", "loguniform", 1e-4, 3e-2),
    "hidden": Dim("hidden", "int_loguniform", 16, 128),
    "clip": Dim("clip", "loguniform", 0.1, 10.0),
    "batch": Dim("batch", "choice", choices=(8, 16, 32, 64)),
    "forget_bias": Dim("forget_bias", "uniform", 0.0, 3.0),
    "dropout": Dim("dropout", "uniform", 0.0, 0.5),
}
# Fields of TrainConfig a study may fix (from the file or the command line).
FIXABLE = {"steps", "epochs", "hidden", "layers", "batch", "lr", "clip", "T", "dropout",
           "embed", "max_len", "train_size", "eval_size", "eval_every", "data_path", "device",
           "threads", "forget_bias", "patience", "max_steps"}


def load_config(path: str | Path | None) -> tuple[dict[str, Dim], dict[str, Any]]:
    """``(space, fixed)`` from a TOML/JSON file (None: the defaults). Raises ``ValueError``."""
    space = dict(DEFAULT_SPACE)
    if path is None:
        return space, {}
    p = Path(path)
    try:
        text = read_limited(p, MAX_CONFIG_BYTES, "the study config").decode("utf-8")
    except UnicodeDecodeError:
        raise StudyError(f"{p}: the study config is not UTF-8 text") from None
    try:
        if p.suffix == ".json":
            data = json.loads(text)
        else:
            import tomllib  # Python 3.11+

            data = tomllib.loads(text)
    except (ValueError, ImportError, RecursionError) as e:
        raise StudyError(f"{p}: not a valid {'JSON' if p.suffix == '.json' else 'TOML'} "
                         f"study config ({e})") from None
    if not isinstance(data, dict):
        raise StudyError(f"{p}: a study config is a table with [space] and [fixed] sections")
    for section in ("space", "fixed"):
        if not isinstance(data.get(section) or {}, dict):
            raise StudyError(f"{p}: [{section}] must be a table (got "
                             f"{type(data[section]).__name__})")
    unknown = set(data) - {"space", "fixed"}
    if unknown:
        raise StudyError(f"{p}: unknown section(s) {', '.join(sorted(unknown))}: "
                         "use [space] and [fixed]")
    for name, spec in (data.get("space") or {}).items():
        if name not in DEFAULT_SPACE:
            raise StudyError(f"{p}: space.{name} is not a searchable hyperparameter "
                             f"(choose {', '.join(DEFAULT_SPACE)})")
        if not isinstance(spec, dict):
            raise StudyError(f"{p}: space.{name} must be a table such as "
                             "{low = 1e-4, high = 1e-2} or {choices = [16, 32]}")
        base = DEFAULT_SPACE[name]
        kind = spec.get("kind", "choice" if "choices" in spec else base.kind)
        choices = spec.get("choices", base.choices if kind == "choice" else ())
        if not isinstance(choices, (list, tuple)):
            raise StudyError(f"{p}: space.{name}.choices must be a list such as [16, 32]")
        try:
            space[name] = Dim(name, kind, spec.get("low", base.low), spec.get("high", base.high),
                              tuple(choices))
        except StudyError as e:  # Dim's own checks: name the file
            raise StudyError(f"{p}: {e}") from None
    fixed = dict(data.get("fixed") or {})
    bad = set(fixed) - FIXABLE
    if bad:
        raise StudyError(f"{p}: fixed.{sorted(bad)[0]} is not a training option a study can "
                         f"fix (choose from {', '.join(sorted(FIXABLE))})")
    if "max_steps" in fixed:  # the step cap of early-stopped trials: TrainConfig's steps
        if "steps" in fixed:
            raise StudyError(f"{p}: give fixed.steps or fixed.max_steps (the step cap), "
                             "not both")
        fixed["steps"] = fixed.pop("max_steps")
    return space, fixed


@dataclass
class StudySpec:
    """Everything that decides a study's trials (saved as ``plan.json``)."""

    task: str
    cells: list[str]
    trials: int
    seeds: int = 1
    search_seed: int = 0
    space: dict[str, Dim] = field(default_factory=lambda: dict(DEFAULT_SPACE))
    fixed: dict[str, Any] = field(default_factory=dict)
    vanilla: str | None = None  # the reference cell of the tests (default: the first)

    def __post_init__(self) -> None:
        if not self.cells:
            raise StudyError("give at least one cell (--cells lstm,gru,...)")
        if self.trials < 1 or self.seeds < 1:
            raise StudyError("--trials and --seeds must be at least 1")
        names = [cell_key(c) for c in self.cells]
        if len(set(names)) != len(names):
            raise StudyError(f"--cells names a cell twice: {', '.join(self.cells)}")
        self.vanilla = self.vanilla or names[0]
        if self.vanilla not in names:
            raise StudyError(f"--vanilla {self.vanilla} is not one of the study's cells")

    def searched(self, cell: str) -> list[str]:
        """The dimensions drawn for ``cell`` (fixed ones and ones that do not apply left out)."""
        layers = int(self.fixed.get("layers", 1))
        out = []
        for name in self.space:
            if name in self.fixed:
                continue
            if name == "forget_bias" and forget_gate(cell) is None:
                continue
            if name == "dropout" and layers < 2:
                continue
            out.append(name)
        return out


def cell_key(cell: str) -> str:
    """The name a cell has in a study: a built-in name, or a ``.cell`` file's stem made a safe
    file-name part (it starts every trial id, and a trial id names a run folder)."""
    return safe_name(Path(cell).stem) if cell.endswith(".cell") else cell


def make_plan(spec: StudySpec) -> list[dict[str, Any]]:
    """Every trial of the study: id, cell, draw, seed, the drawn values, the full TrainConfig
    (its ``out`` relative to the study folder: ``runs/<id>``).

    Raises ``ValueError`` (from ``TrainConfig``) when a combination is invalid, before any run.
    """
    plan = []
    for cell in spec.cells:
        key = cell_key(cell)
        cell_arg = str(Path(cell).resolve()) if cell.endswith(".cell") else cell
        names = spec.searched(cell_arg)
        for k in range(spec.trials):
            # One random vector per draw k, shared by all cells: a paired design.
            u = np.random.default_rng([spec.search_seed, k]).random(len(DEFAULT_SPACE))
            params = {n: spec.space[n].sample(float(u[i]))
                      for i, n in enumerate(DEFAULT_SPACE) if n in names}
            for s in range(spec.seeds):
                tid = f"{key}-{k:03d}" + (f"-s{s}" if spec.seeds > 1 else "")
                cfg = {**spec.fixed, **params, "task": spec.task, "cell": cell_arg, "seed": s,
                       "out": f"runs/{tid}"}  # relative to the study folder: it may move
                if "forget_bias" not in names and forget_gate(cell_arg) is None:
                    cfg.pop("forget_bias", None)  # a fixed bias applies to cells that have one
                TrainConfig(**cfg)  # validates now: a bad value fails before Ray starts
                plan.append({"id": tid, "cell": key, "draw": k, "seed": s, "params": params,
                             "config": cfg})
    return plan


def spec_to_dict(spec: StudySpec) -> dict[str, Any]:
    return {"task": spec.task, "cells": spec.cells, "trials": spec.trials, "seeds": spec.seeds,
            "search_seed": spec.search_seed, "vanilla": spec.vanilla, "fixed": spec.fixed,
            "space": {n: d.to_dict() for n, d in spec.space.items()}}


def spec_from_dict(d: dict[str, Any]) -> StudySpec:
    space = {n: Dim(v["name"], v["kind"], v["low"], v["high"], tuple(v["choices"]))
             for n, v in d["space"].items()}
    return StudySpec(d["task"], list(d["cells"]), int(d["trials"]), int(d["seeds"]),
                     int(d["search_seed"]), space, dict(d["fixed"]), d.get("vanilla"))
