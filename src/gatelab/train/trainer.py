"""The training loop: one run folder per run, exact resume, a clear stop on a non-finite loss.

For each step ``k`` (0-based) the task gives the batch as a pure function of ``(seed, k)``; the
model is initialised from ``seed``; dropout draws from torch's RNG, whose state goes into every
checkpoint. So a run resumed from its last checkpoint computes the same numbers as one that was
never stopped.

Gradient clipping is the article's: if ``‖g‖ > θ`` then ``g ← θ g / ‖g‖`` (``--clip θ``).
"""

from __future__ import annotations

import json
import math
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
from .config import TrainConfig
from .models import build_model, param_count
from .runs import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    VOCAB,
    atomic_write_text,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    write_metrics,
)
from .tasks import Batch, Task, make_task


class TrainError(RuntimeError):
    """An expected stop (bad folder, diverged loss): the CLI prints it without a traceback."""


class TrainingDiverged(TrainError):
    """The loss or the gradient became NaN/inf; the last good checkpoint is kept."""

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


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda[:i]`` or ``auto`` (CUDA when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device")
    return dev


def train(config: TrainConfig, progress: bool = True, resume: bool = False) -> Path:
    """Train one run; returns its folder (``config.out`` or ``runs/TASK-CELL-hH-sSEED``).

    ``resume=True`` continues the run in that folder from its last checkpoint (its saved config
    wins). ``config.nproc > 1`` trains with DDP over that many CPU processes (gloo).
    """
    if config.nproc > 1:
        from .ddp import train_ddp

        return train_ddp(config, progress=progress, resume=resume)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return train_worker(config, rank=0, world=1, progress=progress, resume=resume)
    finally:
        torch.set_num_threads(threads)  # leave the caller's (e.g. the tour's) setting alone


def _prepare(config: TrainConfig, resume: bool) -> tuple[TrainConfig, Path, dict | None]:
    out = Path(config.out) if config.out else config.default_out()
    ck = out / CHECKPOINT
    if ck.is_file():
        if not resume:
            raise RunExists(f"{out} already holds a run: pass --resume to continue it, "
                            "or choose another --out")
        saved = json.loads((out / CONFIG).read_text(encoding="utf-8"))
        config = TrainConfig.from_dict({**saved, "out": str(out), "nproc": config.nproc})
        return config, out, load_checkpoint(ck)
    cell = load_cell(config.cell)  # a bad name or file raises CellError here
    config.cell_text = config.cell_text or cell_text(cell)
    config.out = str(out)
    return config, out, None


def _evaluate(model: torch.nn.Module, task: Task, batch: int, device: torch.device
              ) -> tuple[float, float]:
    """(metric, loss) over the task's evaluation set."""
    model.eval()
    total = count = 0.0
    loss_sum = n = 0.0
    with torch.no_grad():
        for b in task.eval_batches(max(batch, 256)):
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


def _largest_grad(model: torch.nn.Module) -> tuple[str, float, float]:
    """The parameter with the largest gradient norm (a non-finite one first), that norm, and the
    total norm ``‖g‖`` over all parameters (the quantity clipping compares with θ)."""
    norms = [(name, float(p.grad.detach().norm())) for name, p in model.named_parameters()
             if p.grad is not None]
    if not norms:
        return "", 0.0, 0.0
    bad = [t for t in norms if not math.isfinite(t[1])]
    name, largest = bad[0] if bad else max(norms, key=lambda t: t[1])
    return name, largest, math.sqrt(sum(v * v for _, v in norms))


def _clip(model: torch.nn.Module, clip: float, total: float) -> None:
    if total > clip:
        scale = clip / (total + 1e-6)
        for p in model.parameters():
            if p.grad is not None:
                p.grad.mul_(scale)


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[metric]}"),
        TextColumn("{task.fields[speed]} steps/s"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), disable=not enabled, transient=False)


def write_run_files(out: Path, config: TrainConfig, task: Task, n_params: int) -> None:
    """``config.json`` (and ``vocab.json``): what ``load_run`` needs to rebuild the model."""
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
    atomic_write_text(out / CONFIG, json.dumps(data, indent=2))
    if task.vocab is not None:
        task.vocab.save(out / VOCAB)


def train_worker(config: TrainConfig, rank: int, world: int, progress: bool = True,
                 resume: bool = False) -> Path:
    """The loop itself; with ``world > 1`` the process group is already initialised."""
    config, out, ck = _prepare(config, resume)
    device = resolve_device(config.device)
    vocab = None
    if ck is not None and (out / VOCAB).is_file():
        from ..data.text import Vocab

        vocab = Vocab.load(out / VOCAB)
    task = make_task(config, vocab)
    total_steps = config.total_steps(task.n_train)
    every = config.checkpoint_every(total_steps)
    torch.manual_seed(config.seed)  # the same initial weights on every rank and every resume
    model = build_model(load_cell(config.cell) if ck is None else _saved_cell(config), task,
                        config.hidden, config.layers, config.embed, config.dropout).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=config.lr)
    start, rows, seconds = 0, [], 0.0
    lead = rank == 0
    if ck is not None:
        model.load_state_dict(ck["model"])
        optim.load_state_dict(ck["optim"])
        start, rows, seconds = ck["step"], ck["rows"], ck["seconds"]
        restore_rng(ck["rng"])
    elif lead:
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
        for step in range(start, total_steps):
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
                if lead:
                    write_metrics(out / METRICS, rows)
                    save_checkpoint(out / CHECKPOINT, {
                        "model": model.state_dict(), "optim": optim.state_dict(), "step": done,
                        "rows": rows, "seconds": seconds, "rng": capture_rng(),
                        "finished": done == total_steps})
                if world > 1:
                    dist.barrier()
                bar.update(bar_task, completed=done, loss=f"{loss_acc / n_acc:.4f}",
                           metric=_fmt_metric(task, rows),
                           speed=f"{rows[-1]['steps_per_s']:.1f}")
                loss_acc = norm_acc = 0.0
                n_acc = 0
                t_mark = time.perf_counter()
            elif progress and lead:
                bar.update(bar_task, completed=done, loss=f"{loss_v:.4f}")
    return out


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
    name, largest, gnorm = _largest_grad(model)
    if not (math.isfinite(loss_v) and math.isfinite(gnorm)):
        raise TrainingDiverged(step + 1, loss_v, name, largest, out,
                               rows[-1]["step"] if rows else 0)
    if clip:
        _clip(model, clip, gnorm)
    optim.step()
    return loss_v, gnorm


def _saved_cell(config: TrainConfig):  # noqa: ANN202 - gatelab.Cell
    from ..cell import parse_cell

    return parse_cell(config.cell_text, config.cell)


def _fmt_metric(task: Task, rows: list[dict]) -> str:
    if not rows:
        return f"{task.metric} -"
    return f"{task.metric} {rows[-1]['metric']:.4f}"
