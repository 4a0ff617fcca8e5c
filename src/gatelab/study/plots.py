"""The figures of a study (matplotlib, Agg): per-cell box plots (Greff et al. 2017, figure 3),
the learning rate against the metric, and the fANOVA importances."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw_figures(folder: Path, rows: list[dict[str, Any]], summary: dict[str, Any]
                 ) -> list[str]:
    """Write ``boxplot.png``, ``lr.png`` and (when computed) ``importance.png``; return names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "test metric (" + ("higher" if summary["higher_is_better"] else "lower") + \
        " is better)"
    cells = [v["cell"] for v in summary["variants"]]
    data = [[r["metric"] for r in rows if r["cell"] == c and r["metric"] is not None]
            for c in cells]
    names = []
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(cells) + 2), 3.6))
    shown = [d if d else [float("nan")] for d in data]
    ax.boxplot(shown, showfliers=True)
    ax.set_xticks(range(1, len(cells) + 1), cells, rotation=30)
    for i, d in enumerate(data, start=1):
        ax.scatter([i] * len(d), d, s=8, alpha=0.5, color="tab:blue", zorder=3)
    ax.set_ylabel(metric)
    ax.set_title(f"{summary['task']}: every finished trial per cell")
    fig.tight_layout()
    fig.savefig(folder / "boxplot.png", dpi=110)
    plt.close(fig)
    names.append("boxplot.png")

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for c in cells:
        pts = [(r["params"]["lr"], r["metric"]) for r in rows
               if r["cell"] == c and r["metric"] is not None and "lr" in r["params"]]
        if pts:
            ax.scatter(*zip(*pts, strict=True), s=12, label=c, alpha=0.75)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(metric)
    ax.set_title(f"{summary['task']}: learning rate against the metric")
    if cells:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(folder / "lr.png", dpi=110)
    plt.close(fig)
    names.append("lr.png")

    f = summary["fanova"].get("forget_gate_cells") or summary["fanova"].get("all")
    if f:
        main = sorted(f["main"].items(), key=lambda kv: -kv[1])
        pairs = list(f["pairs"].items())[:5]
        labels = [n for n, _ in main] + [n for n, _ in pairs]
        values = [v for _, v in main] + [v for _, v in pairs]
        colors = ["tab:blue"] * len(main) + ["tab:orange"] * len(pairs)
        fig, ax = plt.subplots(figsize=(5.5, 0.3 * len(labels) + 1.2))
        ax.barh(range(len(labels)), values, color=colors)
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_xlabel("fraction of variance (fANOVA; orange: pairwise interactions)")
        fig.tight_layout()
        fig.savefig(folder / "importance.png", dpi=110)
        plt.close(fig)
        names.append("importance.png")
    return names
