"""What the sequence kernel's per-call shortcuts must keep: the cell's cached hash never
travels with a pickle, and the bias gradients that share one column sum come back as separate
tensors (a parameter's ``.grad`` never aliases another's)."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
import torch

import gatelab
import gatelab.nn as gn


@pytest.mark.parametrize("name", ["mgu", "lstm-peephole", "lstm", "gru"])
def test_cell_hash_is_kept_but_not_carried(name):
    cell = gatelab.load_cell(name)
    h = hash(cell)
    assert hash(cell) == h == hash(gatelab.load_cell(name))
    for other in (pickle.loads(pickle.dumps(cell)), copy.deepcopy(cell)):
        assert "_hash" not in other.__dict__  # hashes differ between processes
        assert other == cell and hash(other) == h
    renamed = dataclasses.replace(cell, name=cell.name + "-x")
    assert renamed != cell and "_hash" not in renamed.__dict__


@pytest.mark.parametrize("name", ["mgu", "lstm-peephole", "lstm", "gru"])
def test_bias_grads_are_separate_tensors_equal_to_the_reference(name):
    torch.manual_seed(0)
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    grads = {}
    for backend in ("sequence", "reference"):
        torch.manual_seed(1)
        m = gn.RNN(name, 4, 4, backend=backend).double()
        out, hn = m(x)
        hs = hn if isinstance(hn, tuple) else (hn,)
        (out.sum() + sum(h.sum() for h in hs)).backward()
        grads[backend] = {k: p.grad for k, p in m.named_parameters()}
    seq = grads["sequence"]
    ptrs = [g.data_ptr() for g in seq.values()]
    assert len(set(ptrs)) == len(ptrs)
    for k, g in seq.items():
        torch.testing.assert_close(g, grads["reference"][k], rtol=0, atol=1e-12)
