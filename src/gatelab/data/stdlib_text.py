"""Character-level text: the running interpreter's own standard-library source
(Karpathy, Johnson & Fei-Fei 2015 trained on Linux kernel C; Python's ``Lib`` is our corpus).

Files are read in sorted order (tests, site-packages and generated files left out), so the
same interpreter always gives the same text.
"""

from __future__ import annotations

import functools
import sysconfig
from pathlib import Path

from .errors import DataUnavailable

_SKIP = {"test", "tests", "site-packages", "dist-packages", "idlelib", "lib2to3", "__pycache__",
         "pydoc_data", "encodings"}


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


@functools.lru_cache(maxsize=4)
def _source_files(root: Path) -> tuple[Path, ...]:
    """The ``*.py`` files under ``root``, sorted (cached: walking the stdlib takes seconds on a
    busy machine, and a study's process loads the text once per trial)."""
    return tuple(sorted(p for p in root.rglob("*.py")
                        if not _SKIP.intersection(p.relative_to(root).parts[:-1])))


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
        try:
            chunk = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # a few stdlib files are not UTF-8 on purpose (encoding tests)
        parts.append(chunk)
        total += len(chunk) + 2
        if total >= max_chars:
            break
    if not parts:
        raise DataUnavailable(f"no readable .py files under {root}")
    return "\n\n".join(parts)[:max_chars]
