"""Pointwise functions as multi-threaded C kernels (the ``"c"`` pointwise backend, CPU only).

The same SymPy expressions the ``"torch"`` backend turns into a chain of torch calls are printed
as C (:class:`KernelPrinter`, a SymPy ``C99CodePrinter``) after ``sympy.cse``: one loop over the
``(rows, cols)`` elements that evaluates every output at once, its rows shared among the threads
of torch's own OpenMP pool (``#pragma omp parallel for``; the library links ``libgomp.so.1``,
which resolves to the runtime torch has already loaded), its columns vectorised (``omp simd``,
glibc's vector math library for ``exp``/``tanh``/``log``). Every function of a step goes into
one small shared library built by ``gcc -O3 -fopenmp`` (no torch headers, well under a second)
and called through ``ctypes`` on the tensors' data pointers.

Calling convention (as :func:`gatelab.engine.pointwise.compile_pointwise`): ``fn(*tensors,
out=None) -> tuple`` of ``(rows, cols)`` tensors; each input is a ``(rows, cols)`` tensor with
unit column stride (any row stride: column blocks of a larger buffer are read in place) or a
``(cols,)`` vector broadcast along the rows. float32 and float64 CPU tensors only: anything else
raises :class:`KernelError` (the callers choose the backend before, see :func:`supports`).

Compiled libraries are kept by :mod:`gatelab.cache` (``kernels/`` in the private cache folder),
named by a hash of the generated source, the flags and the compiler and verified against the
digest recorded when they were built, so a second process only loads the library. A step's
functions are found again by a hash of what their expressions derive from (:func:`load_step`):
its record holds only the library's key and a count; what the kernels take is compiled into the
library itself (``gl_step_tag``) and checked before any is called.
The one-pass C linear scan built the same way is :mod:`gatelab.engine.c_scan`.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import warnings
from collections.abc import Sequence

import sympy
import torch
from sympy.printing.c import C99CodePrinter

from .. import cache
from ..cell.functions import RegistryPrinting
from ..errors import GatelabError

GENERATOR_VERSION = "c-2"
KIND = "kernels"  # the cache folder (gatelab.cache.cache_folder)
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c99",
          # Vectorised exp/tanh/log come from glibc's libmvec only under fast math; NaN and
          # infinity keep their meaning (sigmoid(-inf) = 0, not garbage).
          "-ffast-math", "-fno-finite-math-only", "-D__FAST_MATH__"]
DTYPES = {torch.float32: "f32", torch.float64: "f64"}
_PRECISION = {
    "f32": {"real": "float", "EXP": "expf", "LOG": "logf", "TANH": "tanhf", "SQRT": "sqrtf",
            "FABS": "fabsf", "POW": "powf", "LOG1P": "log1pf"},
    "f64": {"real": "double", "EXP": "exp", "LOG": "log", "TANH": "tanh", "SQRT": "sqrt",
            "FABS": "fabs", "POW": "pow", "LOG1P": "log1p"},
}
PARALLEL_MIN = 4096  # fewer elements than this: one thread (waking the pool costs more)


class KernelError(GatelabError, RuntimeError):
    """A C kernel cannot be built or cannot take these tensors."""


# ---- printing ------------------------------------------------------------------------------
class KernelPrinter(RegistryPrinting, C99CodePrinter):
    """C99 for one scalar element: symbols are local ``real`` variables, literals are cast to
    ``real`` (no silent promotion of float32 arithmetic to double), functions are spelled from
    the registry's ``c`` templates (``gatelab.cell.functions``) over macros bound to the
    precision's libm names (``EXP`` -> ``expf`` or ``exp``)."""

    def _num(self, v) -> str:
        return f"((real){float(v)!r})"

    def _print_Float(self, e):
        return self._num(e)

    def _print_Integer(self, e):
        return self._num(e)

    def _print_Rational(self, e):
        return self._num(e)

    def _print_Pow(self, e):
        base, ex = self._print(e.base), e.exp
        if ex == sympy.Rational(1, 2):
            return f"SQRT({base})"
        if ex == -sympy.Rational(1, 2):
            return f"(((real)1)/SQRT({base}))"
        if ex.is_Integer and 1 <= abs(int(ex)) <= 4:
            prod = "*".join([f"({base})"] * abs(int(ex)))
            return f"({prod})" if ex > 0 else f"(((real)1)/({prod}))"
        return f"POW({base}, {self._print(ex)})"

    def _print_registered(self, e, fn):
        if not fn.c:
            raise KernelError(f"the C kernel printer has no spelling of {fn.name}")
        return fn.c.format(x=self._print(e.args[0]))

    def _print_Heaviside(self, e):  # relu' (0 at 0, as torch's relu backward)
        return f"(({self._print(e.args[0])}) > 0 ? ((real)1) : ((real)0))"

    def _print_Function(self, e):
        raise KernelError(f"the C kernel printer does not know {type(e).__name__} ({e})")

    def _print_Exp1(self, e):
        return self._num(sympy.E.evalf(20))

    def _print_Pi(self, e):
        return self._num(sympy.pi.evalf(20))


def kernel_body(name: str, inputs: Sequence[sympy.Symbol], outputs: Sequence[sympy.Expr]) -> str:
    """C source of one kernel (precision-neutral: ``real`` and the math macros)::

        void NAME(int64_t rows, int64_t cols, void *const *in, const int64_t *rs,
                  void *const *out, const int64_t *ors, int threads)

    ``in[k]``/``out[j]`` point at element (0, 0), ``rs``/``ors`` are row strides in elements
    (0 broadcasts a vector along the rows); columns are contiguous.
    """
    names = {s: sympy.Symbol(f"v{k}") for k, s in enumerate(inputs)}
    exprs = [o.xreplace(names) for o in outputs]
    repl, reduced = sympy.cse(exprs, symbols=sympy.numbered_symbols("t"))
    p = KernelPrinter()
    used = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
    lines = [f"void NAME_{name}(int64_t rows, int64_t cols, void *const *in, const int64_t *rs,",
             "                 void *const *out, const int64_t *ors, int threads) {",
             "#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)",
             "  for (int64_t r = 0; r < rows; ++r) {"]
    for k, s in enumerate(inputs):
        if names[s] in used:
            lines.append(f"    const real *restrict p{k} = (const real *)in[{k}] + r * rs[{k}];")
    for j in range(len(outputs)):
        lines.append(f"    real *restrict q{j} = (real *)out[{j}] + r * ors[{j}];")
    lines += ["#pragma omp simd", "    for (int64_t c = 0; c < cols; ++c) {"]
    for k, s in enumerate(inputs):
        if names[s] in used:
            lines.append(f"      const real v{k} = p{k}[c];")
    for sym, e in repl:
        lines.append(f"      const real {sym} = {p.doprint(e)};")
    for j, e in enumerate(reduced):
        lines.append(f"      q{j}[c] = {p.doprint(e)};")
    lines += ["    }", "  }", "}"]
    return "\n".join(lines) + "\n"


def library_source(bodies: Sequence[str], tag: str = "") -> str:
    """One C file holding every kernel in both precisions (``gl_f32_k``, ``gl_f64_k``) and the
    string ``gl_step_tag`` (what the kernels are: :func:`build_step`)."""
    literal = "".join(c if c.isalnum() or c in " ,:[]{}._-+" else f"\\{ord(c):03o}"
                      for c in tag)
    out = ["#include <math.h>", "#include <stdint.h>", "",
           f'const char *const gl_step_tag = "{literal}";', ""]
    for prec, table in _PRECISION.items():
        out += [f"#define {k} {v}" for k, v in table.items()]
        for body in bodies:
            out.append(body.replace("void NAME_", f"void gl_{prec}_"))
        out += [f"#undef {k}" for k in table] + [""]
    return "\n".join(out)


# ---- building, and the step records in the cache ------------------------------------------
def compiler() -> str | None:
    """The C compiler (:func:`gatelab.cache.compiler`), or None."""
    return cache.compiler()


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether C kernels can be built here (a compiler that builds and runs a test kernel).
    Warns once when not, and the engine keeps to generated torch code. A refused cache folder
    (:class:`gatelab.cache.CacheError`) is raised, not worked around."""
    if compiler() is None:
        warnings.warn("gatelab: no C compiler found (gcc/cc or $CC); the CPU engine runs its "
                      "slower eager torch step", RuntimeWarning, stacklevel=2)
        return False
    try:
        x = sympy.Symbol("x")
        lib = build([kernel_body("0", [x], [x + 1])])
        a = torch.arange(4.0)
        res = lib.function(0, 1)(a)[0]
        ok = bool(torch.equal(res, a + 1))
    except (KernelError, OSError) as exc:
        warnings.warn(f"gatelab: C kernels unavailable ({exc}); the CPU engine runs its slower "
                      "eager torch step", RuntimeWarning, stacklevel=2)
        return False
    if not ok:
        warnings.warn("gatelab: a test C kernel gave a wrong result; the CPU engine runs its "
                      "slower eager torch step", RuntimeWarning, stacklevel=2)
    return ok


class Library:
    """A loaded kernel library (``key``: its :func:`gatelab.cache.library_key`);
    ``function(k, n_out)`` is the k-th kernel as a pointwise function."""

    def __init__(self, key: str, dll: ctypes.CDLL) -> None:
        self.key = key
        self.dll = dll

    def function(self, k: int, n_out: int, used: Sequence[int] | None = None) -> CKernel:
        """``used``: positions of the inputs the kernel reads (others may be None)."""
        return CKernel(self, k, n_out, used)


def build(bodies: Sequence[str], tag: str = "") -> Library:
    """Compile (or load, verified, from the cache) a library of kernels made by
    :func:`kernel_body`; ``tag`` is stored in it as the string ``gl_step_tag``."""
    src = library_source(bodies, tag)
    try:
        key = cache.library_key(src, CFLAGS)
        dll = cache.compiled_library(src, CFLAGS, kind=KIND)
    except cache.CompileError as e:
        raise KernelError(str(e)) from None
    return Library(key, dll)


def build_step(specs: Sequence[tuple[Sequence[sympy.Symbol], Sequence[sympy.Expr]]],
               lives: Sequence[Sequence[int]], key: str | None = None
               ) -> tuple[Library, list[dict]]:
    """One library of the functions ``specs`` (``(inputs, outputs)``, outputs at ``lives``
    non-constant) and their descriptions (``n_out``, ``live``, ``consts``, ``used``). With
    ``key`` (a hash of everything the outputs derive from) the descriptions are compiled into
    the library and the cache records ``key`` -> library key, for :func:`load_step`."""
    metas = [{"n_out": len(outs), "live": list(live),
              "consts": {str(i): float(o) for i, o in enumerate(outs) if o.is_Number},
              "used": [j for j, s in enumerate(ins)
                       if any(s in outs[i].free_symbols for i in live)]}
             for (ins, outs), live in zip(specs, lives, strict=True)]
    lib = build([kernel_body(str(k), ins, [outs[i] for i in live])
                 for k, ((ins, outs), live) in enumerate(zip(specs, lives, strict=True))],
                "" if key is None else _step_tag(key, metas))
    if key is not None:
        cache.write_json(KIND, _step_name(key), {"library": lib.key, "functions": len(metas)})
    return lib, metas


def load_step(key: str, n_inputs: Sequence[int]) -> tuple[Library, list[dict]] | None:
    """The library and function descriptions :func:`build_step` made for ``key`` in an earlier
    process, for functions of ``n_inputs[k]`` inputs each; None (build again) when the record
    is absent or invalid, the library is missing or fails its digest, or the descriptions
    compiled into it are not those of ``key`` with these input counts."""
    lib_key = cache.read_json(KIND, _step_name(key), lambda o: _valid_record(o, len(n_inputs)))
    dll = None if lib_key is None else cache.load_library(lib_key, KIND)
    if dll is None:
        return None
    try:
        tag = ctypes.c_char_p.in_dll(dll, "gl_step_tag").value.decode("utf-8")
        got = json.loads(tag)
        metas = got["functions"]
        if (got["step"] != key or tag != _step_tag(key, metas)
                or not _valid_metas(metas, n_inputs)):
            return None
    except (AttributeError, ValueError, TypeError, KeyError, UnicodeDecodeError):
        return None
    return Library(lib_key, dll), metas


def _step_name(key: str) -> str:
    return "step-" + hashlib.sha256(f"{GENERATOR_VERSION}\n{key}".encode()).hexdigest()[:32]


def _step_tag(key: str, metas: list[dict]) -> str:
    return json.dumps({"step": key, "functions": metas}, sort_keys=True, separators=(",", ":"))


def _valid_record(obj, n: int) -> str:
    if (not isinstance(obj, dict) or set(obj) != {"library", "functions"}
            or obj["functions"] != n or not isinstance(obj["library"], str)):
        raise ValueError("not a step record of this step")
    return obj["library"]


def _ints(xs, bound: int) -> bool:
    return (isinstance(xs, list) and all(type(i) is int and 0 <= i < bound for i in xs)
            and xs == sorted(set(xs)))


def _valid_metas(metas, n_inputs: Sequence[int]) -> bool:
    """Field by field: counts, positions in range, constants exactly the outputs not live."""
    if not isinstance(metas, list) or len(metas) != len(n_inputs):
        return False
    for m, n_in in zip(metas, n_inputs, strict=True):
        if not isinstance(m, dict) or set(m) != {"n_out", "live", "consts", "used"}:
            return False
        n_out = m["n_out"]
        if type(n_out) is not int or not 0 <= n_out <= 4096:
            return False
        if not (_ints(m["live"], n_out) and _ints(m["used"], n_in)):
            return False
        consts = m["consts"]
        if (not isinstance(consts, dict)
                or set(consts) != {str(i) for i in range(n_out) if i not in m["live"]}
                or not all(isinstance(v, float) for v in consts.values())):
            return False
    return True


def supports(t: torch.Tensor) -> bool:
    """Whether C kernels take tensors like ``t`` (CPU float32/float64)."""
    return t.device.type == "cpu" and t.dtype in DTYPES


class CKernel:
    """One compiled pointwise function: ``fn(*inputs, out=None) -> tuple of (rows, cols)``."""

    supports_out = True

    def __init__(self, lib: Library, k: int, n_out: int,
                 used: Sequence[int] | None = None) -> None:
        self.n_out = n_out
        self.used = None if used is None else frozenset(used)
        self._fns = {p: getattr(lib.dll, f"gl_{p}_{k}") for p in _PRECISION}
        for f in self._fns.values():
            f.restype = None
            f.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                          ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]

    def __call__(self, *args, out=None):
        if self.used and max(self.used) >= len(args):
            raise KernelError(f"C kernel reads input {max(self.used)} of {len(args)} given")
        ref = next((a for a in args if torch.is_tensor(a) and a.dim() == 2), None)
        if ref is None:
            ref = next(a for a in args if torch.is_tensor(a))
        if not supports(ref):
            raise KernelError(f"C kernels take CPU float32/float64 tensors, got {ref.dtype} on "
                              f"{ref.device}")
        dtype = ref.dtype
        rows, cols = (ref.shape[0], ref.shape[1]) if ref.dim() == 2 else (1, ref.shape[-1])
        keep, ptrs, strides = [], [], []
        for k, a in enumerate(args):
            if self.used is not None and k not in self.used:  # never read by the kernel
                ptrs.append(0)
                strides.append(0)
                continue
            if a is None:
                raise KernelError(f"C kernel input {k} is missing")
            if not torch.is_tensor(a):
                a = torch.full((cols,), float(a), dtype=dtype)
            if a.dtype != dtype or a.device.type != "cpu":
                raise KernelError(f"C kernel inputs must share one CPU dtype ({dtype}); got "
                                  f"{a.dtype} on {a.device}")
            if a.dim() == 1 and a.shape[0] == cols and a.stride(0) == 1:
                rs = 0
            else:
                a = a.expand(rows, cols)
                if a.stride(1) != 1 and cols > 1:
                    a = a.contiguous()
                rs = a.stride(0)
            keep.append(a)
            ptrs.append(a.data_ptr())
            strides.append(rs)
        if out is None:
            out = tuple(torch.empty(rows, cols, dtype=dtype) for _ in range(self.n_out))
            if ref.dim() == 1:  # vectors only: the results are vectors too
                out = tuple(o.view(cols) for o in out)
        else:
            out = tuple(o.view(1, cols) if o.dim() == 1 else o for o in out)
            for o in out:
                if (o.dtype != dtype or o.dim() != 2 or tuple(o.shape) != (rows, cols)
                        or (o.stride(1) != 1 and cols > 1)):
                    raise KernelError(f"C kernel output must be a ({rows}, {cols}) {dtype} "
                                      "tensor with contiguous rows")
        n_in, n_out = len(ptrs), len(out)
        threads = torch.get_num_threads() if rows * cols >= PARALLEL_MIN else 1
        self._fns[DTYPES[dtype]](
            rows, cols, (ctypes.c_void_p * n_in)(*ptrs), (ctypes.c_int64 * n_in)(*strides),
            (ctypes.c_void_p * n_out)(*(o.data_ptr() for o in out)),
            (ctypes.c_int64 * n_out)(*(o.stride(0) if o.dim() == 2 else 0 for o in out)),
            threads)
        del keep
        return tuple(out)
