"""Generated tasks: shapes, the rules that define each task, determinism."""

import pytest
import torch

from gatelab.data.synthetic import (
    ADDING_TRIVIAL_MSE,
    COPY_LENGTH,
    adding_problem,
    copy_memory,
    copy_memory_baseline,
    temporal_order,
)


def test_adding_problem_rules():
    x, y = adding_problem(500, 37, generator=torch.Generator().manual_seed(1))
    assert x.shape == (500, 37, 2) and x.dtype == torch.float32
    assert y.shape == (500,) and y.dtype == torch.float32
    marks = x[..., 1]
    assert torch.all(marks.sum(1) == 2)
    half = 37 // 2
    assert torch.all(marks[:, :half].sum(1) == 1) and torch.all(marks[:, half:].sum(1) == 1)
    assert torch.allclose(y, (x[..., 0] * marks).sum(1))
    assert x[..., 0].min() >= 0 and x[..., 0].max() < 1


def test_adding_problem_trivial_mse_is_one_sixth():
    _, y = adding_problem(40000, 4, generator=torch.Generator().manual_seed(0))
    assert abs(float(((y - 1) ** 2).mean()) - ADDING_TRIVIAL_MSE) < 0.005


def test_generators_are_deterministic():
    for make in (adding_problem, copy_memory, temporal_order):
        a = make(8, 30, generator=torch.Generator().manual_seed(5))
        b = make(8, 30, generator=torch.Generator().manual_seed(5))
        c = make(8, 30, generator=torch.Generator().manual_seed(6))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[0], c[0])


def test_copy_memory_rules():
    T = 15
    x, y = copy_memory(64, T, generator=torch.Generator().manual_seed(2))
    assert x.shape == (64, T + 20, 10) and y.shape == (64, T + 20)
    ids = x.argmax(-1)
    assert torch.all(x.sum(-1) == 1)  # one-hot
    assert torch.equal(y[:, -COPY_LENGTH:], ids[:, :COPY_LENGTH])
    assert torch.all(y[:, :-COPY_LENGTH] == 0)
    assert torch.all((ids[:, :COPY_LENGTH] >= 1) & (ids[:, :COPY_LENGTH] <= 8))
    assert torch.all(ids[:, COPY_LENGTH + T - 1] == 9)  # the delimiter
    rest = torch.cat([ids[:, COPY_LENGTH:COPY_LENGTH + T - 1], ids[:, COPY_LENGTH + T:]], 1)
    assert torch.all(rest == 0)
    assert copy_memory_baseline(T) == pytest.approx(10 * torch.log(torch.tensor(8.0)).item()
                                                    / (T + 20))


def test_temporal_order_rules():
    T = 50
    x, y = temporal_order(200, T, generator=torch.Generator().manual_seed(3))
    assert x.shape == (200, T, 6) and y.shape == (200,) and y.dtype == torch.long
    ids = x.argmax(-1)
    for i in range(200):
        pos = torch.nonzero(ids[i] >= 4).flatten()
        assert len(pos) == 2
        assert T // 10 <= pos[0] < 2 * T // 10 and 5 * T // 10 <= pos[1] < 6 * T // 10
        s1, s2 = ids[i, pos[0]] - 4, ids[i, pos[1]] - 4
        assert y[i] == 2 * s1 + s2
    assert set(y.tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("make,T", [(adding_problem, 1), (temporal_order, 5), (copy_memory, 0)])
def test_too_short_sequences_are_refused(make, T):
    with pytest.raises(ValueError, match="too short"):
        make(4, T)
