"""The generated backward pass of :class:`~gatelab.engine.autograd.FusedRNN`.

The split: ``autograd.py`` holds the autograd Function (its ``forward`` runs the forward loop and
keeps :class:`Saved`; its ``backward`` calls this module), this module the backward half: the
reverse time loop and the weight gradients.

Walks the steps in reverse with the generated vector-Jacobian products of a step's ``prepare``
and ``final`` functions (SymPy derivatives, see :mod:`gatelab.engine.pointwise`), one
``dA @ weight_hh[rows]`` GEMM per group and step, and collects ``dA``/``dGx`` for all steps;
the weight gradients are then single large GEMMs over all ``T*N`` rows::

    dW_hh = dA^T V        dW_ih = dGx^T x        dx = dGx @ W_ih
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

from .gemm import linear

if TYPE_CHECKING:
    from .autograd import CompiledStep


class Saved(NamedTuple):
    """What :class:`FusedRNN`'s forward keeps for its backward, by name.

    ``x (T, N, I)``, the weights and biases as passed (biases may be None), ``gx (T, N, G_x*H)``
    the input pre-activations (fused groups' recurrent GEMMs added in), ``vbuf`` group index ->
    that group's prepared vector for every step ``(T, N, H)``, ``sbuf`` every state at every step
    ``(T+1, N, H)`` (index 0: the initial state), ``vecs`` the standalone parameter vectors.
    """

    x: torch.Tensor
    w_ih: torch.Tensor
    w_hh: torch.Tensor
    b_ih: torch.Tensor | None
    b_hh: torch.Tensor | None
    gx: torch.Tensor
    vbuf: dict[int, torch.Tensor]
    sbuf: list[torch.Tensor]
    vecs: tuple[torch.Tensor, ...]

    def tensors(self) -> tuple:
        """Flat, for ``ctx.save_for_backward``."""
        return (self.x, self.w_ih, self.w_hh, self.b_ih, self.b_hh, self.gx,
                *self.vbuf.values(), *self.sbuf, *self.vecs)

    @classmethod
    def from_tensors(cls, saved: tuple, groups: list[int], n_states: int) -> Saved:
        """Inverse of :meth:`tensors` (``groups``: the keys of ``vbuf``, in order)."""
        x, w_ih, w_hh, b_ih, b_hh, gx, *rest = saved
        n_v = len(groups)
        return cls(x, w_ih, w_hh, b_ih, b_hh, gx, dict(zip(groups, rest[:n_v], strict=True)),
                   list(rest[n_v:n_v + n_states]), tuple(rest[n_v + n_states:]))


class NeedsGrad(NamedTuple):
    """Which tensor arguments of ``FusedRNN.apply`` want a gradient (``ctx.needs_input_grad``
    by name)."""

    x: bool
    w_ih: bool
    w_hh: bool
    b_ih: bool
    b_hh: bool

    @classmethod
    def of(cls, needs_input_grad: tuple[bool, ...]) -> NeedsGrad:
        # apply(step, mask, x, w_ih, w_hh, b_ih, b_hh, n_vec, *vectors, *states0)
        return cls(*needs_input_grad[2:7])


# PLR0912: the backward time loop, the mirror of _forward_loop's branches
def backward_loop(step: CompiledStep, mask, gx, w_hh, vecs, sbuf, abuf, dout, dfinal):  # noqa: PLR0912
    """The backward time loop of :class:`FusedRNN`: returns ``(dgx, dabuf, dvec, ds)``, the
    gradients of the input pre-activations and of each unfused group's GEMM results for all
    steps, of the standalone vectors (None: none) and of the initial states."""
    plan = step.plan
    x = gx  # new buffers take gx's dtype and device
    T, N, _ = x.shape
    H = sbuf[0].shape[-1]
    n_ih = len(plan.xsyms)  # weight_ih blocks, then inputs read as themselves
    # Every block of dgx is written at every step: no zero fill of a large buffer.
    dgx = x.new_empty(T, N, n_ih * H)
    dabuf = {k: x.new_empty(T, N, len(plan.groups[k].matrices) * H) for k in abuf}
    ds = [torch.zeros_like(sbuf[i][0]) if d is None else d.clone()
          for i, d in enumerate(dfinal)]
    dvec = [None] * len(vecs)
    dout = torch.zeros_like(sbuf[0][1:]) if dout is None else dout
    args = [None] * len(step.inputs)
    xpos = [(step.index[s], k) for k, s in enumerate(plan.xsyms) if s is not None]
    for v, sym in zip(vecs, plan.vectors, strict=True):
        args[step.index[sym]] = v
    w_cols = [w_hh[g.rows[0] * H:g.rows[1] * H].t().contiguous()  # dV = dA @ W
              for g in plan.groups]
    vec_pos = {step.index[s]: j for j, s in enumerate(plan.vectors)}
    n_states, oi = len(sbuf), plan.output_index
    zero = sbuf[0].new_zeros(N, H)
    for t in range(T - 1, -1, -1):
        for i in range(n_states):
            args[i] = sbuf[i][t]
        for i, k in xpos:
            args[i] = gx[t, :, k * H:(k + 1) * H]
        for k, g in enumerate(plan.groups):
            a = abuf[k][t] if k in abuf else gx[t, :, g.ih_rows[0] * H:g.ih_rows[1] * H]
            for j, sym in enumerate(g.symbols):
                args[step.index[sym]] = a[:, j * H:(j + 1) * H]
        cot = list(ds)
        if not step.out_separate:
            d_o = dout[t] if mask is None else dout[t] * mask[t].unsqueeze(-1)
            cot[oi] = cot[oi] + d_o
        carry = None
        if mask is not None:
            m = mask[t].unsqueeze(-1)
            carry = [torch.where(m, 0.0, c) for c in cot]
            cot = [torch.where(m, c, 0.0) for c in cot]
        if step.out_separate:
            cot.append(dout[t] if mask is None else dout[t] * mask[t].unsqueeze(-1))
        grads: dict[int, torch.Tensor] = {}
        accumulate(grads, step.final_wrt, step.final_bwd(*args, *cot), step.index)
        for k in range(len(plan.groups) - 1, -1, -1):
            g = plan.groups[k]
            blocks = [grads.pop(step.index[s], None) for s in g.symbols]
            blocks = [zero if b is None else b.expand(N, H) for b in blocks]
            if k in dabuf:
                da = torch.cat(blocks, dim=1, out=dabuf[k][t])
            elif g.ih_rows == (0, n_ih):
                da = torch.cat(blocks, dim=1, out=dgx[t])
            else:  # one block needs no concatenation
                da = blocks[0].contiguous() if len(blocks) == 1 else torch.cat(blocks, dim=1)
                dgx[t, :, g.ih_rows[0] * H:g.ih_rows[1] * H] = da
            dv = linear(da, w_cols[k])
            if k in step.prep:
                accumulate(grads, step.prep_wrt[k], step.prep_bwd[k](*args, dv), step.index)
            else:
                i = step.index[g.vector]
                grads[i] = dv if i not in grads else grads[i] + dv
        for i, k in xpos:
            gxk = grads.get(i)
            dgx[t, :, k * H:(k + 1) * H] = zero if gxk is None else gxk
        for i, j in vec_pos.items():
            gv = grads.get(i)
            if gv is not None:
                gv = gv.sum(0) if gv.dim() == 2 else gv
                dvec[j] = gv if dvec[j] is None else dvec[j] + gv
        for i in range(n_states):
            d = grads.get(i)
            d = zero if d is None else d.expand(N, H)
            ds[i] = d if carry is None else d + carry[i]
    return dgx, dabuf, dvec, ds


def graphed_backward_loop(step: CompiledStep):
    """The backward loop (no mask) as a pure tensor function in a
    :class:`~gatelab.engine.cuda_graphs.GraphedFunction`: ``fn(gx, w_hh, dout, *vectors,
    *sbuf, *abuf, *dfinal) -> (dgx, *dabuf, *dvectors, *dstates)`` (zeros where the
    eager loop gives None)."""
    from .cuda_graphs import GraphedFunction

    n_vec, n_s = len(step.plan.vectors), len(step.plan.states)
    unfused = [k for k, g in enumerate(step.plan.groups) if g.ih_rows is None]

    def loop(gx, w_hh, dout, *rest):
        vecs, rest = rest[:n_vec], rest[n_vec:]
        sbuf, rest = list(rest[:n_s]), rest[n_s:]
        abuf, dfinal = dict(zip(unfused, rest[:len(unfused)], strict=True)), rest[len(unfused):]
        dgx, dabuf, dvec, ds = backward_loop(step, None, gx, w_hh, vecs, sbuf, abuf,
                                              dout, dfinal)
        dvec = [torch.zeros_like(v) if d is None else d for v, d in zip(vecs, dvec, strict=True)]
        return (dgx, *dabuf.values(), *dvec, *ds)

    return GraphedFunction(loop)


def weight_grads(need: NeedsGrad, step: CompiledStep, saved: Saved, dgx, dabuf):
    """``dx, dW_ih, dW_hh, db_ih, db_hh`` as single large GEMMs over all ``T*N`` rows
    (``dW = dY^T V``). oneDNN wants ``dY^T`` contiguous: it is made once for ``dgx`` and shared
    by the fused groups, whose ``dA`` is their block of ``dgx``."""
    plan = step.plan
    x, w_ih, w_hh, b_ih, b_hh = saved.x, saved.w_ih, saved.w_hh, saved.b_ih, saved.b_hh
    vbuf, sbuf = saved.vbuf, saved.sbuf
    T, N, _ = x.shape
    H = sbuf[0].shape[-1]
    n_ih = len(plan.xsyms)  # weight_ih blocks, then inputs read as themselves
    dx = dw_ih = dw_hh = db_ih = db_hh = None
    flat_dgx = dgx.reshape(T * N, -1)
    fused = [g for g in plan.groups if g.ih_rows is not None]
    dgx_t = flat_dgx.t().contiguous() if n_ih and (need.w_ih or fused) else None
    if n_ih and need.x:
        dx = linear(flat_dgx, w_ih.t().contiguous()).view(T, N, -1)
    elif need.x:
        dx = torch.zeros_like(x)
    if n_ih and need.w_ih:
        dw_ih = linear(dgx_t, x.reshape(T * N, -1).t().contiguous())
    if b_ih is not None and need.b_ih:
        db_ih = flat_dgx.sum(0)
    if not fused:
        dgx_t = None  # only fused groups read it below
    if w_hh is not None and (need.w_hh or need.b_hh):
        dw_hh = torch.empty_like(w_hh)
        dbs = []
        for k, g in enumerate(plan.groups):
            v = vbuf[k] if k in vbuf else sbuf[step.index[g.vector]][:-1]
            if k in dabuf:
                da_t = dabuf[k].reshape(T * N, -1).t().contiguous()
            else:
                da_t = dgx_t[g.ih_rows[0] * H:g.ih_rows[1] * H]
            dw_hh[g.rows[0] * H:g.rows[1] * H] = linear(da_t, v.reshape(T * N, H).t()
                                                        .contiguous())
            dbs.append(da_t.sum(1))
        if b_hh is not None:
            db_hh = torch.cat(dbs)
    return dx, dw_ih, dw_hh, db_ih, db_hh


def accumulate(grads: dict[int, torch.Tensor], wrt, values, index) -> None:
    for s, v in zip(wrt, values, strict=True):
        if isinstance(v, float):
            continue
        i = index[s]
        grads[i] = v if i not in grads else grads[i] + v
