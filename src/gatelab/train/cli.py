"""``gatelab train`` and ``gatelab compare``."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

from .. import budget
from ..errors import Interrupted
from .config import TASKS, TrainConfig

console = Console()
err_console = Console(stderr=True)  # errors go to stderr, results to stdout
TASK_HELP = "task: " + ", ".join(TASKS)


@contextmanager
def _clean_errors():
    """Ctrl-C says how to resume (:class:`~gatelab.errors.Interrupted`, exit status 130).
    Expected failures (missing data, bad options or cells, a diverged loss) are GatelabErrors,
    printed by gatelab.cli's handler: exit status 2 for what the user must change, 1 for a run
    that failed although the command was valid (a diverged loss: ``TrainError.exit_code``)."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted("continue the run by repeating the command with --resume") from None


def _given(ctx: typer.Context) -> frozenset[str]:
    """The config fields set on this command line (the rest keep a resumed run's values)."""
    names = {"data": "data_path", "cells": "cell"}
    return frozenset(names.get(k, k) for k in ctx.params
                     if ctx.get_parameter_source(k).name not in ("DEFAULT", "DEFAULT_MAP"))


def _config(ctx: typer.Context, task: str, cell: str, hidden, layers, steps, epochs, batch, lr,
            clip, seed, device, out, T, dropout, eval_every, train_size, eval_size, data, nproc,
            threshold,
            threads, patience=None) -> TrainConfig:  # noqa: ANN001 - straight from typer
    return TrainConfig(task=task, cell=cell, hidden=hidden, layers=layers, steps=steps,
                       epochs=epochs, batch=batch, lr=lr, clip=clip, seed=seed, device=device,
                       out=str(out) if out else None, T=T, dropout=dropout,
                       eval_every=eval_every, train_size=train_size, eval_size=eval_size,
                       data_path=str(data) if data else None, nproc=nproc,
                       threshold=threshold, threads=threads, patience=patience,
                       given=_given(ctx) | {"task"})


def register(app: typer.Typer) -> None:
    common = dict(
        hidden=typer.Option(None, "--hidden", help="hidden size (task default)"),
        layers=typer.Option(1, "--layers", help="stacked recurrent layers"),
        steps=typer.Option(None, "--steps", help="optimiser steps (task default)"),
        epochs=typer.Option(None, "--epochs", help="passes over the data (instead of --steps)"),
        batch=typer.Option(None, "--batch", help="global batch size"),
        lr=typer.Option(None, "--lr", help="Adam learning rate"),
        clip=typer.Option(1.0, "--clip", help="clip the gradient norm to this (0: off)"),
        device=typer.Option("cpu", "--device", help="cpu, cuda, cuda:N, mps or auto"),
        T=typer.Option(None, "--T", "-T", help="sequence length (generated tasks, stdlib BPTT)"),
        dropout=typer.Option(0.0, "--dropout", help="dropout between layers"),
        eval_every=typer.Option(None, "--eval-every",
                                help="evaluate + checkpoint every N steps (default: 20 per run)"),
        train_size=typer.Option(None, "--train-size", help="use only the first N examples"),
        eval_size=typer.Option(None, "--eval-size", help="evaluate on N examples"),
        data=typer.Option(None, "--data", help="path of the data (instead of the package)"),
        threshold=typer.Option(None, "--threshold", help="metric level for 'steps to reach'"),
        threads=typer.Option(1, "--threads", help="torch CPU threads per process"),
        memory_budget=typer.Option(None, "--memory-budget", help="GB the run may use (default: "
                                   f"half the machine's memory, or ${budget.ENV})"),
    )

    @app.command("train")
    def train_cmd(
        ctx: typer.Context,
        task: str = typer.Argument(..., help=TASK_HELP),
        cell: str = typer.Option("lstm", "--cell", help="built-in cell name or .cell file"),
        hidden: int = common["hidden"], layers: int = common["layers"],
        steps: int = common["steps"], epochs: float = common["epochs"],
        batch: int = common["batch"], lr: float = common["lr"], clip: float = common["clip"],
        seed: int = typer.Option(0, "--seed"), device: str = common["device"],
        out: Path = typer.Option(None, "--out", help="run folder (default runs/TASK-CELL-...)"),
        resume: bool = typer.Option(
            False, "--resume",
            help="continue the run in --out (options left out keep the run's values; "
                 "--steps may extend it)"),
        nproc: int = typer.Option(1, "--nproc", help="processes for DDP training"),
        T: int = common["T"], dropout: float = common["dropout"],
        eval_every: int = common["eval_every"], train_size: int = common["train_size"],
        eval_size: int = common["eval_size"], data: Path = common["data"],
        threshold: float = common["threshold"], threads: int = common["threads"],
        memory_budget: float = common["memory_budget"],
        patience: int = typer.Option(
            None, "--patience",
            help="stop after N evaluations without a better validation metric (--steps is "
                 "then the cap); the test metric is the best-validation checkpoint's"),
    ) -> None:
        """Train one cell on one task; leaves a run folder (config, metrics, checkpoint)."""
        from .runs import load_run
        from .trainer import train

        with _clean_errors():
            cfg = _config(ctx, task, cell, hidden, layers, steps, epochs, batch, lr, clip, seed,
                          device, out, T, dropout, eval_every, train_size, eval_size, data,
                          nproc, threshold, threads, patience)
            # the memory the options imply, refused past the budget before any tensor exists
            budget.check(budget.train_estimate(cfg), memory_budget, option=True)
            folder = train(cfg, progress=True, resume=resume)
            run = load_run(folder)
        last = run.metrics[-1] if run.metrics else {}
        done = run.config.get("outcome") or {}
        early = bool(run.config.get("patience"))
        best = (f" (stopped: {done['stop_reason']}; best validation at step "
                f"{done['best_step']})" if early and done.get("best_step") else "")
        metric = done.get("test_metric") if early else last.get("metric")
        console.print(f"run folder [bold]{folder}[/bold]: step {last.get('step', 0)}, "
                      f"test {run.config['metric']} "
                      f"{float('nan') if metric is None else metric:.4f}{best}",
                      highlight=False)

    @app.command("compare")
    def compare_cmd(
        ctx: typer.Context,
        task: str = typer.Argument(..., help=TASK_HELP),
        cells: str = typer.Option("rnn,lstm,gru,mgu", "--cells",
                                  help="comma-separated names or .cell files"),
        seeds: int = typer.Option(1, "--seeds", help="seeds per cell (0, 1, ...)"),
        hidden: int = common["hidden"], layers: int = common["layers"],
        steps: int = common["steps"], epochs: float = common["epochs"],
        batch: int = common["batch"], lr: float = common["lr"], clip: float = common["clip"],
        device: str = common["device"],
        out: Path = typer.Option(None, "--out", help="folder (default compare/TASK)"),
        resume: bool = typer.Option(False, "--resume", help="finish interrupted runs"),
        T: int = common["T"], dropout: float = common["dropout"],
        eval_every: int = common["eval_every"], train_size: int = common["train_size"],
        eval_size: int = common["eval_size"], data: Path = common["data"],
        threshold: float = common["threshold"], threads: int = common["threads"],
        memory_budget: float = common["memory_budget"],
    ) -> None:
        """Train several cells over several seeds; write a leaderboard (md, json, plot)."""
        from .compare import budget_compare, check_compare, markdown, run_compare

        names = [c.strip() for c in cells.split(",") if c.strip()]
        folder = out or Path("compare") / task
        with _clean_errors():
            check_compare(names, seeds)
            base = _config(ctx, task, names[0], hidden, layers, steps, epochs, batch, lr, clip, 0,
                           device, None, T, dropout, eval_every, train_size, eval_size, data, 1,
                           threshold, threads)
            budget_compare(base, names, seeds, memory_budget)
            board = run_compare(base, names, seeds, folder, progress=True, resume=resume)
        console.print(markdown(board), highlight=False)
        console.print(f"wrote {folder}/leaderboard.md, leaderboard.json, curves.png",
                      highlight=False)
