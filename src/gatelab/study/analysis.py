"""The analysis of a study folder: per-cell distributions, tests against the vanilla cell,
fANOVA importances, figures, and ``summary.md``/``summary.json``.

Everything is read from the folder (``plan.json`` and each trial's ``trial.json``), so
``gatelab study --report DIR`` redraws it without Ray or the data.

Tests of each cell against the vanilla one, on the test metric of the draws both cells finished
(not diverged, not pending): Welch's t-test (unequal variances, as Greff et al. 2017), the
Mann–Whitney U rank test (both unpaired), and, because draw ``k`` uses the same
hyperparameters for every cell, the
Wilcoxon signed-rank test on the draws both cells finished (paired).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..train.runs import atomic_write_text
from .fanova import importances
from .runner import load_plan, trial_status
from .space import DEFAULT_SPACE, finite_number

SUMMARY_MD = "summary.md"
SUMMARY_JSON = "summary.json"
ALPHA = 0.05


def collect(folder: Path) -> tuple[Any, list[dict[str, Any]]]:
    """``(spec, rows)``: one row per planned trial, with its status and metric (None if none)."""
    spec, plan = load_plan(folder)
    rows = []
    for t in plan:
        st = trial_status(folder, t["id"]) or {}
        status = st.get("status", "pending")
        metric = st.get("metric") if status in ("done", "stopped") else None
        if not finite_number(metric):
            metric = None  # a damaged or hand-edited trial.json: not a result
        rows.append({"id": t["id"], "cell": t["cell"], "draw": t["draw"], "seed": t["seed"],
                     "params": dict(t["params"]), "status": status, "metric": metric,
                     "higher_is_better": st.get("higher_is_better"),
                     # early-stopped trials: how long they ran and why they stopped
                     "steps": st.get("steps") if finite_number(st.get("steps")) else None,
                     "stop_reason": st.get("stop_reason")
                     if isinstance(st.get("stop_reason"), str) else None})
    return spec, rows


def _describe(values: list[float], higher: bool) -> dict[str, Any]:
    if not values:
        return {"best": None, "q1": None, "median": None, "q3": None, "mean": None, "std": None}
    v = np.asarray(values, dtype=float)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"best": float(v.max() if higher else v.min()), "q1": float(q1),
            "median": float(med), "q3": float(q3), "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def _tests(cell_rows: list[dict], ref_rows: list[dict]) -> dict[str, Any]:
    from scipy import stats

    # Only the draws both cells finished: a study cut short (or a diverged trial) then still
    # compares the cells on the same hyperparameters.
    both = ({(r["draw"], r["seed"]) for r in cell_rows if r["metric"] is not None}
            & {(r["draw"], r["seed"]) for r in ref_rows if r["metric"] is not None})
    a = [r["metric"] for r in cell_rows if (r["draw"], r["seed"]) in both]
    b = [r["metric"] for r in ref_rows if (r["draw"], r["seed"]) in both]
    out: dict[str, Any] = {"welch_t": None, "welch_p": None, "mannwhitney_p": None,
                           "wilcoxon_p": None, "paired_n": 0}
    if len(a) >= 2 and len(b) >= 2:
        t = stats.ttest_ind(a, b, equal_var=False)
        out["welch_t"], out["welch_p"] = _num(t.statistic), _num(t.pvalue)
        out["mannwhitney_p"] = _num(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    ref = {(r["draw"], r["seed"]): r["metric"] for r in ref_rows if r["metric"] is not None}
    pairs = [(r["metric"], ref[(r["draw"], r["seed"])]) for r in cell_rows
             if r["metric"] is not None and (r["draw"], r["seed"]) in ref]
    out["paired_n"] = len(pairs)
    diffs = [x - y for x, y in pairs]
    if len(pairs) >= 5 and any(d != 0 for d in diffs):
        out["wilcoxon_p"] = _num(stats.wilcoxon(diffs).pvalue)
    return out


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def analyze_rows(spec: Any, rows: list[dict[str, Any]], higher: bool) -> dict[str, Any]:
    """The summary of a study (the JSON of ``summary.json``)."""
    from optuna.distributions import CategoricalDistribution

    cells = [r["cell"] for r in rows]
    order = list(dict.fromkeys(cells))
    by_cell = {c: [r for r in rows if r["cell"] == c] for c in order}
    vanilla = spec.vanilla
    variants = []
    for c in order:
        rs = by_cell[c]
        ok = [r["metric"] for r in rs if r["metric"] is not None]
        entry = {"cell": c, "trials": len(rs), "finished": len(ok),
                 "diverged": sum(r["status"] == "diverged" for r in rs),
                 "stopped": sum(r["status"] == "stopped" for r in rs),
                 "pending": sum(r["status"] in ("pending", "running") for r in rs),
                 **_describe(ok, higher)}
        stops = [r["stop_reason"] for r in rs if r["stop_reason"]]
        if stops:
            entry["stops"] = {k: stops.count(k) for k in dict.fromkeys(stops)}
            steps = [r["steps"] for r in rs if r["steps"] is not None]
            entry["median_steps"] = float(np.median(steps)) if steps else None
        if c != vanilla:
            entry.update(_tests(rs, by_cell[vanilla]))
            p = entry["welch_p"]
            better = (entry["welch_t"] or 0) > 0
            better = better if higher else not better
            entry["verdict"] = ("n/a" if p is None else
                                ("better" if better else "worse") if p < ALPHA else "no difference")
        variants.append(entry)
    summary: dict[str, Any] = {
        "task": spec.task, "vanilla": vanilla, "higher_is_better": higher,
        "trials": len(rows), "finished": sum(r["metric"] is not None for r in rows),
        "alpha": ALPHA, "fixed": spec.fixed,
        "space": {n: d.to_dict() for n, d in spec.space.items()},
        "variants": variants, "fanova": {}, "fanova_per_cell": {}, "notes": []}
    common = [n for n in DEFAULT_SPACE
              if all(n in r["params"] for r in rows) and len({r["params"][n] for r in rows}) > 1]
    dims = {n: spec.space[n] for n in common}
    finished = [r for r in rows if r["metric"] is not None]
    pooled = [{"params": {**r["params"], "cell": r["cell"]}, "metric": r["metric"]}
              for r in finished]
    try:
        extra = {"cell": CategoricalDistribution(order)} if len(order) > 1 else {}
        summary["fanova"]["all"] = importances(pooled, {**dims, **extra}, higher)
    except ValueError as e:
        summary["notes"].append(f"fANOVA over all cells skipped: {e}")
    fb = [r for r in pooled if "forget_bias" in r["params"]]
    if fb and len(fb) < len(pooled) and "forget_bias" in spec.space:
        fcells = list(dict.fromkeys(r["params"]["cell"] for r in fb))
        extra = {"cell": CategoricalDistribution(fcells)} if len(fcells) > 1 else {}
        try:
            summary["fanova"]["forget_gate_cells"] = importances(
                fb, {**dims, "forget_bias": spec.space["forget_bias"], **extra}, higher)
        except ValueError as e:
            summary["notes"].append(f"fANOVA with the forget-gate bias skipped: {e}")
    for c in order:  # Greff's view: importances within each variant (main effects only)
        rs = [r for r in finished if r["cell"] == c]
        cdims = {n: spec.space[n] for n in DEFAULT_SPACE
                 if all(n in r["params"] for r in rs) and n in spec.space and rs
                 and len({r["params"][n] for r in rs}) > 1}
        try:
            summary["fanova_per_cell"][c] = importances(rs, cdims, higher, pairs=False,
                                                        n_trees=16)["main"]
        except ValueError as e:
            summary["notes"].append(f"fANOVA for {c} skipped: {e}")
    return summary


def _mean(rs: list[dict]) -> float | None:
    v = [r["metric"] for r in rs if r["metric"] is not None]
    return float(np.mean(v)) if v else None


def write_summary(folder: str | Path) -> dict[str, Any]:
    """Analyse the study in ``folder``; write ``summary.json``, ``summary.md`` and the figures
    (``boxplot.png``, ``lr.png``, ``importance.png``). Returns the summary."""
    from .plots import draw_figures

    folder = Path(folder)
    spec, rows = collect(folder)
    higher = next((r["higher_is_better"] for r in rows if r["higher_is_better"] is not None),
                  None)
    if higher is None:
        from .runner import _higher_is_better

        higher = _higher_is_better(spec.task)
    summary = analyze_rows(spec, rows, bool(higher))
    summary["figures"] = draw_figures(folder, rows, summary)
    summary["rows"] = [{k: r[k] for k in ("id", "cell", "draw", "seed", "status", "metric",
                                          "params", "steps", "stop_reason")} for r in rows]
    atomic_write_text(folder / SUMMARY_JSON, json.dumps(summary, indent=2))
    atomic_write_text(folder / SUMMARY_MD, markdown(summary))
    return summary


def _f(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}g}"


def markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown: the variants table, then the importances."""
    better = "higher" if summary["higher_is_better"] else "lower"
    lines = [f"## Study: {summary['task']} — {summary['finished']}/{summary['trials']} trials "
             f"finished (metric: {better} is better)", "",
             f"Tests against `{summary['vanilla']}` (α = {summary['alpha']}): Welch's t-test, "
             "Mann–Whitney U, Wilcoxon signed-rank on paired draws.", "",
             "| cell | finished | diverged | best | q1 | median | q3 | Welch p | M-W p | "
             "Wilcoxon p | verdict |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for v in summary["variants"]:
        lines.append(
            f"| {v['cell']} | {v['finished']}/{v['trials']} | {v['diverged']} | {_f(v['best'])} "
            f"| {_f(v['q1'])} | {_f(v['median'])} | {_f(v['q3'])} | {_f(v.get('welch_p'), 2)} "
            f"| {_f(v.get('mannwhitney_p'), 2)} | {_f(v.get('wilcoxon_p'), 2)} | "
            f"{v.get('verdict', 'vanilla')} |")
    for key, title in (("all", "all cells (cell as a parameter)"),
                       ("forget_gate_cells", "cells with a forget gate, incl. its bias")):
        f = summary["fanova"].get(key)
        if not f:
            continue
        lines += ["", f"fANOVA over {title}, {f['n']} trials — main effects: " + ", ".join(
            f"{n} {v:.3f}" for n, v in sorted(f["main"].items(), key=lambda kv: -kv[1]))]
        if f["pairs"]:
            top = list(f["pairs"].items())[:3]
            lines.append("strongest interactions: " + ", ".join(f"{n} {v:.3f}" for n, v in top)
                         + f"; all pairs together {sum(f['pairs'].values()):.3f}")
    stopped = [v for v in summary["variants"] if v.get("stops")]
    if stopped:
        lines += ["", "Why the trials stopped (median steps): " + "; ".join(
            f"{v['cell']} " + ", ".join(f"{k} {n}" for k, n in v["stops"].items())
            + f" ({_f(v.get('median_steps'))})" for v in stopped)]
    lines += [f"- {n}" for n in summary["notes"]]
    return "\n".join(lines) + "\n"
