"""PyTorch's own module tests, run against gatelab's twins.

``torch.testing._internal.common_modules.module_db`` holds torch's ``ModuleInfo`` entries for
``nn.RNN``, ``nn.LSTM``, ``nn.GRU``, ``nn.RNNCell``, ``nn.LSTMCell`` and ``nn.GRUCell``: the
constructor and forward arguments torch tests its modules with, reference functions and error
inputs (exception type + message). Every sample is built twice, torch's module and gatelab's
twin with the same weights, and checked as torch's ``test/test_modules.py`` checks modules:
forward (equal to torch's, and to the sample's reference function), gradients, gradcheck,
gradgradcheck, pickling (a ``weights_only`` load with only gatelab's public classes allowed),
deepcopy, factory kwargs, ``meta`` + ``to_empty``, non-contiguous inputs and parameters, and every
error input. The vendor path runs torch's own kernels, so forward and gradients must be *equal*.
"""

from __future__ import annotations

import copy
import io
import itertools

import pytest
import torch
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence
from torch.testing._internal.common_modules import ModuleErrorEnum, module_db
from torch.utils._pytree import tree_flatten, tree_map

import gatelab.nn as gn

NAMES = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"]
INFOS = {mi.module_cls.__name__: mi for mi in module_db
         if mi.module_cls.__name__ in NAMES and mi.module_cls.__module__.startswith("torch.nn")}


def _samples(name: str, dtype=torch.float64, requires_grad=False, training=False,
             packed: bool = False):
    """torch's samples; ``packed`` adds the PackedSequence ones torch's inputs function can
    make for RNN/GRU (not in torch's default set; run by the forward and gradient tests)."""
    mi = INFOS[name]
    torch.manual_seed(1234)  # the samples are random: the same ones on every call
    kw = {"with_packed_sequence": True} if packed and name in ("RNN", "GRU") else {}
    return list(mi.module_inputs_func(mi, device="cpu", dtype=dtype,
                                      requires_grad=requires_grad, training=training, **kw))


def _errors(name: str):
    mi = INFOS[name]
    return list(mi.module_error_inputs_func(mi, device="cpu", dtype=torch.float32,
                                            requires_grad=False, training=False))


SAMPLE_IDS = [(n, i) for n in NAMES for i in range(len(_samples(n)))]
PACKED_IDS = [(n, i) for n in NAMES for i in range(len(_samples(n, packed=True)))]
ERROR_IDS = [(n, i) for n in NAMES for i in range(len(_errors(n)))]


def _ids(v):
    return f"{v[0]}-{v[1]}"


def _build(name: str, sample, dtype=torch.float64, **factory):
    """torch's module and gatelab's twin with torch's weights."""
    args, kwargs = sample.constructor_input.args, dict(sample.constructor_input.kwargs)
    torch.manual_seed(0)
    ref = getattr(torch.nn, name)(*args, **kwargs, dtype=dtype)
    ours = getattr(gn, name)(*args, **kwargs, dtype=dtype, **factory)
    if not factory:
        ours.load_state_dict(ref.state_dict())
    return ref, ours


def _call(m, sample, transform=None):
    args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
    if transform is not None:
        args, kwargs = tree_map(transform, (args, kwargs))
    return m(*args, **kwargs)


def _tensors(obj) -> list[torch.Tensor]:
    return [t for t in tree_flatten(obj)[0] if torch.is_tensor(t) and t.is_floating_point()]


def _equal(got, want, rtol=0.0, atol=0.0):
    g, w = _tensors(got), _tensors(want)
    assert len(g) == len(w)
    for a, b in zip(g, w, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def _inputs(sample) -> list[torch.Tensor]:
    return [t for t in _tensors((sample.forward_input.args, sample.forward_input.kwargs))
            if t.requires_grad]


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("case", PACKED_IDS, ids=_ids)
def test_forward_equals_torch_and_reference(case, training):
    name, i = case
    sample = _samples(name, training=training, packed=True)[i]
    ref, ours = _build(name, sample)
    ref.train(training), ours.train(training)
    got = _call(ours, sample)
    _equal(got, _call(ref, sample))  # the same kernels: equal, not close
    packed = any(isinstance(a, PackedSequence) for a in sample.forward_input.args)
    if sample.reference_fn is not None and not packed:
        # ModuleInput wraps reference_fn: it passes the module's parameters itself
        _equal(got, sample.reference_fn(ours, *sample.forward_input.args,
                                        **sample.forward_input.kwargs))


@pytest.mark.parametrize("case", PACKED_IDS, ids=_ids)
def test_gradients_equal_torch(case):
    name, i = case
    grads = []
    for which in (0, 1):
        sample = _samples(name, requires_grad=True, packed=True)[i]
        m = _build(name, sample)[which]
        out = _call(m, sample)
        leaves = [*m.parameters(), *_inputs(sample)]
        loss = sum((t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).view_as(t)).sum()
                   for t in _tensors(out))
        grads.append(torch.autograd.grad(loss, leaves, allow_unused=True))
    _equal([g for g in grads[1] if g is not None], [g for g in grads[0] if g is not None])


def _functional(ours, sample):
    """(fn, inputs): the twin as a function of its parameters and its differentiable inputs."""
    names = [n for n, _ in ours.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in ours.named_parameters()]
    inputs = _inputs(sample)
    n_p = len(params)

    def fn(*flat):
        swap = dict(zip([id(t) for t in inputs], flat[n_p:], strict=True))
        out = _call_with(ours, sample, swap, dict(zip(names, flat[:n_p], strict=True)))
        return tuple(_tensors(out))

    return fn, (*params, *inputs)


def _call_with(ours, sample, swap, params):
    def sub(t):
        if isinstance(t, PackedSequence) and id(t.data) in swap:
            return PackedSequence(swap[id(t.data)], t.batch_sizes, t.sorted_indices,
                                  t.unsorted_indices)
        return swap.get(id(t), t) if torch.is_tensor(t) else t

    args = [tuple(sub(x) for x in a) if type(a) is tuple else sub(a)
            for a in sample.forward_input.args]
    return functional_call(ours, params, tuple(args), sample.forward_input.kwargs)


@pytest.mark.parametrize("order", ["gradcheck", pytest.param("gradgradcheck",
                                                               marks=pytest.mark.slow)])
@pytest.mark.parametrize("case", SAMPLE_IDS, ids=_ids)
def test_gradcheck(case, order):
    name, i = case
    sample = _samples(name, requires_grad=True)[i]
    _, ours = _build(name, sample)
    fn, inputs = _functional(ours, sample)
    check = torch.autograd.gradcheck if order == "gradcheck" else torch.autograd.gradgradcheck
    assert check(fn, inputs, fast_mode=True)


@pytest.mark.parametrize("case", SAMPLE_IDS, ids=_ids)
def test_pickle_weights_only_and_deepcopy(case):
    name, i = case
    sample = _samples(name)[i]
    ref, ours = _build(name, sample)
    want = _call(ref, sample)
    buf = io.BytesIO()
    torch.save(ours, buf)
    buf.seek(0)
    with torch.serialization.safe_globals(list(gn.PUBLIC_CLASSES)):
        loaded = torch.load(buf, weights_only=True)
    assert type(loaded) is type(ours) and loaded.cell == ours.cell
    _equal(_call(loaded, sample), want)
    _equal(_call(copy.deepcopy(ours), sample), want)


@pytest.mark.parametrize("case", SAMPLE_IDS, ids=_ids)
def test_meta_then_to_empty_and_factory_kwargs(case):
    name, i = case
    sample = _samples(name)[i]
    ref, meta = _build(name, sample, device="meta")
    assert all(p.device.type == "meta" and p.dtype == torch.float64 for p in meta.parameters())
    ours = meta.to_empty(device="cpu")
    ours.load_state_dict(ref.state_dict())
    assert all(p.device.type == "cpu" for p in ours.parameters())
    _equal(_call(ours, sample), _call(ref, sample))
    _, single = _build(name, sample, dtype=torch.float32, device="cpu")
    assert {p.dtype for p in single.parameters()} == {torch.float32}


def _non_contiguous(t):
    if not torch.is_tensor(t) or t.dim() == 0:
        return t
    out = torch.repeat_interleave(t, 2, dim=-1)[..., ::2].detach()
    out.requires_grad = t.requires_grad
    return out


@pytest.mark.parametrize("case", SAMPLE_IDS, ids=_ids)
def test_non_contiguous_inputs_and_parameters(case):
    name, i = case
    sample = _samples(name)[i]
    ref, ours = _build(name, sample)
    want = _call(ref, sample)
    with torch.no_grad():
        for p in ours.parameters():
            p.data = _non_contiguous(p.data)
    assert not all(p.is_contiguous() for p in ours.parameters() if p.dim() > 1)
    # strided operands may take other BLAS paths: close, as torch's own test compares
    _equal(_call(ours, sample, _non_contiguous), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ERROR_IDS, ids=_ids)
def test_error_inputs_raise_as_torch(case):
    name, i = case
    err = _errors(name)[i]
    sample = err.module_error_input
    args, kwargs = sample.constructor_input.args, dict(sample.constructor_input.kwargs)
    if err.error_on == ModuleErrorEnum.CONSTRUCTION_ERROR:
        with pytest.raises(err.error_type, match=err.error_regex):
            getattr(torch.nn, name)(*args, **kwargs)  # torch's own behaviour, for the record
        with pytest.raises(err.error_type, match=err.error_regex):
            getattr(gn, name)(*args, **kwargs)
        return
    for cls in (getattr(torch.nn, name), getattr(gn, name)):
        m = cls(*args, **kwargs)
        with pytest.raises(err.error_type, match=err.error_regex):
            _call(m, sample)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_generated_engine_equals_torch_on_the_samples(name):
    """The same samples through gatelab's own engine (not torch's kernels): close, float64."""
    for sample in _samples(name, requires_grad=True):
        if sample.constructor_input.kwargs.get("proj_size"):
            continue  # projections run on torch's kernels only
        ref, _ = _build(name, sample)
        args, kwargs = sample.constructor_input.args, dict(sample.constructor_input.kwargs)
        ours = getattr(gn, name)(*args, **kwargs, dtype=torch.float64, backend="generated")
        ours.load_state_dict(ref.state_dict())
        assert ours.path == "generated"
        _equal(_call(ours, sample), _call(ref, sample), rtol=1e-10, atol=1e-12)


def test_sample_counts_cover_every_class():
    assert set(INFOS) == set(NAMES)
    counts = {n: len(_samples(n)) for n in NAMES}
    assert all(c >= 2 for c in counts.values()), counts
    assert sum(len(_errors(n)) for n in NAMES) >= 20
    assert list(itertools.chain(SAMPLE_IDS))  # parametrisation is not empty
