"""Run folders: ``config.json``, ``metrics.csv``, ``checkpoint.pt``, ``vocab.json`` (text tasks).

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so a
run killed at any moment leaves the previous complete version, never half a file. The checkpoint
holds the model, the optimiser, the step, the metric rows so far and every RNG state, which is
what makes ``--resume`` land on exactly the numbers of an uninterrupted run.

A checkpoint holds only tensors and plain data (dicts, lists, tuples, str, int, float, bool,
None; torch's RNG states are byte tensors), so it is read with ``torch.load(weights_only=True)``:
loading a checkpoint, even one from someone else, never runs code.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..cell import parse_cell
from ..data.text import Vocab
from ..errors import NotFound, UsageError
from .config import TrainConfig
from .models import SequenceModel
from .tasks import Task, make_task

CONFIG = "config.json"
METRICS = "metrics.csv"
CHECKPOINT = "checkpoint.pt"
VOCAB = "vocab.json"
COLUMNS = ["step", "loss", "metric", "eval_loss", "grad_norm", "lr", "seconds", "steps_per_s"]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state``: tensors and plain data only (see the module docstring)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``: tensors and plain data only, no code runs.

    Raises ``ValueError`` when the file holds anything else (it was not written by gatelab, or
    was tampered with).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UsageError(f"{path} holds objects other than tensors and plain data, so it is not "
                         f"loaded (loading it could run code): {str(e).splitlines()[0]}") from None


def load_vocab(folder: Path) -> Vocab | None:
    """The run's saved vocabulary (text tasks), else None."""
    return Vocab.load(folder / VOCAB) if (folder / VOCAB).is_file() else None


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in COLUMNS})
    atomic_write_text(path, buf.getvalue())


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of ``metrics.csv`` with numbers as floats (``step`` as int)."""
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row: dict[str, float] = {k: float(v) for k, v in r.items() if v not in ("", None)}
            row["step"] = int(row["step"])
            rows.append(row)
    return rows


def capture_rng() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # per GPU that both the saved run and this machine have (a resume may move machines)
        for i, s in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)


@dataclass
class Run:
    """A trained run, loaded: ``model`` (eval mode, on the CPU), ``config`` (the dict of
    ``config.json``), ``metrics`` (rows of ``metrics.csv``), ``vocab`` (text tasks, else None)."""

    path: Path
    config: dict[str, Any]
    metrics: list[dict[str, float]]
    model: SequenceModel
    vocab: Vocab | None

    @property
    def cell(self):  # noqa: ANN201 - gatelab.Cell
        return self.model.rnn.cell

    @property
    def classes(self) -> list[str]:
        return list(self.config.get("classes") or [])

    def encode_text(self, text: str) -> tuple[list[str], torch.Tensor]:
        """Tokens and ids ``(len,)`` of ``text``, exactly as the run's training text was read."""
        if self.vocab is None:
            raise UsageError(f"run {self.path} was trained on {self.config['task']!r}, "
                             "which has no text vocabulary")
        return self.vocab.encode(text)

    @torch.no_grad()
    def predict_text(self, text: str) -> torch.Tensor:
        """Class probabilities ``(n_classes,)`` for a text-classification run."""
        _, ids = self.encode_text(text)
        ids = ids[: self.config.get("max_len", len(ids))] if len(ids) else ids.new_zeros(1)
        return torch.softmax(self.model(ids[None]), dim=-1)[0]

    def train_config(self) -> TrainConfig:
        """The run's :class:`TrainConfig` (from ``config.json``)."""
        return TrainConfig.from_dict(self.config)

    def task(self) -> Task:
        """The run's task, rebuilt as training saw it: the same data, split, evaluation set and
        (text tasks) the saved vocabulary. May raise ``DataUnavailable`` for data-set tasks."""
        return make_task(self.train_config(), self.vocab)

    def layer_params(self) -> dict[tuple[int, int], dict[str, torch.Tensor]]:
        """The recurrent layer's parameters under the cell's own names, for each
        ``(layer, direction)``: detached float32 copies, ready for
        :func:`gatelab.cell.evaluate.step`."""
        rnn = self.model.rnn
        return {(layer, d): {k: v.detach().float().clone()
                             for k, v in rnn.cell_params(layer, d).items()}
                for layer in range(rnn.num_layers) for d in range(rnn.num_directions)}


def load_run(path: str | Path, checkpoint: str = CHECKPOINT) -> Run:
    """Load a run folder written by :func:`gatelab.train.train`."""
    path = Path(path)
    cfg_file = path / CONFIG
    if not cfg_file.is_file():
        raise NotFound(f"{path} is not a gatelab run folder (no {CONFIG})")
    config = json.loads(cfg_file.read_text(encoding="utf-8"))
    vocab = load_vocab(path)
    spec = config["model"]
    cell = parse_cell(config["cell_text"], config["cell"])
    model = SequenceModel(cell, input_size=spec["input_size"], vocab_size=spec["vocab_size"],
                          embed=config["embed"], hidden=config["hidden"],
                          layers=config["layers"], n_out=spec["n_out"],
                          per_step=spec["per_step"], dropout=config["dropout"])
    ck = path / checkpoint
    if ck.is_file():
        model.load_state_dict(load_checkpoint(ck)["model"])
    model.eval()
    return Run(path, config, read_metrics(path / METRICS), model, vocab)
