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


class SequenceRNN(torch.autograd.Function):
    """``apply(kernel, mask, x, w_ih, w_hh, b_ih, b_hh, n_vec, *vectors, *states0)
    -> (out (T,N,H), *final states)``: one node for a layer and direction.

    Buffers as :class:`gatelab.engine.autograd.FusedRNN`: ``gx (T, N, n_ih*H)`` ends holding the
    fused groups' ``z = x W^T + h U^T + b``; ``abuf`` an unfused group's GEMM results, ``vbuf`` a
    prepared group vector, ``sbuf`` each state at every step ``(T+1, N, H)``."""

    @staticmethod
    def forward(ctx, kern: SequenceKernel, mask, x, w_ih, w_hh, b_ih, b_hh, n_vec: int, *rest):
        vecs = tuple(v.contiguous() for v in rest[:n_vec])
        s0 = rest[n_vec:]
        plan, ss = kern.plan, kern.symbols
        T, N, _ = x.shape
        H = s0[0].shape[-1]
        n_ih = len(plan.xsyms)
        if n_ih:
            bias = b_ih.clone() if b_ih is not None else x.new_zeros(n_ih * H)
            for g in plan.groups:
                if g.ih_rows is not None and b_hh is not None:
                    bias[g.ih_rows[0] * H:g.ih_rows[1] * H] += b_hh[g.rows[0] * H:g.rows[1] * H]
            gx = linear(x.reshape(T * N, -1), w_ih, bias).view(T, N, n_ih * H).contiguous()
        else:
            gx = x.new_zeros(T, N, 0)
        w_c = w_hh.contiguous() if w_hh is not None else None
        unfused = {k: x.new_empty(T, N, len(g.matrices) * H) for k, g in enumerate(plan.groups)
                   if g.ih_rows is None}
        b_un = b_hh.contiguous() if (b_hh is not None and unfused) else None
        vbuf = {k: x.new_empty(T, N, H) for k in ss.preps}
        sbuf = [x.new_empty(T + 1, N, H) for _ in s0]
        for b, s in zip(sbuf, s0, strict=True):
            b[0] = s
        out = x.new_empty(T, N, H)
        m8 = None if mask is None else mask.to(torch.uint8).contiguous()
        abuf_ptrs = (_P * max(len(plan.groups), 1))(*(
            unfused[k].data_ptr() if k in unfused else None for k in range(len(plan.groups))))
        vbuf_ptrs = (_P * max(len(plan.groups), 1))(*(
            vbuf[k].data_ptr() if k in vbuf else None for k in range(len(plan.groups))))
        kern.fwd[x.dtype](T, N, H, _threads(), _blas()[x.dtype], _ptr(gx), _ptr(w_c),
                          _ptr(b_un), _ptrs(vecs), _ptrs(sbuf), vbuf_ptrs, abuf_ptrs,
                          _ptr(out), _ptr(m8))
        ctx.kern, ctx.m8, ctx.n_states, ctx.mask = kern, m8, len(s0), mask
        ctx.abuf = unfused  # intermediate results, kept on ctx (neither inputs nor outputs)
        ctx.vbuf_groups = list(vbuf)
        mine = Saved(x, w_ih, w_c, b_ih, b_hh, gx, vbuf, sbuf, vecs).tensors()
        ctx.n_mine = len(mine)  # then the inputs as given: a double backward differentiates them
        ctx.save_for_backward(*mine, x, w_ih, w_hh, b_ih, b_hh, *rest)
        return (out, *(b[T] for b in sbuf))

    @staticmethod
    def backward(ctx, dout, *dfinal):
        if torch.is_grad_enabled():  # create_graph=True: the exact route, see _twice_backward
            return _twice_backward(ctx, dout, dfinal)
        kern: SequenceKernel = ctx.kern
        plan = kern.plan
        saved = Saved.from_tensors(ctx.saved_tensors[:ctx.n_mine], ctx.vbuf_groups,
                                   ctx.n_states)
        gx, sbuf, vecs = saved.gx, saved.sbuf, saved.vecs
        T, N, _ = gx.shape
        H = sbuf[0].shape[-1]
        x = gx
        dout = x.new_zeros(T, N, H) if dout is None else dout.contiguous()
        ds = [x.new_zeros(N, H) if d is None else d.contiguous().clone() for d in dfinal]
        dgx = x.new_empty(gx.shape)
        dabuf = {k: torch.empty_like(a) for k, a in ctx.abuf.items()}
        dvec = [torch.zeros_like(v) for v in vecs]
        dsn = x.new_empty(len(sbuf), N, H)
        dv = x.new_empty(N, H)
        ng = max(len(plan.groups), 1)
        abuf_ptrs = (_P * ng)(*(ctx.abuf[k].data_ptr() if k in ctx.abuf else None
                                for k in range(len(plan.groups))))
        dabuf_ptrs = (_P * ng)(*(dabuf[k].data_ptr() if k in dabuf else None
                                 for k in range(len(plan.groups))))
        vbuf_ptrs = (_P * ng)(*(saved.vbuf[k].data_ptr() if k in saved.vbuf else None
                                for k in range(len(plan.groups))))
        kern.bwd[x.dtype](T, N, H, _threads(), _blas()[x.dtype], _ptr(gx), _ptr(saved.w_hh),
                          _ptrs(vecs), _ptrs(sbuf), vbuf_ptrs, abuf_ptrs, _ptr(dout),
                          _ptrs(ds), _ptr(dsn), _ptr(dv), _ptr(dgx), dabuf_ptrs, _ptrs(dvec),
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
    cost dominate)."""
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
    if saved.b_ih is not None and need.b_ih:
        db_ih = flat.sum(0)
    if w_hh is not None and (need.w_hh or need.b_hh):
        dw_hh = torch.empty_like(w_hh)
        dbs = []
        for k, g in enumerate(plan.groups):
            v = saved.vbuf[k] if k in saved.vbuf else saved.sbuf[kern.index[g.vector]][:-1]
            if k in dabuf:
                da = dabuf[k].view(T * N, -1)
            else:
                da = flat[:, g.ih_rows[0] * H:g.ih_rows[1] * H]
            torch.mm(da.t(), v.reshape(T * N, H), out=dw_hh[g.rows[0] * H:g.rows[1] * H])
            dbs.append(da.sum(0))
        if saved.b_hh is not None:
            db_hh = torch.cat(dbs)
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
