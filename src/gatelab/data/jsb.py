"""JSB Chorales: Bach's four-part chorales as piano rolls, from the corpus PyPI's ``music21`` ships.

The polyphonic-music task of Boulanger-Lewandowski et al. (2012), used by Greff et al. (2017):

- **Source**: every ``bwv*.mxl`` file of ``music21.corpus.getComposer("bach")`` (408 files in
  music21 10.x), or the ``.mxl``/``.xml`` files of a folder given as ``path``.
- **Piano roll**: one frame per quarter note. Frame ``t`` holds the keys sounding at quarter-note
  offset ``t`` of the score (all parts together, repeats not expanded), over the 88 piano keys
  (MIDI 21–108, column ``k`` is MIDI ``21 + k``); notes shorter than a quarter that do not
  sound on a beat are dropped, as in the quarter-note quantisation of the classic set.
- **Split** (fixed, by chorale): the files sorted by name; the chorale at sorted position ``i``
  goes to ``valid`` if ``i % 10 == 8``, to ``test`` if ``i % 10 == 9``, else to ``train``
  (80/10/10).
- **Cache**: the first parse (about two minutes) is stored as ``jsb-v2-<digest>.npz`` in the
  ``data`` folder of gatelab's private cache (:mod:`gatelab.cache`), ``<digest>`` a hash of the
  files' names and contents; it is read back without pickles and checked field by field (a
  damaged or foreign file is parsed again and replaced).
- **music21's own caches**: music21 would load pickled scores from its scratch folder (by
  default ``$TMPDIR/music21``, which every user may write). Scores are parsed from their source
  (``forceSource``, no pickle written or read), and music21's scratch folder is pointed at the
  ``music21`` folder of gatelab's private cache.

>>> roll_from_notes([(0.0, 2.0, [60, 64]), (1.5, 0.5, [67])], length=3)[:, [39, 43, 46]].tolist()
[[1, 1, 0], [1, 1, 0], [0, 0, 0]]
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from .. import cache
from ..files import FileProblem, open_zip, read_limited, read_member
from .errors import DataUnavailable

KEYS = 88
LOWEST_MIDI = 21  # A0, the lowest piano key
CACHE_VERSION = 2
CACHE_LIMIT = 1 << 30  # bytes of a cached parse read back (the corpus's is a few MB)
SPLITS = ("train", "valid", "test")
# A chorale is tens of kilobytes: these bound a hostile --data folder before music21 reads it.
MAX_CHORALES = 5000
MAX_CHORALE_BYTES = 8 * 2**20  # a file, and what a .mxl unpacks to in all
INSTALL = ("JSB Chorales are read from the music21 corpus, and music21 is not installed (the "
           "'music' extra): pip install 'gatelab[music]' (it ships the Bach chorales; nothing "
           "is downloaded)")


def split_of(index: int) -> str:
    """The split of the chorale at sorted position ``index`` (see the module docstring)."""
    r = index % 10
    return "valid" if r == 8 else "test" if r == 9 else "train"


def roll_from_notes(notes: Iterable[tuple[float, float, Sequence[int]]],
                    length: int | None = None) -> np.ndarray:
    """``(T, 88)`` uint8 piano roll from ``(offset, quarter_length, midi_pitches)`` triples.

    Frame ``t`` is on for a key when a note of that key sounds at offset ``t``
    (``offset <= t < offset + quarter_length``); pitches off the piano are dropped.
    """
    notes = [(float(o), float(q), list(p)) for o, q, p in notes if q > 0]
    end = max((o + q for o, q, _ in notes), default=0.0)
    T = length if length is not None else int(np.ceil(end))
    roll = np.zeros((T, KEYS), dtype=np.uint8)
    for off, ql, pitches in notes:
        first, last = int(np.ceil(off - 1e-9)), int(np.ceil(off + ql - 1e-9))  # beats in [o, o+q)
        cols = [m - LOWEST_MIDI for m in pitches if 0 <= m - LOWEST_MIDI < KEYS]
        if cols and first < min(last, T):
            roll[first:min(last, T), cols] = 1
    return roll


def _music21():
    """music21, its scratch folder (where it keeps pickles) set to gatelab's private one for this
    process only (nothing is written to the user's music21 settings)."""
    try:
        import music21
        from music21 import environment
    except ImportError:
        raise DataUnavailable(INSTALL) from None
    folder = cache.cache_folder("music21")
    env = environment.Environment()
    env["directoryScratch"] = str(folder)
    if Path(env.getRootTempDir()) != folder:  # music21 escapes &, < and > in the value
        raise DataUnavailable(f"music21 cannot keep its scratch files in {folder} (a path with "
                              "&, < or >): set GATELAB_CACHE_DIR to a simpler path")
    return music21


def _corpus_files() -> list[Path]:
    corpus = _music21().corpus
    files = [Path(p) for p in corpus.getComposer("bach")
             if Path(p).name.startswith("bwv") and Path(p).suffix == ".mxl"]
    if not files:
        raise DataUnavailable("music21 is installed but its corpus has no Bach chorales "
                              "(bwv*.mxl): reinstall music21 with pip install music21")
    return sorted(files, key=lambda p: p.name)


def parse_chorale(path: Path) -> np.ndarray:
    """One chorale file as a ``(T, 88)`` piano roll (music21 parses it)."""
    music21 = _music21()
    try:  # from the source: never a pickle music21 finds in its scratch folder
        score = music21.converter.parse(str(path), forceSource=True, storePickle=False)
    except Exception as e:  # music21 raises many kinds for a broken file
        raise DataUnavailable(f"cannot read the chorale {path}: {e}") from None
    notes = []
    for n in score.flatten().notes:  # notes and chords; offsets are from the score's start
        notes.append((float(n.offset), float(n.quarterLength), [p.midi for p in n.pitches]))
    return roll_from_notes(notes)


def _files(path: str | Path | None) -> list[Path]:
    if path is None:
        return _corpus_files()
    folder = Path(path)
    if not folder.is_dir():
        raise DataUnavailable(f"{folder} is not a folder of .mxl/.xml chorale files")
    files = []
    for p in folder.iterdir():
        if p.suffix in (".mxl", ".xml", ".musicxml"):
            files.append(p)
            if len(files) > MAX_CHORALES:
                raise DataUnavailable(f"{folder} holds more than {MAX_CHORALES} chorale files")
    if not files:
        raise DataUnavailable(f"{folder} holds no .mxl/.xml chorale files")
    for p in files:
        check_chorale_file(p)
    return sorted(files, key=lambda p: p.name)


def check_chorale_file(path: Path) -> None:
    """Refuse (:class:`DataUnavailable`) a chorale file that is not a regular file of at most
    :data:`MAX_CHORALE_BYTES`, or a ``.mxl`` archive with too many members or members that
    unpack (declared or really) to more than :data:`MAX_CHORALE_BYTES` in all, before music21
    is given the path."""
    try:
        if path.suffix != ".mxl":
            read_limited(path, MAX_CHORALE_BYTES, "chorale file")
            return
        with open_zip(path, MAX_CHORALE_BYTES, "chorale archive") as z:
            left = MAX_CHORALE_BYTES
            for info in z.infolist():
                left -= len(read_member(z, info, left, str(path)))
    except FileProblem as e:
        raise DataUnavailable(f"cannot read the chorale {e}") from None


def _cache_name(files: list[Path]) -> str:
    """The cache file of a parse of ``files``: a hash of their names and contents."""
    key = hashlib.sha256(f"jsb-v{CACHE_VERSION}".encode())
    for p in files:
        key.update(f"\0{p.name}\0".encode())
        if not p.is_file():  # a FIFO or device would block or never end
            raise DataUnavailable(f"the chorale {p} is not a regular file")
        try:
            key.update(hashlib.sha256(p.read_bytes()).digest())
        except OSError as e:
            raise DataUnavailable(f"cannot read the chorale {p}: {e.strerror or e}") from None
    return f"jsb-v{CACHE_VERSION}-{key.hexdigest()[:32]}.npz"


def _read_cache(name: str, files: list[Path]) -> list[np.ndarray] | None:
    """The rolls stored under ``name``, if the file is a parse of exactly ``files``: plain arrays
    (no pickles), field by field; None (parse again) for anything else."""
    data = cache.read_entry("data", name, CACHE_LIMIT)
    if data is None:
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if set(z.files) != {"names", "frames", "bounds"}:
                return None
            names, frames, bounds = z["names"], z["frames"], z["bounds"]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
    if (names.dtype.kind != "U" or names.shape != (len(files),)
            or names.tolist() != [p.name for p in files]
            or frames.dtype != np.uint8 or frames.ndim != 2 or frames.shape[1] != KEYS
            or frames.max(initial=0) > 1
            or bounds.dtype.kind not in "iu" or bounds.shape != (len(files) + 1,)
            or bounds[0] != 0 or bounds[-1] != len(frames) or (np.diff(bounds) < 0).any()):
        return None
    return [frames[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]


def _write_cache(name: str, rolls: list[np.ndarray], names: list[str]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, names=np.array(names, dtype=str),
                        frames=np.concatenate(rolls) if rolls else np.zeros((0, KEYS), np.uint8),
                        bounds=np.cumsum([0] + [len(r) for r in rolls]).astype(np.int64))
    cache.write_entry("data", name, buf.getvalue())  # atomic: never half a cache


def _parse_all(files: list[Path], limit: int | None, use_cache: bool
               ) -> tuple[list[str], list[np.ndarray]]:
    if limit is not None:  # a few chorales (tests): parsed, never cached
        files = files[:limit]
        use_cache = False
    names = [p.name for p in files]
    name = _cache_name(files) if use_cache else None
    if name is not None:
        rolls = _read_cache(name, files)
        if rolls is not None:
            return names, rolls
    rolls = [parse_chorale(p) for p in files]
    if name is not None:
        _write_cache(name, rolls, names)
    return names, rolls


def load_jsb(split: str = "train", path: str | Path | None = None, limit: int | None = None,
             use_cache: bool = True) -> list[torch.Tensor]:
    """The chorales of one split as float tensors ``(T_k, 88)`` of 0/1 (lengths vary).

    ``path``: a folder of chorale files instead of music21's corpus; ``limit``: parse only the
    first ``limit`` files in name order (then the split is taken among those, no cache).
    Raises :class:`DataUnavailable` when music21 (or the folder) is missing.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown JSB split {split!r}: choose one of {', '.join(SPLITS)}")
    names, rolls = _parse_all(_files(path), limit, use_cache)
    out = [torch.from_numpy(r.astype(np.float32)) for i, r in enumerate(rolls)
           if split_of(i) == split and len(r) >= 2]
    if not out:
        raise DataUnavailable(f"no JSB chorale falls in the {split!r} split "
                              f"({len(names)} files read): give more files")
    return out
