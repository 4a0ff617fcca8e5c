"""Gate saturation (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and Understanding Recurrent
Networks", Fig. 3): how often each gate unit sits near a switch position.

For gate ``g``, layer ``l`` and unit ``j``, over every real step of every text of a data set:
``left[j] = P(g_j < 0.1)`` (switch open) and ``right[j] = P(g_j > 0.9)`` (switch closed). A unit
near the line ``left + right = 1`` behaves like a 0/1 switch, as simplification (3) assumes; a
unit near the origin stays in between.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UsageError
from .batches import Texts, batches, encoded, valid_mask
from .gates import gate_names
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


def saturation(model: TextModel, texts: Texts, *, max_len: int = 300,
               batch: int = 64, progress: Callable[[int], None] | None = None) -> Saturation:
    """Count, per gate unit, the real steps below ``LOW`` and above ``HIGH`` over ``texts``."""
    labels = gate_names(model.cell, len(model.layers))
    H = model.hidden_size
    low = {lab: torch.zeros(H) for _, _, lab in labels}
    high = {lab: torch.zeros(H) for _, _, lab in labels}
    steps = 0
    for trace in batches(model, encoded(model, texts, max_len), batch=batch, progress=progress):
        mask = valid_mask(trace).unsqueeze(-1)  # (T, N, 1)
        steps += int(mask.sum())
        for layer, g, lab in labels:
            v = trace.gates[layer][g]
            low[lab] += ((v < LOW) & mask).sum(dim=(0, 1)).float()
            high[lab] += ((v > HIGH) & mask).sum(dim=(0, 1)).float()
    if steps == 0:
        raise UsageError("no tokens to measure saturation on")
    return Saturation({k: v / steps for k, v in low.items()},
                      {k: v / steps for k, v in high.items()}, steps)


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
