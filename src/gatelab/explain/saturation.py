"""Gate saturation (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and Understanding Recurrent
Networks", Fig. 3): how often each gate unit sits near a switch position.

For gate ``g``, layer ``l`` and unit ``j``, over every real step of every text of a data set:
``left[j] = P(g_j < 0.1)`` (switch open) and ``right[j] = P(g_j > 0.9)`` (switch closed). A unit
near the line ``left + right = 1`` behaves like a 0/1 switch, as simplification (3) assumes; a
unit near the origin stays in between.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..cell import Cell
from ..errors import UsageError
from .batches import Texts, batches, encoded, valid_mask
from .gates import Trace, gate_names, replay_layers
from .model import TextModel

LOW, HIGH = 0.1, 0.9


@dataclass
class Saturation:
    """``left[label]``, ``right[label]``: per-unit fractions ``(H,)``; ``steps``: steps counted.

    Labels are gate names (``"f"``), or ``"L2.f"`` for deeper layers."""

    left: dict[str, torch.Tensor]
    right: dict[str, torch.Tensor]
    steps: int

    def summary(self) -> dict[str, dict[str, float]]:
        """Per gate: mean fraction of steps below ``LOW``, above ``HIGH``, and in between."""
        out = {}
        for k in self.left:
            lo, hi = float(self.left[k].mean()), float(self.right[k].mean())
            out[k] = {"below_0.1": lo, "above_0.9": hi, "between": 1.0 - lo - hi}
        return out

    def to_json(self) -> dict:
        return {"steps": self.steps, "low": LOW, "high": HIGH, "summary": self.summary(),
                "units": {k: {"left": [round(float(v), 5) for v in self.left[k]],
                              "right": [round(float(v), 5) for v in self.right[k]]}
                          for k in self.left}}


class _Counter:
    """Per-unit counts of gate values below ``LOW`` and above ``HIGH``, trace by trace."""

    def __init__(self, cell: Cell, n_layers: int, H: int) -> None:
        self.labels = gate_names(cell, n_layers)
        self.low = {lab: torch.zeros(H) for _, _, lab in self.labels}
        self.high = {lab: torch.zeros(H) for _, _, lab in self.labels}
        self.steps = 0

    def add(self, trace: Trace) -> None:
        mask = valid_mask(trace).unsqueeze(-1)  # (T, N, 1)
        self.steps += int(mask.sum())
        for layer, g, lab in self.labels:
            v = trace.gates[layer][g]
            self.low[lab] += ((v < LOW) & mask).sum(dim=(0, 1)).float()
            self.high[lab] += ((v > HIGH) & mask).sum(dim=(0, 1)).float()

    def result(self) -> Saturation:
        if self.steps == 0:
            raise UsageError("no tokens to measure saturation on")
        return Saturation({k: v / self.steps for k, v in self.low.items()},
                          {k: v / self.steps for k, v in self.high.items()}, self.steps)


def saturation(model: TextModel, texts: Texts, *, max_len: int = 300,
               batch: int = 64, progress: Callable[[int], None] | None = None) -> Saturation:
    """Count, per gate unit, the real steps below ``LOW`` and above ``HIGH`` over ``texts``."""
    counter = _Counter(model.cell, len(model.layers), model.hidden_size)
    for trace in batches(model, encoded(model, texts, max_len), batch=batch, progress=progress):
        counter.add(trace)
    return counter.result()


def sequence_saturation(cell: Cell, layers: list[dict[str, torch.Tensor]],
                        inputs: Iterable[torch.Tensor]) -> Saturation:
    """The same count for a model read at every step (e.g. a character model): ``inputs``
    yields input batches ``(T, N, I)`` (all steps real), replayed through ``layers``."""
    H = next(iter(layers[0].values())).shape[0]
    counter = _Counter(cell, len(layers), H)
    for x in inputs:
        counter.add(replay_layers(cell, layers, x))
    return counter.result()


def plot(sat: Saturation, path: Path, title: str = "") -> Path:
    """One scatter panel per gate and layer: each dot a unit at (left, right). Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(sat.left)  # "f", or "L1.f", "L2.f", ... for deeper models: a row per layer
    rows = sorted({lab.split(".")[0] for lab in labels if "." in lab}) or [""]
    per_row = [[lab for lab in labels if lab.startswith(r + ".") or not r] for r in rows]
    n = max(1, max(len(r) for r in per_row))
    fig, axes = plt.subplots(len(rows), n, figsize=(3.2 * n, 3.3 * len(rows)), squeeze=False)
    for ax in axes.flat[len(labels):] if len(rows) == 1 else ():
        ax.set_axis_off()
    for ax, lab in ((axes[i][j], lab) for i, r in enumerate(per_row) for j, lab in enumerate(r)):
        ax.plot([0, 1], [1, 0], color="#bbb", lw=1, ls="--", label="always saturated")
        ax.scatter(sat.left[lab].numpy(), sat.right[lab].numpy(), s=14, alpha=0.75,
                   color="#c0392b", edgecolor="none")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_title(f"gate {lab}")
        ax.set_xlabel(f"fraction < {LOW} (open)")
        ax.set_ylabel(f"fraction > {HIGH} (closed)")
    if not labels:
        axes[0][0].text(0.5, 0.5, "this cell has no gates", ha="center", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
