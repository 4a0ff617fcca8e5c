"""The sequence kernel (``backend="sequence"``): one layer and direction as one C call per pass.

Python does the two large GEMMs around the loop (as :mod:`gatelab.engine.autograd` does)::

    Gx = x @ weight_ih.T + bias_ih [+ bias_hh of fused groups]     before the forward loop
    dx = dGx @ weight_ih ; dW_ih = dGx^T x ; dW_hh = dA^T V         after the backward loop

and the generated C of :mod:`gatelab.engine.c_sequence_codegen` runs the time loops: every
recurrent GEMM stage (through torch's own BLAS, ``sgemm_``/``dgemm_`` of ``libtorch_cpu``, passed
in as a function pointer so the library links nothing of torch), the pointwise forward, and the
backward through time with the SymPy derivatives. Autograd sees one node per layer and direction;
higher-order gradients keep the exact reference route of :mod:`gatelab.engine.higher_order`.

Shapes: ``x (T, N, I)``, states ``(N, H)``, ``mask (T, N)`` bool or None (padding: states carried,
output zero), as every backend (:mod:`gatelab.engine.backends`). CPU float32/float64 only.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import sys
from pathlib import Path

import torch

from .. import cache
from ..cell.ir import Cell
from . import c_pointwise
from .backward import NeedsGrad, Saved, weight_grads
from .c_sequence_codegen import StepSymbols, library_source
from .gemm import linear
from .layout import EngineError, Layout
from .plan import Plan, identity_blocks, uses_layer_norm

GENERATOR_VERSION = "seq-1"
KIND = "kernels"
CFLAGS = [*c_pointwise.CFLAGS]
_P = ctypes.c_void_p
_I64 = ctypes.c_int64


@functools.lru_cache(maxsize=1)
def _blas() -> dict[torch.dtype, int]:
    """Addresses of torch's own Fortran BLAS ``sgemm_``/``dgemm_`` (MKL in the CPU wheels)."""
    lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
    try:
        return {torch.float32: ctypes.cast(lib.sgemm_, _P).value,
                torch.float64: ctypes.cast(lib.dgemm_, _P).value}
    except AttributeError as exc:
        raise EngineError("this torch build exports no sgemm_/dgemm_ from libtorch_cpu; "
                          "use backend='generated'") from exc


def blas_available() -> bool:
    """Whether torch's BLAS can be called here (the CPU wheels: MKL)."""
    try:
        _blas()
    except (OSError, EngineError):
        return False
    return True


@functools.lru_cache(maxsize=1)
def _generator_digest() -> str:
    """The code generator's own text (the codegen module and the printer it uses): a changed
    generator never meets a record written by an older one."""
    from . import c_sequence_codegen

    h = hashlib.sha256(GENERATOR_VERSION.encode())
    for mod in (c_sequence_codegen, c_pointwise):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()


def _record_name(key: str) -> str:
    """The cache record of a step: named by the generator, the flags and the step's key (not
    the compiler: asking it its version costs a process start, and a library built from the
    same source by an older compiler computes the same thing)."""
    parts = [_generator_digest(), " ".join(CFLAGS), key]
    return "seq-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _valid_record(obj) -> str:
    key = obj["library"]
    if not isinstance(key, str) or len(key) != 64 or any(c not in "0123456789abcdef"
                                                         for c in key):
        raise ValueError("not a library key")
    return key


def _library(ss: StepSymbols) -> ctypes.CDLL:
    """The step's library: found through its cache record by an earlier process (no SymPy
    derivation, no compiler; the library's embedded tag must name this record), else generated,
    built by :func:`gatelab.cache.compiled_library` and recorded."""
    name = _record_name(ss.key())
    lib_key = cache.read_json(KIND, name, _valid_record)
    dll = None if lib_key is None else cache.load_library(lib_key, KIND)
    if dll is not None:
        try:
            if ctypes.c_char_p.in_dll(dll, "gl_seq_tag").value.decode() == name:
                return dll
        except (AttributeError, ValueError, UnicodeDecodeError):
            pass
    # One progress line: a first build takes seconds (SymPy derivatives, then the compiler).
    print(f"gatelab: building the sequence kernel of cell {ss.plan.layout.cell.name!r} "
          "(once; cached for later processes)", file=sys.stderr, flush=True)
    source = f'const char *const gl_seq_tag = "{name}";\n' + library_source(ss)
    try:
        dll = cache.compiled_library(source, CFLAGS, kind=KIND)
    except cache.CompileError as e:
        raise EngineError(f"the sequence kernel of cell {ss.plan.layout.cell.name!r} did not "
                          f"build: {e}") from None
    cache.write_json(KIND, name, {"library": cache.library_key(source, CFLAGS)})
    return dll


class SequenceKernel:
    """The compiled sequence kernel of one plan: ``fwd[dtype]``, ``bwd[dtype]`` C functions.
    Also offers ``plan`` and ``index`` as :func:`gatelab.engine.backward.weight_grads` reads
    them."""

    def __init__(self, plan: Plan) -> None:
        if uses_layer_norm(plan.layout.cell):
            raise EngineError(
                f"cell {plan.layout.cell.name!r} uses layer_norm, a reduction over the hidden "
                "units, which the sequence kernel does not compute; use backend='generated'")
        self.plan = plan
        self.symbols = StepSymbols(plan)
        self.index = self.symbols.index
        dll = _library(self.symbols)
        self.fwd, self.bwd = {}, {}
        for dtype, p in c_pointwise.DTYPES.items():
            f, b = getattr(dll, f"gl_seq_fwd_{p}"), getattr(dll, f"gl_seq_bwd_{p}")
            f.restype = b.restype = None
            f.argtypes = [_I64, _I64, _I64, ctypes.c_int, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P]
            b.argtypes = [_I64, _I64, _I64, ctypes.c_int, _P, _P, _P, _P, _P, _P, _P, _P, _P,
                          _P, _P, _P, _P, _P, _P]
            self.fwd[dtype], self.bwd[dtype] = f, b
        self._dll = dll
        # what every call needs of the plan, worked out once (a call is ~20 torch ops at the
        # small sizes, where Python per call is most of the time)
        groups = plan.groups
        self.n_ih = len(plan.xsyms)
        self.unfused = {k: len(g.matrices) for k, g in enumerate(groups) if g.ih_rows is None}
        self.preps = list(self.symbols.preps)
        self.slots = max(len(groups), 1)
        # bias_hh's rows fold into Gx's bias with one add when each fused group's rows sit at
        # the same place in weight_ih and together cover it (LSTM, GRU-like, MGU...)
        self.fold_by_add = (not self.unfused and sum(g.rows[1] - g.rows[0] for g in groups)
                            == self.n_ih and all(g.ih_rows == g.rows for g in groups))


@functools.lru_cache(maxsize=256)
def kernel(cell: Cell, bias: bool) -> SequenceKernel:
    """The sequence kernel of a cell (built once per process; on disk across processes)."""
    return SequenceKernel(Plan.of(Layout.of(cell), bias))


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _ptrs(ts) -> ctypes.Array:
    ts = list(ts)
    return (_P * max(len(ts), 1))(*(t.data_ptr() for t in ts))


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _fold_bias(kern: SequenceKernel, x, b_ih, b_hh, H: int):
    """Gx's bias: ``bias_ih`` plus the ``bias_hh`` rows of the fused groups (None: none)."""
    if b_hh is None:
        return b_ih
    if kern.fold_by_add and b_ih is not None:
        return b_ih + b_hh
    bias = b_ih.clone() if b_ih is not None else x.new_zeros(kern.n_ih * H)
    for g in kern.plan.groups:
        if g.ih_rows is not None:
            bias[g.ih_rows[0] * H:g.ih_rows[1] * H] += b_hh[g.rows[0] * H:g.rows[1] * H]
    return bias


def _slots(kern: SequenceKernel, bufs: dict[int, torch.Tensor]) -> ctypes.Array:
    """One pointer per group: its buffer in ``bufs`` or NULL."""
    return (_P * kern.slots)(*(bufs[k].data_ptr() if k in bufs else None
                               for k in range(len(kern.plan.groups))))


class SequenceRNN(torch.autograd.Function):
    """``apply(kernel, mask, x, w_ih, w_hh, b_ih, b_hh, n_vec, *vectors, *states0)
    -> (out (T,N,H), *final states)``: one node for a layer and direction.

    Buffers as :class:`gatelab.engine.autograd.FusedRNN`: ``gx (T, N, n_ih*H)`` ends holding the
    fused groups' ``z = x W^T + h U^T + b``; ``abuf`` an unfused group's GEMM results, ``vbuf`` a
    prepared group vector, ``sbuf`` each state at every step ``(T+1, N, H)``; ``sbuf``,
    ``vbuf`` and ``abuf`` are views of one workspace allocated per call."""

    @staticmethod
    def forward(ctx, kern: SequenceKernel, mask, x, w_ih, w_hh, b_ih, b_hh, n_vec: int, *rest):
        vecs = tuple(v.contiguous() for v in rest[:n_vec])
        s0 = rest[n_vec:]
        T, N, _ = x.shape
        H = s0[0].shape[-1]
        n_ih = kern.n_ih
        if n_ih:
            gx = linear(x.reshape(T * N, -1), w_ih, _fold_bias(kern, x, b_ih, b_hh, H))
            gx = gx.view(T, N, n_ih * H)
        else:
            gx = x.new_zeros(T, N, 0)
        w_c = w_hh.contiguous() if w_hh is not None else None
        b_un = b_hh.contiguous() if (b_hh is not None and kern.unfused) else None
        # one workspace: the states (T+1 steps each), the prepared vectors, the unfused results
        step, n_s = T * N * H, len(s0)
        widths = [n_s * (step + N * H), len(kern.preps) * step,
                  sum(kern.unfused.values()) * step]
        ws = x.new_empty(sum(widths))
        sb, vb, ab = ws.split(widths)
        sbuf = list(sb.view(n_s, T + 1, N, H).unbind(0))
        for b, s in zip(sbuf, s0, strict=True):
            b[0] = s
        vbuf = dict(zip(kern.preps, vb.view(-1, T, N, H).unbind(0), strict=True)) \
            if kern.preps else {}
        unfused, off = {}, 0
        for k, width in kern.unfused.items():
            unfused[k] = ab[off:off + width * step].view(T, N, width * H)
            off += width * step
        out = x.new_empty(T, N, H)
        m8 = None if mask is None else mask.to(torch.uint8).contiguous()
        kern.fwd[x.dtype](T, N, H, _threads(), _blas()[x.dtype], gx.data_ptr(), _ptr(w_c),
                          _ptr(b_un), _ptrs(vecs), _ptrs(sbuf), _slots(kern, vbuf),
                          _slots(kern, unfused), out.data_ptr(), _ptr(m8))
        ctx.kern, ctx.m8, ctx.n_states, ctx.mask = kern, m8, n_s, mask
        ctx.abuf = unfused  # intermediate results, kept on ctx (neither inputs nor outputs)
        ctx.vbuf_groups = kern.preps
        mine = Saved(x, w_ih, w_c, b_ih, b_hh, gx, vbuf, sbuf, vecs).tensors()
        ctx.n_mine = len(mine)  # then the inputs as given: a double backward differentiates them
        ctx.save_for_backward(*mine, x, w_ih, w_hh, b_ih, b_hh, *rest)
        return (out, *(b[T] for b in sbuf))

    @staticmethod
    def backward(ctx, dout, *dfinal):
        if torch.is_grad_enabled():  # create_graph=True: the exact route, see _twice_backward
            return _twice_backward(ctx, dout, dfinal)
        kern: SequenceKernel = ctx.kern
        saved = Saved.from_tensors(ctx.saved_tensors[:ctx.n_mine], ctx.vbuf_groups,
                                   ctx.n_states)
        gx, sbuf, vecs = saved.gx, saved.sbuf, saved.vecs
        T, N, _ = gx.shape
        H = sbuf[0].shape[-1]
        x = gx
        dout = x.new_zeros(T, N, H) if dout is None else dout.contiguous()
        ds = [x.new_zeros(N, H) if d is None else d.contiguous().clone() for d in dfinal]
        dgx = x.new_empty(gx.shape)
        # one scratch workspace: dsn, dv and the unfused groups' dA
        step = T * N * H
        widths = [len(sbuf) * N * H, N * H, sum(kern.unfused.values()) * step]
        dsn, dv, da_all = x.new_empty(sum(widths)).split(widths)
        dabuf, off = {}, 0
        for k, width in kern.unfused.items():
            dabuf[k] = da_all[off:off + width * step].view(T, N, width * H)
            off += width * step
        dvec = [torch.zeros_like(v) for v in vecs]
        kern.bwd[x.dtype](T, N, H, _threads(), _blas()[x.dtype], gx.data_ptr(),
                          _ptr(saved.w_hh), _ptrs(vecs), _ptrs(sbuf), _slots(kern, saved.vbuf),
                          _slots(kern, ctx.abuf), dout.data_ptr(), _ptrs(ds), dsn.data_ptr(),
                          dv.data_ptr(), dgx.data_ptr(), _slots(kern, dabuf), _ptrs(dvec),
                          _ptr(ctx.m8))
        need = NeedsGrad.of(ctx.needs_input_grad)
        I = saved.x.shape[-1]
        if x.dtype == torch.float32 and T * N * gx.shape[-1] * max(I, H) >= LARGE_WEIGHT_GRADS:
            grads = weight_grads(need, kern, saved, dgx, dabuf)  # oneDNN, made-contiguous operands
        else:
            grads = _small_weight_grads(need, kern, saved, dgx, dabuf)
        return (None, None, *grads, None, *dvec, *ds)


def _twice_backward(ctx, dout, dfinal):
    """A backward that is itself differentiable (``create_graph=True``: gradient penalties,
    Hessian-vector products, ``gradgradcheck``): the reference loop of
    :func:`gatelab.engine.backends.run_reference` rebuilt on the inputs as given and
    differentiated by autograd, as :mod:`gatelab.engine.higher_order` does for the other
    generated backends; exact to every order, at the reference loop's speed."""
    from .backends import run_reference

    kern: SequenceKernel = ctx.kern
    layout, plan = kern.plan.layout, kern.plan
    x, w_ih, w_hh, b_ih, b_hh, *rest = ctx.saved_tensors[ctx.n_mine:]
    n_vec = len(plan.vector_names)
    vecs, s0 = rest[:n_vec], rest[n_vec:]
    H = s0[0].shape[-1]
    rows = len(layout.ih) * H  # weight_ih's own rows (identity blocks appended after them)
    tensors = {name: t for name, t in (
        ("weight_ih", None if not layout.ih else w_ih[:rows]), ("weight_hh", w_hh),
        ("bias_ih", None if b_ih is None or not layout.ih else b_ih[:rows]), ("bias_hh", b_hh))
        if t is not None}
    tensors.update(zip(plan.vector_names, vecs, strict=True))
    out, states = run_reference(layout, tensors, x, tuple(s0), ctx.mask)
    inputs = [x, w_ih, w_hh, b_ih, b_hh, *vecs, *s0]
    pairs = [(r, g) for r, g in zip((out, *states), (dout, *dfinal), strict=True)
             if g is not None and r.requires_grad]
    want = [i for i, t in enumerate(inputs) if t is not None and t.requires_grad]
    got = torch.autograd.grad([r for r, _ in pairs], [inputs[i] for i in want],
                              [g for _, g in pairs], allow_unused=True, create_graph=True)
    grads: list = [None] * len(inputs)
    for i, g in zip(want, got, strict=True):
        grads[i] = g
    return (None, None, *grads[:5], None, *grads[5:])


# Multiply-adds of one weight-gradient GEMM from which oneDNN on transposed copies
# (:func:`gatelab.engine.backward.weight_grads`) beats torch.mm on transposed views.
LARGE_WEIGHT_GRADS = 1 << 24


def _small_weight_grads(need: NeedsGrad, kern: SequenceKernel, saved: Saved, dgx, dabuf):
    """``dx, dW_ih, dW_hh, db_ih, db_hh`` as :func:`gatelab.engine.backward.weight_grads`, with
    ``torch.mm`` on transposed views (no copies: at small sizes the copies and oneDNN's per-call
    cost dominate). A fused group's ``db_hh`` rows are ``db_ih``'s (its ``dA`` is ``dGx``'s
    columns): one column sum serves both."""
    plan = kern.plan
    x, w_ih, w_hh = saved.x, saved.w_ih, saved.w_hh
    T, N, _ = x.shape
    H = saved.sbuf[0].shape[-1]
    flat = dgx.view(T * N, -1)
    n_ih = flat.shape[1]
    dx = dw_ih = dw_hh = db_ih = db_hh = None
    if need.x:
        dx = torch.mm(flat, w_ih).view(T, N, -1) if n_ih else torch.zeros_like(x)
    if n_ih and need.w_ih:
        dw_ih = torch.mm(flat.t(), x.reshape(T * N, -1))
    want_b_hh = saved.b_hh is not None and need.b_hh
    colsum = flat.sum(0) if (saved.b_ih is not None and need.b_ih) or want_b_hh else None
    if saved.b_ih is not None and need.b_ih:
        db_ih = colsum
    if w_hh is not None and (need.w_hh or want_b_hh):
        groups = plan.groups
        dbs = []
        one = len(groups) == 1 and groups[0].rows == (0, w_hh.shape[0] // H)
        dw_hh = None if one else torch.empty_like(w_hh)
        for k, g in enumerate(groups):
            v = saved.vbuf[k] if k in saved.vbuf else saved.sbuf[kern.index[g.vector]][:-1]
            if k in dabuf:
                da = dabuf[k].view(T * N, -1)
                if want_b_hh:
                    dbs.append(da.sum(0))
            else:
                lo, hi = g.ih_rows[0] * H, g.ih_rows[1] * H
                da = flat[:, lo:hi]
                if want_b_hh:
                    dbs.append(colsum[lo:hi])
            if need.w_hh:
                if one:
                    dw_hh = torch.mm(da.t(), v.reshape(T * N, H))
                else:
                    torch.mm(da.t(), v.reshape(T * N, H), out=dw_hh[g.rows[0] * H:g.rows[1] * H])
        if want_b_hh:  # a new tensor: never the one handed back as db_ih
            db_hh = torch.cat(dbs) if len(dbs) > 1 else dbs[0].clone()
        if not need.w_hh:
            dw_hh = None
    return dx, dw_ih, dw_hh, db_ih, db_hh


def supports(x: torch.Tensor) -> bool:
    """Whether the sequence kernel takes tensors like ``x`` (CPU float32/float64)."""
    return x.device.type == "cpu" and x.dtype in c_pointwise.DTYPES


def run_sequence(layout: Layout, tensors: dict[str, torch.Tensor], x: torch.Tensor,
                 state0: tuple[torch.Tensor, ...], mask: torch.Tensor | None):
    """Run one direction of one layer with the sequence kernel (see :mod:`backends`)."""
    if not supports(x):
        raise EngineError(f"backend 'sequence' runs CPU float32/float64 tensors, not {x.dtype} "
                          f"on {x.device}; use backend='generated'")
    kern = kernel(layout.cell, layout.bias_flag(tensors))
    vecs = tuple(tensors[v] for v in kern.plan.vector_names)
    w_ih, b_ih = identity_blocks(layout.cell, tensors.get("weight_ih"), tensors.get("bias_ih"),
                                 state0[0].shape[-1], x)
    s0 = tuple(s.to(x.dtype) for s in state0)
    res = SequenceRNN.apply(kern, mask, x, w_ih, tensors.get("weight_hh"), b_ih,
                            tensors.get("bias_hh"), len(vecs), *vecs, *s0)
    return res[0], tuple(res[1:])
