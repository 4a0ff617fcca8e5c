"""Fashion-MNIST (Xiao et al. 2017) from the Debian package's IDX files.

Images become sequences two ways: **row-wise**, 28 steps of 28 pixels, and **pixel-wise**,
784 steps of one pixel, optionally in a fixed random order (the "permuted" variant, which spreads
the dependencies over the whole sequence).
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError
from ..files import FileProblem, read_limited
from .errors import DataUnavailable

MAX_IDX_BYTES = 1 << 28  # 256 MB; Fashion-MNIST's largest file is 47 MB

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_INSTALL = ("install the Debian package with `sudo apt-get install dataset-fashion-mnist` "
            f"(it puts the IDX files in {DEFAULT_DIR}), or pass the folder that holds them")


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped): big-endian header, then unsigned bytes."""
    try:  # a regular file of bounded size: a device or FIFO given as --data cannot hang it
        data = read_limited(path, MAX_IDX_BYTES, "IDX file")
        if path.suffix == ".gz":
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
                data = f.read(MAX_IDX_BYTES + 1)
    except (FileProblem, OSError, EOFError, zlib.error) as e:
        raise DataUnavailable(f"cannot read {path}: {e}") from None
    if len(data) > MAX_IDX_BYTES:
        raise DataUnavailable(f"{path} unpacks to more than {MAX_IDX_BYTES} bytes")
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataUnavailable(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    if ndim == 0 or len(data) < 4 + 4 * ndim:
        raise DataUnavailable(f"{path} is truncated: its header announces {ndim} dimensions "
                              f"but the file has only {len(data)} bytes")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(dims):  # exact: numpy's product of large dimensions wraps
        raise DataUnavailable(f"{path} is truncated: expected {dims}, found {body.size} bytes")
    return body.reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataUnavailable(f"Fashion-MNIST file {stem}[.gz] not found in {folder}: {_INSTALL}")


def load_fashion_mnist(split: str = "train", path: str | Path | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(n, 28, 28)`` uint8 and labels ``(n,)`` int64 of the ``train`` or ``test`` split.

    ``path`` is a folder with the four IDX files (default: the Debian package's folder).
    """
    if split not in _FILES:
        raise UsageError(f"split must be 'train' or 'test', not {split!r}")
    folder = Path(path) if path is not None else DEFAULT_DIR
    if not folder.is_dir():
        raise DataUnavailable(f"Fashion-MNIST folder {folder} does not exist: {_INSTALL}")
    images = read_idx(_find(folder, _FILES[split][0]))
    labels = read_idx(_find(folder, _FILES[split][1]))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) \
            or images.shape[1:] != (28, 28) or len(labels) == 0:
        raise DataUnavailable(f"Fashion-MNIST files in {folder} have shapes {images.shape} and "
                              f"{labels.shape}: expected (n, 28, 28) images and (n,) labels, "
                              "n > 0")
    if int(labels.max()) >= len(CLASSES):
        raise DataUnavailable(f"Fashion-MNIST labels in {folder} go up to {int(labels.max())}: "
                              f"they must lie in 0..{len(CLASSES) - 1}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def to_sequences(images: torch.Tensor, mode: str = "row", permute_seed: int | None = None
                 ) -> torch.Tensor:
    """Turn images ``(n, 28, 28)`` into float sequences in [0, 1].

    ``mode="row"``: ``(n, 28, 28)``, one row per step. ``mode="pixel"``: ``(n, 784, 1)``, one
    pixel per step, in a fixed random order when ``permute_seed`` is given (the same seed gives the
    same permutation everywhere).
    """
    x = images.float() / 255.0
    n = x.shape[0]
    if mode == "row":
        return x
    if mode != "pixel":
        raise UsageError(f"mode must be 'row' or 'pixel', not {mode!r}")
    x = x.reshape(n, -1, 1)
    if permute_seed is not None:
        perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(permute_seed))
        x = x[:, perm]
    return x
