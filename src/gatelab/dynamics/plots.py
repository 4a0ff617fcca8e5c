"""Figures of the gradient lab (matplotlib, written as PNG and SVG side by side).

Each function takes results from :mod:`law`, :mod:`flow`, :mod:`clip` or :mod:`spectrum` and a
path stem ``out/name``; it writes ``out/name.png`` and ``out/name.svg`` and returns both paths.
Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, no display needed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from .clip import ClipResult
from .flow import FlowResult
from .law import LawResult
from .spectrum import SpectrumResult

COLORS = {"none": "#c0392b", "norm": "#2471a3", "value": "#229954"}
STYLES = {"none": {"ls": "-", "lw": 1.5}, "norm": {"ls": "-", "lw": 3.0},
          "value": {"ls": "--", "lw": 1.3}}
TINY = 1e-300  # log axes cannot show 0: a vanished gradient is drawn at the bottom


def _save(fig: Figure, stem: Path) -> list[Path]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def law_plot(results: Sequence[LawResult], stem: Path) -> list[Path]:
    """``‖∂h_t/∂h_0‖`` against ``t`` on a log scale, with the article's ``σ_max^t`` dashed."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for i, r in enumerate(results):
        color = f"C{i}"
        # measured as dots, the law as a line through them: they coincide when W is normal
        ax.semilogy(r.t, [max(v, TINY) for v in r.norm], color=color, ls="none", marker="o",
                    ms=4, markevery=max(1, r.steps // 20),
                    label=f"σ_max={r.sigma_max:g}: measured, fitted rate {r.fitted_rate:.4f}")
        ax.semilogy(r.t, r.bound, color=color, ls="--", lw=1.2,
                    label=f"σ_max^t = {r.sigma_max:g}^t")
    act = results[0].activation if results else ""
    ax.set_xlabel("t (steps)")
    ax.set_ylabel("‖∂h_t/∂h_0‖ (operator norm)")
    ax.set_title(f"Exploding and vanishing: linear RNN, {act} activation")
    ax.grid(True, which="major", alpha=0.3)
    # beside the axes: inside, it covered the falling curve
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _save(fig, stem)


def _flow_axes(ax, result: FlowResult, label: str, color: str) -> None:
    d = result.distance
    ax.semilogy(d, [max(v, TINY) for v in result.grad_norm], color=color, lw=2, label=label)
    ax.fill_between(d, [max(v, TINY) for v in result.q25], [max(v, TINY) for v in result.q75],
                    color=color, alpha=0.2, lw=0)


def flow_plot(panels: Sequence[tuple[str, Sequence[tuple[str, FlowResult]]]], stem: Path,
              *, floor: float = 1e-12) -> list[Path]:
    """One panel per cell, side by side; each holds labelled flow curves (median and the
    quartile band of ``‖∂L/∂s_{T-d}‖`` against the distance ``d``)."""
    n = max(len(panels), 1)
    fig = Figure(figsize=(4.0 * n, 4.2))
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    for ax, (title, curves) in zip(axes, panels, strict=False):
        for i, (label, result) in enumerate(curves):
            _flow_axes(ax, result, label, f"C{i}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("distance T − k (steps)")
        ax.set_ylim(bottom=floor, top=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    axes[0].set_ylabel("‖∂L/∂s_k‖ (median, quartiles)")
    return _save(fig, stem)


def clip_plot(result: ClipResult, stem: Path) -> list[Path]:
    """Loss and gradient norm (before clipping) per SGD step for the three runs; a cross marks
    each run's first non-finite step."""
    fig = Figure(figsize=(10, 3.8))
    ax_loss, ax_norm = fig.subplots(1, 2)
    for mode, run in result.runs.items():
        steps = range(len(run.loss))
        label = f"{mode} ({run.nonfinite_steps} non-finite)"
        # the two clipped runs often coincide: a wide solid line under a thin dashed one keeps
        # both visible
        style = STYLES.get(mode, {"ls": "-", "lw": 1.5})
        ax_loss.semilogy(steps, run.loss, color=COLORS.get(mode), label=label, **style)
        ax_norm.semilogy(steps, run.grad_norm, color=COLORS.get(mode), label=mode, **style)
        if run.first_nonfinite is not None:
            k = run.first_nonfinite
            finite = [v for v in run.loss[:k] if math.isfinite(v)]
            y = finite[-1] if finite else 1.0
            ax_loss.plot([k], [y], "x", color=COLORS.get(mode), ms=10, mew=2)
    ax_loss.axhline(result.trivial_loss, color="gray", ls=":", lw=1, label="predict 1 (MSE 1/6)")
    ax_loss.set_xlabel("SGD step")
    ax_loss.set_ylabel("training loss (MSE)")
    ax_loss.set_title(f"Adding problem, T={result.seq_len}, RNN with σ_max={result.sigma_max:g}",
                      fontsize=10)
    ax_loss.legend(fontsize=8)
    ax_norm.set_xlabel("SGD step")
    ax_norm.set_ylabel("‖g‖ before clipping")
    ax_norm.set_title(f"clip_grad_norm_ θ={result.max_norm:g}, "
                      f"clip_grad_value_ c={result.clip_value:g}", fontsize=10)
    ax_norm.legend(fontsize=8)
    for ax in (ax_loss, ax_norm):
        ax.grid(True, alpha=0.3)
    return _save(fig, stem)


def spectrum_plot(result: SpectrumResult, stem: Path) -> list[Path]:
    """Singular values (descending) of every recurrent matrix, with the line σ = 1."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    for m in result.matrices:
        tag = f"{m.name} (layer {m.layer}{', backward' if m.direction else ''})"
        ax.plot(range(1, len(m.singular_values) + 1), m.singular_values, lw=1.5,
                label=f"{tag}: σ_max={m.sigma_max:.3f}")
    ax.axhline(1.0, color="gray", ls=":", lw=1)
    ax.set_xlabel("index i")
    ax.set_ylabel("σ_i")
    ax.set_title(f"Recurrent spectra: {result.cell}" + (f" ({result.run})" if result.run else ""),
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, stem)
