"""``gatelab.nn.Cell(..., return_output=True)`` gives one step's output (a let such as an LRU's
``y = C @ h' + D * h'``, which the states alone do not give) and leaves torch's return of the
twins unchanged; a hidden-size input's size error names the sizes the caller passed."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gatelab.nn
from gatelab import parse_cell
from gatelab.engine.layout import EngineError

LRU = parse_cell("""name lru-like
input u
state h
let hn = lam * h + B @ u
let y = C @ hn + D * hn
next h = hn
output y
""")

HIGHWAY = parse_cell("""name hw
input x : hidden
state h
let n = tanh(W @ x + U @ h + b)
next h = n + x
output h
""")


@pytest.mark.parametrize("batched", [True, False])
def test_a_let_output_comes_back_and_equals_the_layers_output(batched):
    torch.manual_seed(0)
    step = gatelab.nn.Cell(LRU, 3, 4, dtype=torch.float64)
    layer = gatelab.nn.RNN(LRU, 3, 4, dtype=torch.float64)
    layer.load_state_dict({f"{k}_l0": v for k, v in step.state_dict().items()})
    x = torch.randn(2, 3, dtype=torch.float64)
    h0 = torch.randn(2, 4, dtype=torch.float64)
    xs, hs = (x, h0) if batched else (x[0], h0[0])
    y, h = step(xs, hs, return_output=True)
    assert torch.equal(h, step(xs, hs))  # the states, as without the flag
    out, h_n = layer(xs.unsqueeze(0), hs.unsqueeze(0))
    torch.testing.assert_close(y, out[0])
    torch.testing.assert_close(h, h_n[0])
    p = step.cell_params()  # and by hand: y = C @ h' + D * h'
    hn = p["lam"] * hs + xs @ p["B"].T
    torch.testing.assert_close(y, hn @ p["C"].T + p["D"] * hn)


@pytest.mark.parametrize("cls", [gatelab.nn.RNNCell, gatelab.nn.GRUCell, gatelab.nn.LSTMCell])
def test_twins_return_what_torch_returns_and_their_output_state_with_the_flag(cls):
    torch.manual_seed(0)
    ours = cls(3, 4)
    theirs = getattr(torch.nn, cls.__name__)(3, 4)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3)
    got, want = ours(x), theirs(x)
    assert type(got) is type(want)
    y, states = ours(x, return_output=True)
    first = states[0] if isinstance(states, tuple) else states
    assert torch.equal(y, first)
    torch.testing.assert_close(first, want[0] if isinstance(want, tuple) else want)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 3), st.booleans(), st.integers(-2, 2))
def test_hidden_input_size_errors_name_the_callers_sizes(hidden, layers, bidirectional, delta):
    input_size = max(1, hidden + delta)
    runs = input_size == hidden and not (layers > 1 and bidirectional)
    if runs:
        layer = gatelab.nn.RNN(HIGHWAY, input_size, hidden, num_layers=layers,
                               bidirectional=bidirectional)
        layer(torch.randn(3, 2, input_size))
        return
    with pytest.raises(EngineError) as e:
        gatelab.nn.RNN(HIGHWAY, input_size, hidden, num_layers=layers, bidirectional=bidirectional)
    message = str(e.value)
    assert f"input_size={input_size}" in message and f"hidden_size={hidden}" in message
    assert "input_size=" + str(2 * hidden) not in message or input_size == 2 * hidden
