"""Tasks: data, loss and metric for each name ``gatelab train`` accepts.

A task hands out the training batch of any step as a pure function of ``(seed, step)``: the
generated tasks draw it from a generator seeded with both, the finite sets take a slice of a
per-epoch permutation seeded with ``(seed, epoch)``. So a resumed run sees exactly the batches an
uninterrupted one would, and DDP ranks split the same global batch.

Model outputs: ``(N, n_out)`` for tasks read at the last step, ``(N, T, n_out)`` for per-step ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data import (
    Vocab,
    adding_problem,
    copy_memory,
    load_drug_reviews,
    load_fashion_mnist,
    load_stdlib_text,
    load_tweets,
    temporal_order,
    to_sequences,
)
from ..data.errors import DataUnavailable
from ..data.jsb import KEYS, load_jsb
from ..data.synthetic import ADDING_TRIVIAL_MSE, COPY_CLASSES, COPY_LENGTH, ORDER_SYMBOLS
from ..data.text import pad_batch
from ..errors import UsageError
from .config import TrainConfig

EVAL_SEED = 20_161_116  # one fixed evaluation set for every run of a generated task
VALID_SEED = 20_161_117  # its validation set (early stopping): other sequences, same law


@dataclass
class Batch:
    """``x``: ``(N, T, I)`` float or ``(N, T)`` token ids; ``y``: targets; ``lengths``: ``(N,)``
    true lengths of right-padded sequences (None when all are full)."""

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        lengths = None if self.lengths is None else self.lengths.to(device)
        return Batch(self.x.to(device), self.y.to(device), lengths)

    def shard(self, rank: int, world: int) -> Batch:
        if world == 1:
            return self
        lengths = None if self.lengths is None else self.lengths[rank::world]
        return Batch(self.x[rank::world], self.y[rank::world], lengths)


def _gen(*keys: int) -> torch.Generator:
    seed = 0
    for k in keys:
        seed = (seed * 1_000_003 + int(k) + 1) % (2**63)
    return torch.Generator().manual_seed(seed)


class Task:
    """Base: subclasses fill the data and say how outputs are read."""

    name = ""
    per_step = False  # output at every step (True) or at the last step of each sequence
    metric = "accuracy"
    higher_is_better = True
    baseline: float | None = None  # the trivial level of the metric (None: not meaningful)
    default_threshold: float | None = None
    input_size = 0  # float features per step; 0 when the input is token ids
    vocab: Vocab | None = None
    n_out = 1
    n_train = 0

    def train_batch(self, step: int, batch: int, seed: int) -> Batch:
        raise NotImplementedError

    def eval_batches(self, batch: int) -> Iterator[Batch]:
        raise NotImplementedError

    def valid_batches(self, batch: int) -> Iterator[Batch]:
        """The validation split (early stopping selects on it; the test split stays unseen)."""
        raise UsageError(f"task {self.name!r} has no validation split, so it cannot stop "
                         "early: leave out --patience")

    def loss(self, out: torch.Tensor, b: Batch) -> torch.Tensor:
        if self.per_step:
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), b.y.reshape(-1))
        return F.cross_entropy(out, b.y)

    def metric_sum(self, out: torch.Tensor, b: Batch) -> tuple[float, int]:
        """Sum of the metric over the batch and how many items it covers."""
        return float((out.argmax(-1) == b.y).sum()), b.y.numel()

    def finish_metric(self, total: float, count: int) -> float:
        return total / max(count, 1)


class _Generated(Task):
    """Fresh examples every step, a fixed evaluation set."""

    make = staticmethod(adding_problem)

    def __init__(self, cfg: TrainConfig) -> None:
        if cfg.steps is None:
            raise UsageError(f"task {cfg.task!r} draws fresh sequences every step, so it has no "
                             "epochs: give --steps instead of --epochs")
        self.T = cfg.T
        self.n_eval = cfg.eval_size or 500
        self.n_train = cfg.train_size or 10**9  # unlimited: epochs make no sense here
        self._eval = self.make(self.n_eval, self.T, generator=_gen(EVAL_SEED, self.T))

    def train_batch(self, step: int, batch: int, seed: int) -> Batch:
        x, y = self.make(batch, self.T, generator=_gen(seed, step))
        return Batch(x, y)

    def eval_batches(self, batch: int) -> Iterator[Batch]:
        yield from _slices(*self._eval, batch)

    def valid_batches(self, batch: int) -> Iterator[Batch]:
        # as many sequences as the test set, drawn with another seed (built on first use)
        if getattr(self, "_valid", None) is None:
            self._valid = self.make(self.n_eval, self.T, generator=_gen(VALID_SEED, self.T))
        yield from _slices(*self._valid, batch)


def _slices(x: torch.Tensor, y: torch.Tensor, batch: int) -> Iterator[Batch]:
    for i in range(0, len(x), batch):
        yield Batch(x[i:i + batch], y[i:i + batch])


class AddingTask(_Generated):
    name = "adding"
    metric = "mse"
    higher_is_better = False
    baseline = ADDING_TRIVIAL_MSE
    default_threshold = 0.01
    input_size = 2

    def loss(self, out: torch.Tensor, b: Batch) -> torch.Tensor:
        return F.mse_loss(out.squeeze(-1), b.y)

    def metric_sum(self, out: torch.Tensor, b: Batch) -> tuple[float, int]:
        return float(((out.squeeze(-1) - b.y) ** 2).sum()), b.y.numel()


class CopyTask(_Generated):
    name = "copy"
    per_step = True
    metric = "recall_accuracy"
    baseline = 1.0 / 8
    default_threshold = 0.9
    input_size = COPY_CLASSES
    n_out = COPY_CLASSES
    make = staticmethod(copy_memory)

    def metric_sum(self, out: torch.Tensor, b: Batch) -> tuple[float, int]:
        hit = out[:, -COPY_LENGTH:].argmax(-1) == b.y[:, -COPY_LENGTH:]
        return float(hit.sum()), hit.numel()


class OrderTask(_Generated):
    name = "order"
    baseline = 0.25
    default_threshold = 0.95
    input_size = len(ORDER_SYMBOLS)
    n_out = 4
    make = staticmethod(temporal_order)


class FashionTask(Task):
    """Fashion-MNIST, row-wise (28 × 28), pixel-wise (784 × 1) or permuted pixel-wise."""

    baseline = 0.1
    default_threshold = 0.85
    n_out = 10

    def __init__(self, cfg: TrainConfig) -> None:
        self.name = cfg.task
        self.mode = "row" if cfg.task == "fmnist-row" else "pixel"
        self.perm_seed = 0 if cfg.task == "fmnist-permuted" else None
        self.input_size = 28 if self.mode == "row" else 1
        xs, ys = load_fashion_mnist("train", cfg.data_path)
        keep = subset(len(ys), cfg.train_size, 1)
        self.images, self.labels = xs[keep], ys[keep]  # uint8: converted a batch at a time
        xt, yt = load_fashion_mnist("test", cfg.data_path)
        keep = subset(len(yt), cfg.eval_size or 2000, 2)
        self.test_images, self.test_labels = xt[keep], yt[keep]
        self.n_train = len(self.labels)

    def _seq(self, images: torch.Tensor) -> torch.Tensor:
        return to_sequences(images, self.mode, self.perm_seed)

    def train_batch(self, step: int, batch: int, seed: int) -> Batch:
        idx = epoch_slice(self.n_train, batch, step, seed)
        return Batch(self._seq(self.images[idx]), self.labels[idx])

    def eval_batches(self, batch: int) -> Iterator[Batch]:
        for i in range(0, len(self.test_labels), batch):
            yield Batch(self._seq(self.test_images[i:i + batch]), self.test_labels[i:i + batch])


def subset(n_total: int, n: int | None, key: int) -> torch.Tensor:
    """A fixed random choice of ``n`` of ``n_total`` indices (all, in order, when ``n`` is None):
    files are often sorted by label, so "the first n" would be one class."""
    if n is None or n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=_gen(EVAL_SEED, key))[:n].sort().values


def epoch_slice(n: int, batch: int, step: int, seed: int) -> torch.Tensor:
    """Indices of the examples used at ``step``: consecutive slices of a per-epoch shuffle."""
    per_epoch = max(1, n // batch)
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=_gen(seed, epoch, 7))
    return perm[k * batch:(k + 1) * batch] if n >= batch else perm


class TextClassTask(Task):
    """Word-level sentiment (drug reviews or tweets), read at each text's last token."""

    default_threshold = 0.8

    def __init__(self, cfg: TrainConfig, vocab: Vocab | None = None) -> None:
        self.name = cfg.task
        load = load_drug_reviews if cfg.task == "drugs" else load_tweets
        train, test = load("train", cfg.data_path), load("test", cfg.data_path)
        for split, data in (("train", train), ("test", test)):
            if len(data) == 0:
                raise DataUnavailable(f"{data.source or cfg.task}: no labelled texts in the "
                                      f"{split} split")
        keep = subset(len(train), cfg.train_size, 3).tolist()
        train.texts, train.labels = [train.texts[i] for i in keep], [train.labels[i] for i in keep]
        keep = subset(len(test), cfg.eval_size, 4).tolist()
        test.texts, test.labels = [test.texts[i] for i in keep], [test.labels[i] for i in keep]
        self.classes = train.classes
        self.n_out = len(self.classes)
        self.vocab = vocab or Vocab.build(train.texts, min_count=2, max_size=20000)
        self.max_len = cfg.max_len
        self.train_ids = [self.vocab.encode(t)[1] for t in train.texts]
        self.train_y = torch.tensor(train.labels)
        self.test_ids = [self.vocab.encode(t)[1] for t in test.texts]
        self.test_y = torch.tensor(test.labels)
        self.n_train = len(self.train_ids)
        counts = torch.bincount(self.test_y, minlength=self.n_out)
        self.baseline = float(counts.max()) / max(1, len(self.test_y))  # majority class

    def _batch(self, ids: list[torch.Tensor], y: torch.Tensor) -> Batch:
        x, lengths = pad_batch(ids, self.max_len)
        return Batch(x, y, lengths)

    def train_batch(self, step: int, batch: int, seed: int) -> Batch:
        idx = epoch_slice(self.n_train, batch, step, seed)
        return self._batch([self.train_ids[i] for i in idx], self.train_y[idx])

    def eval_batches(self, batch: int) -> Iterator[Batch]:
        for i in range(0, len(self.test_ids), batch):
            yield self._batch(self.test_ids[i:i + batch], self.test_y[i:i + batch])


class CharLMTask(Task):
    """Character-level language model of the standard library's source; metric: bits/char.

    ``train_size`` counts characters here (default 1,000,000), 90% of them for training. The
    held-out 10% gives the test windows first, then as many validation windows as fit (at most
    as many as the test has).
    """

    name = "stdlib"
    per_step = True
    metric = "bpc"
    higher_is_better = False
    default_threshold = 2.5

    def __init__(self, cfg: TrainConfig, vocab: Vocab | None = None) -> None:
        text = load_stdlib_text(cfg.data_path, max_chars=cfg.train_size or 1_000_000)
        cut = int(len(text) * 0.9)
        self.vocab = vocab or Vocab.build([text[:cut]], level="char", min_count=5)
        self.n_out = len(self.vocab)
        self.baseline = math.log2(len(self.vocab))  # uniform guessing
        self.T = cfg.T
        ids = self.vocab.encode(text)[1]
        self.train_ids, held = ids[:cut], ids[cut:]
        n_eval = (cfg.eval_size or 200) * (self.T + 1)
        self.test_ids = held[:n_eval]
        self.valid_ids = held[n_eval:2 * n_eval]
        if len(self.train_ids) < self.T + 2 or len(self.test_ids) < self.T + 1:
            raise DataUnavailable(f"the text has {len(ids)} characters: too short for -T "
                                  f"{self.T} (it needs about {10 * (self.T + 2)}, 90% for "
                                  "training and 10% for testing)")
        self.n_train = max(1, len(self.train_ids) // self.T)

    def train_batch(self, step: int, batch: int, seed: int) -> Batch:
        starts = torch.randint(0, len(self.train_ids) - self.T - 1, (batch,),
                               generator=_gen(seed, step))
        rows = torch.stack([self.train_ids[s:s + self.T + 1] for s in starts.tolist()])
        return Batch(rows[:, :-1], rows[:, 1:])

    def eval_batches(self, batch: int) -> Iterator[Batch]:
        yield from self._windows(self.test_ids, batch)

    def valid_batches(self, batch: int) -> Iterator[Batch]:
        if len(self.valid_ids) < self.T + 1:
            raise UsageError(f"the held-out text has no room for a validation window after the "
                             f"test's {len(self.test_ids)} characters: give a larger "
                             "--train-size or a smaller --eval-size")
        yield from self._windows(self.valid_ids, batch)

    def _windows(self, ids: torch.Tensor, batch: int) -> Iterator[Batch]:
        n = (len(ids) - 1) // self.T
        rows = [ids[i * self.T:(i + 1) * self.T + 1] for i in range(n)]
        for i in range(0, n, batch):
            chunk = torch.stack(rows[i:i + batch])
            yield Batch(chunk[:, :-1], chunk[:, 1:])

    def metric_sum(self, out: torch.Tensor, b: Batch) -> tuple[float, int]:
        ce = F.cross_entropy(out.reshape(-1, out.shape[-1]), b.y.reshape(-1), reduction="sum")
        return float(ce) / math.log(2), b.y.numel()


class JSBTask(Task):
    """JSB Chorales (:mod:`gatelab.data.jsb`): predict the next quarter-note frame of 88 keys.

    Input ``x_t`` is frame ``t``, target frame ``t + 1``; outputs are 88 independent Bernoulli
    logits. Metric: the negative log-likelihood per time step in nats (summed over the 88 keys,
    averaged over the predicted frames of the test chorales), as Boulanger-Lewandowski et al.
    (2012) and Greff et al. (2017) report it. ``train_size``/``eval_size`` count chorales.
    Training sequences are windows of at most ``max_len`` frames (a random start per chorale,
    drawn from ``(seed, step)``; the default 300 keeps whole chorales); evaluation always reads
    whole test chorales. Early stopping reads the ``valid`` split of :mod:`gatelab.data.jsb`
    (every tenth chorale by file name, another tenth being the test). This is not
    Boulanger-Lewandowski et al.'s split (a fixed list of 382 chorales, 229 train / 76 valid /
    77 test): music21's 408 files split 80/10/10 by name, so the test chorales differ and
    published numbers compare only approximately.
    """

    name = "jsb"
    per_step = True
    metric = "nll"
    higher_is_better = False
    default_threshold = 9.0
    input_size = KEYS
    n_out = KEYS

    def __init__(self, cfg: TrainConfig) -> None:
        train = load_jsb("train", cfg.data_path)
        test = load_jsb("test", cfg.data_path)
        self.train_rolls = [train[i] for i in subset(len(train), cfg.train_size, 5).tolist()]
        self.test_rolls = [test[i] for i in subset(len(test), cfg.eval_size, 6).tolist()]
        self.eval_size, self.data_path = cfg.eval_size, cfg.data_path
        self.n_train = len(self.train_rolls)
        self.window = cfg.max_len + 1  # frames per training sequence (inputs + next targets)
        # The trivial level: each key on with its training frequency, whatever came before.
        frames = torch.cat(self.train_rolls)
        p = frames.mean(0).clamp(1e-4, 1 - 1e-4)
        test = torch.cat([r[1:] for r in self.test_rolls])
        nll = -(test * p.log() + (1 - test) * (1 - p).log()).sum(-1).mean()
        self.baseline = round(float(nll), 4)

    @staticmethod
    def _batch(rolls: list[torch.Tensor]) -> Batch:
        lengths = torch.tensor([len(r) - 1 for r in rolls])
        T = int(lengths.max())
        x = torch.zeros(len(rolls), T, KEYS)
        y = torch.zeros(len(rolls), T, KEYS)
        for k, r in enumerate(rolls):
            x[k, :len(r) - 1] = r[:-1]
            y[k, :len(r) - 1] = r[1:]
        return Batch(x, y, lengths)

    def train_batch(self, step: int, batch: int, seed: int) -> Batch:
        idx = epoch_slice(self.n_train, batch, step, seed)
        rolls = [self.train_rolls[i] for i in idx.tolist()]
        g = _gen(seed, step, 11)
        starts = [int(torch.randint(0, len(r) - self.window + 1, (1,), generator=g))
                  if len(r) > self.window else 0 for r in rolls]
        return self._batch([r[a:a + self.window] for r, a in zip(rolls, starts, strict=True)])

    def eval_batches(self, batch: int) -> Iterator[Batch]:
        for i in range(0, len(self.test_rolls), batch):
            yield self._batch(self.test_rolls[i:i + batch])

    def valid_batches(self, batch: int) -> Iterator[Batch]:
        if getattr(self, "valid_rolls", None) is None:  # read on first use
            valid = load_jsb("valid", self.data_path)
            self.valid_rolls = [valid[i] for i in
                                subset(len(valid), self.eval_size, 7).tolist()]
        for i in range(0, len(self.valid_rolls), batch):
            yield self._batch(self.valid_rolls[i:i + batch])

    @staticmethod
    def _nll(out: torch.Tensor, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed NLL over the real (unpadded) frames and their number."""
        T = out.shape[1]
        mask = torch.arange(T, device=out.device)[None, :] < b.lengths[:, None]
        bce = F.binary_cross_entropy_with_logits(out, b.y, reduction="none").sum(-1)
        return (bce * mask).sum(), mask.sum()

    def loss(self, out: torch.Tensor, b: Batch) -> torch.Tensor:
        total, n = self._nll(out, b)
        return total / n.clamp(min=1)

    def metric_sum(self, out: torch.Tensor, b: Batch) -> tuple[float, int]:
        total, n = self._nll(out, b)
        return float(total), int(n)


def make_task(cfg: TrainConfig, vocab: Vocab | None = None) -> Task:
    """The task named by ``cfg.task``; ``vocab`` reuses a saved vocabulary (resume, load_run)."""
    if cfg.task == "adding":
        return AddingTask(cfg)
    if cfg.task == "copy":
        return CopyTask(cfg)
    if cfg.task == "order":
        return OrderTask(cfg)
    if cfg.task.startswith("fmnist"):
        return FashionTask(cfg)
    if cfg.task in ("drugs", "tweets"):
        return TextClassTask(cfg, vocab)
    if cfg.task == "stdlib":
        return CharLMTask(cfg, vocab)
    if cfg.task == "jsb":
        return JSBTask(cfg)
    raise UsageError(f"unknown task {cfg.task!r}")
