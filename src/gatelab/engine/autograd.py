"""The time loop of a planned cell as one ``torch.autograd.Function`` (``backend="torch"``).

Forward (per layer and direction; shapes ``x (T, N, I)``, states ``(N, H)``):

    Gx = x @ weight_ih.T + bias_ih [+ bias_hh of fused groups]      one GEMM for all steps
    for t:  for each GEMM stage: V = prepare(...) ; A = [Gx[t] +] V @ weight_hh[rows].T
            states' = final(states, Gx[t], A..., vectors)           generated pointwise

Backward walks the steps in reverse with the generated vector-Jacobian products of ``prepare``
and ``final`` (SymPy derivatives), one ``dA @ weight_hh[rows]`` GEMM per group and step, and
collects ``dA``/``dGx`` for all steps so the weight gradients are single large GEMMs after the
loop: ``dW_hh = dA^T V``, ``dW_ih = dGx^T x``, ``dx = dGx @ W_ih``.

With ``compiler="triton"`` and no padding mask the forward loop runs through
:class:`~gatelab.engine.cuda_graphs.GraphedFunction`: captured once per shape on CUDA and
replayed, run eagerly everywhere else (CPU tensors, the Triton interpreter). The backward loop
is not graphed yet.
"""

from __future__ import annotations

from functools import lru_cache

import sympy
import torch
from torch.autograd.function import once_differentiable

from ..cell.ir import Cell
from .gemm import linear
from .layout import Layout
from .plan import Plan
from .pointwise import compile_pointwise, vjp


class CompiledStep:
    """The pointwise functions of a :class:`Plan` compiled by one backend (``compiler``).

    Every function takes ``self.inputs`` (states, unfused input blocks, GEMM blocks, vectors) in
    that order; backward functions take the cotangents of their outputs after them.
    """

    def __init__(self, plan: Plan, compiler: str = "torch") -> None:
        self.plan, self.compiler = plan, compiler
        xs = [x for x in plan.xsyms if x is not None]
        gs = [s for g in plan.groups for s in g.symbols]
        self.inputs: list[sympy.Symbol] = [*plan.states, *xs, *gs, *plan.vectors]
        self.index = {s: i for i, s in enumerate(self.inputs)}
        outs = list(plan.nexts)
        self.out_separate = plan.output_index is None
        if self.out_separate:
            outs.append(plan.output)
        self.final = compile_pointwise(self.inputs, outs, compiler)
        self.final_wrt = self._wrt(outs)
        self.final_bwd = compile_pointwise(*vjp(self.inputs, outs, self.final_wrt), compiler)
        # A group's vector: a plain state (no work) or a "prepare" function.
        self.prep, self.prep_bwd, self.prep_wrt = {}, {}, {}
        for k, g in enumerate(plan.groups):
            if g.vector in plan.states:
                continue
            self.prep[k] = compile_pointwise(self.inputs, [g.vector], compiler)
            self.prep_wrt[k] = self._wrt([g.vector])
            self.prep_bwd[k] = compile_pointwise(
                *vjp(self.inputs, [g.vector], self.prep_wrt[k]), compiler)
        self._graphed = None
        # Whether the forward functions take ``out=`` (generated torch code without constant
        # outputs): results are then written straight into the loop's buffers.
        self.writes_out = all(getattr(f, "supports_out", False)
                              for f in (self.final, *self.prep.values()))

    @property
    def graphed_forward(self):
        """The forward loop wrapped in a per-shape CUDA graph (made on first use)."""
        if self._graphed is None:
            self._graphed = _graphed_forward_loop(self)
        return self._graphed

    def _wrt(self, outs: list[sympy.Expr]) -> list[sympy.Symbol]:
        free = set().union(*(o.free_symbols for o in outs))
        return [s for s in self.inputs if s in free]


@lru_cache(maxsize=256)
def compiled(cell: Cell, bias: bool, compiler: str) -> CompiledStep:
    """The compiled step of a cell (cached per cell, bias flag and backend: SymPy work and code
    generation happen once per process)."""
    return CompiledStep(Plan.of(Layout.of(cell), bias), compiler)


class FusedRNN(torch.autograd.Function):
    """``apply(step, mask, x, w_ih, w_hh, b_ih, b_hh, n_vec, *vectors, *states0)
    -> (out (T,N,H), *final states)``; ``vectors`` are the standalone parameters.

    Buffers: ``gx`` ``(T, N, G_x*H)`` holds the input pre-activations; a fused group adds its
    GEMM into its block of ``gx`` in place (so ``gx`` then holds ``z = x W^T + h U^T + b``), an
    unfused group keeps its own results. The backward mirrors this with ``dgx``.
    """

    @staticmethod
    def forward(ctx, step: CompiledStep, mask, x, w_ih, w_hh, b_ih, b_hh, n_vec: int, *rest):
        vecs, s0 = rest[:n_vec], rest[n_vec:]
        plan = step.plan
        T, N, _ = x.shape
        H = s0[0].shape[-1]
        n_ih = len(plan.layout.ih)
        # Input pre-activations of all steps in one GEMM; fused groups also take bias_hh here.
        if n_ih:
            bias = b_ih.clone() if b_ih is not None else x.new_zeros(n_ih * H)
            for g in plan.groups:
                if g.ih_rows is not None and b_hh is not None:
                    bias[g.ih_rows[0] * H:g.ih_rows[1] * H] += b_hh[g.rows[0] * H:g.rows[1] * H]
            gx = linear(x.reshape(T * N, -1), w_ih, bias).view(T, N, n_ih * H)
        else:
            gx = x.new_zeros(T, N, 0)
        if step.compiler == "triton" and mask is None:
            # On CUDA the whole loop is captured in a CUDA graph per shape and replayed (one
            # launch instead of several per step); elsewhere GraphedFunction runs it eagerly.
            res = step.graphed_forward(gx, w_hh, b_hh, *vecs, *s0)
            n_v, n_s, n_a = len(step.prep), len(s0), len(res) - 2 - len(step.prep) - len(s0)
            gx, out = res[0], res[-1]
            vbuf = dict(zip(step.prep, res[1:1 + n_v], strict=True))
            sbuf = list(res[1 + n_v:1 + n_v + n_s])
            unfused = [k for k, g in enumerate(plan.groups) if g.ih_rows is None]
            abuf = dict(zip(unfused, res[1 + n_v + n_s:1 + n_v + n_s + n_a], strict=True))
        else:
            out, sbuf, vbuf, abuf = _forward_loop(step, gx, w_hh, b_hh, vecs, s0, mask)
        n_states = len(s0)
        ctx.step, ctx.mask, ctx.n_vec = step, mask, n_vec
        ctx.abuf = abuf  # intermediate results, kept on ctx (neither inputs nor outputs)
        ctx.save_for_backward(x, w_ih, w_hh, b_ih, b_hh, gx, *vbuf.values(), *sbuf, *vecs)
        ctx.n_states = n_states
        return (out, *(b[T] for b in sbuf))

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, *dfinal):
        step: CompiledStep = ctx.step
        plan, mask, abuf = step.plan, ctx.mask, ctx.abuf
        saved = ctx.saved_tensors
        x, w_ih, w_hh, b_ih, b_hh, gx = saved[:6]
        rest = list(saved[6:])
        vbuf = dict(zip(step.prep, rest[:len(step.prep)], strict=True))
        rest = rest[len(step.prep):]
        sbuf, vecs = rest[:ctx.n_states], rest[ctx.n_states:]
        T, N, _ = x.shape
        H = sbuf[0].shape[-1]
        n_ih = len(plan.layout.ih)
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
        n_states, oi = ctx.n_states, plan.output_index
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
            _accumulate(grads, step.final_wrt, step.final_bwd(*args, *cot), step.index)
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
                    _accumulate(grads, step.prep_wrt[k], step.prep_bwd[k](*args, dv), step.index)
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
        return (None, None, *_weight_grads(ctx, step, x, w_ih, w_hh, b_ih, b_hh, dgx, dabuf,
                                           vbuf, sbuf), None, *dvec, *ds)

def _forward_loop(step: CompiledStep, gx, w_hh, b_hh, vecs, s0, mask, stack: bool = False):
    """The forward time loop of :class:`FusedRNN` (``gx`` is updated in place): returns
    ``(out, sbuf, vbuf, abuf)``. ``stack``: each unfused group's GEMM results as one
    ``(T, N, G*H)`` tensor instead of a list."""
    plan = step.plan
    T, N = gx.shape[0], gx.shape[1]
    H = s0[0].shape[-1]
    x = gx  # new buffers take gx's dtype and device
    abuf: dict[int, list[torch.Tensor]] = {k: [] for k, g in enumerate(plan.groups)
                                           if g.ih_rows is None}
    vbuf = {k: x.new_empty(T, N, H) for k in step.prep}
    sbuf = [x.new_empty(T + 1, N, H) for _ in s0]
    for b, s in zip(sbuf, s0, strict=True):
        b[0] = s
    out = x.new_empty(T, N, H) if (step.out_separate or mask is not None) else None
    args = [None] * len(step.inputs)
    xpos = [(step.index[s], k) for k, s in enumerate(plan.xsyms) if s is not None]
    for v, sym in zip(vecs, plan.vectors, strict=True):
        args[step.index[sym]] = v
    w_rows = [w_hh[g.rows[0] * H:g.rows[1] * H] for g in plan.groups]
    b_rows = [None if b_hh is None else b_hh[g.rows[0] * H:g.rows[1] * H]
              for g in plan.groups]
    n_states = len(s0)
    next_out = None
    if mask is None and step.writes_out:
        extra = [out] if step.out_separate else []
        next_out = [(*(b[t + 1] for b in sbuf), *(e[t] for e in extra)) for t in range(T)]
    for t in range(T):
        for i in range(n_states):
            args[i] = sbuf[i][t]
        for i, k in xpos:
            args[i] = gx[t, :, k * H:(k + 1) * H]
        for k, g in enumerate(plan.groups):
            if k in step.prep:
                v = vbuf[k][t]
                if step.writes_out:
                    step.prep[k](*args, out=(v,))
                else:
                    v.copy_(step.prep[k](*args)[0])
            else:
                v = args[step.index[g.vector]]
            if g.ih_rows is not None:  # z = Gx[t] + v U^T, in place in Gx's block
                a = gx[t, :, g.ih_rows[0] * H:g.ih_rows[1] * H]
                a.add_(linear(v, w_rows[k]))
            else:
                a = linear(v, w_rows[k], b_rows[k])
                abuf[k].append(a)
            for j, sym in enumerate(g.symbols):
                args[step.index[sym]] = a[:, j * H:(j + 1) * H]
        if mask is None and step.writes_out:  # new states written in place
            res = step.final(*args, out=next_out[t])
        else:
            res = step.final(*args)
            for i in range(n_states):
                new = res[i]
                if mask is not None:
                    new = torch.where(mask[t].unsqueeze(-1), new, sbuf[i][t])
                sbuf[i][t + 1] = new
        if out is not None and next_out is None:
            o = res[n_states] if step.out_separate else sbuf[plan.output_index][t + 1]
            out[t] = o if mask is None else o * mask[t].unsqueeze(-1)
    if out is None:
        out = sbuf[plan.output_index][1:].clone()
    if stack:
        abuf = {k: torch.stack(v) for k, v in abuf.items()}
    return out, sbuf, vbuf, abuf


def _graphed_forward_loop(step: CompiledStep):
    """The forward loop (no mask) as a pure tensor function in a
    :class:`~gatelab.engine.cuda_graphs.GraphedFunction`:
    ``fn(gx, w_hh, b_hh, *vectors, *states0) -> (gx, *vbuf, *sbuf, *abuf, out)``."""
    from .cuda_graphs import GraphedFunction

    n_vec = len(step.plan.vectors)

    def loop(gx, w_hh, b_hh, *rest):
        vecs, s0 = rest[:n_vec], rest[n_vec:]
        out, sbuf, vbuf, abuf = _forward_loop(step, gx, w_hh, b_hh, vecs, s0, None, stack=True)
        return (gx, *vbuf.values(), *sbuf, *abuf.values(), out)

    return GraphedFunction(loop)


def _weight_grads(ctx, step: CompiledStep, x, w_ih, w_hh, b_ih, b_hh, dgx, dabuf, vbuf, sbuf):
    """``dx, dW_ih, dW_hh, db_ih, db_hh`` as single large GEMMs over all ``T*N`` rows
    (``dW = dY^T V``). oneDNN wants ``dY^T`` contiguous: it is made once for ``dgx`` and shared
    by the fused groups, whose ``dA`` is their block of ``dgx``."""
    plan = step.plan
    T, N, _ = x.shape
    H = sbuf[0].shape[-1]
    n_ih = len(plan.layout.ih)
    need = ctx.needs_input_grad
    dx = dw_ih = dw_hh = db_ih = db_hh = None
    flat_dgx = dgx.reshape(T * N, -1)
    fused = [g for g in plan.groups if g.ih_rows is not None]
    dgx_t = flat_dgx.t().contiguous() if n_ih and (need[3] or fused) else None
    if n_ih and need[2]:
        dx = linear(flat_dgx, w_ih.t().contiguous()).view(T, N, -1)
    elif need[2]:
        dx = torch.zeros_like(x)
    if n_ih and need[3]:
        dw_ih = linear(dgx_t, x.reshape(T * N, -1).t().contiguous())
    if b_ih is not None and need[5]:
        db_ih = flat_dgx.sum(0)
    if not fused:
        dgx_t = None  # only fused groups read it below
    if w_hh is not None and (need[4] or need[6]):
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


def _accumulate(grads: dict[int, torch.Tensor], wrt, values, index) -> None:
    for s, v in zip(wrt, values, strict=True):
        if isinstance(v, float):
            continue
        i = index[s]
        grads[i] = v if i not in grads else grads[i] + v


def run_fused(layout: Layout, tensors: dict[str, torch.Tensor], x: torch.Tensor,
              state0: tuple[torch.Tensor, ...], mask: torch.Tensor | None,
              compiler: str = "torch"):
    """Run one direction of one layer with the generated step (see :mod:`backends`)."""
    step = compiled(layout.cell, layout.bias_flag(tensors), compiler)
    vecs = tuple(tensors[v] for v in step.plan.vector_names)
    res = FusedRNN.apply(step, mask, x, tensors.get("weight_ih"), tensors.get("weight_hh"),
                         tensors.get("bias_ih"), tensors.get("bias_hh"), len(vecs), *vecs,
                         *state0)
    return res[0], tuple(res[1:])
