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

Compiled libraries are cached on disk, keyed by a hash of the generated source, the generator
version and the compiler (``GATELAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/gatelab``, else
``~/.cache/gatelab``; under ``kernels/``), so a second process only loads the library.
The one-pass C linear scan built the same way is :mod:`gatelab.engine.c_scan`.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import sympy
import torch
from sympy.printing.c import C99CodePrinter

from ..cell.functions import RegistryPrinting
from ..errors import GatelabError

GENERATOR_VERSION = "c-1"
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


def library_source(bodies: Sequence[str]) -> str:
    """One C file holding every kernel in both precisions (``NAME_f32_k``, ``NAME_f64_k``)."""
    out = ["#include <math.h>", "#include <stdint.h>", ""]
    for prec, table in _PRECISION.items():
        out += [f"#define {k} {v}" for k, v in table.items()]
        for body in bodies:
            out.append(body.replace("void NAME_", f"void gl_{prec}_"))
        out += [f"#undef {k}" for k in table] + [""]
    return "\n".join(out)


# ---- building and the disk cache -----------------------------------------------------------
def cache_dir() -> Path:
    """Where compiled kernels live: ``$GATELAB_CACHE_DIR/kernels`` (else the XDG cache)."""
    root = os.environ.get("GATELAB_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "gatelab")
    return Path(root) / "kernels"


@functools.lru_cache(maxsize=1)
def compiler() -> str | None:
    """The C compiler (``$CC``, else ``gcc``/``cc`` on PATH), or None; its version goes into the
    cache key."""
    for cand in (os.environ.get("CC"), "gcc", "cc"):
        if cand and shutil.which(cand):
            return cand
    return None


@functools.lru_cache(maxsize=1)
def _compiler_id() -> str:
    cc = compiler()
    try:
        ver = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
        first = ver.stdout.splitlines()[0] if ver.stdout else ""
    except (OSError, subprocess.SubprocessError):
        first = ""
    return f"{cc} {first}"


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether C kernels can be built here (a compiler that builds and runs a test kernel).
    Warns once when not, and the engine keeps to generated torch code."""
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
    """A loaded kernel library; ``function(k, n_out)`` is the k-th kernel as a pointwise
    function."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dll = ctypes.CDLL(str(path))

    def function(self, k: int, n_out: int, used: Sequence[int] | None = None) -> CKernel:
        """``used``: positions of the inputs the kernel reads (others may be None)."""
        return CKernel(self, k, n_out, used)


_LOADED: dict[str, Library] = {}


def build(bodies: Sequence[str]) -> Library:
    """Compile (or load from the disk cache) a library of kernels made by :func:`kernel_body`."""
    src = library_source(bodies)
    cc = compiler()
    if cc is None:
        raise KernelError("no C compiler found (gcc/cc or $CC)")
    key = hashlib.sha256("\n".join([GENERATOR_VERSION, _compiler_id(), " ".join(CFLAGS),
                                    src]).encode()).hexdigest()[:32]
    d = cache_dir()
    path = d / f"gl_{key}.so"
    if str(path) in _LOADED:  # by path: the step records name a library in this cache folder
        return _LOADED[str(path)]
    if not path.exists():
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=d) as tmp:
            c_file, so = Path(tmp) / "k.c", Path(tmp) / "k.so"
            c_file.write_text(src, encoding="utf-8")
            res = subprocess.run([cc, *CFLAGS, "-o", str(so), str(c_file), "-lm"],
                                 capture_output=True, text=True, timeout=300)
            if res.returncode != 0:
                raise KernelError(f"{cc} failed: {res.stderr.strip()[:2000]}")
            (d / f"gl_{key}.c").write_text(src, encoding="utf-8")  # kept for reading
            os.replace(so, path)  # atomic: concurrent processes never load a partial file
    lib = Library(path)
    _LOADED[str(path)] = lib
    return lib


def _step_path(key: str) -> Path:
    salt = hashlib.sha256("\n".join([GENERATOR_VERSION, _compiler_id(), " ".join(CFLAGS),
                                     key]).encode()).hexdigest()[:32]
    return cache_dir() / f"step_{salt}.json"


def save_step(key: str, lib: Library, metas: list[dict]) -> None:
    """Remember which library holds the functions derived from ``key`` (written atomically)."""
    path = _step_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)  # the folder may be new since the build
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"library": lib.path.name, "functions": metas}), encoding="utf-8")
    os.replace(tmp, path)


def load_step(key: str, n: int) -> tuple[Library, list[dict]] | None:
    """The library and function descriptions saved for ``key`` by an earlier process (None
    when absent, unreadable or not ``n`` functions: the caller then builds them again)."""
    path = _step_path(key)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        so = cache_dir() / data["library"]
        metas = data["functions"]
        if len(metas) != n or not so.exists():
            return None
        lib = _LOADED.get(str(so)) or Library(so)
        _LOADED[str(so)] = lib
        return lib, metas
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
