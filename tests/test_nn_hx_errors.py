"""gatelab.nn against torch.nn on malformed ``hx`` and on ``repr``.

Each case runs torch's module and gatelab's twin on the same arguments; the outcome (success,
or the exception type) must be the same. Expected outcomes are computed from torch in the test,
never written down, so a torch upgrade that changes them shows up here as a difference.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import gatelab.nn as gn

H = 4


def _outcome(fn) -> str:
    """``"ok"`` or the name of the exception ``fn()`` raised."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return type(e).__name__
    return "ok"


def _cell_hx(kind: str, batched: bool):
    h = torch.randn(3, H) if batched else torch.randn(H)
    return {"tensor": h, "stacked": torch.stack([h, h]), "stacked1": h.unsqueeze(0),
            "stacked3": torch.stack([h, h, h]), "tuple1": (h,), "tuple2": (h, h),
            "tuple3": (h, h, h), "list2": [h, h], "scalar": torch.tensor(1.0),
            "with_none": (None, h)}[kind]


CELL_KINDS = ["tensor", "stacked", "stacked1", "stacked3", "tuple1", "tuple2", "tuple3", "list2",
              "scalar", "with_none"]


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("kind", CELL_KINDS)
@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cell_hx_outcome_matches_torch(name, kind, batched):
    def run(lib):
        torch.manual_seed(0)
        x = torch.randn(3, 3) if batched else torch.randn(3)
        return lambda: getattr(lib, name)(3, H)(x, _cell_hx(kind, batched))

    assert _outcome(run(gn)) == _outcome(run(torch.nn))


def test_lstmcell_single_tensor_hx_is_a_type_error():
    # The common mistake: h passed instead of (h, c). torch's kernel refuses it by type.
    with pytest.raises(TypeError, match="tuple of Tensors"):
        gn.LSTMCell(3, H)(torch.randn(2, 3), torch.randn(2, H))
    with pytest.raises(TypeError, match="tuple of Tensors"):  # not run as h=hx[0], c=hx[1]
        gn.LSTMCell(3, H)(torch.randn(2, 3), torch.randn(2, 2, H))


def _layer_input(mode: str):
    return {"batched": lambda: torch.randn(5, 2, 3), "unbatched": lambda: torch.randn(5, 3),
            "packed_sorted": lambda: pack_padded_sequence(torch.randn(5, 2, 3), [5, 3]),
            "packed_unsorted": lambda: pack_padded_sequence(torch.randn(5, 2, 3), [3, 5],
                                                            enforce_sorted=False)}[mode]()


def _layer_hx(kind: str, batched: bool):
    h = torch.randn(1, 2, H) if batched else torch.randn(1, H)
    return {"tensor": h, "stacked": torch.stack([h, h]), "stacked1": h.unsqueeze(0),
            "stacked3": torch.stack([h, h, h]), "tuple1": (h,), "tuple2": (h, h),
            "tuple3": (h, h, h), "list2": [h, h],
            "stacked_bad_batch": torch.randn(2, 1, 3, H) if batched else torch.randn(2, 1, H + 1),
            "numpy": h.numpy(), "numpy_stacked": torch.stack([h, h]).numpy(),
            }[kind]


LAYER_KINDS = ["tensor", "stacked", "stacked1", "stacked3", "tuple1", "tuple2", "tuple3",
               "list2", "stacked_bad_batch", "numpy", "numpy_stacked"]


@pytest.mark.parametrize("mode", ["batched", "unbatched", "packed_sorted", "packed_unsorted"])
@pytest.mark.parametrize("kind", LAYER_KINDS)
@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_layer_hx_outcome_matches_torch(name, kind, mode):
    def run(lib):
        torch.manual_seed(0)
        x = _layer_input(mode)
        return lambda: getattr(lib, name)(3, H)(x, _layer_hx(kind, mode != "unbatched"))

    assert _outcome(run(gn)) == _outcome(run(torch.nn))


@pytest.mark.parametrize("mode", ["batched", "unbatched", "packed_sorted", "packed_unsorted"])
@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_input_dtype_mismatch_outcome_matches_torch(name, mode, dtype):
    """torch's packed LSTM checks nothing before its kernel (RuntimeError from the GEMM); its
    other paths raise check_input's ValueError. Each outcome must be torch's."""
    def run(lib):
        torch.manual_seed(0)
        x = _layer_input(mode)
        x = x._replace(data=x.data.to(dtype)) if hasattr(x, "batch_sizes") else x.to(dtype)
        return lambda: getattr(lib, name)(3, H)(x)

    assert _outcome(run(gn)) == _outcome(run(torch.nn))


def test_lstm_stacked_tensor_hx_is_a_type_error():
    # torch hands a batched hx to its kernel as given; a stacked (2, L, N, H) tensor is refused
    with pytest.raises(TypeError, match="tuple of Tensors"):
        gn.LSTM(3, H)(torch.randn(5, 2, 3), torch.randn(2, 1, 2, H))


# ---- repr ----------------------------------------------------------------------------------------
LAYER_KWARGS = {"num_layers": [1, 2], "bias": [True, False], "batch_first": [False, True],
                "dropout": [0.0, 0.5, 1], "bidirectional": [False, True]}
OWN_KWARGS = {"LSTM": {"proj_size": [0, 2]}, "GRU": {}, "RNN": {"nonlinearity": ["tanh", "relu"]}}


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_layer_repr_matches_torch(name):
    grid = {**LAYER_KWARGS, **OWN_KWARGS[name]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropout with one layer warns, in both
        for values in itertools.product(*grid.values()):
            kw = dict(zip(grid, values, strict=True))
            assert repr(getattr(gn, name)(3, H, **kw)) == repr(getattr(torch.nn, name)(3, H, **kw))
    # positional arguments, torch's order
    assert repr(gn.RNN(3, H, 2, "relu", False)) == repr(torch.nn.RNN(3, H, 2, "relu", False))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("name", "extra"), [("LSTMCell", {}), ("GRUCell", {}),
                                             ("RNNCell", {"nonlinearity": "tanh"}),
                                             ("RNNCell", {"nonlinearity": "relu"})])
def test_cell_repr_matches_torch(name, extra, bias):
    assert (repr(getattr(gn, name)(3, H, bias=bias, **extra))
            == repr(getattr(torch.nn, name)(3, H, bias=bias, **extra)))


def test_cell_signature_repr_names_the_cell():
    assert repr(gn.RNN("mgu", 3, H, num_layers=2)) == "RNN('mgu', 3, 4, num_layers=2)"
    assert repr(gn.LSTM(3, H, backend="generated")) == "LSTM(3, 4, backend='generated')"


# Constructor calls written for torch, positional arguments included (torch's RNN takes the
# nonlinearity 4th; RNN and GRU take proj_size after bidirectional, as RNNBase does).
CTOR_CASES = [
    ("GRU", (4, 6, 1, True, False, 0.0, False, 0), {}),
    ("GRU", (4, 6, 1, True, False, 0.0, False, 0, "cpu", torch.float64), {}),
    ("GRU", (4, 6, 1, True, False, 0.0, False, 0, "cpu", torch.float64, 5), {}),
    ("GRU", (4, 6), {"proj_size": 0}),
    ("GRU", (4, 6), {"foo": 1}),
    ("RNN", (4, 6, 1, "relu", True, False, 0.0, False, 0, "cpu"), {}),
    ("RNN", (4, 6, 1, "tanh", True, False, 0.0, False, "cpu"), {}),
    ("RNN", (4, 6, 1, "sigmoid"), {}),
    ("RNN", ("4", 6, 2), {}),
    ("RNN", (4, 6), {"proj_size": 0}),
    ("GRU", (4, 6, 1, True, False, 0.0, False, False), {}),
    ("GRU", (4, 6, 1, True, False, 0.0, False, None), {}),
    ("RNN", (4, 6, 1, True, False, 0.0, False, 0, None, torch.float64), {}),
    ("LSTM", (4, 6, 1, True, False, 0.0, False, 0, "cpu", torch.float32, 1), {}),
    ("LSTM", (4, 6, 1, True, False, 0.0, False, 2, "cpu", torch.float64), {}),
]


@pytest.mark.parametrize("name,args,kwargs", CTOR_CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(CTOR_CASES)])
def test_constructor_outcome_matches_torch(name, args, kwargs):
    """The same positional and keyword arguments: the same module (its repr and parameter
    shapes and dtypes) or the same exception type."""
    def build(lib):
        m = getattr(lib, name)(*args, **kwargs)
        return repr(m), [(n, p.shape, p.dtype) for n, p in m.named_parameters()]

    want = _outcome(lambda: build(torch.nn))
    assert _outcome(lambda: build(gn)) == want
    if want == "ok":
        assert build(gn) == build(torch.nn)


def test_gru_positional_projection_is_refused():
    """torch builds ``GRU(..., bidirectional, 2)`` (a projected GRU) that no forward call can
    run; gatelab refuses it at construction, with torch's message for ``proj_size=``."""
    with pytest.raises(ValueError, match="only supported for LSTM"):
        gn.GRU(4, 6, 1, True, False, 0.0, False, 2)
    with pytest.raises(RuntimeError):
        torch.nn.GRU(4, 6, 1, True, False, 0.0, False, 2)(torch.randn(3, 1, 4))


def test_all_weights_names_match_torch():
    """``_all_weights`` (names per layer and direction), which weight-drop helpers walk."""
    for cls in ("LSTM", "GRU", "RNN"):
        ours = getattr(gn, cls)(3, 4, 2, bidirectional=True)._all_weights
        assert ours == getattr(torch.nn, cls)(3, 4, 2, bidirectional=True)._all_weights
