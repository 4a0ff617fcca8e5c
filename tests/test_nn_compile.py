"""gatelab.nn's torch twins under ``torch.compile``: same outputs and parameter gradients as
eager, whether or not the input requires grad, in training and eval mode.

The input that does not require grad is the case that once crashed: AOT autograd cannot trace
the backward of torch's fused CPU kernel then (``aten.mkldnn_rnn_layer``), so under
``torch.compile`` with autograd recording the layers run gatelab's traceable step instead.
``aot_eager`` exercises the same tracing as inductor without its code generation, so most
cases use it; one inductor case runs end to end.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import gatelab.nn as gn

TOL = 1e-5


def _leaves(obj) -> list[torch.Tensor]:
    if torch.is_tensor(obj):
        return [obj]
    if isinstance(obj, torch.nn.utils.rnn.PackedSequence):
        return [obj.data]
    return [t for o in obj for t in _leaves(o)]


def _compare(module: torch.nn.Module, x, backend: str, hx=None) -> float:
    """Max abs difference of outputs and parameter gradients, compiled vs eager."""
    params = list(module.parameters())
    args = (x,) if hx is None else (x, hx)
    want = module(*args)
    g_want = torch.autograd.grad(sum(t.sum() for t in _leaves(want)), params)
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = torch.compile(module, backend=backend)(*args)
    g_got = torch.autograd.grad(sum(t.sum() for t in _leaves(got)), params)
    pairs = list(zip(_leaves(got), _leaves(want), strict=True))
    pairs += list(zip(g_got, g_want, strict=True))
    assert all(a.shape == b.shape for a, b in pairs)
    return max((a - b).abs().max().item() for a, b in pairs)


LAYERS = {"LSTM": lambda **k: gn.LSTM(3, 4, **k), "GRU": lambda **k: gn.GRU(3, 4, **k),
          "RNN": lambda **k: gn.RNN(3, 4, **k),
          "RNN-relu": lambda **k: gn.RNN(3, 4, nonlinearity="relu", **k)}


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("input_grad", [False, True], ids=["raw", "grad"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_compiled_equals_eager(name, input_grad, batch_first):
    torch.manual_seed(0)
    m = LAYERS[name](batch_first=batch_first).train()
    x = torch.randn(2, 5, 3, requires_grad=input_grad)
    assert _compare(m, x, "aot_eager") < TOL


def test_deep_bidirectional_compiled_equals_eager():
    torch.manual_seed(0)
    m = gn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True).eval()
    assert _compare(m, torch.randn(2, 3, 3), "aot_eager") < TOL


def test_initial_state_and_unbatched_compiled_equal_eager():
    torch.manual_seed(0)
    m = gn.LSTM(3, 4)
    hx = (torch.randn(1, 4, requires_grad=True), torch.randn(1, 4))
    assert _compare(m, torch.randn(5, 3), "aot_eager", hx) < TOL


@pytest.mark.parametrize("input_grad", [False, True], ids=["raw", "grad"])
def test_projected_and_packed_compiled_equal_eager(input_grad):
    # paths the traceable step does not take: torch's kernel runs behind a graph break
    torch.manual_seed(0)
    m = gn.LSTM(3, 4, proj_size=2)
    assert _compare(m, torch.randn(5, 2, 3, requires_grad=input_grad), "aot_eager") < TOL
    packed = pack_padded_sequence(torch.randn(5, 2, 3, requires_grad=input_grad), [5, 3])
    assert _compare(gn.GRU(3, 4), packed, "aot_eager") < TOL


@pytest.mark.parametrize("input_grad", [False, True], ids=["raw", "grad"])
@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cell_compiled_equals_eager(name, input_grad):
    torch.manual_seed(0)
    m = getattr(gn, name)(3, 4)
    assert _compare(m, torch.randn(2, 3, requires_grad=input_grad), "aot_eager") < TOL


def test_inference_compiled_keeps_the_fused_kernel():
    # no autograd recording: the kernel traces fine, and the output is torch's to the bit
    torch.manual_seed(0)
    m = gn.LSTM(3, 4).eval()
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        want = m(x)
        torch._dynamo.reset()
        got = torch.compile(m, backend="aot_eager")(x)
    assert all(torch.equal(a, b) for a, b in zip(_leaves(got), _leaves(want), strict=True))


@pytest.mark.slow  # inductor compiles C++ kernels: 17 s with a cold cache, 30 s on busy cores
def test_inductor_lstm_raw_input():
    torch.manual_seed(0)
    m = gn.LSTM(3, 4, batch_first=True).train()
    assert _compare(m, torch.randn(2, 5, 3), "inductor") < TOL


@pytest.mark.parametrize("make", [lambda: gn.LSTM(3, 4), lambda: gn.GRUCell(3, 4),
                                  lambda: gn.RNN("mgu", 3, 4)])
def test_jit_script_is_refused_naming_what_works_and_trace_still_runs(make):
    m = make()
    with pytest.raises(RuntimeError, match=r"torch.jit.script cannot compile .*torch.jit.trace"):
        torch.jit.script(m)
    parent = torch.nn.Sequential(m)  # scripting a model that holds one says the same
    with pytest.raises(RuntimeError, match="torch.jit.script cannot compile"):
        torch.jit.script(parent)
    x = torch.randn(5, 2, 3) if not isinstance(m, gn.Cell) else torch.randn(2, 3)
    traced = torch.jit.trace(m, (x,), check_trace=False)
    out, ref = traced(x), m(x)
    out, ref = (o[0] if isinstance(o, tuple) else o for o in (out, ref))
    # the traced loop is the reference step, the eager one the generated engine: same to rounding
    assert (out - ref).abs().max() < 1e-6
