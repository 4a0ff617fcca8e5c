"""Run a study's trials with Ray Tune; each trial is a normal ``gatelab.train`` run.

The study folder::

    plan.json            the spec and every trial (id, cell, drawn values, TrainConfig)
    runs/<trial id>/     the trial's gatelab run folder (config.json, metrics.csv, checkpoint)
                         plus trial.json: status (done, diverged, stopped, failed) and metric
    ray/                 Ray Tune's own records of the last execution

Ray Tune executes the plan (a grid over the pending trials, one CPU each unless told otherwise);
it does not draw the values: the plan is drawn once, so ``--resume`` and a cluster run see the
same trials. A resumed study skips every trial whose ``trial.json`` is final and continues the
others from their last checkpoint (``gatelab train --resume``), so nothing finished is rerun.

Local Ray: started inside the command in Ray's single-machine mode
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), which keeps every listener on 127.0.0.1. Its session
files go to the study folder's ``.ray-tmp/`` (Ray's Unix sockets need a short path: a study folder
whose path is too long gets a private temporary folder instead, removed at the end), and its
authentication token is made for this study and handed to Ray in the environment, so nothing is
written to ``/tmp/ray`` or ``~/.ray``.
``address``: an existing cluster (``HOST:PORT`` or ``auto``); the run folders must then be on a
file system every node sees (the same path). ``HOST:PORT`` is probed first (a bounded connect):
an address where nothing answers is refused at once instead of letting Ray wait for it.

A trial that fails (its config, its run folder) is recorded as ``failed`` with its one-line
reason in ``trial.json``; the study then ends with :class:`TrialsFailed` (exit status 1) naming
every failed trial.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ..errors import GatelabError
from ..files import read_limited, safe_name
from ..train.folder_lock import lock_run_folder
from ..train.runs import atomic_write_text
from .ray_setup import init_ray, probe_address, ray_environment, ray_home
from .space import StudyError, StudySpec, make_plan, spec_from_dict, spec_to_dict

PLAN = "plan.json"
TRIAL = "trial.json"
FINAL = ("done", "diverged", "stopped", "failed")


MAX_PLAN_BYTES = 1 << 26  # 64 MiB: a plan of 5,400 trials (Greff's whole study) is ~4 MiB
MAX_TRIAL_BYTES = 1 << 20
TRIAL_TYPES = {"id": str, "cell": str, "draw": int, "seed": int, "params": dict, "config": dict}


class TrialsFailed(GatelabError):
    """Some trials failed (not diverged: they could not run). ``failures``: ``(trial id,
    one-line reason)`` pairs; the command prints one line per trial and exits with status 1."""

    exit_code = 1

    def __init__(self, folder: Path, total: int, failures: list[tuple[str, str]]) -> None:
        self.folder, self.total, self.failures = folder, total, failures
        super().__init__(f"{len(failures)} of {total} trial(s) of {folder} failed")

    def lines(self) -> list[str]:
        return [f"error: {self}:", *(f"  {tid}: {why}" for tid, why in self.failures)]


def one_line(e: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters): what a trial's failure
    is reported as."""
    text = (str(e).strip().splitlines() or [""])[0]
    kind = type(e).__name__
    return (f"{kind}: {text}" if text and not isinstance(e, GatelabError) else text or kind)[:300]


def failed_trials(folder: Path, plan: list[dict[str, Any]],
                  ray_errors: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """``(trial id, reason)`` for every trial of ``plan`` that failed: its ``trial.json`` says
    ``failed``, or Ray reported an error for it (``ray_errors``: trial id -> reason) and it left
    no final record. Diverged and stopped trials are results, not failures."""
    ray_errors = ray_errors or {}
    out = []
    for t in plan:
        st = trial_status(folder, t["id"]) or {}
        status = st.get("status")
        if status == "failed":
            msg = st.get("message")
            out.append((t["id"], msg if isinstance(msg, str) and msg else
                        ray_errors.get(t["id"], "failed (no reason recorded)")))
        elif status not in FINAL and t["id"] in ray_errors:
            out.append((t["id"], ray_errors[t["id"]]))
    return out


def trial_status(folder: Path, tid: str) -> dict[str, Any] | None:
    """A trial's ``trial.json``, or None when it is missing or not a readable JSON object
    (the trial then counts as not finished and runs again on ``--resume``)."""
    p = folder / "runs" / tid / TRIAL
    try:
        data = json.loads(read_limited(p, MAX_TRIAL_BYTES, TRIAL).decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # read_limited's FileProblem is a ValueError
        return None
    return data if isinstance(data, dict) else None


def load_plan(folder: Path) -> tuple[StudySpec, list[dict[str, Any]]]:
    """The spec and trials of ``folder/plan.json``, checked: a damaged or hand-edited plan is a
    :class:`StudyError` naming the file, and no trial id can name a folder outside ``runs/``."""
    p = folder / PLAN
    if not p.is_file():
        raise StudyError(f"{folder} holds no study ({PLAN} is missing)")
    try:
        data = json.loads(read_limited(p, MAX_PLAN_BYTES, PLAN).decode("utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("trials"), list) \
                or not isinstance(data.get("spec"), dict):
            raise ValueError("expected an object with 'spec' and 'trials'")
        spec = spec_from_dict(data["spec"])
        seen: set[str] = set()
        for k, t in enumerate(data["trials"]):
            if not isinstance(t, dict) or any(
                    not isinstance(t.get(key), kind) or (kind is int and isinstance(t[key], bool))
                    for key, kind in TRIAL_TYPES.items()):
                raise ValueError(f"trial {k} lacks one of {', '.join(TRIAL_TYPES)} or has it "
                                 "of the wrong type")
            # a trial id names its run folder under runs/: a safe file-name part, as made
            if safe_name(t["id"], 128) != t["id"] or t["id"] in seen:
                raise ValueError(f"trial {k} has a bad or repeated id {t['id'][:80]!r}")
            seen.add(t["id"])
    except StudyError as e:
        raise StudyError(f"{p}: {e}") from None
    except KeyError as e:
        raise StudyError(f"{p}: not a valid study plan (its spec has no {e})") from None
    except (UnicodeDecodeError, ValueError, TypeError, AttributeError, RecursionError) as e:
        raise StudyError(f"{p}: not a valid study plan ({str(e)[:200]})") from None
    return spec, data["trials"]


def _write_status(out: Path, trial: dict[str, Any], **fields: Any) -> None:
    import ray

    out.mkdir(parents=True, exist_ok=True)
    data = {"id": trial["id"], "cell": trial["cell"], "draw": trial["draw"],
            "seed": trial["seed"], "params": trial["params"],
            "node": ray.util.get_node_ip_address(), **fields}
    atomic_write_text(out / TRIAL, json.dumps(data, indent=2))


def run_trial(config: dict[str, Any]) -> None:
    """The Ray Tune trainable: one gatelab training run, in ``rungs`` pieces (ASHA reads each).

    Each piece extends the run by ``steps / rungs`` steps and resumes from the checkpoint, so
    with ``rungs = 1`` this is exactly ``gatelab train``; the evaluation interval is fixed up
    front so pieces and one whole run evaluate at the same steps.
    """
    from ray import tune

    from .. import budget
    from ..train.config import TrainConfig
    from ..train.runs import METRICS, read_metrics
    from ..train.trainer import TrainingDiverged, train

    trial, rungs = config["trial"], int(config["rungs"])
    out = Path(trial["config"]["out"])
    t0 = time.time()
    try:
        base = TrainConfig(**trial["config"])
        budget.check(budget.train_estimate(base))  # refused trials fail with one line
        total = base.steps
        every = base.eval_every or max(1, total // 20)
        higher = None
        for r in range(1, rungs + 1):
            steps = max(1, math.ceil(total * r / rungs))
            cfg = TrainConfig(**{**trial["config"], "steps": steps, "eval_every": every})
            # resume=True also for a trial killed before its first checkpoint: the trainer
            # starts such a run again from step 0 (a fresh folder is simply a new run).
            try:
                train(cfg, progress=False, resume=True)
            except TrainingDiverged as e:
                _write_status(out, trial, status="diverged", metric=None, step=e.step,
                              steps=e.step, best_step=None, stop_reason="diverged",
                              message=str(e), seconds=round(time.time() - t0, 2))
                tune.report({"metric": math.nan, "diverged": 1, "step": steps})
                return
            rows = read_metrics(out / METRICS)
            saved = json.loads((out / "config.json").read_text())
            higher = saved["higher_is_better"]
            # the run's outcome: with early stopping, the best-validation checkpoint's test
            # metric (gatelab.train.early_stop); without, the last row's
            result = saved.get("outcome") or {}
            metric = result.get("test_metric", rows[-1]["metric"] if rows else None)
            step = int(rows[-1]["step"]) if rows else 0
            final = r == rungs or result.get("stop_reason") == "patience"
            _write_status(out, trial, status="done" if final else "running", metric=metric,
                          step=step, steps=step, best_step=result.get("best_step"),
                          stop_reason=result.get("stop_reason") if final else None,
                          valid_metric=result.get("valid_metric"),
                          seconds=round(time.time() - t0, 2), higher_is_better=higher)
            tune.report({"metric": math.nan if metric is None else metric, "diverged": 0,
                         "step": step})
            if final:
                return
    except Exception as e:  # noqa: BLE001 - any failure is this trial's result, in one line
        # Recorded and reported as a result, not raised: Ray would print a traceback and the
        # study would not know why; run_study names it and exits non-zero.
        _write_status(out, trial, status="failed", metric=None, step=None,
                      message=one_line(e), seconds=round(time.time() - t0, 2))
        tune.report({"metric": math.nan, "diverged": 0, "step": 0})


class _Progress:
    """One line per finished trial, as Ray Tune reports it (Rich, on the driver). Made a
    ``tune.Callback`` by :func:`_progress_callback`; the console is not pickled with it."""

    def __init__(self, folder: Path, console: Console, total: int, done: int) -> None:
        self.folder, self.console, self.total, self.done = folder, console, total, done

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "console"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, console=Console())

    def _line(self, trial: Any, tag: str) -> None:
        self.done += 1
        t = trial.config["trial"]
        st = trial_status(self.folder, t["id"]) or {}
        if tag == "complete" and st.get("status") == "running":
            # ASHA stopped it between rungs: final, with the metric it reached
            st["status"] = "stopped"
            atomic_write_text(self.folder / "runs" / t["id"] / TRIAL, json.dumps(st, indent=2))
        status = st.get("status", "failed" if tag == "error" else "?")
        metric = st.get("metric")
        m = "-" if metric is None else f"{metric:.4f}"
        vals = " ".join(f"{k}={_short(v)}" for k, v in t["params"].items())
        self.console.print(f"[{self.done}/{self.total}] {t['id']:<18} {status:<8} metric "
                           f"{m:>9}  {vals}", highlight=False)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, "complete")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, "error")


def _progress_callback(folder: Path, console: Console, total: int, done: int) -> Any:
    from ray import tune

    cls = type("StudyProgress", (_Progress, tune.Callback), {"__module__": __name__})
    return cls(folder, console, total, done)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def run_study(spec: StudySpec | None, folder: str | Path, *, cpus: int | None = None,
              gpus_per_trial: float = 0.0, address: str | None = None, resume: bool = False,
              asha: bool = False, console: Console | None = None) -> Path:
    """Run (or with ``resume=True`` finish) the study in ``folder``; returns the folder.

    ``spec`` may be None when resuming (the saved plan is used). ``cpus``: CPUs of the local
    Ray (default: all cores), one trial per CPU. ``asha``: stop hopeless trials early
    (ASHA over four rungs of the step budget).
    """
    ray_environment(address)  # before Ray is imported: it reads these at import time
    folder = Path(folder).resolve()
    console = console or Console()
    if address is not None:
        probe_address(address)
    if (folder / PLAN).is_file() and not resume:
        raise StudyError(f"{folder} already holds a study: pass --resume to finish it, "
                         "or choose another --out")
    if not (folder / PLAN).is_file() and spec is None:
        raise StudyError(f"{folder} holds no study to resume ({PLAN} is missing)")
    with lock_run_folder(folder):  # one study process per folder
        return _run_locked(spec, folder, cpus, gpus_per_trial, address, asha, console)


def _run_locked(spec: StudySpec | None, folder: Path, cpus: int | None, gpus_per_trial: float,
                address: str | None, asha: bool, console: Console) -> Path:
    if (folder / PLAN).is_file():
        spec, plan = load_plan(folder)
    else:
        plan = make_plan(spec)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / PLAN, json.dumps(
            {"spec": spec_to_dict(spec), "trials": plan}, indent=2))
    # Each trial's run folder is the study folder's runs/<id>, wherever the folder is now (a
    # moved or copied study resumes in place; plans of older versions held absolute paths).
    pending = [{**t, "config": {**t["config"], "out": str(folder / "runs" / t["id"])}}
               for t in plan
               if (trial_status(folder, t["id"]) or {}).get("status") not in FINAL]
    # Draw by draw (every cell's draw 0, then draw 1, ...): a study cut short still compares
    # every cell, on the same draws.
    order = {c: i for i, c in enumerate(dict.fromkeys(t["cell"] for t in plan))}
    pending.sort(key=lambda t: (t["draw"], t["seed"], order[t["cell"]]))
    done = len(plan) - len(pending)
    console.print(f"study {folder.name}: {spec.task}, {len(spec.cells)} cells × {spec.trials} "
                  f"draws × {spec.seeds} seed(s) = {len(plan)} trials; {done} already finished",
                  highlight=False)
    if pending:
        with contextlib.ExitStack() as stack:
            temp = stack.enter_context(ray_home(folder)) if address is None else None
            ray_errors = _execute(spec, folder, plan, pending, cpus, gpus_per_trial, address,
                                  asha, console, temp)
    else:
        ray_errors = {}
    failures = failed_trials(folder, plan, ray_errors)
    if failures:
        raise TrialsFailed(folder, len(plan), failures)
    return folder


def _execute(spec: StudySpec, folder: Path, plan: list[dict[str, Any]],
             pending: list[dict[str, Any]], cpus: int | None, gpus_per_trial: float,
             address: str | None, asha: bool, console: Console, temp: Path | None
             ) -> dict[str, str]:
    """Run ``pending`` on Ray Tune; returns the errors Ray reported (trial id -> one line)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    done = len(plan) - len(pending)
    cpus = cpus or os.cpu_count() or 1
    started = init_ray(address, cpus, gpus_per_trial * cpus if address is None else 0, temp)
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    console.print(f"Ray: {len(nodes)} node(s) ({', '.join(n['NodeManagerAddress'] for n in nodes)})"
                  f", {ray.cluster_resources().get('CPU', 0):g} CPU(s); "
                  f"{len(pending)} trial(s) to run", highlight=False)
    rungs = 4 if asha else 1
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=rungs, grace_period=1,
                               reduction_factor=2) if asha else None)
    higher = _higher_is_better(spec.task)
    resources = {"cpu": 1, "gpu": gpus_per_trial} if gpus_per_trial else {"cpu": 1}
    try:
        tuner = tune.Tuner(
            tune.with_resources(run_trial, resources),
            param_space={"trial": tune.grid_search(pending), "rungs": rungs},
            tune_config=tune.TuneConfig(num_samples=1, scheduler=scheduler, metric="metric",
                                        reuse_actors=True,
                                        mode="max" if higher else "min"),
            run_config=tune.RunConfig(
                name=f"execution-{int(time.time())}", storage_path=str(folder / "ray"),
                verbose=0, callbacks=[_progress_callback(folder, console, len(plan), done)],
                failure_config=tune.FailureConfig(max_failures=0)))
        results = tuner.fit()
        errors = {}
        for result in results:
            trial = (result.config or {}).get("trial") or {}
            if result.error is not None and isinstance(trial.get("id"), str):
                errors[trial["id"]] = one_line(result.error)
        return errors
    finally:
        if started:
            import ray

            ray.shutdown()


def _higher_is_better(task: str) -> bool:
    """Whether the task's metric grows with quality (read from the task's class, without
    building its data)."""
    from ..train import tasks as t

    classes = {"adding": t.AddingTask, "copy": t.CopyTask, "order": t.OrderTask,
               "stdlib": t.CharLMTask, "jsb": t.JSBTask}
    return classes.get(task, t.Task).higher_is_better
