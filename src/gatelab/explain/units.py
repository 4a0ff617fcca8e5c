"""A gate is a vector: which units switch on which words, and how the verdict builds up.

Simplification (2) reads a gate as one number, its mean over units; this module keeps the units.
For one gate (by default the top layer's *keep gate*, :func:`gatelab.explain.keep.keep_gate`:
MGU ``f``, GRU ``z``, LSTM ``f``) it picks the units whose value varies most over the text,
orders them by average-linkage hierarchical clustering (``scipy.cluster.hierarchy``) so units
that switch on the same words sit together, and lists the words each unit *writes on* (its
rounded value is on the rewriting side: ``f ≥ 0.5`` for MGU, ``z < 0.5`` for GRU). Per word,
``keep_share`` is the fraction of all units on the keeping side, and ``cluster_writes`` the
clusters whose mean value is on the writing side: a word no cluster writes on is *kept* (the
memory passes it by: the word is skipped), a word some cluster writes on is *written* by it.
Units left out are the ones that vary least: always keeping or always writing, they treat every
word alike.

The evidence is the classifier read after each word: the log-odds of the final verdict's class,
``s_t = ℓ_k(h_t) − log Σ_{j≠k} exp ℓ_j(h_t)`` with ``ℓ`` the head's logits, from ``s_0`` (the
head on the zero memory, before any word); ``s_t − s_{t−1}`` is what word ``t`` added.

>>> from gatelab.explain import explain_text, random_model
>>> m = random_model("gru", ["good", "bad", "not"], hidden=6)
>>> v = unit_view(m.cell, explain_text(m, "not bad , good"), k=4)
>>> v.gate, v.keep, len(v.units), v.values.shape
('z', 1, 4, torch.Size([4, 4]))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..cell import Cell
from ..errors import UsageError
from .gates import TextGates
from .keep import keep_gate


@dataclass
class UnitView:
    """The most varying units of one gate on one text.

    ``gate``: its label (``"z"``, ``"L2.z"``); ``keep``: the value at which it keeps the memory
    (``None`` when it is not a keep gate: then "writes" means "is open", value ≥ 0.5);
    ``units``: unit indices in clustered order; ``clusters``: cluster number per shown unit
    (1, 2, ... in order of appearance); ``values``: ``(len(units), T)``; ``writes``: unit ->
    the words (in text order, once each) where it writes; ``keep_share``: ``(T,)`` share of
    *all* the gate's units on the keeping side per word; ``cluster_writes``: per word, the
    clusters whose mean is on the writing side; ``hidden``: how many units there are.
    """

    gate: str
    keep: int | None
    tokens: list[str]
    units: list[int]
    clusters: list[int]
    values: torch.Tensor
    writes: dict[int, list[str]]
    keep_share: torch.Tensor
    hidden: int
    cluster_writes: list[list[int]]

    def writing(self, value: float) -> bool:
        """Is a unit at ``value`` on the writing (rewriting, or open) side?"""
        return value >= 0.5 if self.keep in (None, 0) else value < 0.5

    def kept(self) -> list[bool]:
        """Per word: does no cluster of varying units write on it (the word is skipped)?"""
        return [not c for c in self.cluster_writes]

    def reading(self, t: int) -> str:
        """``"kept"`` or ``"written by c1, c3"`` for word ``t``."""
        c = self.cluster_writes[t]
        return "kept" if not c else "written by " + ", ".join(f"c{i}" for i in c)

    def to_json(self) -> dict:
        return {"gate": self.gate, "keep_value": self.keep, "hidden": self.hidden,
                "units": self.units, "clusters": self.clusters,
                "values": [[round(float(v), 5) for v in row] for row in self.values],
                "writes_on": {str(u): w for u, w in self.writes.items()},
                "keep_share": [round(float(v), 5) for v in self.keep_share],
                "cluster_writes": self.cluster_writes, "kept": self.kept()}


def default_gate(cell: Cell, ex: TextGates) -> str:
    """The top layer's keep gate, else its first gate."""
    prefix = "" if ex.layers == 1 else f"L{ex.layers}."
    found = keep_gate(cell)
    if found is not None:
        return prefix + found[0]
    if not cell.gates:
        raise UsageError(f"{cell.name} has no gates to show")
    return prefix + next(iter(cell.gates))


def _cluster(values: torch.Tensor, n_clusters: int) -> tuple[list[int], list[int]]:
    """Leaf order and cluster numbers of the rows of ``values`` ``(k, T)``."""
    k = values.shape[0]
    if k < 3 or values.shape[1] < 2:
        return list(range(k)), [1] * k
    from scipy.cluster.hierarchy import fcluster, leaves_list, linkage

    data = values.double().numpy()
    z = linkage(data, method="average", metric="euclidean", optimal_ordering=True)
    order = [int(i) for i in leaves_list(z)]
    raw = fcluster(z, t=min(n_clusters, k), criterion="maxclust")
    renumber: dict[int, int] = {}
    for i in order:
        renumber.setdefault(int(raw[i]), len(renumber) + 1)
    return order, [renumber[int(raw[i])] for i in order]


def unit_view(cell: Cell, ex: TextGates, gate: str | None = None, k: int = 12,
              n_clusters: int = 3) -> UnitView:
    """The ``k`` most varying units of ``gate`` (default :func:`default_gate`) on ``ex``,
    clustered into at most ``n_clusters`` groups. Raises ``UsageError`` for an unknown gate."""
    label = gate or default_gate(cell, ex)
    if label not in ex.gates:
        raise UsageError(f"no gate {label!r}: the gates are {', '.join(ex.gates)}")
    g = ex.gates[label]  # (T, H)
    T, H = g.shape
    name = label.split(".")[-1]
    found = keep_gate(cell)
    keep = found[1] if found is not None and found[0] == name else None
    spread = g.std(dim=0) if T > 1 else g[0] * 0
    top = spread.argsort(descending=True)[: max(1, min(k, H))].tolist()
    order, clusters = _cluster(g[:, top].T, n_clusters)
    units = [top[i] for i in order]
    values = g[:, units].T.contiguous()
    view = UnitView(label, keep, list(ex.tokens), units, clusters, values, {},
                    torch.zeros(T), H, [])
    for row, u in enumerate(units):
        words: list[str] = []
        for t, tok in enumerate(ex.tokens):
            if view.writing(float(values[row, t])) and tok not in words:
                words.append(tok)
        view.writes[u] = words
    members = {c: [r for r, cr in enumerate(clusters) if cr == c] for c in sorted(set(clusters))}
    view.cluster_writes = [[c for c, rows in members.items()
                            if view.writing(float(values[rows, t].mean()))] for t in range(T)]
    on_keep = (g >= 0.5) if keep == 1 else (g < 0.5)
    view.keep_share = on_keep.float().mean(dim=1) if keep is not None else (g < 0.5).float(
    ).mean(dim=1)
    return view


@dataclass
class Evidence:
    """The verdict's log-odds after each word (``score``, ``(T,)``), from ``start`` (before any
    word); ``delta[t] = score[t] − score[t−1]``: what word ``t`` added. ``cls``: the class."""

    cls: str
    start: float
    score: torch.Tensor
    delta: torch.Tensor

    def to_json(self) -> dict:
        return {"class": self.cls, "start": round(self.start, 5),
                "score": [round(float(v), 5) for v in self.score],
                "delta": [round(float(v), 5) for v in self.delta]}


def log_odds(logits: torch.Tensor, k: int) -> torch.Tensor:
    """``ℓ_k − log Σ_{j≠k} exp ℓ_j`` along the last axis: ``log p_k/(1 − p_k)``."""
    others = torch.cat([logits[..., :k], logits[..., k + 1:]], dim=-1)
    return logits[..., k] - torch.logsumexp(others, dim=-1)


def evidence(ex: TextGates) -> Evidence | None:
    """How the final verdict's evidence accumulates word by word (``None`` when ``ex`` has no
    per-word logits or a single class)."""
    if ex.running_logits is None or len(ex.classes) < 2 or ex.start_logits is None:
        return None
    k = int(ex.probs.argmax())
    score = log_odds(ex.running_logits.double(), k)
    start = float(log_odds(ex.start_logits.double(), k))
    delta = torch.diff(score, prepend=torch.tensor([start], dtype=score.dtype))
    return Evidence(ex.classes[k], start, score.float(), delta.float())
