"""Generated long-range tasks (any length ``T``, batch-first, nothing to download).

* **adding problem** (Hochreiter & Schmidhuber 1997; Le et al. 2015): channel 0 holds uniform
  numbers in [0, 1), channel 1 marks exactly two steps, one in each half; the target is the sum
  of the two marked numbers. Always predicting 1 gives MSE = Var(u1 + u2) = 2/12 ≈ 0.167, the
  "trivial" level a model that cannot remember stays at.
* **copy memory** (Arjovsky et al. 2016): ten symbols from {1..8}, ``T - 1`` blanks, a delimiter (9)
  and ten more blanks; at every step the target is blank (0) except for the last ten, which must
  repeat the first ten symbols. Predicting blanks then uniformly random symbols gives the
  baseline cross-entropy ``10 log(8) / (T + 20)``.
* **temporal order** (Hochreiter & Schmidhuber 1997, task 6a): random distractors a–d, with two
  relevant symbols (X or Y) at a random step in [T/10, 2T/10) and in [5T/10, 6T/10); the class
  is the order XX, XY, YX or YY (chance accuracy 0.25).

Every function takes an optional ``torch.Generator`` so a seed gives the same data anywhere.
"""

from __future__ import annotations

import math

import torch

from ..errors import UsageError

COPY_SYMBOLS = 8  # data symbols 1..8; 0 is blank, 9 the delimiter
COPY_LENGTH = 10  # how many symbols to remember
COPY_CLASSES = COPY_SYMBOLS + 2

ORDER_SYMBOLS = ("a", "b", "c", "d", "X", "Y")  # one-hot channels of the temporal-order input
ORDER_CLASSES = ("XX", "XY", "YX", "YY")

ADDING_TRIVIAL_MSE = 1.0 / 6.0


def _check(n: int, T: int, minimum: int) -> None:
    if n < 1:
        raise UsageError(f"need at least one sequence (n={n})")
    if T < minimum:
        raise UsageError(f"sequence length T={T} is too short: the task needs T >= {minimum}")


def adding_problem(n: int, T: int, *, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` adding-problem sequences of length ``T``.

    Returns ``x`` of shape ``(n, T, 2)`` float32 (value, marker) and ``y`` of shape ``(n,)``
    float32 with ``y = Σ_t x[:, t, 0] · x[:, t, 1]``.
    """
    _check(n, T, 2)
    values = torch.rand(n, T, generator=generator)
    half = T // 2
    first = torch.randint(0, half, (n,), generator=generator)
    second = torch.randint(half, T, (n,), generator=generator)
    marks = torch.zeros(n, T)
    rows = torch.arange(n)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    x = torch.stack([values, marks], dim=-1)
    y = (values * marks).sum(dim=1)
    return x, y


def copy_memory(n: int, T: int, *, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` copy-memory sequences: ten symbols, ``T - 1`` blanks, the delimiter, ten blanks.

    Returns ``x`` of shape ``(n, T + 20, 10)`` float32 (one-hot of the symbol ids) and ``y`` of
    shape ``(n, T + 20)`` int64 (the symbol id wanted at each step).
    """
    _check(n, T, 1)
    L = COPY_LENGTH
    total = T + 2 * L
    ids = torch.zeros(n, total, dtype=torch.long)
    data = torch.randint(1, COPY_SYMBOLS + 1, (n, L), generator=generator)
    ids[:, :L] = data
    ids[:, L + T - 1] = COPY_SYMBOLS + 1  # the delimiter: "start writing now"
    y = torch.zeros(n, total, dtype=torch.long)
    y[:, -L:] = data
    x = torch.nn.functional.one_hot(ids, COPY_CLASSES).float()
    return x, y


def copy_memory_baseline(T: int) -> float:
    """Cross-entropy per step of the memoryless strategy (blanks, then random symbols)."""
    return COPY_LENGTH * math.log(COPY_SYMBOLS) / (T + 2 * COPY_LENGTH)


def temporal_order(n: int, T: int, *, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` temporal-order sequences of length ``T``.

    Returns ``x`` of shape ``(n, T, 6)`` float32 (one-hot over a, b, c, d, X, Y) and ``y`` of
    shape ``(n,)`` int64 in 0..3 (XX, XY, YX, YY).
    """
    _check(n, T, 10)
    ids = torch.randint(0, 4, (n, T), generator=generator)  # distractors a..d
    lo1, hi1 = T // 10, max(T // 10 + 1, 2 * T // 10)
    lo2, hi2 = 5 * T // 10, max(5 * T // 10 + 1, 6 * T // 10)
    t1 = torch.randint(lo1, hi1, (n,), generator=generator)
    t2 = torch.randint(lo2, hi2, (n,), generator=generator)
    s1 = torch.randint(0, 2, (n,), generator=generator)  # 0 = X, 1 = Y
    s2 = torch.randint(0, 2, (n,), generator=generator)
    rows = torch.arange(n)
    ids[rows, t1] = 4 + s1
    ids[rows, t2] = 4 + s2
    x = torch.nn.functional.one_hot(ids, len(ORDER_SYMBOLS)).float()
    y = 2 * s1 + s2
    return x, y
