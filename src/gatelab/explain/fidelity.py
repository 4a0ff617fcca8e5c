"""How true is the one diagram? Run the trained model with its gates made 0/1 switches.

Simplification (3) reads each gate ``g = σ(...)`` as a switch. Here every gate value is replaced
by its rounding, ``g ← round(g)`` (0 below 0.5, 1 from 0.5), at every step of every layer,
through :func:`gatelab.cell.evaluate.step`'s ``gate_fn``; the change in accuracy, loss and
predictions measures how much of what the network does the switch diagram keeps. The same is
done for one gate at a time, the others left as trained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..errors import UsageError
from .batches import Texts, batches, encoded
from .gates import GateFn
from .model import TextModel


@dataclass
class Condition:
    """One way of running the model: ``rounded`` lists the gates made 0/1.

    ``accuracy``, ``loss`` (mean cross-entropy, nats), ``changed`` (fraction of predictions that
    differ from the exact model's) and ``shift`` (mean total-variation distance between the
    exact and this condition's class probabilities, in [0, 1])."""

    name: str
    rounded: tuple[str, ...]
    accuracy: float
    loss: float
    changed: float
    shift: float


@dataclass
class Fidelity:
    """Exact model first, then every gate rounded, then each gate alone. ``n``: texts used."""

    conditions: list[Condition]
    n: int

    @property
    def exact(self) -> Condition:
        return self.conditions[0]

    @property
    def all_rounded(self) -> Condition:
        return self.conditions[1]

    def to_json(self) -> dict:
        return {"n": self.n, "conditions": [c.__dict__ | {"rounded": list(c.rounded)}
                                            for c in self.conditions]}


def round_gates(only: set[str] | None = None) -> GateFn:
    """A ``gate_fn`` that rounds every gate (or only those named in ``only``) to 0/1."""
    def fn(name: str, value: torch.Tensor) -> torch.Tensor:
        if only is None or name in only:
            return (value >= 0.5).to(value.dtype)
        return value
    return fn


def _logits(model: TextModel, ids: list[torch.Tensor], gate_fn: GateFn | None,
            batch: int, progress: Callable[[int], None] | None) -> torch.Tensor:
    out = [t.logits for t in batches(model, ids, batch=batch, gate_fn=gate_fn,
                                      progress=progress)]
    return torch.cat(out).float()


def fidelity(model: TextModel, texts: Texts, labels: Sequence[int], *,
             max_len: int = 300, batch: int = 64,
             progress: Callable[[int], None] | None = None) -> Fidelity:
    """Accuracy, loss and prediction changes with gates rounded, on a labelled set.

    ``progress(n)`` is told after each batch; there are ``len(texts) * (2 + gates)`` in all.
    """
    if len(texts) == 0:
        raise UsageError("fidelity needs at least one labelled text")
    ids = encoded(model, texts, max_len)
    y = torch.as_tensor(list(labels), dtype=torch.long)
    gates = list(model.cell.gates)
    plan: list[tuple[str, tuple[str, ...], GateFn | None]] = [("exact", (), None)]
    if gates:
        plan.append(("all gates 0/1", tuple(gates), round_gates()))
        if len(gates) > 1:
            plan += [(f"only {g} 0/1", (g,), round_gates({g})) for g in gates]
    conditions = []
    base_p = None
    for name, rounded, fn in plan:
        logits = _logits(model, ids, fn, batch, progress)
        p = torch.softmax(logits, dim=1)
        pred = logits.argmax(dim=1)
        if base_p is None:
            base_p, base_pred = p, pred
        conditions.append(Condition(
            name, rounded,
            accuracy=float((pred == y).float().mean()),
            loss=float(torch.nn.functional.cross_entropy(logits, y)),
            changed=float((pred != base_pred).float().mean()),
            shift=float(0.5 * (p - base_p).abs().sum(dim=1).mean()),
        ))
    return Fidelity(conditions, len(texts))
