"""``gatelab compare``: train several cells on one task over several seeds, then a leaderboard.

For each cell: the final metric (mean ± standard deviation over seeds), the parameter count, the
time per training step, and how many steps it took to reach a threshold (the first evaluation at
or past it; median over the seeds that got there). Written as ``leaderboard.md``,
``leaderboard.json`` and ``curves.png`` (the metric against the step, mean over seeds and a band
from the lowest to the highest seed).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cell import CellError, load_cell
from ..errors import UsageError
from ..files import inside, safe_name
from .config import TrainConfig
from .runs import CHECKPOINT, METRICS, atomic_write_text, load_run, read_metrics
from .trainer import train


def cell_label(cell: str) -> str:
    """The cell's name, as a safe folder-name part: it names the run folders ``LABEL-sSEED``
    (inside the comparison's folder, whatever the cell's path) and the leaderboard row."""
    return safe_name(load_cell(cell).name)


def check_cells(cells: list[str]) -> None:
    """Load every cell before anything trains, so a typo in the last one costs nothing.

    Raises ``CellError`` listing the problems of every bad cell, or ``ValueError`` when two cells
    would get the same label (their run folders and leaderboard rows would collide).
    """
    problems = []
    for cell in cells:
        try:
            load_cell(cell)
        except CellError as e:
            problems.extend(e.problems)
    if problems:
        raise CellError(problems)
    seen: dict[str, str] = {}
    for cell in cells:
        label = cell_label(cell)
        if label in seen:
            what = (f"lists {cell!r} twice" if seen[label] == cell else
                    f"has {seen[label]!r} and {cell!r}, which both get the label {label!r}")
            raise UsageError(f"--cells {what}: each cell needs its own label (it names the run "
                             f"folders {label}-sSEED and the leaderboard row); drop the "
                             "duplicate or rename one .cell file")
        seen[label] = cell


MAX_SEEDS = 1000  # seeds per cell: runs are sequential, so this bounds the time, not memory
MAX_CELLS = 64


def check_compare(cells: list[str], seeds: int) -> None:
    """At least one cell and one seed, at most :data:`MAX_CELLS` and :data:`MAX_SEEDS`."""
    if not cells:
        raise UsageError("--cells: give at least one cell name or .cell file")
    if len(cells) > MAX_CELLS:
        raise UsageError(f"--cells lists {len(cells)} cells, more than {MAX_CELLS}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise UsageError(f"--seeds must be a whole number in [1, {MAX_SEEDS}] (got {seeds!r})")


def budget_compare(base: TrainConfig, cells: list[str], seeds: int,
                   memory_gb: float | None = None) -> None:
    """Refuse before the first run when one run of any cell does not fit the memory budget,
    or all ``cells × seeds`` runs together exceed the work budget
    (:mod:`gatelab.budget`)."""
    from .. import budget

    check_cells(cells)
    work = 0.0
    for cell in cells:
        est = budget.train_estimate(dataclasses.replace(base, cell=cell), load_cell(cell))
        budget.check(dataclasses.replace(est, work=0.0), memory_gb, option=True)
        work += est.work * seeds
    budget.check(budget.Estimate(f"compare ({len(cells)} cells × {seeds} seeds)", work=work,
                                 shrink="--seeds, --cells or --steps"), memory_gb)


def run_compare(base: TrainConfig, cells: list[str], seeds: int, out: Path,
                progress: bool = True, resume: bool = False,
                say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train ``cells × seeds`` runs under ``out/CELL-sSEED`` and write the leaderboard there.

    Returns the leaderboard as a dict (``rows``, ``task``, ``metric``...); ``resume`` finishes
    runs that were interrupted, and keeps as they are the runs that already reached the asked
    steps. Every cell is checked (:func:`check_cells`) before the first run starts.
    """
    check_cells(cells)
    out.mkdir(parents=True, exist_ok=True)
    folders: dict[str, list[Path]] = {}
    for cell in cells:
        for seed in range(base.seed, base.seed + seeds):
            folder = inside(out, f"{cell_label(cell)}-s{seed}")
            if say:
                say(f"training {cell_label(cell)} (seed {seed})")
            cfg = dataclasses.replace(base, cell=cell, seed=seed, out=str(folder), cell_text="")
            if resume and _reached(folder, cfg):
                folders.setdefault(cell, []).append(folder)  # finished: kept as it is
                continue
            folders.setdefault(cell, []).append(
                train(cfg, progress=progress, resume=resume))
    board = leaderboard(folders)
    write_leaderboard(board, out)
    return board


def _reached(folder: Path, cfg: TrainConfig) -> bool:
    """Whether the run in ``folder`` already trained at least the steps ``cfg`` asks for (a run
    that went further, e.g. extended on its own, is not cut back or refused)."""
    if not (folder / CHECKPOINT).is_file() or cfg.steps is None:
        return False
    try:
        rows = read_metrics(folder / METRICS)
    except (OSError, ValueError, KeyError):
        return False  # let train() say what is wrong with it
    return bool(rows) and int(rows[-1]["step"]) >= cfg.steps


def steps_to(rows: list[dict], threshold: float | None, higher: bool) -> int | None:
    """First evaluated step whose metric reaches ``threshold`` (None if never)."""
    if threshold is None:
        return None
    for r in rows:
        if (r["metric"] >= threshold) if higher else (r["metric"] <= threshold):
            return int(r["step"])
    return None


def leaderboard(folders: dict[str, list[Path]]) -> dict[str, Any]:
    """Aggregate the runs of each cell (keys: cell names, values: their run folders)."""
    rows, curves, meta = [], {}, {}
    for cell, paths in folders.items():
        runs = [load_run(p) for p in paths]
        cfg = runs[0].config
        meta = cfg
        finals = [r.metrics[-1]["metric"] for r in runs if r.metrics]
        higher = bool(cfg["higher_is_better"])
        reach = [steps_to(r.metrics, cfg.get("threshold"), higher) for r in runs]
        hit = [s for s in reach if s is not None]
        per_step = [r.metrics[-1]["seconds"] / r.metrics[-1]["step"] for r in runs if r.metrics]
        rows.append({
            "cell": cell_label(cell),
            "final": statistics.fmean(finals) if finals else None,
            "spread": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "finals": finals,
            "params": cfg["params"],
            "ms_per_step": 1000 * statistics.fmean(per_step) if per_step else None,
            "steps_to_threshold": statistics.median(hit) if hit else None,
            "reached": f"{len(hit)}/{len(runs)}",
            "runs": [str(p) for p in paths],
        })
        curves[cell_label(cell)] = [[(m["step"], m["metric"]) for m in r.metrics] for r in runs]
    higher = bool(meta.get("higher_is_better", True))
    rows.sort(key=lambda r: (r["final"] is None,
                             -(r["final"] or 0) if higher else (r["final"] or 0)))
    return {"task": meta.get("task"), "metric": meta.get("metric"), "higher_is_better": higher,
            "threshold": meta.get("threshold"), "baseline": meta.get("baseline"),
            "T": meta.get("T"), "hidden": meta.get("hidden"), "steps": meta.get("steps"),
            "rows": rows, "curves": curves}


def markdown(board: dict[str, Any]) -> str:
    """The leaderboard as a Markdown table."""
    arrow = "↑" if board["higher_is_better"] else "↓"
    thr = board["threshold"]
    sd = " (mean ± sd)" if any(len(r["finals"]) > 1 for r in board["rows"]) else ""
    head = (f"| rank | cell | final {board['metric']} {arrow}{sd} | seeds | parameters | "
            f"ms/step | steps to {board['metric']} {'≥' if board['higher_is_better'] else '≤'} "
            f"{thr} |\n|---|---|---|---|---|---|---|\n")
    lines = []
    for i, r in enumerate(board["rows"], 1):
        spread = f" ± {r['spread']:.4f}" if len(r["finals"]) > 1 else ""  # sd of one: none
        final = "-" if r["final"] is None else f"{r['final']:.4f}{spread}"
        ms = "-" if r["ms_per_step"] is None else f"{r['ms_per_step']:.1f}"
        st = "never" if r["steps_to_threshold"] is None else f"{r['steps_to_threshold']:.0f}"
        lines.append(f"| {i} | {r['cell']} | {final} | {len(r['finals'])} | {r['params']} | "
                     f"{ms} | {st} ({r['reached']}) |")
    note = ""
    if board.get("baseline") is not None:
        note = f"\nTrivial baseline: {board['metric']} = {board['baseline']:.4f}.\n"
    return head + "\n".join(lines) + "\n" + note


def plot_curves(board: dict[str, Any], path: Path) -> None:
    """Learning curves: metric against step, mean over seeds, band = min..max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for cell, runs in board["curves"].items():
        n = min((len(c) for c in runs), default=0)
        if n == 0:
            continue
        steps = np.array([s for s, _ in runs[0][:n]])
        vals = np.array([[m for _, m in c[:n]] for c in runs])
        line, = ax.plot(steps, vals.mean(0), label=cell, lw=1.8)
        if len(runs) > 1:
            ax.fill_between(steps, vals.min(0), vals.max(0), color=line.get_color(), alpha=0.18)
    if board.get("baseline") is not None:
        ax.axhline(board["baseline"], color="grey", ls=":", lw=1, label="trivial baseline")
    if board.get("metric") in ("mse", "bpc"):
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"test {board['metric']}")
    ax.set_title(f"{board['task']}" + (f", T={board['T']}" if board.get("T") else ""))
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def write_leaderboard(board: dict[str, Any], out: Path) -> None:
    atomic_write_text(out / "leaderboard.md", markdown(board))
    atomic_write_text(out / "leaderboard.json", json.dumps(board, indent=2))
    plot_curves(board, out / "curves.png")
