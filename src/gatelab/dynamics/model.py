"""What the gradient lab needs from a cell: its recurrent matrices, a replayable layer, and the
cell + parameters of a trained run.

A matrix is **recurrent** when some ``W @ v`` in the cell has a vector ``v`` that depends on a
state (after inlining gates and lets): for LSTM these are ``U_i, U_f, U_o, U_g``, for GRU also the
``U_n`` of ``U_n @ (r * h)``. Derived from the equations, never from names.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cell import Cell, MatVec
from ..cell.evaluate import init_params, step
from ..errors import GatelabError, UsageError


def recurrent_matrices(cell: Cell) -> list[str]:
    """Names of the matrices that multiply (something depending on) a state, in parameter order.

    >>> from gatelab import load_cell
    >>> recurrent_matrices(load_cell("gru"))
    ['U_z', 'U_r', 'U_n']
    """
    found: set[str] = set()
    exprs = [*cell.gates.values(), *cell.lets.values(), *cell.nexts.values()]
    for expr in exprs:
        for mv in cell.inline(expr).atoms(MatVec):
            if cell.depends_on(mv.vector, cell.states):
                found.add(mv.matrix.name)
    return [name for name in cell.matrices if name in found]


def set_sigma_max(weight: torch.Tensor, sigma_max: float) -> None:
    """Rescale ``weight`` in place so that its largest singular value is ``sigma_max``."""
    with torch.no_grad():
        top = torch.linalg.matrix_norm(weight.double(), ord=2).item()
        if not top > 0:
            raise UsageError("cannot rescale a zero matrix to a chosen σ_max")
        weight.mul_(sigma_max / top)


class CellLayer(nn.Module):
    """A one-layer recurrent network that replays the cell's reference step.

    Slow and obviously right (it walks the SymPy tree each step), and it can pin gates to
    constants (``force``), which a fused engine cannot. Parameters are ``nn.Parameter``s under the
    cell's own names. Input ``x`` is ``(N, T, I)`` (batch first); ``forward`` returns every
    step's states ``[{state: (N, H)}]`` of length ``T + 1`` (index 0 is the initial state) and the
    outputs ``(N, T, H)``.
    """

    def __init__(self, cell: Cell, input_size: int, hidden_size: int, *,
                 params: dict[str, torch.Tensor] | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if len(cell.inputs) != 1:
            raise UsageError(f"cell {cell.name!r} has {len(cell.inputs)} inputs; the gradient "
                             "lab drives cells with exactly one input")
        self.cell, self.input_size, self.hidden_size = cell, input_size, hidden_size
        drawn = params if params is not None else init_params(cell, input_size, hidden_size,
                                                              generator=generator)
        self.weights = nn.ParameterDict({k: nn.Parameter(v.detach().clone().float())
                                         for k, v in drawn.items()})

    def forward(self, x: torch.Tensor, h0: dict[str, torch.Tensor] | None = None,
                force: dict[str, float] | None = None, *, every_state: bool = False
                ) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        """Run the reference step over ``x``. ``every_state``: every step's states are in the
        autograd graph, so ``∂L/∂s_k`` can be asked for each; without it a state that copies
        the input (``next p = x``, RWKV's token shift) is a plain tensor and asking fails. A
        state that is another's new value (LSTM's ``c'``, read out as ``h' = o ⊙ tanh(c')``)
        stays that one node: its gradient counts what flows through the readout, as the
        analysis reads ``h`` as a function of the memory ``c``."""
        n = x.shape[0]
        states = h0 or {s: x.new_zeros(n, self.hidden_size) for s in self.cell.states}
        params = dict(self.weights.items())
        (inp,) = self.cell.inputs
        trail = [states]
        outs = []
        for xt in x.unbind(1):
            r = step(self.cell, {inp: xt}, states, params, force)
            states = {s: _node(v) for s, v in r.states.items()} if every_state else r.states
            trail.append(states)
            outs.append(r.output)
        return trail, torch.stack(outs, dim=1)


def _node(v: torch.Tensor) -> torch.Tensor:
    """``v`` itself when it is in the autograd graph, else a leaf that asks for a gradient
    (nothing upstream of it needs one: it is made of the input and constants)."""
    return v if v.requires_grad else v.detach().requires_grad_(True)


Stack = dict[tuple[int, int], dict[str, torch.Tensor]]  # (layer, direction) -> parameters


def load_trained(path: str | Path) -> tuple[Cell, Stack, dict]:
    """The cell, the parameters of each ``(layer, direction)`` and the config of a run folder.

    Uses ``gatelab.train.load_run(path)``, whose ``layer_params()`` gives every layer's
    parameters under the cell's own names.
    Raises a :class:`~gatelab.errors.GatelabError` with a readable message when the folder is
    not a run (the check is ``gatelab.train.runs.read_config``'s).
    """
    from ..train.runs import load_run  # here: only trained runs need gatelab.train

    path = Path(path)
    try:
        run = load_run(path)
    except GatelabError:
        raise
    except (OSError, KeyError, RuntimeError) as e:  # a damaged file (its own errors pass)
        raise UsageError(f"cannot load the run in {path}: {e}") from e
    params: Stack = run.layer_params()
    return run.model.rnn.cell, params, dict(run.config)


def task_inputs(path: str | Path, n: int, steps: int) -> tuple[torch.Tensor | None, str]:
    """Up to ``n`` evaluation sequences of a run's own task as its recurrent layer reads them
    (``(n, steps, I)``, embedded for text), or ``(None, why not)``.

    Sequences shorter than ``steps`` (right-padded text) are left out; ``steps`` is capped at
    the task's length.
    """
    try:
        from ..train.runs import load_run

        run = load_run(path)
        task = run.task()
        batch = next(iter(task.eval_batches(max(n * 4, 64))))
        with torch.no_grad():
            x = run.model.features(batch.x).float()
    except Exception as e:  # noqa: BLE001 - any missing data set or old run: say why, go on
        return None, f"{type(e).__name__}: {e}"
    if batch.lengths is not None:
        x = x[batch.lengths >= steps]
    if x.shape[0] == 0 or x.shape[1] < steps:
        return None, f"the task's sequences are shorter than {steps} steps"
    return x[:n, :steps], f"{run.config.get('task', 'task')} evaluation data"


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no nan/inf)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def unit_directions(n: int, h: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` random unit vectors of size ``h`` (rows), for projecting a state onto a scalar."""
    u = torch.randn(n, h, generator=generator)
    return u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)

