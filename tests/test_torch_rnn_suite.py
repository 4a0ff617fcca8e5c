"""torch's own CPU tests of its recurrent modules (``test/test_nn.py`` of pytorch/pytorch), written
again in our words and run against gatelab's classes, side by side with torch's where a value can
be compared. Each test's docstring names the torch test it mirrors. Layers run on both the vendor
path (torch's kernels) and gatelab's generated engine where the test is about the forward."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch.nn.utils import rnn as rnn_utils

import gatelab.nn as gn

LAYERS = ("RNN", "GRU", "LSTM")
BACKENDS = ("auto", "generated")


def _layer(mode: str, *args, backend: str = "auto", **kwargs):
    return getattr(gn, mode)(*args, backend=backend, **kwargs)


def _twins(mode: str, *args, backend: str = "auto", **kwargs):
    """torch's module and gatelab's with the same weights."""
    ref = getattr(torch.nn, mode)(*args, **kwargs)
    ours = _layer(mode, *args, backend=backend, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


# ---- cells ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [gn.RNNCell, gn.GRUCell])
@pytest.mark.parametrize("bias", [True, False])
def test_RNN_cell(cls, bias):
    """torch: test_RNN_cell: six steps of RNNCell/GRUCell with and without bias, then
    backward through all of them."""
    torch.manual_seed(0)
    ref = getattr(torch.nn, cls.__name__)(10, 20, bias=bias)
    ours = cls(10, 20, bias=bias)
    ours.load_state_dict(ref.state_dict())
    x, h0 = torch.randn(3, 10), torch.randn(3, 20)
    h_ref, h = h0, h0
    for _ in range(6):
        h_ref, h = ref(x, h_ref), ours(x, h)
    torch.testing.assert_close(h, h_ref)
    h.sum().backward()
    assert all(p.grad is not None for p in ours.parameters())


@pytest.mark.parametrize("bias", [True, False])
def test_LSTM_cell(bias):
    """torch: test_LSTM_cell: six steps of LSTMCell, backward through ``hx + cx``."""
    torch.manual_seed(0)
    ref, ours = torch.nn.LSTMCell(10, 20, bias=bias), gn.LSTMCell(10, 20, bias=bias)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 10)
    s_ref = s = (torch.randn(3, 20), torch.randn(3, 20))
    for _ in range(6):
        s_ref, s = ref(x, s_ref), ours(x, s)
    torch.testing.assert_close(s, s_ref)
    (s[0] + s[1]).sum().backward()


@pytest.mark.parametrize("cell", ["rnn-relu", "rnn-tanh", "gru", "lstm", "mgu"])
def test_RNN_cell_forward_zero_hidden_size(cell):
    """torch: test_RNN_cell_forward_zero_hidden_size: a cell of hidden size 0 builds and maps
    ``(3, 10)`` to ``(3, 0)`` (gatelab's generic Cell too)."""
    make = {"rnn-relu": lambda: gn.RNNCell(10, 0, nonlinearity="relu"),
            "rnn-tanh": lambda: gn.RNNCell(10, 0), "gru": lambda: gn.GRUCell(10, 0),
            "lstm": lambda: gn.LSTMCell(10, 0), "mgu": lambda: gn.Cell("mgu", 10, 0)}[cell]
    step = make()
    x, h = torch.randn(3, 10), torch.randn(3, 0)
    out = step(x, (h, h) if cell == "lstm" else h)
    for t in out if isinstance(out, tuple) else (out,):
        assert t.shape == torch.Size([3, 0])


def test_RNN_cell_no_broadcasting():
    """torch: test_RNN_cell_no_broadcasting: a batch, hidden or input size of 1 is not
    broadcast: each cell raises RuntimeError."""
    hidden, inp = 20, 10
    x, good = torch.randn(3, inp), torch.randn(3, hidden)

    def refuses(x, bad, good_hx):
        for cls in (gn.RNNCell, gn.GRUCell):
            with pytest.raises(RuntimeError):
                cls(inp, hidden)(x, bad)
        for hx in ((bad, good_hx), (good_hx, bad)):
            with pytest.raises(RuntimeError):
                gn.LSTMCell(inp, hidden)(x, hx)

    refuses(x, torch.randn(1, hidden), good)  # batch of 1
    refuses(x, torch.randn(3, 1), good)  # hidden size of 1
    # an input size of 1: the LSTM's (good, bad) case is (good, good) here
    for cls in (gn.RNNCell, gn.GRUCell):
        with pytest.raises(RuntimeError):
            cls(inp, hidden)(torch.randn(3, 1), good)
    with pytest.raises(RuntimeError):
        gn.LSTMCell(inp, hidden)(torch.randn(3, 1), (good, good))


def test_LSTM_cell_forward_input_size():
    """torch: test_LSTM_cell_forward_input_size: an input of 11 features for a cell of 10
    raises."""
    with pytest.raises(RuntimeError):
        gn.LSTMCell(10, 20)(torch.randn(3, 11), (torch.randn(3, 20), torch.randn(3, 20)))


def test_LSTM_cell_forward_hidden_size():
    """torch: test_LSTM_cell_forward_hidden_size: h or c of 21 features for a cell of 20
    raises, in either position."""
    x, h, c = torch.randn(3, 10), torch.randn(3, 21), torch.randn(3, 20)
    for hx in ((h, c), (c, h)):
        with pytest.raises(RuntimeError):
            gn.LSTMCell(10, 20)(x, hx)


def test_lstmcell_backward_only_one_output_grad():
    """torch: test_lstmcell_backward_only_one_output_grad: backward from h alone, or c alone,
    reaches the input (the other output's gradient is undefined)."""
    step = gn.LSTMCell(2, 3).double()
    s = torch.randn(1, 2, dtype=torch.double, requires_grad=True)
    for i in range(2):
        step(s)[i].sum().backward()
        assert s.grad is not None and s.grad.abs().sum().item() != 0


# ---- layers: arguments and errors ---------------------------------------------------------------

def test_RNN_nonlinearity():
    """torch: test_RNN_nonlinearity and test_RNN_nonlinearity_passed_as_arg."""
    assert gn.RNN(1, 10).nonlinearity == "tanh"
    assert gn.RNN(1, 10, nonlinearity="relu").nonlinearity == "relu"
    assert gn.RNN(2, 3, 1, "relu").nonlinearity == "relu"
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        gn.RNN(1, 10, nonlinearity="garbage")


@pytest.mark.parametrize("mode", ["RNN", "GRU"])
def test_projections_errors_on_gru_and_rnn(mode):
    """torch: test_projections_errors_on_gru_and_rnn."""
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM, not "
                                         "RNN or GRU"):
        getattr(gn, mode)(30, 20, 2, proj_size=10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", LAYERS)
def test_rnn_args_check(mode, backend):
    """torch: test_rnn_args_check: a wrong input batch, hidden batch, input size, hidden size
    or layer count (in h, or in either of the LSTM's h and c) raises RuntimeError."""
    I, H, L, N, T, bad = 3, 5, 2, 4, 6, 7
    good_x, good_h = (T, N, I), (L, N, H)

    def with_dim(shape, dim, size):
        return tuple(size if i == dim else s for i, s in enumerate(shape))

    cases = [(with_dim(good_x, 1, bad), good_h), (good_x, with_dim(good_h, 1, bad)),
             (with_dim(good_x, 2, bad), good_h), (good_x, with_dim(good_h, 2, bad)),
             (good_x, with_dim(good_h, 0, bad))]
    model = _layer(mode, I, H, L, backend=backend)
    for xs, hs in cases:
        x, h = torch.randn(xs), torch.randn(hs)
        if mode != "LSTM":
            calls = [h]
        elif hs == good_h:
            calls = [(h, h)]
        else:
            calls = [(h, torch.randn(good_h)), (torch.randn(good_h), h)]
        for hx in calls:
            with pytest.raises(RuntimeError):
                model(x, hx)


def test_projections_lstm_args_check():
    """torch: test_projections_lstm_args_check: the same with proj_size=2, plus h of the
    hidden size, a wrong layer count in h, and c of the wrong layer count."""
    I, H, P, L, N, T, bad = 3, 5, 2, 2, 4, 6, 7
    gx, gh, gc = (T, N, I), (L, N, P), (L, N, H)

    def with_dim(shape, dim, size):
        return tuple(size if i == dim else s for i, s in enumerate(shape))

    cases = [(with_dim(gx, 1, bad), gh, gc), (gx, with_dim(gh, 1, bad), with_dim(gc, 1, bad)),
             (with_dim(gx, 2, bad), gh, gc), (gx, with_dim(gh, 2, bad), with_dim(gc, 2, bad)),
             (gx, with_dim(gh, 0, bad), with_dim(gc, 0, bad)), (gx, with_dim(gh, 0, H), gc),
             (gx, with_dim(gh, 0, bad), gc), (gx, gh, with_dim(gc, 0, bad))]
    model = gn.LSTM(I, H, L, proj_size=P)
    for xs, hs, cs in cases:
        with pytest.raises(RuntimeError):
            model(torch.randn(xs), (torch.randn(hs), torch.randn(cs)))


@pytest.mark.parametrize("mode", ["LSTM", "LSTM-proj", "GRU", "RNN"])
def test_cudnn_forward_exception(mode):
    """torch: test_cudnn_forward_exception (it runs on the CPU too): a hidden state of the
    wrong size and an input of the wrong size raise torch's messages."""
    proj = {"proj_size": 10} if mode == "LSTM-proj" else {}
    model = _layer(mode.split("-")[0], 10, 20, batch_first=True, **proj)
    hidden = torch.zeros(1, 2, 19)
    if mode.startswith("LSTM"):
        hidden = (hidden, torch.zeros(1, 2, 19))
    with pytest.raises(RuntimeError, match="Expected hidden.*size.*got"):
        model(torch.randn(2, 3, 10), hidden)
    with pytest.raises(RuntimeError, match=r"input.size\(-1\) must be equal to input_size"):
        model(torch.randn(2, 3, 3))


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("mode", LAYERS)
def test_error_RNN_seq_len_zero(mode, bidirectional):
    """torch: test_error_RNN_seq_len_zero (CPU part): a sequence of length 0 is refused."""
    for backend in BACKENDS:
        model = _layer(mode, 5, 6, bidirectional=bidirectional, backend=backend)
        with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0"):
            model(torch.ones(0, 10, 5))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", LAYERS)
def test_RNN_input_size_zero(mode, backend):
    """torch: test_RNN_input_size_zero: a batch of 0 gives an empty output, and backward
    through it does not fail."""
    model = _layer(mode, input_size=3, hidden_size=4, backend=backend)
    out = model(torch.zeros(5, 0, 3))
    assert out[0].shape == torch.Size([5, 0, 4])
    out[0].sum().backward()


# ---- layers: values -----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", LAYERS)
def test_rnn_initial_hidden_state(mode, backend):
    """torch: test_rnn_initial_hidden_state: zeros given equal no hx."""
    model = _layer(mode, 30, 20, 2, backend=backend)
    x, h = torch.randn(10, 32, 30), torch.zeros(2, 32, 20)
    out1, h1 = model(x, (h, h) if mode == "LSTM" else h)
    out2, h2 = model(x)
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(h1, h2)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_projections_lstm_initial_hidden_state(bidirectional):
    """torch: test_projections_lstm_initial_hidden_state."""
    model = gn.LSTM(30, 20, 2, bidirectional=bidirectional, proj_size=10)
    D = 2 if bidirectional else 1
    x = torch.randn(10, 32, 30)
    out1, h1 = model(x, (torch.zeros(2 * D, 32, 10), torch.zeros(2 * D, 32, 20)))
    out2, h2 = model(x)
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(h1, h2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", LAYERS)
def test_rnn_retain_variables(mode, backend):
    """torch: test_rnn_retain_variables: repeated backward with retain_graph gives the same
    gradients each time."""
    model = _layer(mode, 10, 20, num_layers=2, backend=backend)
    x = torch.randn(5, 6, 10, requires_grad=True)
    out = model(x)
    out[0].sum().backward(retain_graph=True)
    grads = [x.grad.clone()] + [p.grad.clone() for p in model.parameters()]
    for _ in range(4):
        model.zero_grad()
        x.grad.zero_()
        out[0].sum().backward(retain_graph=True)
        again = [x.grad] + [p.grad for p in model.parameters()]
        for a, b in zip(grads, again, strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("proj_size", [0, 2])
@pytest.mark.parametrize("default_hidden", [True, False])
@pytest.mark.parametrize(("enforce_sorted", "lengths"), [
    (True, [5]), (False, [5]), (True, [10, 10, 6, 2, 2, 1, 1]),
    (False, [10, 10, 6, 2, 2, 1, 1]), (False, [2, 1, 3, 2, 10, 5, 3])])
def test_variable_sequence(enforce_sorted, lengths, default_hidden, proj_size):
    """torch: test_variable_sequence: a packed batch through a 2-layer bidirectional LSTM
    equals each sequence run alone (outputs, final states, gradients of input and weights),
    and equals torch's LSTM on the same packed batch."""
    torch.manual_seed(0)
    I, H, L, D = 3, 4, 2, 2
    T, N = max(lengths), len(lengths)
    ref, lstm = _twins("LSTM", I, H, num_layers=L, bidirectional=True, proj_size=proj_size,
                       dtype=torch.float64)
    alone = copy.deepcopy(lstm)
    x = torch.randn(T, N, I, dtype=torch.float64, requires_grad=True)
    h0 = None
    if not default_hidden:
        h0 = (torch.randn(L * D, N, proj_size or H, dtype=torch.float64),
              torch.randn(L * D, N, H, dtype=torch.float64))
    outs, finals = [], []
    for i, n in enumerate(lengths):
        hi = None if h0 is None else tuple(h[:, i:i + 1] for h in h0)
        out, fin = alone(x[:n, i:i + 1], hi)
        outs.append(torch.cat([out, out.new_zeros(T - n, 1, out.size(2))]))
        finals.append(fin)
    seq_out = torch.cat(outs, 1)
    seq_fin = tuple(torch.cat(f, 1) for f in zip(*finals, strict=True))
    packed = rnn_utils.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    packed_out, packed_fin = lstm(packed, h0)
    unpacked, unpacked_len = rnn_utils.pad_packed_sequence(packed_out)
    torch.testing.assert_close(packed_fin, seq_fin)
    torch.testing.assert_close(unpacked, seq_out)
    assert unpacked_len.tolist() == lengths
    ref_out, ref_fin = ref(packed, h0)
    torch.testing.assert_close(packed_out.data, ref_out.data)
    torch.testing.assert_close(packed_fin, ref_fin)
    seq_out.sum().backward()
    grad_x = x.grad.clone()
    x.grad.zero_()
    unpacked.sum().backward()
    torch.testing.assert_close(x.grad, grad_x)
    for p1, p2 in zip(lstm.parameters(), alone.parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p2.grad)


def test_RNN_dropout():
    """torch: test_RNN_dropout (CPU part): dropout sits between the layers: with all weights 1
    the output is 10000 without dropout, 0 with p=1, and near 10000 (a multiple of 1/(1-p)
    times 10) otherwise; the first layer's state is 10."""
    for p in (0, 0.276, 0.731, 1):
        for train in (True, False):
            rnn = gn.RNN(10, 1000, 2, bias=False, dropout=p, nonlinearity="relu").double()
            rnn.train(train)
            for w in rnn.parameters():
                w.data.fill_(1)
            out, hy = rnn(torch.ones(1, 1, 10, dtype=torch.double),
                          torch.zeros(2, 1, 1000, dtype=torch.double))
            assert out.min() == out.max()
            value = out[0, 0, 0].item()
            if p == 0 or not train:
                assert value == 10000
            elif p == 1:
                assert value == 0
            else:
                assert 8000 < value < 12000
                rest = (value * (1 - p)) % 10
                assert min(rest, 10 - rest) < 1e-2
            assert hy[0].min() == hy[0].max() and hy[1].min() == hy[1].max()
            assert hy[0, 0, 0].item() == 10 and hy[1, 0, 0].item() == value


def test_RNN_dropout_state():
    """torch: test_RNN_dropout_state (CPU part): without dropout (or in eval) two calls and a
    saved-and-reloaded copy agree; with dropout in training they differ."""
    for p in (0, 0.1234):
        for train in (True, False):
            rnn = gn.RNN(100, 100, 2, bias=False, dropout=p, nonlinearity="relu")
            rnn.train(train)
            x, hx = torch.rand(1, 1, 100), torch.rand(2, 1, 100)
            out1, hy1 = rnn(x, hx)
            out2, hy2 = rnn(x, hx)
            buf = io.BytesIO()
            torch.save(rnn, buf)
            buf.seek(0)
            again = torch.load(buf, weights_only=False)
            again.flatten_parameters()
            out3, hy3 = again(x, hx)
            if p == 0 or not train:
                assert torch.equal(out1, out2) and torch.equal(out1, out3)
                assert torch.equal(hy1, hy2) and torch.equal(hy1, hy3)
            else:
                assert not torch.equal(out1, out2) and not torch.equal(out1, out3)
                assert not torch.equal(hy1, hy2) and not torch.equal(hy1, hy3)


@pytest.mark.parametrize("train", [True, False])
def test_RNN_change_dropout(train):
    """torch: test_RNN_change_dropout (CPU part): setting ``rnn.dropout`` between calls takes
    effect at once: equal calls at p in {0, 1} or in eval, different ones otherwise."""
    torch.manual_seed(0)
    rnn = gn.RNN(100, 100, 2, dropout=0, nonlinearity="relu").double()
    rnn.train(train)
    x = torch.rand(3, 2, 100, dtype=torch.double)
    prev = None
    for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
        rnn.dropout = p
        out1, hy1 = rnn(x)
        out2, hy2 = rnn(x)
        if p in (0, 1) or not train:
            assert torch.equal(out1, out2) and torch.equal(hy1, hy2)
        else:
            assert not torch.equal(out1, out2) and not torch.equal(hy1, hy2)
        if prev is not None:
            assert torch.equal(out1, prev) != train
        prev = out1


# ---- parameters, pickling, reparametrisation ----------------------------------------------------

@pytest.mark.parametrize(("kwargs", "name", "count"), [
    ({}, "weight_ih_l0", 4), ({"proj_size": 16}, "weight_hr_l0", 5)])
def test_rnn_weight_norm(kwargs, name, count):
    """torch: test_rnn_weight_norm: weight_norm on one weight makes it a plain tensor in
    ``_flat_weights``; removing it restores the Parameter and drops ``_v``/``_g``."""
    layer = gn.LSTM(32, 32, **kwargs)
    x = torch.randn(3, 2, 32)
    want = layer(x)[0]
    layer = torch.nn.utils.weight_norm(layer, name=name)
    assert sum(isinstance(p, torch.nn.Parameter) for p in layer._flat_weights) == count - 1
    torch.testing.assert_close(layer(x)[0], want)
    layer = torch.nn.utils.remove_weight_norm(layer, name=name)
    assert sum(isinstance(p, torch.nn.Parameter) for p in layer._flat_weights) == count
    params = dict(layer.named_parameters())
    assert layer._parameters[name] is not None and params[name] is not None
    for suffix in ("_v", "_g"):
        assert name + suffix not in layer._parameters and name + suffix not in params


def test_cudnn_weight_tying():
    """torch: test_cudnn_weight_tying (CPU analogue): a reverse bias tied to the forward one
    trains (one SGD step) and the tie survives."""
    for mode, kwargs in (("LSTM", {}), ("LSTM", {"proj_size": 10}), ("GRU", {}), ("RNN", {})):
        rnn = _layer(mode, 10, 20, batch_first=True, bidirectional=True, **kwargs)
        rnn.bias_ih_l0_reverse = rnn.bias_ih_l0
        x = torch.randn(5, 4, 10, requires_grad=True)
        hx = torch.randn(2, 5, 10 if kwargs else 20)
        if mode == "LSTM":
            hx = (hx, torch.randn(2, 5, 20))
        opt = torch.optim.SGD(rnn.parameters(), lr=0.1)
        rnn(x, hx)[0].sum().backward()
        opt.step()
        assert rnn.bias_ih_l0_reverse is rnn.bias_ih_l0
        rnn(x, hx)


def test_partial_flat_weights():
    """torch: test_partial_flat_weights (CPU analogue): a weight deleted and set back (as a
    plain tensor) is used again."""
    m = gn.LSTM(10, 6, 2)
    x = torch.randn(3, 2, 10)
    want = m(x)[0]
    weight = m.weight_hh_l0
    del m.weight_hh_l0
    assert not hasattr(m, "weight_hh_l0")
    m.weight_hh_l0 = weight.detach().clone()
    torch.testing.assert_close(m(x)[0], want)


@pytest.mark.parametrize("mode", LAYERS)
def test_save_lstm_compatibility(mode):
    """torch: test_save_lstm_compatibility: ``__setstate__`` with another module's ``__dict__``
    from which ``proj_size`` was deleted (a state saved before proj_size existed) builds the
    same module: proj_size 0, the same outputs."""
    model = _layer(mode, 2, 3)
    x = torch.randn(32, 5, 2)
    want = model(x)
    assert model.proj_size == 0
    state = model.__dict__
    del state["proj_size"]
    loaded = _layer(mode, 2, 3)
    loaded.__setstate__(state)
    assert loaded.proj_size == 0
    got = loaded(x)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])


@pytest.mark.parametrize("cls", [gn.RNNCell, gn.GRUCell, gn.LSTMCell])
def test_setstate_with_a_cells_dict(cls):
    """torch: test_save_lstm_compatibility's ``__setstate__(module.__dict__)``, for the cells
    (and gatelab's own pickled form, through pickle)."""
    a, b = cls(3, 4), cls(3, 4)
    b.__setstate__(a.__dict__)
    c = pickle.loads(pickle.dumps(a))
    x = torch.randn(2, 3)
    for other in (b, c):
        torch.testing.assert_close(other(x), a(x))


@pytest.mark.parametrize("cls", ["RNNCell", "GRUCell", "LSTMCell"])
def test_cell_sizes_are_checked_as_torch_checks_them(cls):
    """Not a torch test: the class of sizes behind test_RNN_cell_forward_zero_hidden_size. Any
    size torch's cell builds, gatelab's builds and runs to the same shapes; any it refuses,
    gatelab's refuses with the same exception type."""
    for sizes in [(10, 0), (0, 4), (0, 0), (3, 4), (-1, 3), (3, -2), (3.0, 4), (3, "4")]:
        try:
            ref = getattr(torch.nn, cls)(*sizes)
        except Exception as e:  # noqa: BLE001 - whatever torch raises, gatelab must too
            with pytest.raises(type(e)):
                getattr(gn, cls)(*sizes)
            continue
        ours = getattr(gn, cls)(*sizes)
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(2, sizes[0])
        torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_LSTM_and_GRU_grad_and_gradgrad(mode, bias, backend):
    """torch: test_LSTM_grad_and_gradgrad and test_GRU_grad_and_gradgrad (CUDA-only there, run
    on the CPU here): gradcheck and gradgradcheck of every output of a one-step layer."""
    H = 4
    mod = _layer(mode, H, H, bias=bias, backend=backend).double()
    x = torch.rand(1, 3, H, dtype=torch.double, requires_grad=True)

    def flat(inp):
        out, hidden = mod(inp)
        return (out, *(hidden if isinstance(hidden, tuple) else (hidden,)))

    assert torch.autograd.gradcheck(flat, (x,), check_batched_grad=False)
    assert torch.autograd.gradgradcheck(flat, (x,), check_batched_grad=False)
