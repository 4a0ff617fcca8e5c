"""Early stopping on the validation metric, and the outcome a finished run records.

A run with ``patience = p`` evaluates the validation split at every evaluation (the row's
``valid_metric``) and stops after ``p`` evaluations in a row without a strictly better value;
``steps`` is then the step cap. Every decision is read off the metric rows, which every
checkpoint holds, so a run resumed after a kill continues the same patience count.

The weights of the best validation row so far are kept in ``best.pt`` (written atomically,
*before* the checkpoint that records that row, so the checkpoint never names a best step whose
weights are missing). At the end those weights are evaluated on the test split: that is the
run's reported test metric.

The outcome (in ``config.json`` under ``"outcome"``)::

    {"steps": 1200, "best_step": 900, "stop_reason": "patience",
     "valid_metric": 0.012, "test_metric": 0.013}

``stop_reason``: ``patience`` (the validation metric stopped improving) or ``max_steps`` (the
step cap was reached). A diverged run raises instead (``TrainingDiverged``; a study records
``diverged``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

STOP_REASONS = ("patience", "max_steps", "diverged")


def best_row(rows: list[dict[str, Any]], higher_is_better: bool) -> int | None:
    """Index of the first row with the best ``valid_metric`` (ties keep the earlier row: only a
    strictly better value counts as an improvement); None when no row has a finite one."""
    best = None
    for k, r in enumerate(rows):
        v = r.get("valid_metric")
        if v is None or not math.isfinite(v):
            continue
        if best is None or (v > rows[best]["valid_metric"] if higher_is_better
                            else v < rows[best]["valid_metric"]):
            best = k
    return best


def patience_exhausted(rows: list[dict[str, Any]], patience: int | None,
                       higher_is_better: bool) -> bool:
    """Whether the last ``patience`` rows all came after the best one (no improvement)."""
    if not patience or not rows:
        return False
    best = best_row(rows, higher_is_better)
    since = len(rows) if best is None else len(rows) - 1 - best
    return since >= patience


def outcome(rows: list[dict[str, Any]], patience: int | None, higher_is_better: bool,
            test_metric: float | None) -> dict[str, Any]:
    """The record of a finished run: its steps, best step, why it stopped and its metrics.

    Without ``patience`` the best step is the last one and the test metric the last row's."""
    steps = int(rows[-1]["step"]) if rows else 0
    if not patience:
        return {"steps": steps, "best_step": steps, "stop_reason": "max_steps",
                "valid_metric": None,
                "test_metric": rows[-1]["metric"] if rows else None}
    best = best_row(rows, higher_is_better)
    reason = "patience" if patience_exhausted(rows, patience, higher_is_better) else "max_steps"
    return {"steps": steps, "best_step": None if best is None else int(rows[best]["step"]),
            "stop_reason": reason,
            "valid_metric": None if best is None else rows[best]["valid_metric"],
            "test_metric": test_metric}


def check_best(state: dict[str, Any], best_step: int, path: Path) -> None:
    """The saved best weights must be those of the rows' best step: refuse otherwise (a best
    file left by a run that was killed and resumed on other settings) rather than report another
    checkpoint's test metric."""
    from .runs import RunFolderError

    if state.get("step") != best_step or not isinstance(state.get("model"), dict):
        raise RunFolderError(f"{path} holds the weights of step {state.get('step')!r}, but the "
                             f"run's best validation row is step {best_step}: the best "
                             "checkpoint does not fit this run; rerun it in a new --out")
