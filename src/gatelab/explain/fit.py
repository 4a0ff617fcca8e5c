"""Training with the keep-gate bias set at initialisation, into an ordinary run folder.

``gatelab.train.train`` builds its model itself; the experiments on where gates become switches
(``benchmarks/gates_saturation.py``) and the tour's explained model also need the keep gate's
bias shifted before the first step (:func:`gatelab.explain.keep.shift_keep_bias`) and snapshots
of one run at several lengths. :func:`fit` is the trainer's step (the task's batches for
``(seed, step)``, Adam, norm clipping, one thread by default) with those two additions;
:func:`train_run` writes its result as a run folder that ``gatelab.train.load_run``,
``gatelab explain --run`` and every other command read like any other (``config.json`` also
records ``keep_bias``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from ..cell import cell_text, load_cell
from ..errors import UsageError
from ..train import TrainConfig
from ..train.models import build_model, param_count
from ..train.runs import CHECKPOINT, CONFIG, METRICS, save_checkpoint, write_metrics
from ..train.tasks import Task, make_task
from ..train.trainer import write_run_files
from .keep import shift_keep_bias


def fit(cfg: TrainConfig, keep_bias: float = 0.0, snapshots: list[int] | None = None,
        progress: Callable[[int], None] | None = None
        ) -> Iterator[tuple[int, torch.nn.Module, Task, float]]:
    """Train ``cfg`` (``cfg.steps`` steps) and yield ``(step, model in eval mode, task,
    training seconds so far)`` at each step of ``snapshots`` (default: the last step only).
    ``progress(step)`` is told after every step."""
    if cfg.steps is None:
        raise UsageError("fit needs --steps (not --epochs)")
    snaps = sorted(set(snapshots or [cfg.steps]))
    task = make_task(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(load_cell(cfg.cell), task, cfg.hidden, cfg.layers, cfg.embed,
                        cfg.dropout)
    if keep_bias:
        shift_keep_bias(model.rnn, keep_bias)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        model.train()
        seconds, t0 = 0.0, time.perf_counter()
        for step in range(max(snaps)):
            b = task.train_batch(step, cfg.batch, cfg.seed)
            loss = task.loss(model(b.x, b.lengths), b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip or math.inf)
            opt.step()
            if progress is not None:
                progress(step + 1)
            if step + 1 in snaps:
                seconds += time.perf_counter() - t0
                model.eval()
                yield step + 1, model, task, seconds
                model.train()
                t0 = time.perf_counter()
    finally:
        torch.set_num_threads(threads)


def evaluate(model: torch.nn.Module, task: Task) -> tuple[float, float]:
    """``(metric, mean loss)`` over the task's evaluation set."""
    total = count = loss_sum = n = 0.0
    with torch.no_grad():
        for b in task.eval_batches(256):
            out = model(b.x, b.lengths)
            s, c = task.metric_sum(out, b)
            total, count = total + s, count + c
            loss_sum += float(task.loss(out, b)) * b.y.shape[0]
            n += b.y.shape[0]
    return task.finish_metric(total, int(count)), loss_sum / max(n, 1)


def train_run(cfg: TrainConfig, out: Path, keep_bias: float = 0.0,
              progress: Callable[[int], None] | None = None) -> Path:
    """Train with :func:`fit` and write the run folder ``out`` (config, vocabulary, metrics,
    checkpoint); returns ``out``."""
    out = Path(out)
    cfg.cell_text = cfg.cell_text or cell_text(load_cell(cfg.cell))
    cfg.out = str(out)
    for step, model, task, seconds in fit(cfg, keep_bias, progress=progress):
        metric, eval_loss = evaluate(model, task)
        write_run_files(out, cfg, task, param_count(model))
        config = json.loads((out / CONFIG).read_text(encoding="utf-8"))
        config["keep_bias"] = keep_bias
        (out / CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")
        write_metrics(out / METRICS, [{"step": step, "metric": metric, "eval_loss": eval_loss,
                                       "lr": cfg.lr, "seconds": round(seconds, 3)}])
        save_checkpoint(out / CHECKPOINT, {"model": model.state_dict(), "step": step,
                                           "seconds": seconds, "finished": True})
    return out
