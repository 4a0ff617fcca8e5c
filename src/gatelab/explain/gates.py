"""Per-token gate values: replay a trained model step by step through the cell's equations.

For each layer ``l`` and step ``t`` the replay calls the reference step
(:func:`gatelab.cell.evaluate.step`), so every gate value ``g_t = σ(W_g x_t + U_g h_{t-1} + b_g)``
is read exactly as the equations define it, and ``gate_fn(name, value)`` can replace it (the
fidelity experiment rounds it to 0/1). Shapes: ids ``(T, N)``, inputs ``(T, N, I)``, every gate
``(T, N, H)``. Padding steps (``t >= length``) leave the states unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..cell import Cell
from ..cell.evaluate import iterate
from ..errors import UsageError
from ..threads import single_thread
from .model import TextModel

GateFn = Callable[[str, torch.Tensor], torch.Tensor]

# The article's motivating example (docs/design.md, "The article", point 7): the default text
# to explain.
REVIEW = ("Amazing! This box of cereal gave me a perfectly balanced breakfast, as all things "
          "should be. I only ate half of it but will definitely be buying again!")


@dataclass
class Trace:
    """What a replay saw.

    ``gates[l][name]``: layer ``l``'s gate ``name``, ``(T, N, H)``; ``outputs[l]``: layer ``l``'s
    emitted vectors ``(T, N, H)``; ``lengths``: ``(N,)``; ``logits``: ``(N, C)`` or ``None``.
    """

    gates: list[dict[str, torch.Tensor]]
    outputs: list[torch.Tensor]
    lengths: torch.Tensor
    logits: torch.Tensor | None = None

    @property
    def top(self) -> torch.Tensor:
        return self.outputs[-1]


def replay_layers(cell: Cell, layers: list[dict[str, torch.Tensor]], x: torch.Tensor,
                  lengths: torch.Tensor | None = None, gate_fn: GateFn | None = None) -> Trace:
    """Run a stack of layers of ``cell`` over ``x`` ``(T, N, I)`` with the reference step.

    Layer ``l + 1`` reads layer ``l``'s outputs; states start at zero. Returns a :class:`Trace`
    (without logits).
    """
    T, N, _ = x.shape
    lengths = torch.full((N,), T, dtype=torch.long) if lengths is None else lengths.long()
    live = torch.arange(T).unsqueeze(1) < lengths  # (T, N): padding keeps the old state
    gates_all, outs_all = [], []
    feed = x
    with torch.no_grad(), single_thread():  # tiny tensors: see single_thread
        for params in layers:
            H = next(iter(params.values())).shape[0]
            states = {s: x.new_zeros(N, H) for s in cell.states}
            gates: dict[str, list[torch.Tensor]] = {g: [] for g in cell.gates}
            outs = []
            for r in iterate(cell, feed, states, params, gate_fn=gate_fn, live=live):
                for g in gates:
                    gates[g].append(r.values[g].expand(N, H))
                outs.append(r.output.expand(N, H))
            gates_all.append({g: torch.stack(v) for g, v in gates.items()})
            feed = torch.stack(outs)
            outs_all.append(feed)
    return Trace(gates_all, outs_all, lengths)


def replay(model: TextModel, ids: torch.Tensor, lengths: torch.Tensor | None = None,
           gate_fn: GateFn | None = None) -> Trace:
    """Replay ``model`` on ids ``(T, N)``: every layer's gates and outputs, and the logits."""
    T, N = ids.shape
    lengths = torch.full((N,), T, dtype=torch.long) if lengths is None else lengths.long()
    trace = replay_layers(model.cell, model.layers, model.embed(ids), lengths, gate_fn)
    with torch.no_grad():
        trace.logits = model.head(trace.top, lengths)
    return trace


def replay_error(model: TextModel, ids: torch.Tensor, lengths: torch.Tensor | None = None
                 ) -> float:
    """Largest ``|logit|`` difference between the replay and the model's own forward on ids
    ``(T, N)``: the replay reads the gates of the computation the model really does only if this
    is at rounding level (about 1e-6 in float32)."""
    if model.forward is None:
        raise UsageError(f"{model.source}: the model's own forward is not known")
    T, N = ids.shape
    lengths = torch.full((N,), T, dtype=torch.long) if lengths is None else lengths.long()
    with torch.no_grad():
        own = model.forward(ids, lengths).float()
    return float((replay(model, ids, lengths).logits.float() - own).abs().max())


def gate_names(cell: Cell, n_layers: int) -> list[tuple[int, str, str]]:
    """``(layer, gate, label)`` for every gate of every layer; the label is the gate's name for a
    one-layer model and ``"L2.f"`` style otherwise."""
    return [(layer, g, g if n_layers == 1 else f"L{layer + 1}.{g}")
            for layer in range(n_layers) for g in cell.gates]


@dataclass
class TextGates:
    """One text's per-token gate values: ``gates[label]`` is ``(T, H)`` in [0, 1]; ``probs``
    ``(C,)`` the prediction, ``running`` ``(T, C)`` the prediction the head would make after
    each token (how the verdict builds up word by word) and ``running_logits`` ``(T, C)`` the
    head's logits there, ``start_logits`` ``(C,)`` the head on the zero memory (before the first
    token); ``layers``: how many layers the labels cover."""

    text: str
    tokens: list[str]
    gates: dict[str, torch.Tensor]
    probs: torch.Tensor
    classes: tuple[str, ...]
    running: torch.Tensor | None = None
    layers: int = 1
    running_logits: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None

    @property
    def label(self) -> str:
        return self.classes[int(self.probs.argmax())]

    def mean(self, label: str) -> torch.Tensor:
        """Mean over units per token, ``(T,)``: the one-dimensional gate of simplification (2)."""
        return self.gates[label].mean(dim=1)

    def varying_units(self, label: str, k: int = 3) -> list[int]:
        """The ``k`` units whose value varies most over the tokens (largest standard deviation)."""
        g = self.gates[label]
        if g.shape[0] < 2:
            return list(range(min(k, g.shape[1])))
        return g.std(dim=0).argsort(descending=True)[:k].tolist()

    def to_json(self) -> dict:
        """``tokens``, ``gates`` (``{name: [[value per unit] per token]}``), ``prediction``."""
        probs = zip(self.classes, self.probs.tolist(), strict=True)
        return {
            "text": self.text,
            "tokens": self.tokens,
            "gates": {k: [[round(float(v), 5) for v in row] for row in g]
                      for k, g in self.gates.items()},
            "prediction": {"label": self.label,
                           "probabilities": {c: round(p, 5) for c, p in probs}},
            "running_prediction": None if self.running is None else
            {c: [round(float(v), 5) for v in self.running[:, i]]
             for i, c in enumerate(self.classes)},
        }


def explain_text(model: TextModel, text: str) -> TextGates:
    """Every gate of every layer on each token of ``text``, and the model's prediction."""
    tokens, ids = model.encode(text)
    if len(tokens) == 0:
        raise UsageError("the text has no tokens to explain")
    trace = replay(model, ids.view(-1, 1))
    gates = {label: trace.gates[layer][g][:, 0] for layer, g, label in
             gate_names(model.cell, len(model.layers))}
    probs = torch.softmax(trace.logits[0].float(), dim=0)
    # the head read after every token: each step's output as a sequence of length 1
    T, _, H = trace.top.shape
    with torch.no_grad():
        steps = model.head(trace.top.reshape(1, T, H), torch.ones(T, dtype=torch.long))
        start = model.head(trace.top.new_zeros(1, 1, H), torch.ones(1, dtype=torch.long))[0]
    running = torch.softmax(steps.float(), dim=1)
    return TextGates(text, list(tokens), gates, probs, model.classes, running,
                     len(model.layers), steps.float(), start.float())
