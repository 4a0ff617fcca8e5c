"""The training loop: one run folder per run, exact resume, a clear stop on a non-finite loss.

For each step ``k`` (0-based) the task gives the batch as a pure function of ``(seed, k)``; the
model is initialised from ``seed``; dropout draws from torch's RNG, whose state goes into every
checkpoint. So a run resumed from its last checkpoint computes the same numbers as one that was
never stopped.

Gradient clipping is the article's: if ``‖g‖ > θ`` then ``g ← θ g / ‖g‖`` (``--clip θ``), done by
``torch.nn.utils.clip_grad_norm_``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..cell import cell_text, load_cell
from ..errors import GatelabError, UsageError
from .config import TrainConfig
from .early_stop import best_row, check_best, outcome, patience_exhausted
from .folder_lock import lock_run_folder, refuse_busy_folder, refuse_foreign_folder
from .models import build_model, param_count
from .runs import (
    BEST,
    CHECKPOINT,
    CONFIG,
    METRICS,
    VOCAB,
    RunFolderError,
    atomic_write_text,
    capture_rng,
    check_resumable,
    load_checkpoint,
    load_vocab,
    load_weights,
    read_config,
    refuse_odd_run_files,
    restore_rng,
    save_checkpoint,
    saved_cell,
    write_metrics,
)
from .tasks import Batch, Task, make_task


class TrainError(GatelabError, RuntimeError):
    """An expected stop (bad folder, diverged loss): the CLI prints it without a traceback.

    ``exit_code`` is the CLI's exit status: 2 for a usage problem (the command must change),
    1 for a run that failed although the command was valid (a diverged loss)."""

    exit_code = 2


class TrainingDiverged(TrainError):
    """The loss or the gradient became NaN/inf; the last good checkpoint is kept."""

    exit_code = 1

    def __init__(self, step: int, loss: float, name: str, norm: float, folder: Path,
                 last_good: int) -> None:
        self.step, self.loss, self.grad_name, self.grad_norm = step, loss, name, norm
        kept = (f"the last good checkpoint (step {last_good}) is kept in {folder}" if last_good
                else f"no checkpoint was written yet in {folder}")
        super().__init__(
            f"training stopped at step {step}: the loss is {loss} and the largest gradient norm "
            f"is {norm:.4g} (parameter {name}); {kept}. Try a smaller --lr or a --clip value.")


class RunExists(TrainError):
    """The output folder already holds a run and ``--resume`` was not given."""


class ConfigMismatch(TrainError):
    """``--resume`` was given a config that differs from the one the run was trained with."""


# What a resumed run may change. Everything else shapes the model, the data, the optimisation or
# the metric rows, so a change would silently mix two different runs in one folder and break the
# promise that a resumed run equals an uninterrupted one: such a resume is refused.
#   out            the folder is what is being resumed (it may have been moved or renamed);
#   device, nproc, threads
#                  where and how fast it runs (across devices the numbers agree up to float
#                  rounding, as DDP's do; e.g. finish on a CPU a run started on a GPU);
#   steps, epochs  how long it runs: a finished run can be extended; a length that ends before
#                  the step already reached is refused in train_worker.
# ``config.json`` is rewritten with these new values when a run is resumed. A field the user did
# not give (``TrainConfig.given``, filled by the CLI) keeps its saved value, so
# ``gatelab train TASK --out RUN --resume`` continues a run without repeating its options;
# ``out``, ``device``, ``nproc`` and ``threads`` always describe this invocation.
_THIS_INVOCATION = frozenset({"out", "device", "nproc", "threads"})
RESUME_MAY_CHANGE = _THIS_INVOCATION | {"steps", "epochs"}

DEVICES = "cpu, cuda, cuda:N (N: the GPU's index), mps or auto (CUDA when available)"


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda[:i]`` or ``auto`` (CUDA when available).

    Raises ``ValueError`` (one readable line) for any other name, and for a CUDA device that
    torch cannot see.
    """
    if name == "mps":  # Apple GPUs: accepted where torch has them
        if not torch.backends.mps.is_available():
            raise UsageError("--device mps was asked for but torch sees no MPS device: use "
                             "--device cpu or auto")
        return torch.device("mps")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise UsageError(f"--device {name!r} is not a device this trainer can use: "
                         f"use {DEVICES}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = " (this torch is a CPU-only build)" if torch.version.cuda is None else ""
            raise UsageError(f"--device {name} was asked for but torch sees no CUDA device"
                             f"{build}: use --device cpu or auto")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise UsageError(f"--device {name}: there is no GPU {dev.index}; torch sees {n} "
                             f"(cuda:0 to cuda:{n - 1})")
    return dev


def train(config: TrainConfig, progress: bool = True, resume: bool = False) -> Path:
    """Train one run; returns its folder (``config.out`` or ``runs/TASK-CELL-hH-sSEED``).

    ``resume=True`` continues the run in that folder from its last checkpoint; ``config`` must
    match the saved one except in :data:`RESUME_MAY_CHANGE` (else :class:`ConfigMismatch`).
    ``config.nproc > 1`` trains with DDP over that many processes (gloo on CPU, NCCL on CUDA).
    """
    dev = resolve_device(config.device)  # a bad --device fails here, before any data or process
    if config.device == "auto":  # DDP picks its backend and each rank's GPU from the name
        config = dataclasses.replace(config, device=dev.type)
    if config.nproc > 1 and config.device == "mps":
        raise UsageError("--nproc > 1 runs DDP over CPU processes or CUDA GPUs, not MPS: "
                         "use --nproc 1 with --device mps")
    if config.nproc > 1 and config.patience:
        raise UsageError("--patience stops one process on its validation metric: use it with "
                         "--nproc 1")
    out = run_folder(config)
    # Refusals that need no write come first: a refused command leaves the folder as it was.
    refuse_busy_folder(out)
    refuse_odd_run_files(out)
    refuse_foreign_folder(out)
    holds_run = (out / CHECKPOINT).is_file() or (out / CONFIG).is_file()
    if not resume and holds_run:
        raise _run_exists(out)
    if not holds_run:
        load_cell(config.cell)  # a bad name or file raises CellError here, before any write
    config = dataclasses.replace(config, out=str(out))
    with lock_run_folder(out):  # held for the run's life: one writer per folder
        if config.nproc > 1:  # the lock stays with this parent while the ranks run
            from .ddp import train_ddp

            return train_ddp(config, progress=progress, resume=resume)
        threads = torch.get_num_threads()
        torch.set_num_threads(config.threads)
        try:
            return train_worker(config, rank=0, world=1, progress=progress, resume=resume)
        finally:
            torch.set_num_threads(threads)  # leave the caller's (e.g. the tour's) setting alone


def run_folder(config: TrainConfig) -> Path:
    """``config.out``, or the default ``runs/TASK-CELL-hH-sSEED`` (a bad cell raises here)."""
    return Path(config.out) if config.out else config.default_out(load_cell(config.cell).name)


def _run_exists(out: Path) -> RunExists:
    return RunExists(f"{out} already holds a run: pass --resume to continue it, "
                     "or choose another --out")


def _resume_differences(saved: TrainConfig, given: TrainConfig) -> list[str]:
    """``key (saved A, given B)`` for every key outside :data:`RESUME_MAY_CHANGE` that differs."""
    diffs = []
    for f in dataclasses.fields(TrainConfig):
        if f.name in RESUME_MAY_CHANGE or f.name in ("cell_text", "given"):
            continue
        a, b = getattr(saved, f.name), getattr(given, f.name)
        if f.name == "threshold" and b is None:
            continue  # no --threshold: keep the saved one (config.json holds the task default)
        if a != b:
            diffs.append(f"{f.name} (saved {a!r}, given {b!r})")
    # The equations themselves, when the caller passed them (the CLI passes only the name: the
    # run then keeps its saved equations even if the .cell file was edited or removed since).
    if given.cell_text and saved.cell_text and given.cell_text != saved.cell_text:
        diffs.append("cell_text (the cell's equations differ from the saved ones)")
    return diffs


def _prepare(config: TrainConfig, resume: bool
             ) -> tuple[TrainConfig, Path, dict | None, bool]:
    """The run's config, folder, checkpoint state (None: start at step 0) and whether the cell
    comes from the saved equations. A folder that holds a run is only continued with
    ``--resume``; a run killed before its first checkpoint starts again from step 0 with its
    saved config (nothing was learned yet). Nothing in the folder is rewritten before every
    file that will be read has been checked."""
    out = run_folder(config)
    ck = out / CHECKPOINT
    refuse_odd_run_files(out)
    refuse_foreign_folder(out)
    if not (ck.is_file() or (out / CONFIG).is_file()):
        cell = load_cell(config.cell)  # a bad name or file raises CellError here
        config.cell_text = config.cell_text or cell_text(cell)
        config.out = str(out)
        return config, out, None, False
    if not resume:
        raise _run_exists(out)
    saved = TrainConfig.from_dict(read_config(out))  # checked: RunFolderError names it
    if config.given is not None:  # not given: the saved value
        keep = {f.name: getattr(saved, f.name) for f in dataclasses.fields(TrainConfig)
                if f.name not in config.given | _THIS_INVOCATION | {"cell_text", "given"}}
        if {"steps", "epochs"} & config.given:  # a new length replaces the saved one
            keep.pop("steps", None)
            keep.pop("epochs", None)
        config = dataclasses.replace(config, **keep)
    diffs = _resume_differences(saved, config)
    if diffs:
        raise ConfigMismatch(
            f"cannot resume {out}: this config differs from the run's {CONFIG} in "
            f"{', '.join(diffs)}. Resume with the run's own values, or choose another "
            "--out for a new run")
    config = dataclasses.replace(config, out=str(out), cell_text=saved.cell_text,
                                 threshold=saved.threshold)
    if not ck.is_file():  # killed before its first checkpoint
        return config, out, None, True
    state = load_checkpoint(ck)
    check_resumable(state, ck)
    return config, out, state, True


def _evaluate(model: torch.nn.Module, task: Task, batch: int, device: torch.device,
              split: str = "test") -> tuple[float, float]:
    """(metric, loss) over the task's evaluation (test) set, or its validation set."""
    model.eval()
    total = count = 0.0
    loss_sum = n = 0.0
    batches = task.valid_batches if split == "valid" else task.eval_batches
    with torch.no_grad():
        for b in batches(max(batch, 256)):
            b = b.to(device)
            out = model(b.x, b.lengths)
            s, c = task.metric_sum(out, b)
            total += s
            count += c
            k = b.y.shape[0]
            loss_sum += float(task.loss(out, b)) * k
            n += k
    model.train()
    return task.finish_metric(total, int(count)), loss_sum / max(n, 1)


def _largest_grad(model: torch.nn.Module) -> tuple[str, float]:
    """The parameter with the largest gradient norm (a non-finite one first) and that norm:
    what the message of a diverged run names."""
    norms = [(name, float(p.grad.detach().norm())) for name, p in model.named_parameters()
             if p.grad is not None]
    if not norms:
        return "", 0.0
    bad = [t for t in norms if not math.isfinite(t[1])]
    return bad[0] if bad else max(norms, key=lambda t: t[1])


def _largest_weight(model: torch.nn.Module) -> tuple[str, float]:
    """The first parameter with a non-finite value, and its norm (for the message)."""
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            return name, float(p.detach().norm())
    return "", 0.0


def _clip_grad_norm(model: torch.nn.Module, clip: float | None) -> float:
    """``‖g‖`` over all parameters, before clipping; clips to ``clip`` (None: no clipping).

    NaN when ``‖g‖`` is not finite; the gradients are then left as they were (so the message
    can name the parameter), which ``error_if_nonfinite`` guarantees.
    """
    try:
        total = torch.nn.utils.clip_grad_norm_(model.parameters(), clip or math.inf,
                                               error_if_nonfinite=True)
    except RuntimeError as e:
        if "non-finite" not in str(e):
            raise
        return math.nan
    return float(total)


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[metric]}"),
        TextColumn("{task.fields[speed]} steps/s"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), disable=not enabled, transient=False)


def write_run_files(out: Path, config: TrainConfig, task: Task, n_params: int,
                    result: dict[str, Any] | None = None) -> None:
    """``config.json`` (and ``vocab.json``): what ``load_run`` needs to rebuild the model, and
    once the run has finished its ``outcome`` (:mod:`gatelab.train.early_stop`)."""
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = config.to_dict()
    data["model"] = {"input_size": task.input_size, "n_out": task.n_out,
                     "per_step": task.per_step,
                     "vocab_size": len(task.vocab) if task.vocab is not None else 0}
    data.update(metric=task.metric, higher_is_better=task.higher_is_better,
                baseline=task.baseline, params=n_params, n_train=task.n_train,
                classes=list(getattr(task, "classes", ()) or ()),
                threshold=config.threshold if config.threshold is not None
                else task.default_threshold)
    if result is not None:
        data["outcome"] = result
    atomic_write_text(out / CONFIG, json.dumps(data, indent=2))
    if task.vocab is not None:
        task.vocab.save(out / VOCAB)


def train_worker(config: TrainConfig, rank: int, world: int, progress: bool = True,
                 resume: bool = False) -> Path:
    """The loop itself; with ``world > 1`` the process group is already initialised."""
    config, out, ck, from_saved = _prepare(config, resume)
    device = resolve_device(config.device)
    vocab = load_vocab(out) if ck is not None else None
    task = make_task(config, vocab)
    if config.patience:  # a task without a validation split refuses here, before any write
        next(iter(task.valid_batches(1)), None)
    higher = task.higher_is_better
    total_steps = config.total_steps(task.n_train)
    if ck is not None and ck["step"] > total_steps:
        raise TrainError(f"{out} already reached step {ck['step']}, past the {total_steps} "
                         f"steps asked for: resume with --steps {ck['step']} or more")
    every = config.checkpoint_every(total_steps)
    torch.manual_seed(config.seed)  # the same initial weights on every rank and every resume
    cell = load_cell(config.cell) if not from_saved else saved_cell(
        {"cell_text": config.cell_text, "cell": config.cell}, out)  # RunFolderError names it
    model = build_model(cell, task,
                        config.hidden, config.layers, config.embed, config.dropout).to(device)
    if ck is None and config.forget_bias:  # a resumed run has its biases in the checkpoint
        from .forget import add_forget_bias

        add_forget_bias(model.rnn, config.forget_bias)
    optim = torch.optim.Adam(model.parameters(), lr=config.lr)
    start, rows, seconds = 0, [], 0.0
    lead = rank == 0
    if ck is not None:  # every read is checked before anything in the folder is rewritten
        load_weights(model, ck["model"], out / CHECKPOINT)
        load_weights(optim, ck["optim"], out / CHECKPOINT, "optimiser state")
        start, rows, seconds = ck["step"], ck["rows"], ck["seconds"]
        try:
            restore_rng(ck["rng"])
        except (RuntimeError, TypeError, ValueError) as e:
            raise RunFolderError(f"{out / CHECKPOINT}: its random state cannot be restored "
                                 f"({e})") from None
    if world > 1:  # every rank has read the folder (_prepare) before the lead writes in it
        dist.barrier()
    if lead:  # on resume: records the new values of RESUME_MAY_CHANGE (e.g. --steps)
        write_run_files(out, config, task, param_count(model))
    if world > 1:
        dist.barrier()
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    per_rank = config.batch // world
    loss_acc = norm_acc = 0.0
    n_acc = 0
    t_mark = time.perf_counter()
    name = f"{config.task} · {Path(config.cell).stem}"
    with _progress_bar(progress and lead) as bar:
        bar_task = bar.add_task(name, total=total_steps, completed=start, loss="-",
                                metric=_fmt_metric(task, rows), speed="-")
        # a resumed run whose patience had run out trains no further
        first = total_steps if patience_exhausted(rows, config.patience, higher) else start
        for step in range(first, total_steps):
            b = task.train_batch(step, config.batch, config.seed).shard(rank, world).to(device)
            loss_v, gnorm = _one_step(net, model, optim, task, b, config.clip, world, step,
                                      out, rows)
            loss_acc += loss_v
            norm_acc += gnorm
            n_acc += 1
            done = step + 1
            if done % every == 0 or done == total_steps:
                now = time.perf_counter()
                seconds += now - t_mark
                metric, eval_loss = _evaluate(model, task, per_rank, device) if lead else (0, 0)
                rows.append({"step": done, "loss": loss_acc / n_acc, "metric": metric,
                             "eval_loss": eval_loss, "grad_norm": norm_acc / n_acc,
                             "lr": config.lr, "seconds": round(seconds, 3),
                             "steps_per_s": round(n_acc / max(now - t_mark, 1e-9), 2)})
                if config.patience:
                    rows[-1]["valid_metric"] = _evaluate(model, task, per_rank, device,
                                                         "valid")[0]
                if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                    # a finite loss can still leave non-finite weights: never save them as good
                    name, largest = _largest_weight(model)
                    raise TrainingDiverged(done, loss_v, name, largest, out,
                                           rows[-2]["step"] if len(rows) > 1 else 0)
                stop = patience_exhausted(rows, config.patience, higher)
                if lead:
                    if config.patience and best_row(rows, higher) == len(rows) - 1:
                        # before the checkpoint that names this row as the best (module doc)
                        save_checkpoint(out / BEST, {"model": model.state_dict(), "step": done,
                                                     "valid_metric": rows[-1]["valid_metric"]})
                    write_metrics(out / METRICS, rows)
                    save_checkpoint(out / CHECKPOINT, {
                        "model": model.state_dict(), "optim": optim.state_dict(), "step": done,
                        "rows": rows, "seconds": seconds, "rng": capture_rng(),
                        "finished": done == total_steps or stop})
                if world > 1:
                    dist.barrier()
                bar.update(bar_task, completed=done, loss=f"{loss_acc / n_acc:.4f}",
                           metric=_fmt_metric(task, rows),
                           speed=f"{rows[-1]['steps_per_s']:.1f}")
                loss_acc = norm_acc = 0.0
                n_acc = 0
                t_mark = time.perf_counter()
                if stop:
                    break
            elif progress and lead:
                bar.update(bar_task, completed=done, loss=f"{loss_v:.4f}")
    if lead:
        write_run_files(out, config, task, param_count(model),
                        _outcome(model, task, out, rows, config, per_rank, device))
    return out


def _outcome(model: torch.nn.Module, task: Task, out: Path, rows: list[dict],
             config: TrainConfig, batch: int, device: torch.device) -> dict[str, Any]:
    """The finished run's record; with early stopping, the best-validation weights (``best.pt``)
    are loaded into ``model`` and evaluated on the test split."""
    higher = task.higher_is_better
    best = best_row(rows, higher) if config.patience else None
    test = None
    if best is not None:
        state = load_checkpoint(out / BEST)
        check_best(state, int(rows[best]["step"]), out / BEST)
        load_weights(model, state["model"], out / BEST)
        test = _evaluate(model, task, batch, device)[0]
    return outcome(rows, config.patience, higher, test)


def _one_step(net: torch.nn.Module, model: torch.nn.Module, optim: torch.optim.Optimizer,
              task: Task, b: Batch, clip: float | None, world: int, step: int, out: Path,
              rows: list[dict]) -> tuple[float, float]:
    """Forward, backward, the finiteness check, clipping, the optimiser step.

    Returns ``(loss, ‖g‖ before clipping)``. Raises :class:`TrainingDiverged` *before* the
    optimiser touches the weights, so the last checkpoint stays the last good state.
    """
    loss = task.loss(net(b.x, b.lengths), b)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    loss_v = float(loss.detach())
    if world > 1:  # every rank must agree on whether to stop
        t = torch.tensor([loss_v], dtype=torch.float64)
        dist.all_reduce(t)
        loss_v = float(t) / world
    # A non-finite loss stops before clipping touches the gradients (the message reads them).
    gnorm = _clip_grad_norm(model, clip) if math.isfinite(loss_v) else math.nan
    if not math.isfinite(gnorm):
        name, largest = _largest_grad(model)
        raise TrainingDiverged(step + 1, loss_v, name, largest, out,
                               rows[-1]["step"] if rows else 0)
    optim.step()
    return loss_v, gnorm


def _fmt_metric(task: Task, rows: list[dict]) -> str:
    if not rows:
        return f"{task.metric} -"
    return f"{task.metric} {rows[-1]['metric']:.4f}"
