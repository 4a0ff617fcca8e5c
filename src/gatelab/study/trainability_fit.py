"""Which read-out predicts trainability, and how well: the fits, the table and the figure of a
trainability study (:mod:`gatelab.study.trainability`), all redrawn from its folder.

For each read-out ``x`` (one value per cell) and the runs' successes ``y`` (one per run):

- a logistic regression ``P(success) = σ(a + b·z)``, ``z`` the read-out standardised over the
  cells (scikit-learn, L2-penalised with ``C = 1`` so that a read-out that separates the cells
  perfectly still has a finite slope); ``b``'s 95 % interval from a bootstrap over *cells*
  (runs of one cell are not independent);
- for a yes/no read-out, Fisher's exact test on the cells (read-out × cell succeeded on at least
  half of its runs);
- the leave-one-cell-out accuracy: the fit on every other cell predicts whether the held-out
  cell succeeds on at least half of its runs, against the same leave-one-out prediction by the
  majority of the other cells (the accuracy a read-out must beat to predict anything). The
  cells it predicts wrongly are listed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..train.runs import atomic_write_text
from .trainability import READOUTS, load_spec, trial_rows

BOOT = 1000
MD, JSON_OUT, PNG = "trainability.md", "results.json", "trainability.png"


def _value(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _logit(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """``(a, b)`` of the penalised logistic fit; None when ``y`` has one class only."""
    from sklearn.linear_model import LogisticRegression

    if len(set(y.tolist())) < 2:
        return None
    # newton-cholesky: the same objective as the default lbfgs, about 15x less CPU per fit here
    m = LogisticRegression(C=1.0, solver="newton-cholesky").fit(x.reshape(-1, 1), y)
    return float(m.intercept_[0]), float(m.coef_[0, 0])


def fit_readout(name: str, cells: dict[str, dict], runs: list[dict], seed: int = 0,
                boot: int = BOOT) -> dict[str, Any]:
    """The fits of one read-out (module docstring). ``cells``: cell -> read-outs; ``runs``:
    finished runs with ``cell`` and ``success``; ``boot`` bootstrap resamples."""
    xs = {c: _value(r.get(name)) for c, r in cells.items()}
    use = [c for c in dict.fromkeys(r["cell"] for r in runs) if xs.get(c) is not None]
    out: dict[str, Any] = {"readout": name, "cells": len(use), "coef": None, "ci": None,
                           "fisher_p": None, "loco_accuracy": None, "majority_accuracy": None,
                           "misses": [], "note": None}
    if len(use) < 3:
        out["note"] = "fewer than 3 cells have this read-out and a finished run"
        return out
    raw = np.array([xs[c] for c in use])
    sd = raw.std()
    if sd == 0:
        out["note"] = "the same value for every cell: it cannot tell them apart"
        return out
    z = {c: (xs[c] - raw.mean()) / sd for c in use}
    by_cell = {c: [r["success"] for r in runs if r["cell"] == c] for c in use}
    rate = {c: float(np.mean(v)) for c, v in by_cell.items()}
    learned = {c: rate[c] >= 0.5 for c in use}

    def arrays(cs: list[str]) -> tuple[np.ndarray, np.ndarray]:
        x = np.array([z[c] for c in cs for _ in by_cell[c]])
        y = np.array([int(s) for c in cs for s in by_cell[c]])
        return x, y

    fit = _logit(*arrays(use))
    if fit is None:
        out["note"] = "every run has the same outcome: no read-out can be tested"
        return out
    out["coef"] = fit[1]
    rng = np.random.default_rng(seed)
    slopes = []
    for _ in range(boot):
        f = _logit(*arrays(list(rng.choice(use, size=len(use), replace=True))))
        if f is not None:
            slopes.append(f[1])
    if len(slopes) >= boot // 2:
        out["ci"] = [float(np.percentile(slopes, 2.5)), float(np.percentile(slopes, 97.5))]
    if set(raw.tolist()) <= {0.0, 1.0}:
        from scipy.stats import fisher_exact

        table = [[sum(1 for c in use if xs[c] == v and learned[c] == ok) for ok in (True, False)]
                 for v in (1.0, 0.0)]
        out["fisher_p"] = float(fisher_exact(table).pvalue)
        out["table"] = table
    hits = base = 0
    for c in use:
        rest = [d for d in use if d != c]
        f = _logit(*arrays(rest))
        if f is None:  # the others all agree: predict that
            pred = bool(arrays(rest)[1].mean() >= 0.5)
        else:
            pred = 1 / (1 + math.exp(-(f[0] + f[1] * z[c]))) >= 0.5
        hits += pred == learned[c]
        base += (np.mean([learned[d] for d in rest]) >= 0.5) == learned[c]
        if pred != learned[c]:
            out["misses"].append({"cell": c, "value": xs[c], "success_rate": rate[c],
                                  "predicted": "learns" if pred else "fails"})
    out["loco_accuracy"] = hits / len(use)
    out["majority_accuracy"] = base / len(use)
    return out


def analyse(folder: str | Path, boot: int = BOOT) -> dict[str, Any]:
    """Read the study in ``folder``, fit every read-out, write ``results.json``,
    ``trainability.md`` and ``trainability.png``; returns the results."""
    folder = Path(folder)
    spec = load_spec(folder)
    runs = trial_rows(folder, spec)
    done = [r for r in runs if r["success"] is not None]
    cells = spec["readouts"]
    per_cell = []
    for c, ro in cells.items():
        mine = [r for r in done if r["cell"] == c]
        entry = {"cell": c, **{k: ro.get(k) for k in READOUTS}, "notes": ro.get("notes", []),
                 "runs": len(mine), "successes": sum(r["success"] for r in mine)}
        for t in spec["tasks"]:
            rs = [r for r in mine if r["task"] == t]
            scores = [r["score"] for r in rs if r["score"] is not None]
            entry[t] = {"runs": len(rs), "successes": sum(r["success"] for r in rs),
                        "median_score": float(np.median(scores)) if scores else None,
                        "median_steps": (float(np.median([r["steps"] for r in rs
                                                          if r["steps"]]))
                                         if any(r["steps"] for r in rs) else None),
                        "stops": _count(r["stop_reason"] or r["status"] for r in rs)}
        per_cell.append(entry)
    fits = [fit_readout(n, cells, done, boot=boot) for n in READOUTS]
    results = {"spec": {k: spec[k] for k in ("cells", "tasks", "T", "seeds", "margin",
                                             "fixed")},
               "runs": len(runs), "finished": len(done),
               "pending": sum(r["status"] in ("pending", "running") for r in runs),
               "failed": sum(r["status"] == "failed" for r in runs),
               "trial_seconds": round(sum(r["seconds"] or 0 for r in runs), 1),
               "cells": per_cell, "fits": fits, "trials": runs}
    results["figure"] = draw(folder, results)
    atomic_write_text(folder / JSON_OUT, json.dumps(results, indent=2))
    atomic_write_text(folder / MD, markdown(results))
    return results


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in items:
        out[str(k)] = out.get(str(k), 0) + 1
    return out


def _f(x: Any, d: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    return f"{x:.{d}g}"


def markdown(res: dict[str, Any]) -> str:
    s = res["spec"]
    fx = s["fixed"]
    lines = [f"## Trainability: {len(res['cells'])} cells × {', '.join(s['tasks'])} at "
             f"T = {s['T']} × {s['seeds']} seed(s) — {res['finished']}/{res['runs']} runs "
             f"finished ({res['pending']} pending, {res['failed']} failed)", "",
             f"Each run: hidden {fx.get('hidden')}, batch {fx.get('batch')}, Adam lr "
             f"{fx.get('lr')}, clip {fx.get('clip')}, early stopping with patience "
             f"{fx.get('patience')} evaluations (every {fx.get('eval_every')} steps), cap "
             f"{fx.get('steps')} steps. Success: the best-validation checkpoint's test metric "
             f"closes ≥ {s['margin']:.0%} of the gap from the trivial level to perfect. "
             "Wall time of the runs, summed over runs (trial.json's seconds; not CPU time on a "
             f"shared machine): {res['trial_seconds'] / 3600:.2f} h.",
             "", "| cell | hold | identity modes | spdt | spst | ganged | scan | flow exp. | "
             + " | ".join(f"{t} ok (median score, steps)" for t in s["tasks"]) + " |",
             "|---|---|---:|---|---|---|---|---:|" + "---:|" * len(s["tasks"])]
    for c in res["cells"]:
        cols = []
        for t in s["tasks"]:
            e = c[t]
            cols.append(f"{e['successes']}/{e['runs']} ({_f(e['median_score'], 2)}, "
                        f"{_f(e['median_steps'], 4)})")
        lines.append(f"| {c['cell']} | {_f(c['has_hold'])} | {_f(c['identity_modes'], 2)} | "
                     f"{_f(c['spdt'])} | {_f(c['spst'])} | {_f(c['ganged'])} | "
                     f"{_f(c['scan_parallel'])} | {_f(c['flow_exponent'])} | "
                     + " | ".join(cols) + " |")
    lines += ["", "| read-out | cells | slope (95 % CI, bootstrap over cells) | Fisher p | "
              "leave-one-cell-out accuracy | majority | cells predicted wrongly |",
              "|---|---:|---|---:|---:|---:|---|"]
    for f in res["fits"]:
        ci = f" [{_f(f['ci'][0], 2)}, {_f(f['ci'][1], 2)}]" if f["ci"] else ""
        miss = ", ".join(f"{m['cell']} ({m['predicted']})" for m in f["misses"]) or "–"
        lines.append(f"| {f['readout']} | {f['cells']} | {_f(f['coef'], 2)}{ci} | "
                     f"{_f(f['fisher_p'], 2)} | {_f(f['loco_accuracy'], 2)} | "
                     f"{_f(f['majority_accuracy'], 2)} | {f['note'] or miss} |")
    return "\n".join(lines) + "\n"


def draw(folder: Path, res: dict[str, Any]) -> str:
    """``trainability.png``: each cell's success rate against its gradient-flow exponent (filled:
    has a hold setting), and each read-out's leave-one-cell-out accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for c in res["cells"]:
        x = c["flow_exponent"]
        if x is None or not c["runs"]:
            continue
        y = c["successes"] / c["runs"]
        ax.scatter([x], [y], s=40, color="tab:blue" if c["has_hold"] else "white",
                   edgecolors="tab:blue", zorder=3)
        ax.annotate(c["cell"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("gradient-flow exponent at initialisation (log per-step factor)")
    ax.set_ylabel(f"share of runs that learned (margin {res['spec']['margin']:.0%})")
    ax.set_ylim(-0.05, 1.1)
    ax.set_title("filled: a gate setting holds the memory")
    names = [f["readout"] for f in res["fits"]]
    acc = [f["loco_accuracy"] if f["loco_accuracy"] is not None else 0 for f in res["fits"]]
    maj = [f["majority_accuracy"] if f["majority_accuracy"] is not None else 0
           for f in res["fits"]]
    bx.bar(range(len(names)), acc, color="tab:blue", label="read-out (logistic fit)")
    bx.scatter(range(len(names)), maj, color="black", marker="_", s=300, zorder=3,
               label="majority of the other cells")
    bx.set_xticks(range(len(names)), names, rotation=30)
    bx.set_ylim(0, 1.05)
    bx.set_ylabel("leave-one-cell-out accuracy")
    bx.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{res['finished']} runs of {len(res['cells'])} cells; "
                 f"{', '.join(res['spec']['tasks'])} at T = {res['spec']['T']}")
    fig.tight_layout()
    fig.savefig(folder / PNG, dpi=110)
    plt.close(fig)
    return PNG
