"""Does the analysis predict which cells learn long-range tasks? (The trainability study.)

For every cell (the zoo, and the ``.cell`` files of a folder) the analysis' read-outs are put
next to the cell's results on long-range tasks (adding and copy at ``T ≥ 200``, several seeds,
each run early-stopped on its validation split, :mod:`gatelab.train.early_stop`):

============== =========================================================================
read-out       from
============== =========================================================================
has_hold       a 0/1 gate setting makes the memory state hold, ``s' = s``
               (:func:`gatelab.dynamics.flow.hold_setting`)
identity_modes fraction of the 0/1 modes whose memory state has an identity gradient path
spdt, spst,    the cell has a gate acting as that switch type (``analysis.switches``)
ganged
scan_parallel  the recurrence is a linear scan (``analysis.scan_parallel``)
flow_exponent  ``log`` of the per-step factor of ``‖∂L/∂s_(T−d)‖`` at initialisation
               (:func:`gatelab.dynamics.flow.gradient_flow`, free gates, standard normal
               inputs): 0 is a flat gradient path, negative a vanishing one
============== =========================================================================

A run **succeeds** when its test metric (its best-validation checkpoint's) closes at least
``margin`` of the gap between the task's trivial level and a perfect score::

    score = (baseline − metric) / (baseline − perfect)      success: score ≥ margin

(adding: MSE, trivial 0.167, perfect 0; copy: recall accuracy, trivial 1/8, perfect 1). A
diverged run is a failure to learn (score None, success False); a run that could not run is
left out. The fits are in :mod:`gatelab.study.trainability_fit`.

The folder::

    trainability.json   the spec, the read-outs and (after --report) the results and fits
    <task>/             a gatelab study per task (plan.json, runs/<id>/trial.json ...), run by
                        :func:`gatelab.study.runner.run_study`: Ray, --resume, failures as usual
    trainability.md, trainability.png
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console

from ..errors import GatelabError
from ..files import read_limited
from ..train.runs import atomic_write_text
from .space import StudyError, StudySpec, cell_key

SPEC = "trainability.json"
TASKS = ("adding", "copy")
PERFECT = {"adding": 0.0, "copy": 1.0}
MIN_T = 200
# One fixed configuration for every cell: the question is which cells learn at all, not their
# best hyperparameters (those are the Greff study's). Patience covers 2,000 steps: on adding, a
# cell that will learn can sit at the trivial level for hundreds of steps first.
DEFAULT_FIXED: dict[str, Any] = {"hidden": 32, "batch": 32, "lr": 3e-3, "clip": 1.0,
                                 "forget_bias": 0.0, "eval_every": 200, "eval_size": 256,
                                 "patience": 10, "steps": 20000}
READOUTS = ("has_hold", "identity_modes", "spdt", "spst", "ganged", "scan_parallel",
            "flow_exponent")
MAX_SPEC_BYTES = 1 << 22


def cells_of(names: list[str], folder: str | Path | None) -> list[str]:
    """The zoo's names (``"zoo"`` in ``names`` expands to all of them), then every ``.cell``
    file of ``folder`` (sorted by name)."""
    from ..cell.zoo import zoo_names

    out: list[str] = []
    for n in names:
        out.extend(zoo_names() if n == "zoo" else [n])
    if folder is not None:
        f = Path(folder)
        if not f.is_dir():
            raise StudyError(f"--folder {f}: not a folder of .cell files")
        files = sorted(str(p.resolve()) for p in f.glob("*.cell"))
        if not files:
            raise StudyError(f"--folder {f}: holds no .cell file")
        out.extend(files)
    if not out:
        raise StudyError("give at least one cell (--cells zoo, or --folder DIR)")
    return list(dict.fromkeys(out))


def readouts(cell_name: str, *, flow_steps: int = 50, flow_hidden: int = 32) -> dict[str, Any]:
    """The analysis' read-outs of one cell (module table). A read-out the analysis cannot give
    (a cell whose state overflows in the flow measurement, a mode search over budget) is None,
    with its reason under ``notes``."""
    from ..analysis import analyze
    from ..cell import load_cell
    from ..dynamics.flow import gradient_flow, hold_setting, memory_state

    cell = load_cell(cell_name)
    out: dict[str, Any] = {"cell": cell_key(cell_name), "name": cell.name,
                           **dict.fromkeys(READOUTS), "hold_setting": None, "notes": []}
    try:
        a = analyze(cell)
        state = memory_state(cell)
        hold = hold_setting(cell)
        types = {s.type for s in a.switches}
        out.update(has_hold=hold is not None, hold_setting=hold,
                   scan_parallel=bool(a.scan_parallel),
                   spdt="spdt" in types, spst="spst" in types, ganged="ganged" in types)
        if a.modes:
            out["identity_modes"] = (sum(bool(m.identity_path.get(state)) for m in a.modes)
                                     / len(a.modes))
    except GatelabError as e:
        out["notes"].append(f"analysis: {str(e)[:200]}")
    try:
        rate = gradient_flow(cell, steps=flow_steps, hidden=flow_hidden, batch=32).rate
        out["flow_exponent"] = math.log(rate) if rate > 0 and math.isfinite(rate) else None
        out["flow_rate"] = rate if math.isfinite(rate) else None
    except (GatelabError, ArithmeticError) as e:
        out["notes"].append(f"gradient flow: {str(e)[:200]}")
    return out


def save_spec(folder: Path, spec: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / SPEC, json.dumps(spec, indent=2))


def load_spec(folder: Path) -> dict[str, Any]:
    p = Path(folder) / SPEC
    if not p.is_file():
        raise StudyError(f"{folder} holds no trainability study ({SPEC} is missing)")
    try:
        data = json.loads(read_limited(p, MAX_SPEC_BYTES, SPEC).decode("utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("cells"), list) \
                or not isinstance(data.get("tasks"), list) \
                or not isinstance(data.get("readouts"), dict):
            raise ValueError("expected an object with cells, tasks and readouts")
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise StudyError(f"{p}: not a trainability study ({str(e)[:200]})") from None
    return data


def run_trainability(cells: list[str], folder: str | Path, *, tasks: tuple[str, ...] = TASKS,
                     T: int = MIN_T, seeds: int = 3, margin: float = 0.5,
                     fixed: dict[str, Any] | None = None, resume: bool = False,
                     cpus: int | None = None, address: str | None = None,
                     console: Console | None = None) -> Path:
    """Measure the read-outs, then train every cell on every task over ``seeds`` seeds (one
    gatelab study per task in ``folder/<task>``); returns the folder. ``resume=True`` finishes
    an interrupted study (the saved spec wins over the arguments)."""
    from .runner import TrialsFailed, run_study

    console = console or Console()
    folder = Path(folder).resolve()
    if (folder / SPEC).is_file():
        if not resume:
            raise StudyError(f"{folder} already holds a trainability study: pass --resume to "
                             "finish it, or choose another --out")
        spec = load_spec(folder)
    else:
        if resume:
            raise StudyError(f"{folder} holds no trainability study to resume")
        bad = [t for t in tasks if t not in TASKS]
        if bad or not tasks:
            raise StudyError(f"--tasks: choose among {', '.join(TASKS)} (got {bad or 'none'})")
        if T < MIN_T:
            raise StudyError(f"-T {T}: a long-range task here has T >= {MIN_T}")
        if seeds < 1 or not 0 < margin < 1:
            raise StudyError("--seeds must be at least 1 and --margin in (0, 1)")
        spec = {"cells": cells, "tasks": list(tasks), "T": T, "seeds": seeds, "margin": margin,
                "fixed": {**DEFAULT_FIXED, **(fixed or {}), "T": T}, "readouts": {}}
        for t in tasks:  # every trial's config is checked before anything runs
            StudySpec(t, cells, 1, seeds, 0, fixed=dict(spec["fixed"]))
        save_spec(folder, spec)
    for c in spec["cells"]:  # measured once, saved as they come (a resume skips them)
        key = cell_key(c)
        if key not in spec["readouts"]:
            console.print(f"read-outs of {key}", highlight=False)
            spec["readouts"][key] = readouts(c)
            save_spec(folder, spec)
    failed: list[str] = []
    for t in spec["tasks"]:
        study = StudySpec(t, spec["cells"], 1, spec["seeds"], 0, fixed=dict(spec["fixed"]))
        sub = folder / t
        try:
            run_study(None if (sub / "plan.json").is_file() else study, sub, cpus=cpus,
                      address=address, resume=(sub / "plan.json").is_file(), console=console)
        except TrialsFailed as e:  # recorded in the trials; the other task still runs
            failed += [f"{t}/{tid}: {why}" for tid, why in e.failures]
    for line in failed:
        console.print(f"failed: {line}", highlight=False)
    return folder


def trial_rows(folder: Path, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per planned trial of every task: cell, task, seed, status, metric, steps, stop
    reason, score and success (None while pending or failed)."""
    from .runner import load_plan, trial_status

    rows = []
    for t in spec["tasks"]:
        sub = folder / t
        if not (sub / "plan.json").is_file():
            continue
        _, plan = load_plan(sub)
        for p in plan:
            st = trial_status(sub, p["id"]) or {}
            status = st.get("status", "pending")
            metric = st.get("metric")
            baseline = _baseline(sub / "runs" / p["id"])
            score = None
            if status == "done" and isinstance(metric, (int, float)) and baseline is not None:
                score = (baseline - metric) / (baseline - PERFECT[t])
            success = (None if status not in ("done", "diverged", "stopped")
                       else bool(score is not None and score >= spec["margin"]))
            rows.append({"task": t, "cell": p["cell"], "seed": p["seed"], "status": status,
                         "metric": metric, "score": score, "success": success,
                         "steps": st.get("steps"), "best_step": st.get("best_step"),
                         "stop_reason": st.get("stop_reason"),
                         "seconds": st.get("seconds")})
    return rows


def _baseline(run: Path) -> float | None:
    try:
        b = json.loads((run / "config.json").read_text(encoding="utf-8")).get("baseline")
    except (OSError, ValueError):
        return None
    return float(b) if isinstance(b, (int, float)) and math.isfinite(b) else None
