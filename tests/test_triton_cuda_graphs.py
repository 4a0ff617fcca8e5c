"""The CUDA-graph helper: its guard, cache keys and cache logic. This machine has no GPU, so
no real capture runs here; the capture/replay path is driven through stand-ins for torch.cuda's
graph API."""

from __future__ import annotations

import contextlib

import pytest
import torch

from gatelab.engine import cuda_graphs as cg


def test_graphs_never_capture_on_cpu():
    calls = []

    def loop(x, h, steps):
        calls.append(steps)
        return x * 2 + h, h

    graphed = cg.GraphedFunction(loop)
    x, h = torch.randn(3, 2), torch.randn(3, 2)
    assert not cg.graphs_supported(x, h)
    out, same = graphed(x, h, 4)
    assert torch.equal(out, x * 2 + h) and same is h  # ran eagerly, returned as is
    assert calls == [4] and len(graphed) == 0 and graphed.keys() == []


def test_graph_guard_reasons(monkeypatch):
    x = torch.randn(2)
    monkeypatch.setenv("GATELAB_CUDA_GRAPHS", "0")
    assert "GATELAB_CUDA_GRAPHS" in cg.why_not_graphs(x)
    monkeypatch.delenv("GATELAB_CUDA_GRAPHS")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "interpreter" in cg.why_not_graphs(x)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert cg.why_not_graphs(3) == "no tensor arguments"
    assert "CUDA device" in cg.why_not_graphs(x, 3)
    # a CUDA-looking machine does not make a non-CUDA tensor capturable
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert "CUDA device" in cg.why_not_graphs(torch.empty(2, device="meta"))
    assert not cg.graphs_supported(x)


def test_shape_keys_separate_what_a_graph_depends_on():
    a = torch.zeros(4, 3)
    key = cg.shape_key
    assert key(a, 5) == key(torch.ones(4, 3), 5)  # values do not matter
    assert key(a, 5) != key(torch.zeros(5, 3), 5)  # shape
    assert key(a, 5) != key(a.double(), 5)  # dtype
    assert key(a, 5) != key(a.t().contiguous().t(), 5)  # strides
    assert key(a, 5) != key(a, 6)  # static arguments by value
    assert key(a, None) != key(a, 0)
    with pytest.raises(TypeError, match="hashable"):
        key(a, [1, 2])
    with pytest.raises(ValueError, match="max_graphs"):
        cg.GraphedFunction(lambda x: x, max_graphs=0)


def test_graph_cache_with_a_stand_in_for_cuda(monkeypatch):
    """Capture, replay and the per-shape cache, with torch.cuda's graph API replaced by stand-ins
    (this machine has no GPU): one capture per shape key, inputs copied into the captured
    buffers on replay, least recently used graph dropped first, failed captures run eagerly."""
    class Stream:
        def wait_stream(self, other):
            pass

    class Graph:
        def __init__(self):
            self.replays = 0

        def replay(self):
            self.replays += 1

    monkeypatch.setattr(cg, "why_not_graphs", lambda *args: None)
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "graph", lambda g: contextlib.nullcontext())
    calls = []

    def loop(x, k):
        calls.append(tuple(x.shape))
        return x * 2 + k

    graphed = cg.GraphedFunction(loop, max_graphs=2, warmup=2)
    x1 = torch.randn(3, 2)
    (out,) = graphed(x1, 1)
    assert len(calls) == 3  # two warm-up runs and the captured one
    assert torch.equal(out, x1 * 2 + 1)
    (entry,) = graphed._graphs.values()
    assert entry.graph.replays == 1 and entry.inputs[0] is not x1  # its own static buffer
    out.zero_()  # results are copies: the graph's output buffer is untouched
    assert torch.equal(entry.outputs[0], x1 * 2 + 1)
    x2 = torch.randn(3, 2)
    graphed(x2, 1)
    assert len(calls) == 3 and entry.graph.replays == 2  # replayed, not rerun
    assert torch.equal(entry.inputs[0], x2)  # new values copied into the captured buffer
    graphed(torch.randn(4, 2), 1)
    graphed(torch.randn(3, 2), 2)  # a static argument is part of the key
    assert len(graphed) == 2 and cg.shape_key(x1, 1) not in graphed.keys()  # oldest dropped

    def broken(x):
        raise RuntimeError("operation not permitted when stream is capturing")

    failing = cg.GraphedFunction(broken, warmup=0)
    with pytest.warns(RuntimeWarning, match="running eagerly"), pytest.raises(RuntimeError):
        failing(x1)  # capture fails, then the eager run raises the real error to the caller
    assert len(failing) == 0 and cg.shape_key(x1) in failing._failed
