"""The time loop of a planned cell as one ``torch.autograd.Function`` (``backend="torch"``).

Forward (per layer and direction; shapes ``x (T, N, I)``, states ``(N, H)``):

    Gx = x @ weight_ih.T + bias_ih [+ bias_hh of fused groups]      one GEMM for all steps
    for t:  for each GEMM stage: V = prepare(...) ; A = [Gx[t] +] V @ weight_hh[rows].T
            states' = final(states, Gx[t], A..., vectors)           generated pointwise

Backward (:mod:`gatelab.engine.backward`) walks the steps in reverse with the generated
vector-Jacobian products and ends with the weight gradients as single large GEMMs.

With ``compiler="triton"`` and no padding mask the forward loop runs through
:class:`~gatelab.engine.cuda_graphs.GraphedFunction`: captured once per shape on CUDA and
replayed, run eagerly everywhere else (CPU tensors, the Triton interpreter); so does the
backward loop. The capture is tested through the eager path only until a GPU run passes
(benchmarks/RESULTS-gpu.md), which is why ``triton`` is opt-in.
"""

from __future__ import annotations

from functools import lru_cache

import sympy
import torch
from torch.autograd.function import once_differentiable

from ..cell.ir import Cell
from .backward import NeedsGrad, Saved, backward_loop, graphed_backward_loop, weight_grads
from .gemm import linear
from .layout import EngineError, Layout
from .plan import Plan, uses_layer_norm
from .pointwise import compile_many, vjp


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
        self.final_wrt = self._wrt(outs)
        # Backward expressions are derived lazily: a C library built for the same expressions
        # by an earlier process is loaded without the SymPy work (key: the step's expressions).
        specs = [(self.inputs, outs), (self._cots(outs), lambda: vjp(
            self.inputs, outs, self.final_wrt)[1])]
        # A group's vector: a plain state (no work) or a "prepare" function.
        self.prep, self.prep_bwd, self.prep_wrt = {}, {}, {}
        preps = [k for k, g in enumerate(plan.groups) if g.vector not in plan.states]
        for k in preps:
            v, self.prep_wrt[k] = plan.groups[k].vector, self._wrt([plan.groups[k].vector])
            specs += [(self.inputs, [v]),
                      (self._cots([v]), lambda v=v, w=self.prep_wrt[k]: vjp(self.inputs, [v],
                                                                             w)[1])]
        key = sympy.srepr((self.inputs, outs, [plan.groups[k].vector for k in preps]))
        if uses_layer_norm(plan.layout.cell):
            fns = self._row_reduced(specs, compiler)
        else:
            fns = compile_many(specs, compiler, key=key)  # "c": one library, one compiler run
        self.final, self.final_bwd = fns[0], fns[1]
        for j, k in enumerate(preps):
            self.prep[k], self.prep_bwd[k] = fns[2 + 2 * j], fns[3 + 2 * j]
        self._graphed = self._graphed_bwd = None
        # Whether the forward functions take ``out=`` (generated torch code without constant
        # outputs): results are then written straight into the loop's buffers.
        self.writes_out = all(getattr(f, "supports_out", False)
                              for f in (self.final, *self.prep.values()))

    def _row_reduced(self, specs: list, compiler: str) -> list:
        """A step with ``layer_norm`` (a reduction over each row's H units, so no elementwise
        derivative for SymPy to print): the forward functions are the generated torch code,
        which spells it ``torch.nn.functional.layer_norm``, and each backward function is that
        code's vector-Jacobian product taken by torch's autograd."""
        if compiler != "torch":
            raise EngineError(
                f"cell {self.plan.layout.cell.name!r} uses layer_norm, a reduction over the "
                f"hidden units, which the {compiler!r} kernels do not compute; use "
                "backend='generated' or 'reference'")
        forwards = compile_many(specs[0::2], compiler)
        out: list = []
        for fwd, (_, wrt) in zip(forwards, [(None, self.final_wrt),
                                            *[(None, w) for w in self.prep_wrt.values()]],
                                 strict=True):
            out += [fwd, _autograd_vjp(fwd, len(self.inputs), [self.index[w] for w in wrt])]
        return out

    @property
    def graphed_forward(self):
        """The forward loop wrapped in a per-shape CUDA graph (made on first use)."""
        if self._graphed is None:
            self._graphed = _graphed_forward_loop(self)
        return self._graphed

    @property
    def graphed_backward(self):
        """The backward loop wrapped in a per-shape CUDA graph (made on first use)."""
        if self._graphed_bwd is None:
            self._graphed_bwd = graphed_backward_loop(self)
        return self._graphed_bwd

    def _cots(self, outs: list[sympy.Expr]) -> list[sympy.Symbol]:
        """Inputs of the vector-Jacobian product of ``outs`` (as :func:`vjp` names them)."""
        return [*self.inputs, *(sympy.Symbol(f"g{j}__") for j in range(len(outs)))]

    def _wrt(self, outs: list[sympy.Expr]) -> list[sympy.Symbol]:
        free = set().union(*(o.free_symbols for o in outs))
        return [s for s in self.inputs if s in free]


def _autograd_vjp(fwd, n_in: int, wrt: list[int]):
    """``bwd(*inputs, *cotangents) -> gradients of the inputs at positions wrt`` (0.0 where an
    input does not reach the outputs: the loop then adds nothing), by torch's autograd."""

    def bwd(*args):
        ins, cots = list(args[:n_in]), args[n_in:]
        with torch.enable_grad():
            for i in wrt:
                ins[i] = ins[i].detach().requires_grad_(True)
            pairs = [(o, c) for o, c in zip(fwd(*ins), cots, strict=True)
                     if isinstance(o, torch.Tensor) and o.requires_grad]
            got = torch.autograd.grad([o for o, _ in pairs], [ins[i] for i in wrt],
                                      [c for _, c in pairs], allow_unused=True)
        return tuple(0.0 if g is None else g for g in got)

    bwd.source = "# the vector-Jacobian product of the function above, by torch.autograd\n"
    return bwd


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
        n_ih = len(plan.xsyms)  # weight_ih blocks, then inputs read as themselves
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
        ctx.step, ctx.mask, ctx.n_states = step, mask, len(s0)
        ctx.abuf = abuf  # intermediate results, kept on ctx (neither inputs nor outputs)
        ctx.vbuf_groups = list(vbuf)
        ctx.save_for_backward(*Saved(x, w_ih, w_hh, b_ih, b_hh, gx, vbuf, sbuf, vecs).tensors())
        return (out, *(b[T] for b in sbuf))

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, *dfinal):
        step: CompiledStep = ctx.step
        mask, abuf = ctx.mask, ctx.abuf
        saved = Saved.from_tensors(ctx.saved_tensors, ctx.vbuf_groups, ctx.n_states)
        gx, w_hh, sbuf, vecs = saved.gx, saved.w_hh, saved.sbuf, saved.vecs
        if step.compiler == "triton" and mask is None:
            # As the forward: one CUDA graph per shape on CUDA, eager elsewhere. The graphed
            # function takes tensors only: absent cotangents become zeros.
            dout = torch.zeros_like(sbuf[0][1:]) if dout is None else dout
            dfinal = [torch.zeros_like(sbuf[i][0]) if d is None else d
                      for i, d in enumerate(dfinal)]
            res = step.graphed_backward(gx, w_hh, dout, *vecs, *sbuf,
                                        *abuf.values(), *dfinal)
            n_a, n_v = len(abuf), len(vecs)
            dgx = res[0]
            dabuf = dict(zip(abuf, res[1:1 + n_a], strict=True))
            dvec = list(res[1 + n_a:1 + n_a + n_v])
            ds = list(res[1 + n_a + n_v:])
        else:
            dgx, dabuf, dvec, ds = backward_loop(step, mask, gx, w_hh, vecs, sbuf, abuf,
                                                  dout, dfinal)
        grads = weight_grads(NeedsGrad.of(ctx.needs_input_grad), step, saved, dgx, dabuf)
        return (None, None, *grads, None, *dvec, *ds)


# PLR0912: one time loop with its per-path branches, kept in one place for speed
def _forward_loop(step: CompiledStep, gx, w_hh, b_hh, vecs, s0, mask, stack: bool = False):  # noqa: PLR0912
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


def run_fused(layout: Layout, tensors: dict[str, torch.Tensor], x: torch.Tensor,
              state0: tuple[torch.Tensor, ...], mask: torch.Tensor | None,
              compiler: str = "torch"):
    """Run one direction of one layer with the generated step (see :mod:`backends`)."""
    from .plan import identity_blocks

    step = compiled(layout.cell, layout.bias_flag(tensors), compiler)
    vecs = tuple(tensors[v] for v in step.plan.vector_names)
    w_ih, b_ih = identity_blocks(layout.cell, tensors.get("weight_ih"), tensors.get("bias_ih"),
                                 state0[0].shape[-1], x)
    res = FusedRNN.apply(step, mask, x, w_ih, tensors.get("weight_hh"), b_ih,
                         tensors.get("bias_hh"), len(vecs), *vecs, *state0)
    return res[0], tuple(res[1:])
