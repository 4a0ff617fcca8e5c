"""gatelab.nn against torch.nn: same weights, same outputs, states and gradients (float32)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import gatelab.nn as gn
from gatelab.cell.evaluate import step
from gatelab.engine import EngineError

TOL = 1e-5
I, H, T, N = 3, 5, 6, 4


def _leaves(obj):
    if torch.is_tensor(obj):
        return [obj]
    if isinstance(obj, torch.nn.utils.rnn.PackedSequence):
        return [obj.data]
    return [t for o in obj for t in _leaves(o)]


def _max_diff(a, b) -> float:
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb)
    return max((u - v).abs().max().item() for u, v in zip(la, lb, strict=True))


def _loss(result) -> torch.Tensor:
    # A fixed, non-symmetric weighting so every output element gets a distinct gradient.
    total = 0.0
    for t in _leaves(result):
        w = torch.sin(torch.arange(t.numel(), dtype=t.dtype)).view_as(t)
        total = total + (t * w).sum()
    return total


def _pair(kind, **kw):
    torch.manual_seed(0)
    ref = getattr(torch.nn, kind)(I, H, **kw)
    ours = gn.from_torch(ref, backend=kw.pop("backend", "torch"))
    return ref, ours


def _grads(model, inputs):
    out = model(*inputs)
    params = [p for _, p in sorted(model.named_parameters())]
    leaves = [t for t in inputs if torch.is_tensor(t) and t.requires_grad]
    leaves += [t for h in inputs[1:] if isinstance(h, tuple) for t in h]
    return out, torch.autograd.grad(_loss(out), params + leaves)


CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=2),
    dict(num_layers=1, bidirectional=True),
    dict(num_layers=2, bidirectional=True, batch_first=True),
    dict(num_layers=1, bias=False),
]


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_parity_with_torch(kind, cfg):
    ref, ours = _pair(kind, **cfg)
    D = 2 if cfg.get("bidirectional") else 1
    L = cfg.get("num_layers", 1) * D
    x = torch.randn(N, T, I) if cfg.get("batch_first") else torch.randn(T, N, I)
    hs = tuple(torch.randn(L, N, H) for _ in range(2 if kind == "LSTM" else 1))
    results = []
    for model in (ref, ours):
        xi = x.clone().requires_grad_()
        hi = tuple(h.clone().requires_grad_() for h in hs)
        hx = hi if kind == "LSTM" else hi[0]
        out, grads = _grads(model, (xi, hx))
        results.append((out, grads, torch.autograd.grad(_loss(model(xi, hx)), [xi] + list(hi))))
    (o1, g1, e1), (o2, g2, e2) = results
    assert _max_diff(o1, o2) <= TOL
    assert _max_diff(g1, g2) <= TOL
    assert _max_diff(e1, e2) <= TOL


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_unsorted_lengths(kind, bidirectional):
    ref, ours = _pair(kind, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(T, N, I)
    lengths = torch.tensor([3, 6, 1, 4])  # unsorted
    L = 2 * (2 if bidirectional else 1)
    h0 = tuple(torch.randn(L, N, H) for _ in range(2 if kind == "LSTM" else 1))
    outs = []
    for model in (ref, ours):
        xi = x.clone().requires_grad_()
        packed = pack_padded_sequence(xi, lengths, enforce_sorted=False)
        out, hn = model(packed, h0 if kind == "LSTM" else h0[0])
        assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
        params = [p for _, p in sorted(model.named_parameters())]
        grads = torch.autograd.grad(_loss((out, hn)), params + [xi])
        outs.append((pad_packed_sequence(out)[0], hn, grads))
    assert _max_diff(outs[0][0], outs[1][0]) <= TOL
    assert _max_diff(outs[0][1], outs[1][1]) <= TOL
    assert _max_diff(outs[0][2], outs[1][2]) <= TOL


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_unbatched_input(kind):
    ref, ours = _pair(kind, num_layers=2)
    x = torch.randn(T, I)
    assert _max_diff(ref(x), ours(x)) <= TOL
    h0 = tuple(torch.randn(2, H) for _ in range(2 if kind == "LSTM" else 1))
    hx = h0 if kind == "LSTM" else h0[0]
    assert _max_diff(ref(x, hx), ours(x, hx)) <= TOL


def test_state_dict_both_ways_and_names():
    torch.manual_seed(1)
    ours = gn.GRU(I, H, num_layers=2, bidirectional=True)
    ref = torch.nn.GRU(I, H, num_layers=2, bidirectional=True)
    assert sorted(ours.state_dict()) == sorted(ref.state_dict())
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(T, N, I)
    assert _max_diff(ref(x), ours(x)) <= TOL
    assert ours.weight_hh_l1_reverse.shape == (3 * H, H)


def test_cell_params_replay_with_reference_step():
    torch.manual_seed(2)
    model = gn.RNN("mgu", I, H, num_layers=2)
    x = torch.randn(T, N, I)
    out, h_n = model(x)
    p0 = model.cell_params(0)
    assert set(p0) == set(model.cell.params)
    assert p0["W_f"].data_ptr() == model.weight_ih_l0.data_ptr()  # a view
    h = torch.zeros(N, H)
    for t in range(T):
        h = step(model.cell, {"x": x[t]}, {"h": h}, p0).states["h"]
    p1 = model.cell_params(1)
    p1["b_n"].sum().backward()  # autograd reaches both halves of a split bias
    assert model.bias_ih_l1.grad is not None and model.bias_hh_l1.grad is not None
    # layer 0's last state is the first row of h_n
    assert (h - h_n[0]).abs().max().item() <= TOL


def test_lstm_cell_module_matches_torch_cell():
    torch.manual_seed(3)
    ref = torch.nn.LSTMCell(I, H)
    ours = gn.Cell("lstm", I, H)
    ours.load_state_dict(ref.state_dict())
    x, h, c = torch.randn(N, I), torch.randn(N, H), torch.randn(N, H)
    assert _max_diff(ref(x, (h, c)), ours(x, (h, c))) <= TOL
    gref = torch.nn.GRUCell(I, H)
    gours = gn.Cell("gru-torch", I, H)
    gours.load_state_dict(gref.state_dict())
    assert _max_diff(gref(x, h), gours(x, h)) <= TOL
    assert _max_diff(gref(x[0]), gours(x[0])) <= TOL


def test_torch_training_snippet_runs_unchanged():
    """A typical nn.LSTM training loop with gatelab.nn.LSTM swapped in."""
    torch.manual_seed(4)

    class Tagger(torch.nn.Module):
        def __init__(self, lstm_cls):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 8)
            self.lstm = lstm_cls(8, 16, num_layers=2, batch_first=True, dropout=0.1)
            self.head = torch.nn.Linear(16, 10)

        def forward(self, tokens):
            self.lstm.flatten_parameters()
            out, (h_n, c_n) = self.lstm(self.emb(tokens))
            return self.head(out)

    model = Tagger(gn.LSTM)
    torch.nn.init.orthogonal_(model.lstm.weight_hh_l0)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    tokens = torch.randint(0, 10, (8, 12))
    target = tokens.roll(1, dims=1)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(tokens).reshape(-1, 10), target.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    model.eval()
    with torch.no_grad():
        assert model(tokens).shape == (8, 12, 10)


def _raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the test compares whatever both raise
        return type(e), str(e)
    return None


BAD_CALLS = {
    "features": lambda m: m(torch.randn(T, N, 4)),
    "one state": lambda m: m(torch.randn(T, N, I), torch.zeros(1, N, H)),
    "hx shape": lambda m: m(torch.randn(T, N, I), (torch.zeros(2, N, H), torch.zeros(2, N, H))),
    "hx arity": lambda m: m(torch.randn(T, N, I), (torch.zeros(1, N, H),)),
    "4-D input": lambda m: m(torch.randn(N, I, 2, 2)),
    "float64 input": lambda m: m(torch.randn(T, N, I, dtype=torch.float64)),
    "empty sequence": lambda m: m(torch.randn(0, N, I)),
    "unbatched 3-D hx": lambda m: m(torch.randn(T, I), (torch.zeros(1, N, H),) * 2),
}


@pytest.mark.parametrize("backend", ["auto", "generated"])
@pytest.mark.parametrize("bad", sorted(BAD_CALLS))
def test_bad_calls_raise_as_torch(bad, backend):
    """Same exception type and message as torch.nn.LSTM, on both paths."""
    ref, ours = torch.nn.LSTM(I, H), gn.LSTM(I, H, backend=backend)
    want, got = _raised(lambda: BAD_CALLS[bad](ref)), _raised(lambda: BAD_CALLS[bad](ours))
    assert want is not None and got is not None
    assert got[0] is want[0]
    assert got[1] == want[1]


def test_bad_construction_and_backends():
    with pytest.raises(EngineError, match="unknown backend"):
        gn.GRU(I, H, backend="fast")
    with pytest.raises(EngineError, match="not scan-parallel"):
        gn.LSTM(I, H, backend="scan")(torch.randn(T, N, I))
    with pytest.raises(EngineError, match="cannot take the vendor path"):
        gn.MGU(I, H, backend="vendor")
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        gn.MGU(I, 0)
    with pytest.raises(ValueError, match="proj_size > 0 runs on torch's LSTM kernels only"):
        gn.LSTM(I, H, proj_size=2, backend="generated")
    with pytest.raises(TypeError, match="recurrent modules"):
        gn.from_torch(torch.nn.Linear(I, H))
    assert gn.LSTM(I, H, backend="torch").backend == "generated"  # the former name


@pytest.mark.parametrize("backend", ["auto", "generated"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_batch_of_zero_as_torch(kind, backend):
    ref, ours = getattr(torch.nn, kind)(I, H), getattr(gn, kind)(I, H, backend=backend)
    x = torch.randn(T, 0, I)
    want, got = ref(x), ours(x)
    assert [t.shape for t in _leaves(got)] == [t.shape for t in _leaves(want)]
    assert ours.path == ("vendor" if backend == "auto" else "generated")
