"""Gradient flow through time: how much of a gradient at step ``T`` reaches a state ``k`` steps
back, for any cell, at initialisation or trained, with gates free or forced.

For each state ``s`` we project its final value on a random unit direction per sequence,
``L_s = Σ_n ⟨u_n, s_T,n⟩``, so ``‖∂L_s/∂s_T‖ = 1``, and measure by autograd

    g_s(d) = ‖∂L_s/∂s_{T-d}‖   for the distance d = T − k = 0..T,

one number per sequence; we report the median and the quartiles over the batch. Forcing gates
(``force={"i": 0, "f": 1}``) replays the analysis' switch settings: for LSTM with ``i=0, f=1``
the memory update is ``c' = 1·c + 0·g``, so ``∂L_c/∂c_k = u`` exactly and the curve is flat to
float precision (the short circuit); a plain RNN's curve decays like a product of
``diag(tanh') U_h`` factors.

The **memory state** (the curve the summary numbers describe) is the analysis' first memory
state (:func:`gatelab.analysis.memory.find_memory`: LSTM's ``c``, GRU's and MGU's ``h``; a cell
whose states are all readouts uses its first state), and the setting that makes it hold is read
off the analysis' modes (:func:`hold_setting`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations, product
from pathlib import Path

import sympy
import torch

from ..analysis import analyze, read_setting, reduce_setting
from ..analysis.memory import find_memory
from ..analysis.stages import Budget
from ..cell import Cell
from ..cell.support import require_vector_cell
from ..errors import GatelabError, UsageError
from ..threads import single_thread
from .law import fit_rate
from .model import (
    CellLayer,
    json_safe,
    load_trained,
    task_inputs,
    unit_directions,
)


def parse_settings(text: str | None, cell: Cell) -> dict[str, float]:
    """``"i=0,f=1"`` -> ``{"i": 0.0, "f": 1.0}`` in the order written, read by the analysis'
    ``--set`` parser (:func:`gatelab.analysis.read_setting`); a gate may also be held at a
    fraction in [0, 1] (``f=0.5``). ``"hold"`` is the setting that makes the memory state hold
    (:func:`hold_setting`)."""
    if not text:
        return {}
    if text.strip() == "hold":
        found = hold_setting(cell)
        if found is None:
            raise UsageError(f"no 0/1 setting of {cell.name}'s gates makes its memory state "
                             "hold (s' = s)")
        return found
    out: dict[str, float] = {}
    for name, value in read_setting(text, tuple(cell.gates)).items():
        try:
            val = float(value)
        except ValueError:
            raise UsageError(f"gate value for {name!r} must be a number in [0, 1], "
                             f"got {value!r}") from None
        if not 0.0 <= val <= 1.0:
            raise UsageError(f"gate value for {name!r} must lie in [0, 1], got {val}")
        out[name] = val
    return out


def memory_state(cell: Cell) -> str:
    """The cell's first memory state, as :func:`gatelab.analysis.memory.find_memory` finds it
    (its first state when every state is a readout)."""
    found = find_memory(cell).memory_states
    return found[0] if found else cell.states[0]


def hold_setting(cell: Cell, state: str | None = None) -> dict[str, float] | None:
    """The smallest 0/1 gate setting whose mode, in the analysis, has kind ``hold`` for
    ``state`` (``state' = state``: the identity path), or None.

    Read off the analysis: None unless one of its modes holds ``state``; then the partial
    settings (gates left out stay free) of the gates in ``state``'s stage-2 update are tried,
    fewest gates first, in cell order.

    >>> from gatelab import load_cell
    >>> [hold_setting(load_cell(name)) for name in ("lstm", "gru", "rnn")]
    [{'i': 0.0, 'f': 1.0}, {'z': 1.0}, None]
    """
    state = state or memory_state(cell)
    a = analyze(cell)
    if not a.modes_skipped and not any(m.kind.get(state) == "hold" for m in a.modes):
        return None
    # A gate missing from the update (directly or as o_prev) cannot change it: never needed.
    used = a.stage2[state].free_symbols
    gates = [g for g in a.gates if {sympy.Symbol(g), a.memory.prev_gates.get(g)} & used]
    budget = Budget(f"searching a hold setting of {cell.name}")  # 3^k partial settings
    for size in range(1, len(gates) + 1):
        for chosen in combinations(gates, size):
            for values in product((0, 1), repeat=size):
                setting = dict(zip(chosen, values, strict=True))
                budget.spend()
                if reduce_setting(a, setting).kind.get(state) == "hold":
                    return {g: float(v) for g, v in setting.items()}
    return None


@dataclass
class FlowResult:
    """``grad_norm[d]`` is the median over the batch of ``‖∂L/∂s_{T-d}‖`` for the memory state
    ``state``; ``q25``/``q75`` its quartiles; ``states`` holds the same for every state."""

    cell: str
    state: str
    steps: int
    batch: int
    hidden: int
    force: dict[str, float]
    trained: str | None
    inputs: str  # what drove the cell: "standard normal" or a task's evaluation data
    distance: list[int]
    grad_norm: list[float]
    q25: list[float]
    q75: list[float]
    rate: float  # fitted per-step factor of the median curve (1 = flat)
    spread: float  # max |g(d) − g(0)| / g(0) over d: 0 for a perfectly flat curve
    states: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # states with no gradient path through time: their update reads no state (``next p = x``,
    # RWKV's token shift), so ‖∂L_s/∂s_(T−d)‖ = 0 for every d ≥ 1
    no_path: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return json_safe(asdict(self))


def no_gradient_path(cell: Cell) -> list[str]:
    """The states whose update reads no state's previous value (gates and lets inlined): no
    gradient reaches them from a later step through them, ``∂s_T/∂s_(T−d) = 0`` for ``d ≥ 1``
    (a state that copies the input, ``next p = x``).

    >>> from gatelab import parse_cell
    >>> no_gradient_path(parse_cell("input x : hidden\\nstate h, p\\n"
    ...     "next h = tanh(W @ x + U @ p + V @ h)\\nnext p = x\\noutput h\\n"))
    ['p']
    """
    return [s for s, e in cell.nexts.items() if not cell.depends_on(e, cell.states)]


def _input_size(cell: Cell, params: dict[str, torch.Tensor], hidden: int) -> int:
    for p in cell.params.values():
        if p.role == "matrix" and p.shape[1] != "H":
            return int(params[p.name].shape[1])
    return hidden


def _measure(cell: Cell, x: torch.Tensor, hidden: int, force: dict[str, float],
             params: dict[str, torch.Tensor] | None, zero_start: bool,
             g: torch.Generator) -> dict[str, dict[str, list[float]]]:
    """Median and quartiles over the batch of ``‖∂L_s/∂s_{T-d}‖`` for every state ``s``."""
    batch, steps, input_size = x.shape
    layer = CellLayer(cell, input_size, hidden, params=params, generator=g)
    h0 = {s: (torch.zeros(batch, hidden) if zero_start
              else torch.rand(batch, hidden, generator=g) - 0.5).requires_grad_(True)
          for s in cell.states}
    trail, _ = layer(x, h0, force, every_state=True)
    _refuse_non_finite(cell, trail)
    per_state: dict[str, dict[str, list[float]]] = {}
    for s in cell.states:
        u = unit_directions(batch, hidden, g)
        loss = (trail[-1][s] * u).sum()
        history = [trail[k][s] for k in range(steps + 1)]
        grads = torch.autograd.grad(loss, history, retain_graph=True, allow_unused=True)
        norms = torch.stack([torch.zeros(batch) if gr is None else gr.norm(dim=1)
                             for gr in grads])  # (T + 1, N), index k
        norms = norms.flip(0).double()  # index d = T − k
        q = torch.quantile(norms, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=1)
        per_state[s] = {"q25": q[0].tolist(), "grad_norm": q[1].tolist(), "q75": q[2].tolist()}
    return per_state


class NonFiniteStates(GatelabError, ArithmeticError):
    """The forward pass left non-finite numbers: gradients through it would be NaN or inf."""


def _refuse_non_finite(cell: Cell, trail: list[dict[str, torch.Tensor]]) -> None:
    """A cell whose state grows without bound (``h / f``, a gate-free sum) overflows within the
    unrolled steps; its gradient norms would print as NaN rows, so refuse with where it broke."""
    for k, states in enumerate(trail):
        for s, v in states.items():
            if not bool(torch.isfinite(v).all()):
                raise NonFiniteStates(
                    f"cell {cell.name!r}: state {s} is not finite from step {k} of "
                    f"{len(trail) - 1} (it overflows, or leaves a function's domain such as "
                    "sqrt's or log's, at these settings), so its gradients through time "
                    "cannot be measured; try fewer --steps or other "
                    "--set gate values")


# PLR0913: keyword-only: the experiment's settings, each with a default
def gradient_flow(cell: Cell, *, steps: int = 50, batch: int = 32, hidden: int = 32,  # noqa: PLR0913
                  input_size: int | None = None, force: dict[str, float] | None = None,
                  params: dict[str, torch.Tensor] | None = None, trained: str | None = None,
                  x: torch.Tensor | None = None, inputs: str = "standard normal",
                  seed: int = 0) -> FlowResult:
    """Measure ``‖∂L_s/∂s_{T-d}‖`` for every state ``s`` and distance ``d = 0..steps``.

    Inputs are ``x`` ``(batch, steps, I)`` with zero initial states when given (a task's data,
    described by ``inputs``), else standard normal with initial states uniform in
    ``[-0.5, 0.5]``. ``params`` (under the cell's names, e.g. from a trained run) fix ``hidden``
    and ``I``; otherwise they are drawn like torch's RNNs, ``input_size`` defaulting to
    ``hidden``.
    """
    if steps < 1 or batch < 1 or hidden < 1:
        raise UsageError("--steps, --batch and --hidden must be at least 1")
    require_vector_cell(cell, "the gradient flow (grad flow)")
    force = force or {}
    g = torch.Generator().manual_seed(seed)
    if params is not None:
        hidden = int(next(iter(params.values())).shape[0])
        input_size = _input_size(cell, params, hidden)
    input_size = input_size or hidden
    zero_start = x is not None
    if x is None:
        x = torch.randn(batch, steps, input_size, generator=g)
    batch, steps = x.shape[:2]
    with single_thread():
        per_state = _measure(cell, x, hidden, force, params, zero_start, g)
    mem = memory_state(cell)
    med = torch.tensor(per_state[mem]["grad_norm"])
    spread = float((med - med[0]).abs().max() / med[0]) if med[0] > 0 else float("inf")
    return FlowResult(
        cell=cell.name, state=mem, steps=steps, batch=batch, hidden=hidden, force=dict(force),
        trained=trained, inputs=inputs, distance=list(range(steps + 1)),
        grad_norm=per_state[mem]["grad_norm"], q25=per_state[mem]["q25"], q75=per_state[mem]["q75"],
        rate=fit_rate(torch.arange(steps + 1), med), spread=spread, states=per_state,
        no_path=no_gradient_path(cell),
    )


def trained_flow(path: str | Path, *, steps: int = 50, batch: int = 32,
                 settings: str | None = None, seed: int = 0) -> FlowResult:
    """:func:`gradient_flow` with the first layer's (forward) parameters of a trained run
    folder, driven by the run's own evaluation data when it can be loaded (standard normal
    inputs otherwise; ``inputs`` in the result says which). ``settings`` is ``--set`` text
    checked against the run's own cell."""
    cell, params, _ = load_trained(path)
    force = parse_settings(settings, cell)
    x, why = task_inputs(path, batch, steps)
    inputs = why if x is not None else f"standard normal ({why})"
    return gradient_flow(cell, steps=steps, batch=batch, force=force, params=params[0, 0],
                         trained=str(path), x=x, inputs=inputs, seed=seed)

