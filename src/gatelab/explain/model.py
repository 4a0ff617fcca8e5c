"""What the explainer needs from a trained text classifier, whatever built it.

A :class:`TextModel` is the cell, each layer's parameters under the cell's own names, and three
functions: ``encode`` (text -> tokens and ids), ``embed`` (ids -> input vectors) and ``head``
(the recurrent layer's outputs -> class logits). With these, :mod:`gatelab.explain.gates` replays
every step through the cell's reference equations, where each gate value can be read or replaced.

``from_run(path)`` builds one from a run folder written by ``gatelab train``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..cell import Cell, load_cell
from ..errors import GatelabError, NotFound


class ExplainError(GatelabError, ValueError):
    """A readable problem with the user's input (a missing run, an unsuitable model)."""


@dataclass
class Labelled:
    """Encoded texts (``ids[i]``: ``(L_i,)`` int64) and their class indices."""

    ids: list[torch.Tensor]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class TextModel:
    """A trained text classifier, opened up for replay.

    Attributes:
        cell: the recurrent cell.
        layers: one parameter dict per layer (``{name: tensor}``, the cell's names).
        embed: ids ``(T, N)`` int64 -> inputs ``(T, N, I)``.
        head: ``(outputs (T, N, H) of the top layer, lengths (N,)) -> logits (N, C)``.
        encode: text -> ``(tokens, ids (T,))``.
        classes: class names, in logit order.
        forward: the model's own forward, ``(ids (T, N), lengths (N,)) -> logits (N, C)``, used
            to check that the replay computes what the model computes (``None`` if unknown).
        source: where it came from (a run folder, or a description).
        max_len: texts are cut to this many tokens, as in training.
        test_set: () -> the labelled test set the model was evaluated on in training
            (``None`` if unknown).
    """

    cell: Cell
    layers: list[dict[str, torch.Tensor]]
    embed: Callable[[torch.Tensor], torch.Tensor]
    head: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    encode: Callable[[str], tuple[list[str], torch.Tensor]]
    classes: tuple[str, ...]
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    source: str = ""
    max_len: int = 300
    test_set: Callable[[], Labelled] | None = None

    @property
    def hidden_size(self) -> int:
        return next(iter(self.layers[0].values())).shape[0]


def last_step(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The output at each sequence's last real step: ``(T, N, H), (N,) -> (N, H)``."""
    idx = (lengths.to(outputs.device) - 1).clamp_min(0)
    return outputs[idx, torch.arange(outputs.shape[1], device=outputs.device)]


def from_run(path: str | Path) -> TextModel:
    """The text model of a run folder made by ``gatelab train tweets`` (or ``drugs``).

    Raises :class:`ExplainError` with what to do when the folder is missing or not a text run.
    """
    path = Path(path)
    from ..train import load_run  # here: only trained runs need gatelab.train

    try:
        run = load_run(path)
    except NotFound as e:  # read_config's check: add how to make a text run
        raise ExplainError(f"{e}, e.g. `gatelab tour --quick` (it trains "
                           "report/runs/sentiment) or `gatelab train tweets --cell mgu --out "
                           "runs/sentiment`.") from None
    except (OSError, KeyError, RuntimeError) as e:  # a damaged file (its own errors pass)
        raise ExplainError(f"cannot load the run in {path}: {e}") from None
    cfg = run.config
    if getattr(run.model, "embed", None) is None or run.vocab is None or run.model.per_step:
        raise ExplainError(f"{path} is a {cfg.get('task')!r} run; explain needs a text model "
                           "(task drugs or tweets)")

    def test_set() -> Labelled:
        task = run.task()  # the very evaluation set training used (same subset, vocabulary)
        return Labelled(list(task.test_ids), task.test_y.tolist())

    return from_module(run.model, run.encode_text, tuple(run.classes), source=str(path),
                       max_len=int(cfg.get("max_len") or 300), test_set=test_set)


def from_module(model: torch.nn.Module, encode: Callable[[str], tuple[list[str], torch.Tensor]],
                classes: tuple[str, ...] = (), *, source: str = "", max_len: int = 300,
                test_set: Callable[[], Labelled] | None = None) -> TextModel:
    """Open up a classifier built like ``gatelab.train``'s: ``model.embed`` (ids -> vectors),
    ``model.rnn`` (a ``gatelab.nn.RNN``), ``model.head`` (a linear map of the last real step's
    output) and ``model(ids (N, T), lengths)`` -> logits."""
    model = model.eval()
    rnn = model.rnn
    if rnn.bidirectional:
        raise ExplainError(f"{source or 'this model'}: bidirectional models are not supported "
                           "by explain yet")
    layers = []
    for layer in range(rnn.num_layers):
        got = rnn.cell_params(layer, 0)
        layers.append({k: v.detach().float().clone() for k, v in got.items()})
    classes = tuple(classes) or tuple(f"class {i}" for i in range(model.head.out_features))

    def embed(ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.embed(ids).float()

    def head(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.head(last_step(outputs, lengths))

    def forward(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(ids.T if rnn.batch_first else ids, lengths)

    return TextModel(rnn.cell, layers, embed, head, encode, classes, forward, source, max_len,
                     test_set)


def random_model(cell: Cell | str, words: list[str], *, embed_size: int = 8, hidden: int = 6,
                 layers: int = 1, classes: tuple[str, ...] = ("negative", "positive"),
                 seed: int = 0) -> TextModel:
    """An untrained model over a word list (unknown words share id 1), for trying the explainer
    and for tests. Its head reads the last real step: ``logits = V h_T + c``."""
    from ..cell.evaluate import init_params
    from ..data.text import Vocab

    cell = load_cell(cell)
    g = torch.Generator().manual_seed(seed)
    vocab = Vocab(["<pad>", "<unk>", *words])
    table = torch.randn(len(vocab), embed_size, generator=g)
    params = [init_params(cell, embed_size if i == 0 else hidden, hidden, generator=g)
              for i in range(layers)]
    weight = torch.randn(len(classes), hidden, generator=g)
    bias = torch.randn(len(classes), generator=g) * 0.1

    def head(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return last_step(outputs, lengths) @ weight.T + bias

    return TextModel(cell, params, lambda ids: table[ids], head, vocab.encode, classes,
                     source=f"random {cell.name} model (seed {seed})")
