"""The forward of :class:`gatelab.nn.RNN` and its subclasses: torch's input handling and checks
(``torch.nn.LSTM.forward``'s order, exceptions and messages), then either torch's fused kernel
(the vendor path) or gatelab's engine, one layer and direction at a time.

Shapes: ``L = num_layers * D`` (``D = 2`` when bidirectional); states ``(L, N, H)``, the output
state ``(L, N, proj_size)`` when projected; input ``(T, N, I)`` (``(N, T, I)`` with
``batch_first``), ``(T, I)`` unbatched, or a ``PackedSequence``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from ..engine.backends import run_layer
from ..engine.vendor import flat_weights, run_vendor
from .checks import check_hidden, check_hx_as_given, check_hx_dims, check_input
from .packing import repack, reverse_index, time_gather, unpack


def _states(hx, n: int) -> tuple[torch.Tensor, ...]:
    """``hx`` as a tuple of ``n`` states, indexed ``hx[0], ..., hx[n-1]`` as torch's forward
    does (a short tuple: IndexError; extra entries are ignored here and, where torch hands
    ``hx`` to its kernel unconverted, refused by :func:`check_hx_as_given`)."""
    if n == 1:
        return (hx,)
    hx[0].dim()  # torch's forward asks hx[0] first: a non-tensor (numpy) is AttributeError
    return tuple(hx[i] for i in range(n))


def _permute(hs: tuple[torch.Tensor, ...], perm: torch.Tensor | None) -> tuple:
    return hs if perm is None else tuple(h.index_select(1, perm) for h in hs)


def layer_forward(m, input, hx):
    """``m(input, hx)`` for a :class:`gatelab.nn.RNN` ``m``; returns ``(output, h_n)``."""
    n = len(m.state_names)
    L = m.num_layers * m.num_directions
    sizes = [m.proj_size or m.hidden_size] + [m.hidden_size] * (n - 1)
    batch_sizes = sorted_indices = unsorted_indices = None
    is_batched = True
    if isinstance(input, PackedSequence):
        x, batch_sizes, sorted_indices, unsorted_indices = input
        N = int(batch_sizes[0])
    else:
        if input.dim() not in (2, 3):
            tensor = " tensor" if m._torch_name == "RNN" else ""
            raise ValueError(f"{m._torch_name}: Expected input to be 2D or 3D, got "
                             f"{input.dim()}D{tensor} instead")
        is_batched = input.dim() == 3
        batch_dim = 0 if m.batch_first else 1
        x = input if is_batched else input.unsqueeze(batch_dim)
        N = x.size(batch_dim)
    # where torch's forward hands a several-state hx to its kernel unconverted (batched input,
    # or packed input without sorted_indices), the kernel refuses a stacked tensor or a wrong
    # count; torch's packed LSTM path checks nothing before its kernel, so that comes first
    as_given = n > 1 and hx is not None and (
        is_batched if batch_sizes is None else sorted_indices is None)
    kernel = m.mode.lower()
    if as_given and batch_sizes is not None:
        check_hx_as_given(hx, n, kernel, position=3)
    if hx is None:
        hs = tuple(torch.zeros(L, N, s, dtype=x.dtype, device=x.device) for s in sizes)
    else:
        hs = _states(hx, n)
        if batch_sizes is None:
            check_hx_dims(hs, is_batched)
            if not is_batched:
                hs = tuple(h.unsqueeze(1) for h in hs)
        hs = _permute(hs, sorted_indices)
    weights = m._flat_weights
    # torch's packed LSTM checks nothing itself: its kernel's GEMM reports a dtype mismatch
    check_input(x, weights[0].dtype, m.input_size, batch_sizes is not None,
                kernel_dtype_error=batch_sizes is not None and m.mode == "LSTM")
    check_hidden(hs, [(L, N, s) for s in sizes])
    if as_given:
        check_hx_as_given(hx, n, kernel)
    if m.path != "vendor":
        output, hidden = _engine_forward(m, x, batch_sizes, hs)
    elif not _compiled_autograd(x, hs, weights):
        output, hidden = _vendor_forward(m, x, batch_sizes, hs)
    elif m.proj_size or batch_sizes is not None:  # the engine has no projection; packed
        # input's bookkeeping is data-dependent: run torch's kernel outside the graph
        output, hidden = _vendor_forward_eager(m, x, batch_sizes, hs)
    else:  # one graph, as gatelab's other cells give under torch.compile
        output, hidden = _engine_forward(m, x, batch_sizes, hs)
    if batch_sizes is not None:
        output = PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices)
    elif not is_batched:
        output = output.squeeze(0 if m.batch_first else 1)
        hidden = tuple(h.squeeze(1) for h in hidden)
    hidden = _permute(hidden, unsorted_indices)
    return output, (hidden[0] if n == 1 else hidden)


def _compiled_autograd(x: torch.Tensor, hs: tuple[torch.Tensor, ...],
                       weights: list[torch.Tensor]) -> bool:
    """Whether ``torch.compile`` (not an exporter) is tracing a call that autograd records.

    There the fused kernels cannot be traced: AOT autograd's joint graph of the CPU kernel
    (``aten.mkldnn_rnn_layer``) breaks when the input does not require grad (``aot_eager``:
    AssertionError on saved tensors; inductor: TypeError on ``mkldnn_rnn_layer``). torch's own
    layers never meet this only because dynamo does not trace them (``allow_rnn=False``) and
    runs them eagerly behind a graph break. Exporters trace no backward, and inference graphs
    trace the kernel fine, so both keep it."""
    return (torch.compiler.is_compiling() and not torch.compiler.is_exporting()
            and torch.is_grad_enabled()
            and any(t.requires_grad for t in (x, *hs, *weights)))


def _vendor_forward(m, x: torch.Tensor, batch_sizes: torch.Tensor | None,
                    hs: tuple[torch.Tensor, ...]):
    """torch's fused kernel over all layers (the vendor path)."""
    per = [m.packed_params(k, d) for k in range(m.num_layers) for d in range(m.num_directions)]
    flat = flat_weights(m._vendor, per, m.hidden_size)
    return run_vendor(m._vendor, x, batch_sizes, hs, flat, m.bias, m.num_layers, m.dropout,
                      m.training, m.bidirectional, m.batch_first)


# The same, run eagerly behind a graph break under torch.compile (what torch does for its own
# layers), for the calls the engine cannot take over (see _compiled_autograd).
_vendor_forward_eager = torch.compiler.disable(_vendor_forward)


def _engine_forward(m, x: torch.Tensor, batch_sizes: torch.Tensor | None,
                    hs: tuple[torch.Tensor, ...]):
    """gatelab's engine on torch-shaped arguments (packed data in sorted order, or padded)."""
    for i, h in enumerate(hs):
        if h.dtype != x.dtype:
            raise RuntimeError(f"hx[{i}] dtype ({h.dtype}) does not match input dtype "
                               f"({x.dtype})")
    lengths = index = None
    if batch_sizes is not None:
        packed = PackedSequence(x, batch_sizes)
        x, lengths, index = unpack(packed)
    elif m.batch_first:
        x = x.transpose(0, 1)
    T, N = x.shape[0], x.shape[1]
    if T == 0:
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
    if N == 0:  # torch returns empty outputs and the (empty) initial states, in the graph of
        # the weights as its kernel's are (backward through them runs and gives zero gradients)
        tie = sum(w.sum() for w in m._flat_weights) * 0
        out = x.new_zeros(T, 0, m.num_directions * m.hidden_size) + tie
        return (out.transpose(0, 1) if m.batch_first else out), tuple(h + tie for h in hs)
    layer_in, final = _layers(m, x, hs, lengths)
    if batch_sizes is not None:
        return repack(layer_in, packed, index).data, final
    return (layer_in.transpose(0, 1) if m.batch_first else layer_in), final


def _layers(m, x: torch.Tensor, hs: tuple[torch.Tensor, ...], lengths: torch.Tensor | None):
    """Every layer and direction through :func:`gatelab.engine.backends.run_layer`."""
    T = x.shape[0]
    mask = rev = None
    if lengths is not None:
        mask = (torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)).to(x.device)
        rev = reverse_index(lengths, T)
    final: list[list[torch.Tensor]] = [[] for _ in m.state_names]
    layer_in = x
    for k in range(m.num_layers):
        outs = []
        for d in range(m.num_directions):
            i = k * m.num_directions + d
            s0 = tuple(s[i] for s in hs)
            xin = layer_in
            if d == 1:
                xin = layer_in.flip(0) if lengths is None else time_gather(layer_in, rev)
            by_name = dict(zip(m.state_names, s0, strict=True))
            out, sn = run_layer(m.layout, m.packed_params(k, d), xin,
                                tuple(by_name[s] for s in m.cell.states), mask, m.backend)
            if d == 1:
                out = out.flip(0) if lengths is None else time_gather(out, rev)
            outs.append(out)
            new = dict(zip(m.cell.states, sn, strict=True))
            for j, s in enumerate(m.state_names):
                final[j].append(new[s])
        layer_in = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
        if m.dropout and m.training and k < m.num_layers - 1:
            layer_in = nn.functional.dropout(layer_in, m.dropout, training=True)
    return layer_in, tuple(torch.stack(f) for f in final)
