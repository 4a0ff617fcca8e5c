"""C source of the sequence kernel: one layer, one direction, the whole time loop in C.

From a :class:`~gatelab.engine.plan.Plan` this module prints two C functions per precision
(``real`` = ``float`` or ``double``, as :mod:`gatelab.engine.c_pointwise`), both taking the
tensors' data pointers (row-major, contiguous; ``GX = n_ih*H`` the row width of ``gx``)::

    gl_seq_fwd_<p>(T, N, H, threads, gemm, gx (T,N,GX), w_hh (G_h*H,H), b_hh|NULL, vecs[],
                   sbuf[] (T+1,N,H each, slot 0 filled), vbuf[] (T,N,H per prepare group),
                   abuf[] (T,N,G_k*H per unfused group), out (T,N,H), mask (T,N)|NULL)

    for t:  for each GEMM group k (stage order):
                V = prepare_k(step t)                  (pointwise, into vbuf[k][t])  or a state
                fused:   gx[t, rows of k] += V @ W_k^T        (the input part is already there)
                unfused: abuf[k][t] = V @ W_k^T + b_k
            states[t+1] = final(step t)  (kept where mask[t] is 0);  out[t] = output or 0

    gl_seq_bwd_<p>(T, N, H, threads, gemm, gx, w_hh, vecs[], sbuf[], vbuf[], abuf[], dout (T,N,H),
                   ds[] (N,H each: in the final states' cotangents, out the initial states'),
                   dsn (n_states*N*H scratch), dv (N*H scratch), dgx (T,N,GX), dabuf[], dvec[]
                   (H each, accumulated), mask|NULL)

    for t = T-1 .. 0:  grads = final_vjp(step t, cotangents ds (+ dout[t]))   (= into dgx, dA, dsn)
                       for k reversed: prepare groups: dv = dA_k @ W_k ; grads += prepare_vjp(dv)
                                       state groups:   dsn[state] += dA_k @ W_k
                       ds = dsn

``gemm`` is a Fortran BLAS ``?gemm_`` (column-major; a row-major ``C = A B^T`` is the column-major
``C^T = B A^T``). The pointwise parts are the plan's SymPy expressions and their
vector-Jacobian products (:func:`gatelab.engine.pointwise.vjp`) after ``sympy.cse``, printed by
:class:`~gatelab.engine.c_pointwise.KernelPrinter`. Threads split the H columns (so a vector
parameter's gradient, summed over rows, needs no reduction between threads).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .c_pointwise import _PRECISION, KernelPrinter
from .plan import Plan
from .pointwise import vjp

PARALLEL_MIN = 4096  # fewer elements per pointwise pass than this: one thread


class SequencePrinter(KernelPrinter):
    """:class:`KernelPrinter` with ``tanh(x)`` spelled ``2 / (1 + exp(-2x)) - 1`` (exact in real
    numbers, within a few ulp of 1 in floating point): glibc's vector ``tanhf`` sends lanes to
    its scalar ``tanhf``/``expm1f`` (seen in ``perf``), its vector ``expf`` does not."""

    def _print_tanh(self, e):
        return (f"(((real)2) / (((real)1) + EXP(((real)-2) * ({self._print(e.args[0])})))"
                " - ((real)1))")


@dataclass
class Where:
    """Where a step input symbol lives: ``kind`` is ``state`` (index), ``x`` (block of ``gx``),
    ``group`` (group index, matrix index) or ``vec`` (index)."""

    kind: str
    a: int
    b: int = 0


class StepSymbols:
    """The pointwise inputs of a plan's step in :class:`CompiledStep`'s order (states, unfused
    input blocks, GEMM results, vectors) and where each one lives in the kernel's buffers."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.where: dict[sympy.Symbol, Where] = {}
        for i, s in enumerate(plan.states):
            self.where[s] = Where("state", i)
        for k, s in enumerate(plan.xsyms):
            if s is not None:
                self.where[s] = Where("x", k)
        for k, g in enumerate(plan.groups):
            for m, s in enumerate(g.symbols):
                self.where[s] = Where("group", k, m)
        for v, s in enumerate(plan.vectors):
            self.where[s] = Where("vec", v)
        self.inputs = list(self.where)
        self.index = {s: i for i, s in enumerate(self.inputs)}
        self.out_separate = plan.output_index is None
        self.outs = list(plan.nexts) + ([plan.output] if self.out_separate else [])
        self.preps = [k for k, g in enumerate(plan.groups) if g.vector not in plan.states]

    def key(self) -> str:
        """Everything the generated source derives from (for the source cache)."""
        g = self.plan.groups
        return sympy.srepr((self.inputs, self.outs, [x is None for x in self.plan.xsyms],
                            [(gr.vector, gr.rows, gr.ih_rows) for gr in g]))


# ---- element addresses -----------------------------------------------------------------------
def _src(ss: StepSymbols, s: sympy.Symbol, t: str) -> str:
    """C lvalue of symbol ``s`` at step ``t``, row ``n``, column ``j`` (forward buffers)."""
    w = ss.where[s]
    if w.kind == "state":
        return f"S{w.a}[(({t}) * N + n) * H + j]"
    if w.kind == "x":
        return f"gx[(({t}) * N + n) * GX + {w.a} * H + j]"
    if w.kind == "vec":
        return f"P{w.a}[j]"
    g = ss.plan.groups[w.a]
    if g.ih_rows is not None:
        return f"gx[(({t}) * N + n) * GX + {g.ih_rows[0] + w.b} * H + j]"
    return f"A{w.a}[(({t}) * N + n) * {len(g.matrices)} * H + {w.b} * H + j]"


def _grad(ss: StepSymbols, s: sympy.Symbol) -> str:
    """C lvalue of the gradient of symbol ``s`` at step ``t``, row ``n``, column ``j``."""
    w = ss.where[s]
    if w.kind == "state":
        return f"DSN{w.a}[n * H + j]"
    if w.kind == "x":
        return f"dgx[(t * N + n) * GX + {w.a} * H + j]"
    if w.kind == "vec":
        return f"DP{w.a}[j]"
    g = ss.plan.groups[w.a]
    if g.ih_rows is not None:
        return f"dgx[(t * N + n) * GX + {g.ih_rows[0] + w.b} * H + j]"
    return f"DA{w.a}[(t * N + n) * {len(g.matrices)} * H + {w.b} * H + j]"


def _body(inputs: list[sympy.Symbol], loads: list[str], exprs: list[sympy.Expr],
          stores: list[str], indent: str) -> list[str]:
    """``real`` locals for the used inputs, the common subexpressions, then one statement per
    expression: ``stores[i]`` is a format string taking the value as ``{v}``."""
    names = {s: sympy.Symbol(f"v{k}") for k, s in enumerate(inputs)}
    exprs = [sympy.sympify(e).xreplace(names) for e in exprs]
    repl, reduced = sympy.cse(exprs, symbols=sympy.numbered_symbols("t_"))
    used = set().union(*(e.free_symbols for e in reduced), *(e.free_symbols for _, e in repl))
    p = SequencePrinter()
    out = [f"{indent}const real v{k} = {ld};" for k, (s, ld) in enumerate(zip(inputs, loads,
                                                                               strict=True))
           if names[s] in used]
    out += [f"{indent}const real {sym} = {p.doprint(e)};" for sym, e in repl]
    out += [indent + st.format(v=p.doprint(e)) for e, st in zip(reduced, stores, strict=True)]
    return out


def _pointwise(lines: list[str], row_skip: str | None = None) -> list[str]:
    """Wrap element statements in the threaded loop over rows ``n`` and columns ``j``."""
    head = ["  {",
            f"    const int nt = (threads > 1 && N * H >= {PARALLEL_MIN}) ? threads : 1;",
            "#pragma omp parallel num_threads(nt) if (nt > 1)",
            "    {",
            "      int64_t j0, j1; columns(H, &j0, &j1);",
            "      for (int64_t n = 0; n < N; ++n) {"]
    if row_skip:
        head.append(f"        {row_skip}")
    head += ["#pragma omp simd", "        for (int64_t j = j0; j < j1; ++j) {"]
    return head + lines + ["        }", "      }", "    }", "  }"]


PRELUDE = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
/* This thread's share of the H columns, in multiples of 8 (whole SIMD vectors). */
static void columns(int64_t H, int64_t *j0, int64_t *j1) {
#ifdef _OPENMP
  int64_t nt = omp_get_num_threads(), me = omp_get_thread_num();
#else
  int64_t nt = 1, me = 0;
#endif
  int64_t per = ((H + nt - 1) / nt + 7) / 8 * 8;
  *j0 = me * per < H ? me * per : H;
  *j1 = (me + 1) * per < H ? (me + 1) * per : H;
}
"""

PRECISION_PART = r"""
typedef void (*GEMM)(const char *, const char *, const int *, const int *, const int *,
                     const real *, const real *, const int *, const real *, const int *,
                     const real *, real *, const int *);
/* Row-major C (n x m, ldc) = A (n x k, lda) . B^T + beta C, B (m x k, ldb). */
static void mm_nt(GEMM g, int64_t n, int64_t m, int64_t k, const real *A, int64_t lda,
                  const real *B, int64_t ldb, real beta, real *C, int64_t ldc) {
  const int n_ = (int)n, m_ = (int)m, k_ = (int)k, la = (int)lda, lb = (int)ldb, lc = (int)ldc;
  const real one = 1;
  if (n == 0 || m == 0) return;
  g("T", "N", &m_, &n_, &k_, &one, B, &lb, A, &la, &beta, C, &lc);
}
/* Row-major C (n x m, ldc) = A (n x k, lda) . B + beta C, B (k x m, ldb). */
static void mm_nn(GEMM g, int64_t n, int64_t m, int64_t k, const real *A, int64_t lda,
                  const real *B, int64_t ldb, real beta, real *C, int64_t ldc) {
  const int n_ = (int)n, m_ = (int)m, k_ = (int)k, la = (int)lda, lb = (int)ldb, lc = (int)ldc;
  const real one = 1;
  if (n == 0 || m == 0) return;
  g("N", "N", &m_, &n_, &k_, &one, B, &lb, A, &la, &beta, C, &lc);
}
"""


def _decls(ss: StepSymbols, backward: bool) -> list[str]:
    plan = ss.plan
    out = [f"  const int64_t GX = {len(plan.xsyms)} * H; (void)GX;"]
    out += [f"  const real *P{v} = vecs[{v}];" for v in range(len(plan.vectors))]
    for i in range(len(plan.states)):
        out.append(f"  {'const ' if backward else ''}real *S{i} = sbuf[{i}];")
    for k, g in enumerate(plan.groups):
        if g.ih_rows is None:
            out.append(f"  {'const ' if backward else ''}real *A{k} = abuf[{k}];")
            if backward:
                out.append(f"  real *DA{k} = dabuf[{k}];")
        if k in ss.preps:
            out.append(f"  {'const ' if backward else ''}real *V{k} = vbuf[{k}];")
    if backward:
        out += [f"  real *DP{v} = dvec[{v}];" for v in range(len(plan.vectors))]
    return out


def _vector(ss: StepSymbols, k: int, t: str) -> str:
    """Pointer to group k's GEMM vector at step t (ld H)."""
    g = ss.plan.groups[k]
    if k in ss.preps:
        return f"V{k} + ({t}) * N * H"
    return f"S{ss.where[g.vector].a} + ({t}) * N * H"


def _result(ss: StepSymbols, k: int, grad: bool) -> tuple[str, str]:
    """Pointer and row stride of group k's GEMM result (or its gradient) at step t."""
    g = ss.plan.groups[k]
    if g.ih_rows is not None:
        return f"{'dgx' if grad else 'gx'} + t * N * GX + {g.ih_rows[0]} * H", "GX"
    w = len(g.matrices)
    return f"{'DA' if grad else 'A'}{k} + t * N * {w} * H", f"{w} * H"


def forward_source(ss: StepSymbols) -> str:
    plan = ss.plan
    lines = ["void gl_seq_fwd(int64_t T, int64_t N, int64_t H, int threads, GEMM gemm,",
             "    real *gx, const real *w_hh, const real *b_hh, real *const *vecs,",
             "    real *const *sbuf, real *const *vbuf, real *const *abuf, real *out,",
             "    const uint8_t *mask) {", *_decls(ss, False),
             "  for (int64_t t = 0; t < T; ++t) {"]
    for k, g in enumerate(plan.groups):
        if k in ss.preps:
            lines += _pointwise(_body(ss.inputs, [_src(ss, s, "t") for s in ss.inputs],
                                      [g.vector], [f"V{k}[(t * N + n) * H + j] = {{v}};"],
                                      "          "))
        ptr, ld = _result(ss, k, False)
        r0, w = g.rows[0], len(g.matrices)
        if g.ih_rows is not None:
            beta = "1"
        else:
            beta = "b_hh ? 1 : 0"
            lines += ["  if (b_hh) for (int64_t n = 0; n < N; ++n)",
                      f"    memcpy(A{k} + (t * N + n) * {w} * H, b_hh + {r0} * H, "
                      f"{w} * H * sizeof(real));"]
        lines.append(f"  mm_nt(gemm, N, {w} * H, H, {_vector(ss, k, 't')}, H, "
                     f"w_hh + {r0} * H * H, H, {beta}, {ptr}, {ld});")
    stores = [f"S{i}[((t + 1) * N + n) * H + j] = live ? {{v}} : S{i}[(t * N + n) * H + j];"
              for i in range(len(plan.states))]
    # An unconditional store: a store under ``if (out)`` keeps gcc from vectorising the loop.
    stores.append("out[(t * N + n) * H + j] = live ? {v} : (real)0;")
    exprs = ss.outs if ss.out_separate else [*ss.outs, ss.outs[plan.output_index]]
    lines += _pointwise(_body(ss.inputs, [_src(ss, s, "t") for s in ss.inputs], exprs, stores,
                              "          "),
                        "const int live = mask ? mask[t * N + n] != 0 : 1;")
    return "\n".join(lines + ["  }", "}"]) + "\n"


def backward_source(ss: StepSymbols) -> str:
    plan = ss.plan
    n_s = len(plan.states)
    cots = [sympy.Symbol(f"g{j}__") for j in range(len(ss.outs))]
    wrt = [s for s in ss.inputs if any(s in o.free_symbols for o in ss.outs)]
    _, grads = vjp(ss.inputs, ss.outs, wrt)
    gmap = dict(zip(wrt, grads, strict=True))
    oi = plan.output_index
    loads = [_src(ss, s, "t") for s in ss.inputs]
    cot_loads = [f"DS{i}[n * H + j]" + (" + dout[(t * N + n) * H + j]" if i == oi else "")
                 for i in range(n_s)]
    if ss.out_separate:
        cot_loads.append("dout[(t * N + n) * H + j]")
    exprs, stores = [], []
    for s in ss.inputs:  # every destination written (=): no zero fill of the buffers
        if ss.where[s].kind == "vec":
            if s in gmap:
                exprs.append(gmap[s])
                stores.append(f"{_grad(ss, s)} += {{v}};")
        else:
            exprs.append(gmap.get(s, sympy.Integer(0)))
            stores.append(f"{_grad(ss, s)} = {{v}};")
    masked = []  # a padded row: cotangents carried, nothing else
    for s in ss.inputs:
        w = ss.where[s]
        if w.kind == "state":
            masked.append(f"{_grad(ss, s)} = DS{w.a}[n * H + j];")
        elif w.kind != "vec":
            masked.append(f"{_grad(ss, s)} = 0;")
    lines = ["void gl_seq_bwd(int64_t T, int64_t N, int64_t H, int threads, GEMM gemm,",
             "    const real *gx, const real *w_hh, real *const *vecs, real *const *sbuf,",
             "    real *const *vbuf, real *const *abuf, const real *dout, real *const *ds,",
             "    real *dsn, real *dv, real *dgx, real *const *dabuf, real *const *dvec,",
             "    const uint8_t *mask) {", *_decls(ss, True)]
    lines += [f"  real *DS{i} = ds[{i}], *DSN{i} = dsn + {i} * N * H;" for i in range(n_s)]
    lines.append("  for (int64_t t = T - 1; t >= 0; --t) {")
    body = _body([*ss.inputs, *cots], [*loads, *cot_loads], exprs, stores, "          ")
    lines += _pointwise(["          if (!live) {", *[f"            {m}" for m in masked],
                         "            continue;", "          }", *body],
                        "const int live = mask ? mask[t * N + n] != 0 : 1;")
    for k in range(len(plan.groups) - 1, -1, -1):
        g = plan.groups[k]
        ptr, ld = _result(ss, k, True)
        r0, w = g.rows[0], len(g.matrices)
        wk = f"w_hh + {r0} * H * H"
        if k in ss.preps:
            lines.append(f"  mm_nn(gemm, N, H, {w} * H, {ptr}, {ld}, {wk}, H, 0, dv, H);")
            pw = [s for s in ss.inputs if s in g.vector.free_symbols]
            _, pg = vjp(ss.inputs, [g.vector], pw)
            st = [f"{_grad(ss, s)} += {{v}};" for s in pw]
            body = _body([*ss.inputs, cots[0]], [*loads, "dv[n * H + j]"], pg, st,
                         "          ")
            lines += _pointwise(body, "if (mask && !mask[t * N + n]) continue;")
        else:
            i = ss.where[g.vector].a
            lines.append(f"  mm_nn(gemm, N, H, {w} * H, {ptr}, {ld}, {wk}, H, 1, DSN{i}, H);")
    lines += [f"  {{ real *tmp = DS{i}; DS{i} = DSN{i}; DSN{i} = tmp; }}" for i in range(n_s)]
    lines.append("  }")
    lines += [f"  if (DS{i} != ds[{i}]) memcpy(ds[{i}], DS{i}, N * H * sizeof(real));"
              for i in range(n_s)]
    return "\n".join(lines + ["}"]) + "\n"


def library_source(ss: StepSymbols) -> str:
    """The whole C file: both functions in float and double (``gl_seq_fwd_f32`` ...)."""
    fwd, bwd = forward_source(ss), backward_source(ss)
    out = [PRELUDE]
    for prec, table in _PRECISION.items():
        out += [f"#define {k} {v}" for k, v in table.items()]
        out += [f"#define GEMM GEMM_{prec}",
                f"#define mm_nt mm_nt_{prec}", f"#define mm_nn mm_nn_{prec}", PRECISION_PART,
                fwd.replace("void gl_seq_fwd(", f"void gl_seq_fwd_{prec}("),
                bwd.replace("void gl_seq_bwd(", f"void gl_seq_bwd_{prec}(")]
        out += [f"#undef {k}" for k in (*table, "GEMM", "mm_nt", "mm_nn")] + [""]
    return "\n".join(out)
