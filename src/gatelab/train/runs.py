"""Run folders: ``config.json``, ``metrics.csv``, ``checkpoint.pt``, ``vocab.json`` (text tasks).

One writer per folder: see :mod:`gatelab.train.folder_lock`.

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
import math
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..cell import CellError, parse_cell
from ..data.text import Vocab
from ..errors import NotFound, UsageError
from ..files import FileProblem, atomic_write_bytes, atomic_write_text, read_limited
from .config import TrainConfig
from .models import SequenceModel
from .tasks import Task, make_task

CONFIG = "config.json"
METRICS = "metrics.csv"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"  # early stopping: the weights of the best validation metric so far
VOCAB = "vocab.json"
COLUMNS = ["step", "loss", "metric", "eval_loss", "grad_norm", "lr", "seconds", "steps_per_s"]
# Written only by runs that stop early (--patience): the validation metric of each row.
OPTIONAL_COLUMNS = ["valid_metric"]
MAX_CONFIG_BYTES = 1 << 24  # config.json, vocab.json: far more than any real run writes
__all__ = ["atomic_write_bytes", "atomic_write_text"]  # re-exported: the trainer writes with them


class RunFolderError(UsageError):
    """A run folder's file is missing, corrupt or does not fit the rest of the run; ``str()``
    names the file and what is wrong. Nothing in the folder is changed."""

    exit_code = 2


# What torch.load raises on a file that is not a complete checkpoint: a junk or truncated zip
# (RuntimeError), an empty file (EOFError), a half-written one (OSError: Errno 22), ...
_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError,
                TypeError, AttributeError, IndexError, zipfile.BadZipFile)


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
        with warnings.catch_warnings():  # torch warns about a foreign pickle protocol: the
            warnings.simplefilter("ignore")  # error below says all there is to say
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise RunFolderError(f"{path} holds objects other than tensors and plain data, so it is "
                             "not loaded (loading it could run code): "
                             f"{_unpickler_reason(e)}") from None
    except _LOAD_ERRORS as e:
        raise RunFolderError(f"{path} is not a readable gatelab checkpoint (empty, truncated or "
                             f"another kind of file): {_first_line(e)}") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise RunFolderError(f"{path} is not a gatelab checkpoint (no model weights in it)")
    return state


def check_resumable(state: dict[str, Any], path: Path) -> None:
    """Everything ``--resume`` reads from a checkpoint, of the right type (else
    :class:`RunFolderError` naming the file)."""
    kinds = {"optim": dict, "step": int, "rows": list, "seconds": (int, float), "rng": dict}
    for key, kind in kinds.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise RunFolderError(f"{path} cannot be resumed: its {key!r} entry is missing or of "
                                 "the wrong type")
    if state["step"] < 0 or not torch.is_tensor(state["rng"].get("torch")):
        raise RunFolderError(f"{path} cannot be resumed: its step or random state is invalid")
    for row in state["rows"]:  # the metrics so far: rewritten to metrics.csv and printed
        if not isinstance(row, dict) or not all(
                isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)
                for k in COLUMNS + [c for c in OPTIONAL_COLUMNS if c in row]):
            raise RunFolderError(f"{path} cannot be resumed: its metric rows are not rows of "
                                 f"numbers ({', '.join(COLUMNS)})")


def _unpickler_reason(e: BaseException) -> str:
    """What torch's weights-only unpickler refused ("unsupported GLOBAL posix.system ..."),
    without its opening advice to load the file with ``weights_only=False`` (which would run
    the code) or its closing pointer to the docs."""
    lines = [ln.strip() for ln in str(e).splitlines()[1:]
             if ln.strip() and not ln.startswith("Check the documentation")]
    text = " ".join(ln.split("WeightsUnpickler error:")[-1].strip() for ln in lines).strip()
    return text[:200] or "a pickle the weights-only reader refuses"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def refuse_odd_run_files(folder: Path) -> None:
    """:class:`RunFolderError` when one of the files gatelab writes in a run folder exists but
    is not a regular file (a folder, a device, a dangling link): reading it would fail or hang,
    and writing over it would lose whatever it is."""
    for name in (CONFIG, CHECKPOINT, BEST, METRICS, VOCAB):
        p = Path(folder) / name
        if (p.exists() or p.is_symlink()) and not p.is_file():
            raise RunFolderError(f"{p} is not a regular file; gatelab writes its run files "
                                 "itself: move it away or choose another --out")


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a run folder, checked: a JSON object whose settings are valid
    (:class:`RunFolderError` naming the file otherwise)."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise NotFound(f"{folder} is not a gatelab run folder (no {CONFIG}); make one with "
                       "`gatelab train`")
    try:
        data = json.loads(read_limited(path, MAX_CONFIG_BYTES, CONFIG).decode("utf-8"))
        # JSON escapes can spell lone surrogates, which no terminal or file can print
        json.dumps(data, ensure_ascii=False).encode("utf-8")
        cfg = TrainConfig.from_dict(data)
        for key in ("hidden", "layers", "embed", "dropout"):  # read as saved by load_run
            if data.get(key) != getattr(cfg, key):
                raise ValueError(f"its {key!r} entry is missing or invalid ({data.get(key)!r})")
        spec = data.get("model")
        if not isinstance(spec, dict) or not all(
                isinstance(spec.get(k), int) and not isinstance(spec.get(k), bool)
                and 0 <= spec[k] <= 10**7 for k in ("input_size", "vocab_size", "n_out")):
            raise ValueError("its 'model' entry is missing or has sizes of the wrong type")
        if not isinstance(spec.get("per_step"), bool) or not data.get("cell_text"):
            raise ValueError("its 'model.per_step' or 'cell_text' entry is missing")
        classes = data.get("classes", [])
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ValueError("its 'classes' entry is not a list of names")
        if classes and len(classes) != spec["n_out"]:
            raise ValueError(f"its 'classes' entry names {len(classes)} classes but the model "
                             f"has {spec['n_out']} outputs")
    except (FileProblem, UnicodeError, json.JSONDecodeError, ValueError, OverflowError) as e:
        raise RunFolderError(f"{path}: not a valid run config ({_first_line(e)})") from None
    except RecursionError:
        raise RunFolderError(f"{path}: not a valid run config (nested too deeply)") from None
    return data


def saved_cell(data: dict[str, Any], folder: Path):  # noqa: ANN201 - gatelab.Cell
    """The cell stored in a run's config (its ``cell_text``)."""
    try:
        return parse_cell(data["cell_text"], f"{Path(folder) / CONFIG}:cell_text",
                          default_name=str(data.get("cell", "cell")))
    except CellError as e:
        raise RunFolderError(f"{Path(folder) / CONFIG}: its cell_text is not a valid cell "
                             f"({e.problems[0]})") from None


def load_weights(module: torch.nn.Module | torch.optim.Optimizer, weights: dict, path: Path,
                 what: str = "model") -> None:
    """``module.load_state_dict(weights)``, or :class:`RunFolderError` when the checkpoint's
    tensors do not fit the model the config describes (wrong keys or shapes, a swapped
    ``cell_text``). An optimiser's state is checked entry by entry first
    (:func:`check_optimiser_state`)."""
    if isinstance(module, torch.optim.Optimizer):
        check_optimiser_state(module, weights, path)
    try:
        module.load_state_dict(weights)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
        raise RunFolderError(f"{path}: its {what} does not fit the run's {CONFIG} (another "
                             f"cell or other sizes): {_first_line(e)}") from None
    if not isinstance(module, torch.optim.Optimizer):
        # gatelab never saves non-finite weights (trainer.TrainingDiverged): a damaged file
        for name, p in module.state_dict().items():
            if p.is_floating_point() and not bool(torch.isfinite(p).all()):
                raise RunFolderError(f"{path}: its weight {name} holds NaN or inf, which "
                                     "gatelab never saves; the file was damaged")


_ADAM_BUFFERS = ("exp_avg", "exp_avg_sq")


def check_optimiser_state(optim: torch.optim.Optimizer, saved: Any, path: Path) -> None:
    """:class:`RunFolderError` unless ``saved`` is what the trainer's ``torch.optim.Adam``
    (``optim``, freshly made with the run's settings) writes: the same hyperparameters (the
    trainer never changes them), and per parameter a step count ``k ≥ 1`` and finite moment
    buffers shaped and typed like the parameter, the second one ``≥ 0``. Checked before
    ``load_state_dict``, which accepts much of this and lets ``step()`` fail or compute NaN."""
    def refuse(why: str) -> None:
        raise RunFolderError(f"{path}: its optimiser state {why}; the file was damaged or was "
                             "not written by gatelab")

    fresh = optim.state_dict()
    params = [p for group in optim.param_groups for p in group["params"]]
    if not isinstance(saved, dict) or set(saved) != {"state", "param_groups"}:
        refuse("is not a dict of 'state' and 'param_groups'")
    groups = saved["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(fresh["param_groups"]):
        refuse("has another number of parameter groups")
    for group, want in zip(groups, fresh["param_groups"], strict=True):
        if not isinstance(group, dict) or not set(group) <= set(want) or "params" not in group:
            refuse("has settings gatelab's Adam does not have")
        for key, value in group.items():
            if type(value) is not type(want[key]) or value != want[key]:
                refuse(f"has {key} = {str(value)[:60]}, where this run's Adam has "
                       f"{str(want[key])[:60]}")
    state = saved["state"]
    if not isinstance(state, dict) or not all(
            type(k) is int and 0 <= k < len(params) for k in state):
        refuse("is not keyed by the run's parameter numbers")
    for k, entry in state.items():
        p = params[k]
        if not isinstance(entry, dict) or set(entry) != {"step", *_ADAM_BUFFERS}:
            refuse(f"for parameter {k} does not hold exactly step, exp_avg and exp_avg_sq")
        step = entry["step"]
        if not (torch.is_tensor(step) and step.dim() == 0 and step.is_floating_point()
                and bool(torch.isfinite(step)) and 1 <= float(step) <= 2 ** 53
                and float(step) == int(step)):
            refuse(f"for parameter {k} has an invalid step count")
        for name in _ADAM_BUFFERS:
            v = entry[name]
            if not (torch.is_tensor(v) and v.shape == p.shape and v.dtype == p.dtype
                    and bool(torch.isfinite(v).all())):
                refuse(f"for parameter {k} has a {name} that is not a finite tensor of the "
                       f"parameter's shape {tuple(p.shape)} and type")
        if bool((entry["exp_avg_sq"] < 0).any()):
            refuse(f"for parameter {k} has a negative exp_avg_sq")


def load_vocab(folder: Path) -> Vocab | None:
    """The run's saved vocabulary (text tasks), else None."""
    path = folder / VOCAB
    if not path.is_file():
        return None
    try:
        data = json.loads(read_limited(path, MAX_CONFIG_BYTES, VOCAB).decode("utf-8"))
        vocab = Vocab.from_json(data)
        if not all(isinstance(t, str) for t in vocab.itos) or len(vocab) < 2:
            raise ValueError("its tokens are not a list of strings")
        return vocab
    except (FileProblem, UnicodeDecodeError, ValueError, KeyError, TypeError,
            AttributeError) as e:
        raise RunFolderError(f"{path}: not a valid vocabulary ({_first_line(e)})") from None


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    extra = [c for c in OPTIONAL_COLUMNS if any(c in r for r in rows)]
    w = csv.DictWriter(buf, fieldnames=COLUMNS + extra, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in COLUMNS + extra})
    atomic_write_text(path, buf.getvalue())


MAX_METRICS_BYTES = 1 << 26  # 64 MiB: a million evaluation rows


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of ``metrics.csv`` with numbers as floats (``step`` as int).

    :class:`RunFolderError` naming the file when it is not such a table: a column gatelab does
    not write, a value that is not a number, a ``step`` that is not a whole number of at least 1
    (``inf``, ``1e400``, ``-3``, ``2.5``) or steps out of order.
    """
    path = Path(path)
    if not path.is_file():
        return []
    try:
        text = read_limited(path, MAX_METRICS_BYTES, METRICS).decode("utf-8")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        known = set(COLUMNS) | set(OPTIONAL_COLUMNS)
        if reader.fieldnames is not None and not set(reader.fieldnames) <= known:
            raise ValueError(f"unexpected columns {sorted(set(reader.fieldnames) - known)}")
        rows: list[dict[str, float]] = []
        for r in reader:
            if None in r:
                raise ValueError(f"row {len(rows) + 1} has more fields than the header")
            row: dict[str, float] = {k: float(v) for k, v in r.items() if v not in ("", None)}
            step = row.get("step")
            if step is None or not math.isfinite(step) or step != int(step) or step < 1:
                raise ValueError(f"row {len(rows) + 1}: step {r.get('step')!r} is not a whole "
                                 "number of at least 1")
            row["step"] = int(step)
            if rows and row["step"] <= rows[-1]["step"]:
                raise ValueError(f"row {len(rows) + 1}: step {row['step']} does not follow step "
                                 f"{rows[-1]['step']}")
            rows.append(row)
    except (FileProblem, UnicodeDecodeError, ValueError, csv.Error) as e:
        raise RunFolderError(f"{path}: not a valid metrics file ({_first_line(e)})") from None
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
    """Load a run folder written by :func:`gatelab.train.train`.

    :class:`RunFolderError` naming the file when the folder has no checkpoint yet (its model
    would be random weights, not the run's) or its files do not fit each other.
    """
    path = Path(path)
    config = read_config(path)
    vocab = load_vocab(path)
    spec = config["model"]
    if (vocab is None) != (spec["vocab_size"] == 0) or (
            vocab is not None and len(vocab) != spec["vocab_size"]):
        have = "none" if vocab is None else f"{len(vocab)} tokens"
        raise RunFolderError(f"{path / VOCAB}: the run's vocabulary ({have}) does not fit its "
                             f"embedding of {spec['vocab_size']} tokens in {CONFIG}")
    cell = saved_cell(config, path)
    model = SequenceModel(cell, input_size=spec["input_size"], vocab_size=spec["vocab_size"],
                          embed=config["embed"], hidden=config["hidden"],
                          layers=config["layers"], n_out=spec["n_out"],
                          per_step=spec["per_step"], dropout=config["dropout"])
    ck = path / checkpoint
    if not ck.is_file():
        raise RunFolderError(f"{ck} is missing: the run in {path} has no trained weights yet "
                             "(it stopped before its first checkpoint); finish it with "
                             "`gatelab train ... --resume`")
    load_weights(model, load_checkpoint(ck)["model"], ck)
    model.eval()
    metrics = read_metrics(path / METRICS)
    return Run(path, config, metrics, model, vocab)
