"""CUDA graphs for the engine's time loops: capture once per shape, replay every call after.

A recurrent layer's forward (and its hand-written backward) is a Python loop over T steps, each
launching a few small kernels (one GEMM, one fused pointwise kernel). At small batch the GPU
idles between launches; a CUDA graph records the whole loop once and replays it with one launch.
A graph is only valid for the shapes, dtypes and device it was recorded with, so graphs are
cached per :func:`shape_key`.

Usage (what the engine does on CUDA)::

    loop = GraphedFunction(forward_loop)       # forward_loop(x, h0, w_hh, ...) -> tuple
    out, hT = loop(x, h0, w_hh)               # 1st call per shape: warm up + capture; then replay

:class:`GraphedFunction` calls ``fn`` eagerly, never capturing, whenever
:func:`why_not_graphs` gives a reason: CPU tensors, no CUDA, the Triton interpreter, nested
capture, or ``GATELAB_CUDA_GRAPHS=0``. ``fn`` must be a pure function of its tensor arguments
(no autograd, no host synchronisation, no data-dependent shapes): the engine's forward and
backward loops are.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["GraphedFunction", "graphs_supported", "shape_key", "why_not_graphs"]


def graphs_supported(*args: object) -> bool:
    """Whether a call on these arguments may be captured (see :func:`why_not_graphs`)."""
    return why_not_graphs(*args) is None


def why_not_graphs(*args: object) -> str | None:
    """The first reason a call on ``args`` must run eagerly, or None when it may be captured:
    every tensor on one CUDA device, CUDA present, not inside another capture, not the Triton
    interpreter (it runs on the host), not switched off by ``GATELAB_CUDA_GRAPHS=0``."""
    if os.environ.get("GATELAB_CUDA_GRAPHS", "1") == "0":
        return "switched off by GATELAB_CUDA_GRAPHS=0"
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        return "the Triton interpreter runs on the host"
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if not tensors:
        return "no tensor arguments"
    if any(t.device.type != "cuda" for t in tensors):
        return "not every tensor is on a CUDA device"
    if len({t.device for t in tensors}) > 1:
        return "tensors on several CUDA devices"
    if not torch.cuda.is_available():
        return "CUDA is not available"
    if torch.cuda.is_current_stream_capturing():
        return "already inside a CUDA graph capture"
    return None


def shape_key(*args: object) -> tuple:
    """What a graph depends on: per tensor its shape, strides, dtype and device; other arguments
    (ints, strings, None...) by value. Two calls with equal keys can share one graph."""
    key = []
    for a in args:
        if isinstance(a, torch.Tensor):
            key.append(("T", tuple(a.shape), a.stride(), a.dtype, str(a.device)))
        else:
            try:
                hash(a)
            except TypeError:
                raise TypeError(f"arguments of a graphed function must be tensors or hashable "
                                f"values, got {type(a).__name__}") from None
            key.append(("V", a))
    return tuple(key)


@dataclass
class _Captured:
    graph: object  # torch.cuda.CUDAGraph
    inputs: list  # static input buffers (tensors) or values, in argument order
    outputs: tuple


class GraphedFunction:
    """``fn(*args) -> tuple[Tensor, ...]`` captured in a CUDA graph per :func:`shape_key`.

    Args:
        fn: pure tensor function; its outputs are returned in a tuple.
        max_graphs: graphs kept (least recently used dropped first); each holds its own memory.
        warmup: eager runs before capture (lazy initialisation, Triton/cuBLAS autotuning).
        clone_outputs: return copies, so later calls cannot overwrite earlier results. Turn it off
            only when each result is consumed before the next call.
    """

    def __init__(self, fn: Callable[..., tuple], *, max_graphs: int = 8, warmup: int = 2,
                 clone_outputs: bool = True):
        if max_graphs < 1:
            raise ValueError("max_graphs must be at least 1")
        self.fn = fn
        self.max_graphs = max_graphs
        self.warmup = warmup
        self.clone_outputs = clone_outputs
        self._graphs: OrderedDict[tuple, _Captured] = OrderedDict()
        self._failed: set[tuple] = set()

    def __len__(self) -> int:
        return len(self._graphs)

    def keys(self) -> list[tuple]:
        """Shape keys with a captured graph, least recently used first."""
        return list(self._graphs)

    def __call__(self, *args: object) -> tuple:
        if not graphs_supported(*args):
            return _as_tuple(self.fn(*args))
        key = shape_key(*args)
        if key in self._failed:
            return _as_tuple(self.fn(*args))
        entry = self._graphs.get(key)
        if entry is None:
            try:
                entry = self._capture(args)
            except RuntimeError as err:  # e.g. an op that cannot be captured
                warnings.warn(f"CUDA graph capture failed, running eagerly: {err}",
                              RuntimeWarning, stacklevel=2)
                self._failed.add(key)
                return _as_tuple(self.fn(*args))
            self._graphs[key] = entry
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
            for buf, a in zip(entry.inputs, args, strict=True):
                if isinstance(a, torch.Tensor):
                    buf.copy_(a)
        entry.graph.replay()
        if self.clone_outputs:
            return tuple(o.clone() for o in entry.outputs)
        return entry.outputs

    def _capture(self, args: tuple) -> _Captured:
        static = [a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.fn(*static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            outputs = _as_tuple(self.fn(*static))
        return _Captured(graph, static, outputs)


def _as_tuple(out: object) -> tuple:
    return out if isinstance(out, tuple) else (out,)
