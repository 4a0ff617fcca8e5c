"""JSB Chorales: the piano-roll quantisation, the split, the loader on a few chorales, the task."""

from __future__ import annotations

import pytest
import torch

from gatelab.data.jsb import KEYS, load_jsb, roll_from_notes, split_of
from gatelab.train.config import TrainConfig


def test_roll_samples_the_keys_sounding_on_each_beat():
    roll = roll_from_notes([(0.0, 1.0, [60]), (0.5, 2.0, [64]), (2.25, 0.5, [67]),
                            (0.0, 1.0, [10, 120])])  # off the piano: dropped
    assert roll.shape == (3, KEYS)
    assert roll[:, 60 - 21].tolist() == [1, 0, 0]
    assert roll[:, 64 - 21].tolist() == [0, 1, 1]  # starts between beats 0 and 1
    assert roll[:, 67 - 21].sum() == 0  # a short note between beats never sounds on one
    assert roll.sum() == 3


def test_split_is_fixed_by_position():
    assert [split_of(i) for i in range(10)] == ["train"] * 8 + ["valid", "test"]
    assert split_of(18) == "valid" and split_of(29) == "test"


@pytest.mark.slow
def test_loader_on_a_few_chorales():
    pytest.importorskip("music21")
    train = load_jsb("train", limit=10)
    valid, test = load_jsb("valid", limit=10), load_jsb("test", limit=10)
    assert (len(train), len(valid), len(test)) == (8, 1, 1)
    for r in train + valid + test:
        assert r.shape[1] == KEYS and r.dtype == torch.float32
        assert set(r.unique().tolist()) <= {0.0, 1.0}
        voices = r.sum(1)
        assert voices.max() <= 8 and (voices > 0).float().mean() > 0.9  # chorales: 4 voices
        on = r.nonzero()[:, 1] + 21
        assert on.min() >= 36 and on.max() <= 84  # the range of four singing voices
    with pytest.raises(ValueError, match="unknown JSB split"):
        load_jsb("dev", limit=2)


def test_missing_folder_says_so(tmp_path):
    from gatelab.data import DataUnavailable

    with pytest.raises(DataUnavailable, match="holds no .mxl"):
        load_jsb("train", path=tmp_path)


def test_jsb_task_masks_padding(monkeypatch):
    from gatelab.train import tasks

    rolls = [torch.randint(0, 2, (n, KEYS)).float() for n in (5, 9, 3, 7, 12, 4, 6, 8, 10, 11)]
    monkeypatch.setattr(tasks, "load_jsb", lambda split, path=None: rolls)
    task = tasks.make_task(TrainConfig(task="jsb", steps=3, max_len=4))
    b = task.train_batch(0, 4, seed=0)
    assert b.x.shape[1] <= 4 and (b.lengths <= 4).all()  # training windows of max_len frames
    ev = next(task.eval_batches(3))
    assert ev.lengths.tolist() == [4, 8, 2] and torch.equal(ev.y[0, :4], rolls[0][1:])
    out = torch.zeros(3, ev.x.shape[1], KEYS)  # p = 1/2 everywhere: NLL = 88 ln 2 per step
    total, n = task.metric_sum(out, ev)
    assert n == 14 and total / n == pytest.approx(KEYS * 0.693147, rel=1e-5)
    out[0, 5:] = 1e4  # garbage on padding changes nothing
    assert task.metric_sum(out, ev)[0] == pytest.approx(total)
    assert 0 < task.baseline < KEYS * 0.7
