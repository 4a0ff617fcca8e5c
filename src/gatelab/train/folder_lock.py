"""One writer per run folder.

A run holds an exclusive lock (``fcntl.flock`` on ``.gatelab.lock`` in its folder) for its whole
life, so a second ``gatelab train`` (or study) into the same folder is refused with one line
instead of mixing two runs' files; a folder that is not empty and holds no run (the user's own
``metrics.csv``, say) is refused before anything is written in it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

from .runs import CONFIG, RunFolderError

LOCK = ".gatelab.lock"  # held (flock) by the one process writing the folder; removed after


class RunFolderBusy(RunFolderError):
    """Another process holds the folder's lock: it is training (or resuming) a run there."""


# What gatelab itself may leave in a run folder before its config.json exists: the lock, a study's
# trial.json, and the temporary file of an atomic write killed half-way (files.atomic_write_bytes).
_OWN_LEFTOVERS = re.compile(r"\.gatelab\.lock|trial\.json|"
                            r"\.(config\.json|metrics\.csv|checkpoint\.pt|vocab\.json)\.tmp\d+")


def refuse_foreign_folder(folder: Path) -> None:
    """:class:`RunFolderError` when ``folder`` exists but is not a folder, or is a folder that is
    neither empty nor a gatelab run (no ``config.json``, and files gatelab does not write): a
    run would write its ``metrics.csv`` and ``checkpoint.pt`` over whatever is there."""
    folder = Path(folder)
    if not (folder.exists() or folder.is_symlink()):
        return
    if not folder.is_dir():
        raise RunFolderError(f"{folder} exists and is not a folder: choose another --out")
    try:
        names = sorted(os.listdir(folder))
    except OSError as e:
        raise RunFolderError(f"{folder}: cannot list the folder ({e.strerror or e})") from None
    if CONFIG in names:
        return
    foreign = [n for n in names if not _OWN_LEFTOVERS.fullmatch(n)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                          else "")
        raise RunFolderError(f"{folder} is not empty and holds no gatelab run (it holds "
                             f"{shown}): nothing was written; choose a new or empty --out")


def refuse_busy_folder(folder: Path) -> None:
    """:class:`RunFolderBusy` when another process holds ``folder``'s lock; reads only (a
    shared lock tried and dropped), so a refused command writes nothing."""
    try:
        fd = os.open(Path(folder) / LOCK, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return  # no lock file (or not one we can read): lock_run_folder decides
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        raise _busy(folder, os.read(fd, 32)) from None
    finally:
        os.close(fd)  # also drops the shared lock


def _busy(folder: Path, holder: bytes) -> RunFolderBusy:
    text = holder.decode("ascii", "replace").strip()
    pid = f" (pid {text})" if text.isdigit() else ""
    return RunFolderBusy(f"{folder} is being written by another gatelab process{pid}: wait for "
                         "it to finish, or choose another --out")


@contextlib.contextmanager
def lock_run_folder(folder: Path) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (made if missing; removed again if it is still
    empty at the end) until the block ends; raise :class:`RunFolderBusy` at once when another
    process holds it.

    The lock file is removed while still held, at the end. A process that opened it just before
    then locks a file that is no longer the folder's: the inode check below sees that and tries
    again on the new file, so two processes never both believe they hold the folder.
    """
    folder = Path(folder)
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(10):
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as e:
            raise RunFolderError(f"{path}: cannot open the run folder's lock "
                                 f"({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32)
            os.close(fd)
            raise _busy(folder, holder) from None
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise RunFolderBusy(f"{folder}: its lock keeps changing hands: another gatelab process "
                            "is using the folder")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield folder
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
        if made:  # a run that failed before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()
