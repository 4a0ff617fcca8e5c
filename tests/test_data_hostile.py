"""Every data file read is bounded: FIFOs and devices refused, archives checked member by member
(declared and actual unpacked size), text files capped in bytes and lines, IDX headers checked
exactly; each problem is one DataUnavailable naming the file (exit 2 on the command line)."""

from __future__ import annotations

import gzip
import os
import struct
import zipfile

import pytest

from gatelab.data import load_drug_reviews, load_fashion_mnist, load_stdlib_text, load_tweets
from gatelab.data.errors import DataUnavailable
from gatelab.data.jsb import MAX_CHORALE_BYTES, check_chorale_file, load_jsb
from gatelab.data.reviews import MAX_FILE_BYTES, MAX_ROWS
from gatelab.files import FileProblem, open_zip, read_member
from hostile_cli import assert_refused, run_cli


def _bomb(path, member: str, size: int, declared: int | None = None) -> None:
    """A zip whose ``member`` unpacks to ``size`` zero bytes (a few KB on disk); ``declared``
    rewrites the size its headers claim."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open(member, "w", force_zip64=True) as f:
            chunk = b"\0" * (1 << 20)
            for _ in range(size >> 20):
                f.write(chunk)
    if declared is not None:  # lie in both headers: the reader must count what it unpacks
        data = bytearray(path.read_bytes())
        for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
            i = data.find(sig)
            data[i + off:i + off + 4] = struct.pack("<I", declared)
        path.write_bytes(bytes(data))


def test_zip_bomb_refused_by_declared_size(tmp_path):
    bomb = tmp_path / "drugsCom.zip"
    _bomb(bomb, "drugsComTrain.tsv", MAX_FILE_BYTES + (1 << 20))
    with pytest.raises(DataUnavailable, match="unpacks to"):
        load_drug_reviews("train", bomb)


def test_zip_member_lying_about_its_size_never_unpacks_past_it(tmp_path):
    bomb = tmp_path / "lie.zip"
    _bomb(bomb, "m", 8 << 20)
    with open_zip(bomb, 1 << 20) as z:
        info = z.getinfo("m")
        info.file_size = 100  # what a forged header would say
        try:
            data = read_member(z, info, 1 << 20)
        except FileProblem as e:  # the CRC of the first 100 bytes does not match
            assert "cannot unpack" in str(e)
        else:
            assert len(data) <= 100


def test_zip_with_too_many_entries(tmp_path):
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as z:
        for i in range(1001):
            z.writestr(f"f{i}", b"")
    with pytest.raises(FileProblem, match="entries"):
        open_zip(path, 1 << 20)


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("loader", ["reviews", "tweets", "stdlib"])
def test_fifo_or_device_as_data(kind, loader, tmp_path):
    if kind == "fifo":
        path = tmp_path / "data.py"
        os.mkfifo(path)
    else:
        path = "/dev/zero"
    load = {"reviews": lambda: load_drug_reviews("train", path),
            "tweets": lambda: load_tweets("train", path),
            "stdlib": lambda: load_stdlib_text(path)}[loader]
    with pytest.raises(DataUnavailable):
        load()


def test_fifo_named_py_inside_a_source_folder_is_skipped(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n" * 50)
    os.mkfifo(tmp_path / "b.py")
    assert load_stdlib_text(tmp_path).startswith("x = 1")


def test_empty_source_is_refused(tmp_path):
    (tmp_path / "empty.py").write_text("")
    with pytest.raises(DataUnavailable, match="no readable"):
        load_stdlib_text(tmp_path)


@pytest.mark.parametrize("lines", [MAX_ROWS + 1])
def test_csv_with_too_many_lines(lines, tmp_path):
    path = tmp_path / "tweets.csv"
    path.write_text("positive,1,hi\n" * lines)
    with pytest.raises(DataUnavailable, match="lines"):
        load_tweets("train", path)


def test_csv_over_the_size_cap(tmp_path):
    path = tmp_path / "tweets.csv"
    with open(path, "wb") as f:  # sparse: no disk used
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(DataUnavailable, match="too large"):
        load_tweets("train", path)


def _idx(path, dims: tuple[int, ...], body: bytes) -> None:
    head = bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    with gzip.open(path, "wb") as f:
        f.write(head + body)


def _fashion(folder, images, labels, dims=None, label_dims=None):
    n = len(labels)
    _idx(folder / "train-images-idx3-ubyte.gz", dims or (n, 28, 28), images)
    _idx(folder / "train-labels-idx1-ubyte.gz", label_dims or (n,), labels)


@pytest.mark.parametrize("dims", [(65536, 65536, 65536, 65536), (65536, 65536, 65536, 65536, 3)])
def test_idx_dimensions_whose_product_wraps(dims, tmp_path):
    """2^16 x 2^16 x 2^16 x 2^16 is 0 in int64 arithmetic: an empty body matched it."""
    import numpy as np

    wrapped = int(np.prod(np.array(dims, dtype=np.int64)))
    _fashion(tmp_path, b"\0" * (wrapped if 0 <= wrapped < 10**6 else 0), b"\0", dims=dims)
    with pytest.raises(DataUnavailable):
        load_fashion_mnist("train", tmp_path)


def test_labels_out_of_range(tmp_path):
    _fashion(tmp_path, b"\0" * (2 * 784), bytes([3, 200]))
    with pytest.raises(DataUnavailable, match="labels"):
        load_fashion_mnist("train", tmp_path)


def test_images_of_another_size(tmp_path):
    _fashion(tmp_path, b"\0" * (2 * 100), bytes([1, 2]), dims=(2, 10, 10))
    with pytest.raises(DataUnavailable, match="28, 28"):
        load_fashion_mnist("train", tmp_path)


def test_mxl_bomb_refused_before_music21(tmp_path):
    bomb = tmp_path / "bwv1.mxl"
    _bomb(bomb, "score.xml", MAX_CHORALE_BYTES + (1 << 20))
    with pytest.raises(DataUnavailable, match="unpacks to"):
        check_chorale_file(bomb)
    with pytest.raises(DataUnavailable):
        load_jsb("train", tmp_path, use_cache=False)


def test_chorale_fifo_refused(tmp_path):
    os.mkfifo(tmp_path / "bwv2.xml")
    with pytest.raises(DataUnavailable, match="regular file"):
        load_jsb("train", tmp_path, use_cache=False)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["tweets", "drugs", "stdlib", "fmnist-row"])
def test_cli_fifo_data_is_one_line(task, tmp_path):
    fifo = tmp_path / "data"
    os.mkfifo(fifo)
    assert_refused(run_cli("train", task, "--data", str(fifo), "--steps", "1",
                           "--out", str(tmp_path / "run"), cwd=tmp_path))


@pytest.mark.slow
def test_cli_zip_bomb_is_one_line(tmp_path):
    bomb = tmp_path / "drugsCom.zip"
    _bomb(bomb, "drugsComTrain.tsv", 256 << 20)
    assert_refused(run_cli("train", "drugs", "--data", str(bomb), "--steps", "1",
                           "--out", str(tmp_path / "run"), cwd=tmp_path), "unpacks to")


def test_real_chorales_pass_the_checks():
    music21 = pytest.importorskip("music21")
    from pathlib import Path

    files = [Path(p) for p in music21.corpus.getComposer("bach") if Path(p).suffix == ".mxl"]
    for path in files:
        check_chorale_file(path)
