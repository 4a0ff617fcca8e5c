"""Gradient clipping, measured on real training runs (docs/design.md, "The article", point 2).

A plain RNN (the zoo's ``rnn`` cell, replayed from its equations) whose recurrent matrix is
rescaled to ``σ_max > 1`` learns the adding problem with plain SGD three times, from the same
initial weights and the same batches:

* ``none``: no clipping;
* ``norm``: ``torch.nn.utils.clip_grad_norm_(params, θ)``, i.e. ``g ← θ g / ‖g‖`` if ``‖g‖ > θ``;
* ``value``: ``torch.nn.utils.clip_grad_value_(params, c)``, each entry clamped to ``[-c, c]``.

Per step we record the loss and the gradient norm before clipping; a step is **non-finite** when
either is ``inf``/``nan``. Once the parameters themselves are non-finite every later step is too,
so the run stops there and its remaining steps are counted as non-finite (``stopped_at`` says
where).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..cell import load_cell
from ..errors import UsageError
from ..threads import single_thread
from .model import CellLayer, json_safe, recurrent_matrices, set_sigma_max

MODES = ("none", "norm", "value")


@dataclass
class ClipRun:
    """One training run: ``loss[k]`` and ``grad_norm[k]`` (before clipping) per step."""

    mode: str
    loss: list[float]
    grad_norm: list[float]
    nonfinite_steps: int
    first_nonfinite: int | None
    stopped_at: int | None
    final_loss: float  # mean loss of the last 10 steps (nan if any of them is non-finite)
    peak_loss: float  # largest finite loss seen


@dataclass
class ClipResult:
    """The three runs and their shared settings."""

    cell: str
    steps: int
    seq_len: int
    hidden: int
    batch: int
    sigma_max: float
    lr: float
    max_norm: float
    clip_value: float
    seed: int
    trivial_loss: float  # MSE of always predicting 1 on the adding problem
    runs: dict[str, ClipRun] = field(default_factory=dict)

    def to_json(self) -> dict:
        return json_safe(asdict(self))  # JSON has no nan/inf: they become null


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


# PLR0913: keyword-only: the settings of one clipping experiment run
def _train(mode: str, *, steps: int, seq_len: int, hidden: int, batch: int, sigma_max: float,  # noqa: PLR0913
           lr: float, max_norm: float, clip_value: float, seed: int,
           tick: Callable[[], None]) -> ClipRun:
    from ..data.synthetic import adding_problem

    cell = load_cell("rnn")
    g = torch.Generator().manual_seed(seed)
    layer = CellLayer(cell, 2, hidden, generator=g)
    for name in recurrent_matrices(cell):
        set_sigma_max(layer.weights[name], sigma_max)
    head = nn.Linear(hidden, 1)
    with torch.no_grad():  # drawn from our generator so all three runs start identical
        head.weight.copy_((torch.rand(1, hidden, generator=g) * 2 - 1) / math.sqrt(hidden))
        head.bias.zero_()
    params = [*layer.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=lr)
    data = torch.Generator().manual_seed(seed + 1)
    losses: list[float] = []
    norms: list[float] = []
    stopped = None
    for k in range(steps):
        x, y = adding_problem(batch, seq_len, generator=data)
        _, out = layer(x)
        loss = ((head(out[:, -1]).squeeze(-1) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        if mode == "norm":  # returns the norm before clipping
            norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        else:
            norm = float(torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(p.grad) for p in params])))
            if mode == "value":
                torch.nn.utils.clip_grad_value_(params, clip_value)
        opt.step()
        losses.append(loss.item())
        norms.append(norm)
        tick()
        if not all(bool(torch.isfinite(p).all()) for p in params):
            stopped = k + 1
            for _ in range(k + 1, steps):  # every later step is non-finite: not run
                losses.append(math.nan)
                norms.append(math.nan)
                tick()
            break
    bad = [k for k in range(steps) if not (math.isfinite(losses[k]) and math.isfinite(norms[k]))]
    tail = losses[-10:]
    return ClipRun(mode=mode, loss=losses, grad_norm=norms, nonfinite_steps=len(bad),
                   first_nonfinite=bad[0] if bad else None, stopped_at=stopped,
                   final_loss=sum(tail) / len(tail), peak_loss=max(_finite(losses)))


def check_clip_options(*, steps: int, seq_len: int, hidden: int, batch: int, sigma_max: float,
                       lr: float, max_norm: float, clip_value: float) -> None:
    """:class:`UsageError` for sizes below their minimum and for a rate, norm or value that is
    not a finite positive number (``inf`` would train nothing and report it as a result)."""
    if steps < 1 or seq_len < 2 or hidden < 1 or batch < 1:
        raise UsageError("--steps, --hidden and --batch must be at least 1 and --seq-len "
                         "at least 2")
    named = {"--sigma-max": sigma_max, "--lr": lr, "--max-norm": max_norm,
             "--clip-value": clip_value}
    for name, v in named.items():
        if not (math.isfinite(v) and v > 0):
            raise UsageError(f"{name} must be a finite positive number, not {v:g}")


def clip_experiment(*, steps: int = 200, seq_len: int = 100, hidden: int = 32, batch: int = 32,
                    sigma_max: float = 2.0, lr: float = 0.1, max_norm: float = 1.0,
                    clip_value: float = 0.1, seed: int = 0,
                    tick: Callable[[], None] = lambda: None) -> ClipResult:
    """Run the three trainings (``3 × steps`` SGD steps; ``tick`` is called after each)."""
    check_clip_options(steps=steps, seq_len=seq_len, hidden=hidden, batch=batch,
                       sigma_max=sigma_max, lr=lr, max_norm=max_norm, clip_value=clip_value)
    result = ClipResult(cell="rnn", steps=steps, seq_len=seq_len, hidden=hidden, batch=batch,
                        sigma_max=sigma_max, lr=lr, max_norm=max_norm, clip_value=clip_value,
                        seed=seed, trivial_loss=1.0 / 6.0)
    for mode in MODES:
        with single_thread():
            result.runs[mode] = _train(mode, steps=steps, seq_len=seq_len, hidden=hidden,
                                       batch=batch, sigma_max=sigma_max, lr=lr,
                                       max_norm=max_norm, clip_value=clip_value, seed=seed,
                                       tick=tick)
    return result
