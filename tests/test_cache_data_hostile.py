"""Parsed data and the explain model in the cache (issue 30, items 1, 3, 6, 7): music21 never
loads a pickle from a shared folder, the parsed-JSB cache is keyed by the files' contents and
read without pickles, and the explain model counts as built only with its recorded digests."""

from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from gatelab import cache
from gatelab.data import jsb

music21 = pytest.importorskip("music21")


class _Plant:
    """Unpickling this leaves a marker file: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    r = tmp_path / "cache"
    monkeypatch.setenv("GATELAB_CACHE_DIR", str(r))
    return r


@pytest.fixture(scope="module")
def chorales() -> list[Path]:
    """Three chorales of the corpus, as the music21 package ships them."""
    files = sorted((p for p in music21.corpus.getComposer("bach") if p.name.startswith("bwv")
                    and p.suffix == ".mxl"), key=lambda p: p.name)[:3]
    if len(files) < 3:
        pytest.skip("music21's corpus has no Bach chorales")
    return files


def _as_xml(mxl: Path) -> bytes:
    with zipfile.ZipFile(mxl) as z:
        return z.read(next(n for n in z.namelist() if not n.startswith("META-INF")))


def test_music21_never_loads_a_pickle_planted_in_the_shared_temp_folder(
        root, tmp_path, chorales, monkeypatch):
    shared = tmp_path / "tmp"  # what $TMPDIR is for every user of the machine
    (shared / "music21").mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    core = music21.environment.envSingleton()  # as in a fresh process: music21's defaults
    monkeypatch.setitem(core._ref, "directoryScratch", None)
    monkeypatch.setattr(core, "defaultRootTempDir", shared / "music21")
    assert Path(music21.environment.Environment().getRootTempDir()) == shared / "music21"
    score = tmp_path / chorales[0].name
    score.write_bytes(chorales[0].read_bytes())
    os.utime(score, (1, 1))  # older than the pickle: music21 would prefer the pickle
    marker = tmp_path / "pickle-ran"
    planted = music21.converter.PickleFilter(score).getPickleFp(shared / "music21",
                                                                 zipType="gz")
    Path(planted).write_bytes(zlib.compress(pickle.dumps(_Plant(marker))))
    roll = jsb.parse_chorale(score)
    assert not marker.exists()
    assert roll.shape[1] == jsb.KEYS and roll.sum() > 0
    scratch = music21.environment.Environment().getRootTempDir()
    assert Path(scratch) == cache.cache_folder("music21")  # private, not $TMPDIR/music21
    assert [p.name for p in (shared / "music21").iterdir()] == [Path(planted).name]


def _folder(tmp_path: Path, name: str, chorales: list[Path], change: bool = False) -> Path:
    """The chorales as MusicXML; ``change``: every C of the first a D, same names and sizes."""
    folder = tmp_path / name
    folder.mkdir()
    for k, mxl in enumerate(chorales):
        data = _as_xml(mxl)
        if change and k == 0:
            assert b"<step>C</step>" in data
            data = data.replace(b"<step>C</step>", b"<step>D</step>")
        (folder / f"{mxl.stem}.xml").write_bytes(data)
    return folder


def test_the_parse_cache_is_keyed_by_contents_not_names_and_sizes(root, tmp_path, chorales):
    a = _folder(tmp_path, "a", chorales)
    b = _folder(tmp_path, "b", chorales, change=True)
    assert [p.stat().st_size for p in sorted(a.iterdir())] == \
        [p.stat().st_size for p in sorted(b.iterdir())]
    first = jsb.load_jsb("train", path=a)
    other = jsb.load_jsb("train", path=b)
    assert len(list(cache.cache_folder("data").glob("jsb-*.npz"))) == 2
    assert any(not torch.equal(x, y) for x, y in zip(first, other, strict=True))
    again = jsb.load_jsb("train", path=a)
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("what", ["garbage", "truncated", "pickled object array",
                                  "wrong shapes", "values above 1", "bounds past the end",
                                  "other names", "extra array", "symlink"])
def test_a_damaged_or_foreign_parse_cache_is_parsed_again(root, tmp_path, chorales, what):
    folder = _folder(tmp_path, "a", chorales)
    good = jsb.load_jsb("train", path=folder)
    (path,) = cache.cache_folder("data").glob("jsb-*.npz")
    real = path.read_bytes()
    with np.load(io.BytesIO(real)) as z:
        names, frames, bounds = z["names"], z["frames"], z["bounds"]
    marker = tmp_path / "pickle-ran"
    bad = {
        "garbage": b"PK\x03\x04 not a zip at all",
        "truncated": real[: len(real) // 2],
        "pickled object array": _npz(names=np.array([_Plant(marker)], dtype=object),
                                     frames=frames, bounds=bounds),
        "wrong shapes": _npz(names=names, frames=frames[:, :10], bounds=bounds),
        "values above 1": _npz(names=names, frames=frames * 7, bounds=bounds),
        "bounds past the end": _npz(names=names, frames=frames, bounds=bounds + 5),
        "other names": _npz(names=np.array(["x.xml"] * len(names)), frames=frames,
                            bounds=bounds),
        "extra array": _npz(names=names, frames=frames, bounds=bounds, more=bounds),
        "symlink": None,
    }[what]
    if bad is None:
        elsewhere = tmp_path / "elsewhere.npz"
        elsewhere.write_bytes(_npz(names=names, frames=np.zeros_like(frames), bounds=bounds))
        path.unlink()
        path.symlink_to(elsewhere)
    else:
        path.write_bytes(bad)
    again = jsb.load_jsb("train", path=folder)
    assert all(torch.equal(x, y) for x, y in zip(good, again, strict=True))
    assert not marker.exists()
    assert path.is_file() and not path.is_symlink() and path.read_bytes() != bad


# ---- the explain model -------------------------------------------------------------------------
def _fake_model(tourmodel, monkeypatch) -> Path:
    """A model folder as :func:`tourmodel.build` leaves it (files and their record)."""
    monkeypatch.setattr(tourmodel, "engine_version", lambda: "test")
    path = tourmodel.model_path()
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"cell": "mgu"}))
    (path / "checkpoint.pt").write_bytes(b"weights")
    cache.write_json("models", path.name, tourmodel._digests(path))
    return path


def test_the_explain_model_counts_only_with_its_recorded_digests(root, tmp_path, monkeypatch):
    from gatelab.explain import tourmodel

    path = _fake_model(tourmodel, monkeypatch)
    assert tourmodel.is_built(path) and path.parent == cache.cache_folder("models")
    (path / "checkpoint.pt").write_bytes(b"other weights")  # changed since it was built
    assert not tourmodel.is_built(path)
    (path / "checkpoint.pt").write_bytes(b"weights")
    assert tourmodel.is_built(path)
    for record in ({"config.json": "x"}, [], "nonsense", {"config.json": 1, "checkpoint.pt": 2}):
        cache.write_json("models", path.name, record)
        assert not tourmodel.is_built(path)
    (cache.cache_folder("models") / f"{path.name}.json").write_bytes(b"{not json")
    assert not tourmodel.is_built(path)
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    assert not tourmodel.is_built(elsewhere)  # only the cache's own folder is the model


def test_a_tampered_explain_model_config_is_one_line(root, monkeypatch):
    from gatelab.errors import GatelabError
    from gatelab.explain import tourmodel

    path = _fake_model(tourmodel, monkeypatch)
    with pytest.raises(GatelabError) as e:
        tourmodel.describe(path)
    assert len(e.value.lines()) == 1 and "config.json" in str(e.value)
