"""The one place gatelab keeps what it builds for a user: compiled kernels, parsed data sets, the
explain model, dependencies' scratch files. Nothing read back from it can run code that gatelab
did not build, and nothing in it is trusted because of where it lies.

Where: ``$GATELAB_CACHE_DIR`` (``$GATELAB_CACHE``, its older name, is honoured too), else
``$XDG_CACHE_HOME/gatelab``, else ``~/.cache/gatelab`` (:func:`cache_root`); one subfolder per
kind of artefact (:func:`cache_folder`: ``"kernels"``, ``"data"``, ``"models"``,
``"music21"``, ...).

Rules every reader and writer here keeps:

- **Private folders.** The root and each subfolder are created with mode ``0o700``. One that is
  owned by another user or writable by group/others is refused with one line
  (:class:`CacheError`), as ssh refuses such a ``~/.ssh``; so is a folder below a directory
  that another user owns or may write into (a sticky ``/tmp`` is fine). A symlinked root or
  subfolder is resolved and its target checked the same way.
- **Named by what produced them.** A compiled library is ``<key>.so`` with ``key`` the sha256
  of the cache format, the compiler (its path and ``--version``), the flags, the link options
  and the source (:func:`library_key`); data and models are named by digests of their inputs.
- **Verified at load.** A library's sha256 is recorded at build time (``<key>.sha256``); at load
  the file is read once, its digest checked against the record, and those verified bytes are
  what is loaded (copied to an anonymous ``memfd`` and ``dlopen``-ed from there, so swapping the
  file between the check and the load changes nothing). A mismatch rebuilds.
- **No path is ever read from a cache file.** Metadata (:func:`read_json`) holds counts, types,
  keys; the caller's ``validate`` checks it field by field; anything unreadable or invalid is
  treated as absent (the caller rebuilds).
- **No change to the process.** A library is compiled (``-c``) and then linked without
  fast-math flags, so no ``crtfastmath.o`` switches the whole process to flush-to-zero when it
  is loaded.
- **Atomic writes.** Everything is written in a private temporary file or folder inside the
  cache and renamed into place; builders of one library take a file lock, so a second process
  waits and then loads what the first built (it never compiles the same key twice).

API::

    cache_root() -> Path                          # checked root
    cache_folder(kind) -> Path                    # checked private subfolder
    compiler(cxx=False) -> str | None             # $CC/gcc/cc, or $CXX/g++/c++ (full path)
    library_key(source, flags, link=..., language="c") -> str
    compiled_library(source, flags, link=("-lm",), language="c", kind="kernels",
                     timeout=300) -> ctypes.CDLL  # built once, verified at every load
    load_library(key, kind="kernels") -> ctypes.CDLL | None   # only an already built, verified one
    read_json(kind, key, validate) -> T | None    # validated metadata, None when absent/invalid
    write_json(kind, key, obj) -> None            # atomic
    read_entry(kind, name, limit) -> bytes | None # a private regular file's bytes (bounded)
    write_entry(kind, name, data) -> None         # atomic
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .errors import GatelabError

try:
    import fcntl
except ImportError:  # not POSIX: builders are not serialised (each still loads its own build)
    fcntl = None

T = TypeVar("T")
FORMAT_VERSION = "gatelab-cache-2"
LIBRARY_LIMIT = 256 << 20  # a generated kernel library is far smaller: larger is not ours
JSON_LIMIT = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
_KIND = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_HEX = re.compile(r"[0-9a-f]{64}")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_LANGUAGES = {"c": ".c", "c++": ".cpp"}
_FAST_MATH = {"-ffast-math", "-Ofast", "-funsafe-math-optimizations"}  # not when linking


class CacheError(GatelabError):
    """A cache folder or file that gatelab will not use (the message names it and says why)."""


class CompileError(GatelabError, RuntimeError):
    """The compiler failed on generated source (the message holds its first lines)."""


# ---- folders -----------------------------------------------------------------------------------
def cache_root() -> Path:
    """The checked cache root (created, mode 0o700, when missing); see the module docstring."""
    env = os.environ.get("GATELAB_CACHE_DIR") or os.environ.get("GATELAB_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
        root = base / "gatelab"
    return _private_dir(Path(os.path.abspath(root)))


def cache_folder(kind: str) -> Path:
    """The checked private subfolder ``kind`` of :func:`cache_root` (created when missing)."""
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ValueError(f"cache kind {kind!r} is not a plain lower-case name")
    return _private_dir(cache_root() / kind)


def _private_dir(path: Path) -> Path:
    """``path`` created (0o700) when missing, then checked: ours, not writable by others, below
    directories nobody else can rename it in. Returns the resolved path."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise CacheError(f"cannot create the cache folder {path}: {e.strerror or e}; set "
                         "GATELAB_CACHE_DIR to a private folder of yours") from None
    real = Path(os.path.realpath(path))
    _check_chain(path, follow=False)
    _check_chain(real, follow=True)
    st = os.stat(real)
    if not stat.S_ISDIR(st.st_mode):
        raise CacheError(f"the cache folder {path} is not a directory")
    if st.st_uid != os.getuid():
        raise CacheError(f"the cache folder {path} is owned by uid {st.st_uid}, not by you "
                         f"(uid {os.getuid()}): refused; set GATELAB_CACHE_DIR to a folder of "
                         "yours")
    if st.st_mode & 0o022:
        raise CacheError(f"the cache folder {path} is writable by group or others (mode "
                         f"{stat.S_IMODE(st.st_mode):o}): refused; run chmod go-w {real}")
    return real


def _check_chain(path: Path, follow: bool) -> None:
    """Every existing ancestor of ``path`` (and ``path`` itself when it is a symlink) belongs to
    you or root, and a directory among them that others may write into has the sticky bit."""
    uid = os.getuid()
    for p in [path, *path.parents]:
        try:
            st = os.stat(p) if follow else os.lstat(p)
        except OSError:
            continue
        if p == path and not stat.S_ISLNK(st.st_mode):
            continue  # the folder itself is checked by the caller
        if st.st_uid not in (uid, 0):
            raise CacheError(f"the cache folder {path} lies in {p}, owned by uid {st.st_uid} "
                             "(another user could replace it): refused; set GATELAB_CACHE_DIR "
                             "to a folder of yours")
        if (stat.S_ISDIR(st.st_mode) and st.st_mode & 0o022
                and not st.st_mode & stat.S_ISVTX):
            raise CacheError(f"the cache folder {path} lies in {p}, writable by group or others "
                             f"without the sticky bit (mode {stat.S_IMODE(st.st_mode):o}): "
                             "refused; set GATELAB_CACHE_DIR to a private folder")


def _entry(kind: str, name: str) -> Path:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"cache entry name {name!r} is not a plain file name")
    return cache_folder(kind) / name


# ---- private files -----------------------------------------------------------------------------
def _read_private(path: Path, limit: int) -> bytes | None:
    """The bytes of ``path`` if it is a regular file of yours, not writable by others, at most
    ``limit`` bytes (never following a symlink); else None."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)  # a FIFO must not block
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022
                or st.st_size > limit):
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)
        return data if len(data) <= limit else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """``data`` into a private temporary file beside ``path``, renamed over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_entry(kind: str, name: str, limit: int) -> bytes | None:
    """The bytes of the cache file ``name`` in ``kind`` (None when absent, not a private regular
    file, or over ``limit`` bytes)."""
    return _read_private(_entry(kind, name), limit)


def write_entry(kind: str, name: str, data: bytes) -> None:
    """Store ``data`` as the cache file ``name`` in ``kind`` (atomically)."""
    _write_atomic(_entry(kind, name), data)


def read_json(kind: str, key: str, validate: Callable[[Any], T]) -> T | None:
    """The metadata stored by :func:`write_json` under ``key``, passed through ``validate``
    (which returns the checked value or raises ``ValueError``/``TypeError``/``KeyError``).
    None when absent, unreadable, not JSON, or refused by ``validate``: the caller rebuilds."""
    data = read_entry(kind, f"{key}.json", JSON_LIMIT)
    if data is None:
        return None
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
        return validate(obj)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
        return None


def _no_constant(name: str):
    raise ValueError(f"{name} in cached metadata")


def write_json(kind: str, key: str, obj: Any) -> None:
    """Store ``obj`` (plain JSON: no NaN/infinity) under ``key`` in ``kind`` (atomically)."""
    write_entry(kind, f"{key}.json", json.dumps(obj, allow_nan=False, sort_keys=True).encode())


@contextmanager
def locked(kind: str, name: str) -> Iterator[None]:
    """An exclusive lock between processes on ``name`` in ``kind`` (held while inside)."""
    path = _entry(kind, f"{name}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _NONBLOCK, 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# ---- compilers ---------------------------------------------------------------------------------
def compiler(cxx: bool = False) -> str | None:
    """The full path of the C compiler (``$CC``, else ``gcc``, else ``cc``) or, with ``cxx``,
    the C++ one (``$CXX``, ``g++``, ``c++``); None when there is none."""
    names = (os.environ.get("CXX"), "g++", "c++") if cxx else (os.environ.get("CC"), "gcc", "cc")
    for cand in names:
        found = shutil.which(cand) if cand else None
        if found:
            return found
    return None


_IDS: dict[tuple, str] = {}


def compiler_identity(cc: str) -> str:
    """``cc``'s path and ``--version`` output (cached per path, size and mtime)."""
    try:
        st = os.stat(cc)
        ident = (cc, st.st_size, st.st_mtime_ns)
    except OSError:
        ident = (cc, None, None)
    if ident not in _IDS:
        try:
            ver = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
            out = ver.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        _IDS[ident] = f"{cc}\n{out}"
    return _IDS[ident]


def _flags(flags: Sequence[str]) -> list[str]:
    out = [str(f) for f in flags]
    return out + [f for f in ("-shared", "-fPIC") if f not in out]


def library_key(source: str, flags: Sequence[str], *, link: Sequence[str] = ("-lm",),
                language: str = "c") -> str:
    """The sha256 naming the library :func:`compiled_library` builds from these arguments."""
    if language not in _LANGUAGES:
        raise ValueError(f"unknown language {language!r}; expected one of {sorted(_LANGUAGES)}")
    cc = compiler(cxx=language == "c++")
    if cc is None:
        raise CompileError(f"no {'C++' if language == 'c++' else 'C'} compiler found "
                           f"({'$CXX, g++ or c++' if language == 'c++' else '$CC, gcc or cc'})")
    parts = [FORMAT_VERSION, language, compiler_identity(cc), "\0".join(_flags(flags)),
             "\0".join(map(str, link)), source]
    return hashlib.sha256("\0\0".join(parts).encode()).hexdigest()


# ---- compiled libraries ------------------------------------------------------------------------
_LOADED: dict[tuple[str, str], ctypes.CDLL] = {}
_LOCK = threading.RLock()
_FDS: list[int] = []  # memfds of loaded libraries, kept open so no fd path is reused


def compiled_library(source: str, flags: Sequence[str], *, link: Sequence[str] = ("-lm",),
                     language: str = "c", kind: str = "kernels",
                     timeout: float = 300) -> ctypes.CDLL:
    """The shared library built from ``source`` by the ``language`` compiler with ``flags``
    (``-shared -fPIC`` added when absent) and ``link``: loaded from the cache when a verified
    copy is there, else compiled (once across processes) and recorded. Raises
    :class:`CompileError` with the compiler's first lines when it fails, :class:`CacheError`
    when the cache folder is refused."""
    key = library_key(source, flags, link=link, language=language)
    with _LOCK:
        if (kind, key) in _LOADED:
            return _LOADED[kind, key]
        lib = _load_verified(kind, key)
        if lib is None:
            with locked(kind, key):
                lib = _load_verified(kind, key)  # built by another process while we waited
                if lib is None:
                    data = _compile(source, flags, link, language, kind, timeout)
                    _publish(kind, key, language, source, data)
                    lib = _dlopen_bytes(data, key, kind)
        _LOADED[kind, key] = lib
        return lib


def _publish(kind: str, key: str, language: str, source: str, data: bytes) -> None:
    """Record the digest, then the library (the source beside them, for reading)."""
    try:
        write_entry(kind, f"{key}{_LANGUAGES[language]}", source.encode())
        write_entry(kind, f"{key}.sha256", hashlib.sha256(data).hexdigest().encode())
        write_entry(kind, f"{key}.so", data)
    except OSError as e:
        raise CacheError(f"cannot write to the cache folder {cache_folder(kind)}: "
                         f"{e.strerror or e}") from None


def load_library(key: str, kind: str = "kernels") -> ctypes.CDLL | None:
    """The library :func:`compiled_library` built under ``key`` (a :func:`library_key`), if it
    is in the cache and matches its recorded digest; None otherwise. Nothing is compiled."""
    if not isinstance(key, str) or not _HEX.fullmatch(key):
        return None
    with _LOCK:
        if (kind, key) not in _LOADED:
            lib = _load_verified(kind, key)
            if lib is None:
                return None
            _LOADED[kind, key] = lib
        return _LOADED[kind, key]


def _load_verified(kind: str, key: str) -> ctypes.CDLL | None:
    record = read_entry(kind, f"{key}.sha256", 256)
    if record is None:
        return None
    data = read_entry(kind, f"{key}.so", LIBRARY_LIMIT)
    if data is None or hashlib.sha256(data).hexdigest().encode() != record.strip():
        return None
    return _dlopen_bytes(data, key, kind)


def _compile(source: str, flags: Sequence[str], link: Sequence[str], language: str, kind: str,
             timeout: float) -> bytes:
    cc = compiler(cxx=language == "c++")
    src_name = "lib" + _LANGUAGES[language]
    tmp = tempfile.mkdtemp(dir=cache_folder(kind), prefix=".build-")
    try:
        Path(tmp, src_name).write_text(source, encoding="utf-8")
        # Compiled and linked in two runs: linking with fast-math flags adds crtfastmath.o,
        # whose constructor would switch the whole process to flush-to-zero when the library
        # is loaded (torch's numbers too).
        link_flags = [f for f in _flags(flags) if f not in _FAST_MATH]
        _run(cc, [*_flags(flags), "-c", "-o", "lib.o", src_name], tmp, timeout, language)
        _run(cc, [*link_flags, "-o", "lib.so", "lib.o", *map(str, link)], tmp, timeout, language)
        data = _read_private(Path(tmp, "lib.so"), LIBRARY_LIMIT)
        if data is None:
            raise CompileError(f"{cc} reported success but wrote no usable library")
        return data
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(cc: str, args: list[str], cwd: str, timeout: float, language: str) -> None:
    try:
        res = subprocess.run([cc, *args], cwd=cwd, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CompileError(f"{cc} took over {timeout:g} s on a generated {language} "
                           "library: stopped") from None
    except OSError as e:
        raise CompileError(f"cannot run {cc}: {e.strerror or e}") from None
    if res.returncode != 0:
        first = "\n".join((res.stderr or res.stdout).strip().splitlines()[:20])[:2000]
        raise CompileError(f"{cc} failed on a generated {language} library: {first}")


def _dlopen_bytes(data: bytes, key: str, kind: str) -> ctypes.CDLL:
    """Load exactly ``data``: from an anonymous memory file (Linux), else from a private
    temporary copy in the cache folder that is removed once loaded."""
    if hasattr(os, "memfd_create"):
        try:
            fd = os.memfd_create(f"gatelab-{key[:16]}", getattr(os, "MFD_CLOEXEC", 0))
        except OSError:
            fd = None
        if fd is not None:
            try:
                _write_all(fd, data)
                lib = ctypes.CDLL(f"/proc/self/fd/{fd}")
            except OSError:
                os.close(fd)
            else:
                _FDS.append(fd)  # the name /proc/self/fd/N must never be reused for another
                return lib
    fd, tmp = tempfile.mkstemp(dir=cache_folder(kind), prefix=".load-", suffix=".so")
    try:
        _write_all(fd, data)
        return ctypes.CDLL(tmp)
    finally:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
