"""Reading and writing files safely: the one place that decides what gatelab reads and where it
may write.

- :func:`read_limited` reads at most ``limit + 1`` bytes from a *regular* file: a device
  (``/dev/zero``), a FIFO or a socket is refused before any read, so a hostile path can neither
  hang a command nor fill the memory (a ``.cell`` symlink to ``/dev/urandom`` is a device once
  followed).
- :func:`open_zip` and :func:`read_member` read an archive the same way: the archive itself
  through :func:`read_limited`, at most ``MAX_ZIP_ENTRIES`` members, and each member's declared
  *and* actual decompressed size checked while it is read, so a zip bomb stops at the limit.
- :func:`safe_name` turns any text (a cell's name, a task) into one harmless folder-name part.
- :func:`inside` joins a parent folder and a name and refuses a result that would lie outside
  the parent (``..``, absolute names, links): every command that writes derives its paths with
  it.
- :func:`atomic_write_bytes` writes through a temporary file in the same folder, and removes
  that file if the write fails (a full disk leaves no ``.tmp`` behind).

>>> safe_name("../../etc/passwd")
'etc-passwd'
>>> inside(Path("runs"), "adding-lstm-h64-s0")
PosixPath('runs/adding-lstm-h64-s0')
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import stat
import zipfile
import zlib
from pathlib import Path

from .errors import UsageError


class FileProblem(UsageError):
    """A file gatelab was asked to read or write cannot be used: ``str()`` names the path and
    what is wrong (one line)."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_limited(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``; :class:`FileProblem` when it is not a regular
    file, cannot be read, or holds more than ``limit`` bytes (at most ``limit + 1`` are read)."""
    p = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise FileProblem(f"{p}: cannot read {what} ({_reason(e)})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileProblem(f"{p}: cannot read {what}: it is {_kind(st.st_mode)}, not a "
                              "regular file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise FileProblem(f"{p}: cannot read {what} ({_reason(e)})") from None
    finally:
        os.close(fd)
    if size > limit:
        raise FileProblem(f"{p}: {what} is too large (more than the limit of {limit} bytes)")
    return b"".join(chunks)


MAX_ZIP_ENTRIES = 1000


def open_zip(path: str | Path, limit: int, what: str = "archive") -> zipfile.ZipFile:
    """The zip archive ``path`` (a regular file of at most ``limit`` bytes, read whole), with
    at most :data:`MAX_ZIP_ENTRIES` members; :class:`FileProblem` otherwise."""
    data = read_limited(path, limit, what)
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, NotImplementedError) as e:
        raise FileProblem(f"{path}: not a readable zip {what} ({e})") from None
    if len(z.infolist()) > MAX_ZIP_ENTRIES:
        raise FileProblem(f"{path}: the {what} holds {len(z.infolist())} entries, more than "
                          f"{MAX_ZIP_ENTRIES}")
    return z


def read_member(z: zipfile.ZipFile, name: str | zipfile.ZipInfo, limit: int,
                where: str = "archive") -> bytes:
    """The decompressed bytes of member ``name`` of ``z``: refused (:class:`FileProblem`) when
    its declared size or the bytes it really unpacks to exceed ``limit`` (at most
    ``limit + 1`` are decompressed), when it is missing, encrypted or corrupt."""
    try:
        info = name if isinstance(name, zipfile.ZipInfo) else z.getinfo(name)
    except KeyError:
        raise FileProblem(f"{where}: no member {name!r}") from None
    if info.file_size > limit:
        raise FileProblem(f"{where}:{info.filename} unpacks to {info.file_size} bytes, more than "
                          f"the limit of {limit}")
    try:
        with z.open(info) as f:
            data = f.read(limit + 1)
    except (zipfile.BadZipFile, zlib.error, RuntimeError, ValueError, EOFError, OSError,
            NotImplementedError) as e:
        raise FileProblem(f"{where}:{info.filename}: cannot unpack ({e})") from None
    if len(data) > limit:
        raise FileProblem(f"{where}:{info.filename} unpacks to more than the limit of {limit} "
                          "bytes")
    return data


def _reason(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "a loop of symbolic links"
    return e.strerror or str(e)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str, max_chars: int = 64) -> str:
    """``text`` as one file-name part: letters, digits, ``_ . -`` only, no leading dots or
    dashes, at most ``max_chars`` characters, never empty (``"cell"``)."""
    name = _UNSAFE.sub("-", text).strip("-")
    name = re.sub(r"\.{2,}", ".", name).lstrip(".-")[:max_chars].rstrip(".-")
    return name or "cell"


def inside(parent: str | Path, *parts: str) -> Path:
    """``parent / part / ...``, refused (:class:`FileProblem`) unless it lies inside ``parent``
    once ``..`` and symbolic links are resolved."""
    base = Path(parent)
    target = base.joinpath(*parts)
    try:
        root, real = base.resolve(), target.resolve()
    except (OSError, RuntimeError) as e:
        raise FileProblem(f"{target}: cannot resolve the path ({e})") from None
    if real == root or root not in real.parents:
        raise FileProblem(f"{target} would lie outside {base}: refusing to write there")
    return target


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once: a temporary file in the same folder, flushed to
    disk, then renamed over ``path``. A failed write removes the temporary file and leaves the
    previous ``path`` untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
