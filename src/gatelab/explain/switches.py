"""Per-token switch settings: each token's gates rounded to 0/1, named by the analysis' kind.

Simplifications (2) and (3) of the article, applied to a real run: a gate's mean over units is
its one-dimensional value, and rounding it gives the switch position. The setting, e.g.
``{"f": 0}`` for MGU, is reduced by :func:`gatelab.analysis.reduce_setting`, whose kind names
what the cell does on that token: ``hold`` (``h' = h``: the word is skipped), ``rnn``
(``h' = tanh(W x + U h + b)``: a plain RNN step), ``feedforward`` (the past is dropped), ...
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ..analysis import kind_text, reduce_setting
from ..analysis.symbols import txt
from ..cell import Cell
from .gates import TextGates


@dataclass(frozen=True)
class Switch:
    """One token's setting in one layer.

    ``setting``: gate -> 0/1; ``agreement``: gate -> fraction of units whose own rounding agrees
    with the setting; ``kind``: the analysis' name of the reduced update (``"hold"``...), with
    the state named when the cell has several memory states (``"c: hold"``).
    """

    token: str
    setting: dict[str, int]
    agreement: dict[str, float]
    kind: str
    update: str = ""

    @property
    def label(self) -> str:
        return " ".join(f"{g}={v}" for g, v in self.setting.items())


@cache
def _mode_cached(cell: Cell, setting: tuple[tuple[str, int], ...]) -> tuple[str, str]:
    """The setting's kind in the analysis' names (``"hold"`` when every memory state agrees,
    else ``"c: hold, m: rnn"``) and its reduced update as text."""
    mode = reduce_setting(cell, dict(setting))
    update = "; ".join(f"{st}' = {txt(e)}" for st, e in mode.updates.items())
    return kind_text(mode, labels=False, merge=True) or "?", update


def setting_kind(cell: Cell, setting: dict[str, int]) -> str:
    """The analysis' kind for a 0/1 setting of the cell's gates (cached: 2^k settings at most)."""
    return _mode_cached(cell, tuple(sorted(setting.items())))[0]


def setting_update(cell: Cell, setting: dict[str, int]) -> str:
    """The reduced update of a 0/1 setting as text, e.g. ``"h' = h"`` for MGU at ``f = 0``."""
    return _mode_cached(cell, tuple(sorted(setting.items())))[1]


def switches(cell: Cell, explained: TextGates, layer_prefix: str = "") -> list[Switch]:
    """Each token's switch setting for one layer of ``explained`` (labels ``prefix + gate``)."""
    out = []
    for t, token in enumerate(explained.tokens):
        setting, agree = {}, {}
        for g in cell.gates:
            values = explained.gates[layer_prefix + g][t]
            on = int(values.mean() >= 0.5)
            setting[g] = on
            agree[g] = float(((values >= 0.5).int() == on).float().mean())
        kind, update = _mode_cached(cell, tuple(sorted(setting.items())))
        out.append(Switch(token, setting, agree, kind, update))
    return out


def layer_prefixes(cell: Cell, explained: TextGates) -> list[str]:
    """``[""]`` for a one-layer model, ``["L1.", "L2.", ...]`` otherwise."""
    n = explained.layers
    return [""] if n == 1 else [f"L{i + 1}." for i in range(n)]
