"""Character-level text: the running interpreter's own standard-library source
(Karpathy, Johnson & Fei-Fei 2015 trained on Linux kernel C; Python's ``Lib`` is our corpus).

Files are read in sorted order (tests, site-packages and generated files left out), so the
same interpreter always gives the same text.
"""

from __future__ import annotations

import functools
import os
import sysconfig
from pathlib import Path

from ..files import FileProblem, read_limited
from .errors import DataUnavailable

_SKIP = {"test", "tests", "site-packages", "dist-packages", "idlelib", "lib2to3", "__pycache__",
         "pydoc_data", "encodings"}


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


MAX_ENTRIES = 200_000  # names walked under a --data folder (the stdlib has about 10,000)
MAX_FILE_BYTES = 16 * 2**20  # one source file


@functools.lru_cache(maxsize=4)
def _source_files(root: Path) -> tuple[Path, ...]:
    """The ``*.py`` files under ``root``, sorted (cached: walking the stdlib takes seconds on a
    busy machine, and a study's process loads the text once per trial). A tree of more than
    :data:`MAX_ENTRIES` names is refused rather than walked for minutes."""
    found, seen = [], 0
    for folder, dirs, names in os.walk(root):
        seen += len(dirs) + len(names)
        if seen > MAX_ENTRIES:
            raise DataUnavailable(f"{root} holds more than {MAX_ENTRIES} files and folders: "
                                  "pass a smaller folder of .py files")
        rel = Path(folder).relative_to(root).parts
        if _SKIP.intersection(rel):
            dirs.clear()
            continue
        found.extend(Path(folder) / n for n in names if n.endswith(".py"))
    return tuple(sorted(found))


def load_stdlib_text(path: str | Path | None = None, max_chars: int = 2_000_000) -> str:
    """Up to ``max_chars`` characters of ``*.py`` source under ``path`` (default: the stdlib).

    Files are joined with a blank line; non-ASCII characters are kept (the vocabulary decides).
    """
    root = Path(path) if path is not None else stdlib_dir()
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = _source_files(root.resolve())
    else:
        raise DataUnavailable(f"no Python source at {root}: pass a folder of .py files (the "
                              "interpreter's standard library is normally found automatically)")
    parts: list[str] = []
    total = 0
    for f in files:
        try:  # regular files only, bounded: a FIFO or device named *.py is skipped
            chunk = read_limited(f, MAX_FILE_BYTES, "source file").decode("utf-8")
        except (FileProblem, UnicodeDecodeError):
            continue  # a few stdlib files are not UTF-8 on purpose (encoding tests)
        parts.append(chunk)
        total += len(chunk) + 2
        if total >= max_chars:
            break
    if not any(parts):
        raise DataUnavailable(f"no readable .py source under {root} (the files are missing, "
                              "empty or not UTF-8)")
    return "\n\n".join(parts)[:max_chars]
