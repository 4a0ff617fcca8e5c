"""``gatelab study``: a random-search study of cells and hyperparameters on Ray Tune."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from ..errors import UsageError
from ..train.config import TASKS

console = Console()


def _fail(message: str) -> NoReturn:
    """One ``error:`` line, printed by gatelab.cli's handler (exit status 2)."""
    raise UsageError(message)


def register(app: typer.Typer) -> None:
    @app.command("study")
    def study_cmd(
        task: str = typer.Argument(None, help="task: " + ", ".join(TASKS)),
        cells: str = typer.Option("lstm,gru", "--cells",
                                  help="comma-separated built-in names or .cell files; the "
                                       "first is the vanilla cell the others are tested against"),
        trials: int = typer.Option(20, "--trials", help="random draws per cell"),
        seeds: int = typer.Option(1, "--seeds", help="seeds per draw"),
        config: Path = typer.Option(None, "--config",
                                    help="TOML/JSON file: [space] ranges, [fixed] values"),
        out: Path = typer.Option(None, "--out", help="study folder (default studies/TASK)"),
        cpus: int = typer.Option(None, "--cpus", help="CPUs of the local Ray (default: all); "
                                 "one trial per CPU"),
        gpus_per_trial: float = typer.Option(0.0, "--gpus-per-trial"),
        address: str = typer.Option(None, "--address",
                                    help="HOST:PORT or auto: run on an existing Ray cluster"),
        resume: bool = typer.Option(False, "--resume",
                                    help="finish the study in --out; finished trials are kept"),
        asha: bool = typer.Option(False, "--asha", help="stop hopeless trials early (ASHA)"),
        search_seed: int = typer.Option(0, "--search-seed", help="seed of the random search"),
        report: Path = typer.Option(None, "--report",
                                    help="redraw the summary and figures of a finished study "
                                         "folder (runs nothing)"),
        steps: int = typer.Option(None, "--steps"), hidden: int = typer.Option(None, "--hidden"),
        layers: int = typer.Option(None, "--layers"), batch: int = typer.Option(None, "--batch"),
        lr: float = typer.Option(None, "--lr"), clip: float = typer.Option(None, "--clip"),
        T: int = typer.Option(None, "--T", "-T"), dropout: float = typer.Option(None, "--dropout"),
        forget_bias: float = typer.Option(None, "--forget-bias"),
        eval_every: int = typer.Option(None, "--eval-every"),
        train_size: int = typer.Option(None, "--train-size"),
        eval_size: int = typer.Option(None, "--eval-size"),
        data: Path = typer.Option(None, "--data"), device: str = typer.Option(None, "--device"),
        threads: int = typer.Option(None, "--threads"),
        patience: int = typer.Option(None, "--patience",
                                     help="stop each trial after N evaluations without a better "
                                          "validation metric (--steps is then the cap)"),
    ) -> None:
        """Random search over cells and hyperparameters (Ray Tune), then the analysis:
        box plots, Welch/rank tests against the vanilla cell, fANOVA importances."""
        from ..extras import require

        require("study", "gatelab study")  # before the imports below that need it
        from .analysis import markdown, write_summary
        from .runner import TrialsFailed

        try:
            if report is not None:
                summary = write_summary(report)
                console.print(markdown(summary), highlight=False)
                console.print(f"wrote {report}/summary.md, summary.json and figures",
                              highlight=False)
                return
            try:
                folder = _run(task, cells, trials, seeds, config, out, cpus, gpus_per_trial,
                              address, resume, asha, search_seed, {
                                  "steps": steps, "hidden": hidden, "layers": layers,
                                  "batch": batch, "lr": lr, "clip": clip, "T": T,
                                  "dropout": dropout, "forget_bias": forget_bias,
                                  "eval_every": eval_every, "train_size": train_size,
                                  "eval_size": eval_size, "device": device,
                                  "threads": threads, "patience": patience,
                                  "data_path": str(data.resolve()) if data else None})
            except TrialsFailed as failed:
                _summarise_what_finished(failed.folder)
                raise  # its lines name every failed trial; exit status 1
            summary = write_summary(folder)
        except OSError as e:  # the disk, not the input: one line all the same
            _fail(f"{e.filename or 'study'}: {e.strerror or e}")
        except KeyboardInterrupt:
            print("interrupted: finish the study with the same command and --resume",
                  file=sys.stderr)
            raise typer.Exit(130) from None
        console.print(markdown(summary), highlight=False)
        console.print(f"wrote {folder}/summary.md, summary.json and figures", highlight=False)


    @app.command("trainability")
    def trainability_cmd(
        cells: str = typer.Option("zoo", "--cells",
                                  help="comma-separated built-in names or .cell files; 'zoo' "
                                       "is every built-in cell"),
        folder: Path = typer.Option(None, "--folder", help="also every .cell file of DIR"),
        tasks: str = typer.Option("adding,copy", "--tasks", help="adding, copy or both"),
        T: int = typer.Option(200, "--T", "-T", help="sequence length (at least 200)"),
        seeds: int = typer.Option(3, "--seeds", help="seeds per cell and task"),
        margin: float = typer.Option(0.5, "--margin",
                                     help="success: the test metric closes this share of the "
                                          "gap from the trivial level to perfect"),
        out: Path = typer.Option(None, "--out", help="folder (default studies/trainability)"),
        resume: bool = typer.Option(False, "--resume", help="finish the study in --out"),
        cpus: int = typer.Option(None, "--cpus", help="CPUs of the local Ray (default: all)"),
        address: str = typer.Option(None, "--address", help="HOST:PORT or auto: a Ray cluster"),
        report: Path = typer.Option(None, "--report",
                                    help="redraw the table, fits and figure of a study folder "
                                         "(runs nothing)"),
        hidden: int = typer.Option(None, "--hidden"), lr: float = typer.Option(None, "--lr"),
        batch: int = typer.Option(None, "--batch"),
        max_steps: int = typer.Option(None, "--max-steps", help="step cap of each run"),
        patience: int = typer.Option(None, "--patience",
                                     help="evaluations without a better validation metric"),
        eval_every: int = typer.Option(None, "--eval-every"),
        eval_size: int = typer.Option(None, "--eval-size"),
    ) -> None:
        """Does the analysis predict which cells learn? Read-outs of every cell next to its
        results on adding/copy at T >= 200 (early-stopped runs, several seeds), and which
        read-out predicts success (logistic fit, leave-one-cell-out accuracy)."""
        from ..extras import require

        require("study", "gatelab trainability")
        from .trainability import cells_of, run_trainability
        from .trainability_fit import analyse, markdown

        try:
            if report is None:
                fixed = {k: v for k, v in {"hidden": hidden, "lr": lr, "batch": batch,
                                           "steps": max_steps, "patience": patience,
                                           "eval_every": eval_every,
                                           "eval_size": eval_size}.items() if v is not None}
                names = [c.strip() for c in cells.split(",") if c.strip()]
                where = out or Path("studies") / "trainability"
                resuming = resume and (where / "trainability.json").is_file()
                report = run_trainability(
                    [] if resuming else cells_of(names, folder), where,
                    tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()), T=T,
                    seeds=seeds, margin=margin, fixed=fixed, resume=resume, cpus=cpus,
                    address=address, console=console)
            results = analyse(report)
        except OSError as e:
            _fail(f"{e.filename or 'trainability'}: {e.strerror or e}")
        except KeyboardInterrupt:
            print("interrupted: finish the study with the same command and --resume",
                  file=sys.stderr)
            raise typer.Exit(130) from None
        console.print(markdown(results), highlight=False)
        console.print(f"wrote {report}/trainability.md, results.json and trainability.png",
                      highlight=False)


def _summarise_what_finished(folder: Path) -> None:
    """The summary of the trials that did finish, when there are any (a study whose trials
    all failed has none)."""
    from ..errors import GatelabError
    from .analysis import markdown, write_summary

    try:
        summary = write_summary(folder)
    except (GatelabError, OSError, ValueError):
        return
    console.print(markdown(summary), highlight=False)
    console.print(f"wrote {folder}/summary.md, summary.json and figures", highlight=False)


MAX_GPUS_PER_TRIAL = 64


def _check_gpus(gpus_per_trial: float, cpus: int | None, address: str | None) -> None:
    """StudyError unless Ray accepts ``gpus_per_trial``: finite, >= 0, a fraction up to 1 or a
    whole number, and (a local Ray holds CPUS x that many GPUs) a whole number of GPUs in all.
    Ray itself refuses the others with a traceback, after starting."""
    from .space import StudyError

    g = gpus_per_trial
    if not (math.isfinite(g) and 0 <= g <= MAX_GPUS_PER_TRIAL):
        raise StudyError(f"--gpus-per-trial must be from 0 to {MAX_GPUS_PER_TRIAL}, got {g!r}")
    if g > 1 and g != int(g):
        raise StudyError(f"--gpus-per-trial above 1 must be a whole number (Ray's rule), got {g!r}")
    if address is None:
        n = cpus or os.cpu_count() or 1
        if abs(g * n - round(g * n)) > 1e-9:
            raise StudyError(f"--gpus-per-trial {g!r} x {n} CPU(s) is not a whole number of GPUs, "
                             "which the local Ray needs: pick a value (or --cpus) whose product "
                             "is whole, e.g. 0.5 with --cpus 2")


def _run(task, cells, trials, seeds, config, out, cpus, gpus_per_trial, address, resume,  # noqa: ANN001
         asha, search_seed, fixed_cli) -> Path:  # noqa: ANN001 - straight from typer
    from .runner import run_study
    from .space import StudyError, StudySpec, load_config

    if cpus is not None and cpus < 1:
        raise StudyError("--cpus must be at least 1")
    _check_gpus(gpus_per_trial, cpus, address)
    if address is not None and cpus is not None:
        raise StudyError("--cpus sizes the local Ray; a cluster (--address) has its own CPUs")
    folder = out or (Path("studies") / task if task else None)
    if folder is None:
        raise StudyError("give a TASK (or --out DIR --resume, or --report DIR)")
    spec = None
    if not (resume and (Path(folder) / "plan.json").is_file()):
        if task is None:
            raise StudyError("give a TASK: " + ", ".join(TASKS))
        if task not in TASKS:
            raise StudyError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
        space, fixed = load_config(config)
        fixed.update({k: v for k, v in fixed_cli.items() if v is not None})
        names = [c.strip() for c in cells.split(",") if c.strip()]
        spec = StudySpec(task, names, trials, seeds, search_seed, space, fixed)
    return run_study(spec, folder, cpus=cpus, gpus_per_trial=gpus_per_trial, address=address,
                     resume=resume, asha=asha, console=console)
