"""Word tokenisation and vocabularies for the text sets, saved with a run (``vocab.json``) so a
trained model reads new text exactly as it read its training text.

Tokens are lower-cased words (letters, digits, inner apostrophes: ``don't``) and single
punctuation marks; HTML entities such as ``&#039;`` (common in the drug reviews) are decoded first.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UsageError

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]")

PAD = "<pad>"
UNK = "<unk>"


def tokenize(text: str) -> list[str]:
    """``"I&#039;ve been GREAT!"`` -> ``["i've", "been", "great", "!"]``."""
    return _TOKEN.findall(html.unescape(text).lower())


@dataclass
class TextDataset:
    """Labelled texts: ``labels[i]`` indexes ``classes``."""

    texts: list[str]
    labels: list[int]
    classes: tuple[str, ...]
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Vocab:
    """Token <-> id. Id 0 is padding, id 1 stands for every unknown token.

    ``level`` is ``"word"`` (``tokenize``) or ``"char"`` (every character is a token).
    """

    itos: list[str]
    level: str = "word"
    stoi: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Iterable[str], *, level: str = "word", min_count: int = 1,
              max_size: int | None = None) -> Vocab:
        """The most frequent tokens of ``texts`` (ties broken alphabetically, so it is
        deterministic), those seen at least ``min_count`` times, at most ``max_size`` in all."""
        counts: Counter[str] = Counter()
        for t in texts:
            counts.update(cls._split(t, level))
        ranked = sorted((tok for tok, c in counts.items() if c >= min_count),
                        key=lambda tok: (-counts[tok], tok))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - 2)]
        return cls([PAD, UNK, *ranked], level)

    @staticmethod
    def _split(text: str, level: str) -> list[str]:
        if level == "word":
            return tokenize(text)
        if level == "char":
            return list(text)
        raise UsageError(f"vocabulary level must be 'word' or 'char', not {level!r}")

    def __len__(self) -> int:
        return len(self.itos)

    def tokens(self, text: str) -> list[str]:
        """The tokens of ``text`` as this vocabulary splits it."""
        return self._split(text, self.level)

    def encode(self, text: str) -> tuple[list[str], torch.Tensor]:
        """``(tokens, ids)``: the tokens and their ids, shape ``(len(tokens),)`` int64."""
        toks = self.tokens(text)
        ids = torch.tensor([self.stoi.get(t, 1) for t in toks], dtype=torch.long)
        return toks, ids

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def to_json(self) -> dict:
        return {"level": self.level, "itos": self.itos}

    @classmethod
    def from_json(cls, data: dict) -> Vocab:
        return cls(list(data["itos"]), data.get("level", "word"))

    def save(self, path: Path) -> None:
        from ..files import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_json(), ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def pad_batch(seqs: Sequence[torch.Tensor], max_len: int | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id sequences with 0 into ``(n, L)``; also return the lengths ``(n,)``.

    Sequences longer than ``max_len`` keep their first ``max_len`` tokens; empty ones get a single
    padding token so every length is at least 1.
    """
    cut = [s[:max_len] if max_len else s for s in seqs]
    lengths = torch.tensor([max(1, len(s)) for s in cut], dtype=torch.long)
    out = torch.zeros(len(cut), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(cut):
        out[i, : len(s)] = s
    return out, lengths
