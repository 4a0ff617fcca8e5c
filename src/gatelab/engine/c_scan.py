"""The linear scan ``h_t = a_t h_{t-1} + b_t`` as one C kernel (CPU float32/float64).

Built, cached and verified like the pointwise kernels (:func:`gatelab.engine.c_pointwise.build`,
through :mod:`gatelab.cache`): columns are independent, so blocks of 256 are shared among
torch's OpenMP threads and each walks all steps with its block's state in L1 — one pass over
``a``, ``b`` and ``h``.
"""

from __future__ import annotations

import ctypes
import functools

import torch

from .c_pointwise import _PRECISION, DTYPES, PARALLEL_MIN, KernelError, Library, build, supports

SCAN_BODY = """
void NAME_scan(int64_t T, int64_t M, const real *a, const real *b, const real *h0, real *h,
               int reverse, int threads) {
  /* h_t = a_t h_{t-1} + b_t (reverse: h_t = a_t h_{t+1} + b_t from the end); (T, M) row-major.
     Columns are independent: blocks of 256 are shared among the threads, each walks all steps
     with its block's state in registers/L1 (one pass over a, b and h). */
  const int64_t nb = (M + 255) / 256;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t blk = 0; blk < nb; ++blk) {
    const int64_t c0 = blk * 256, w = (M - c0) < 256 ? (M - c0) : 256;
    real st[256];
    for (int64_t c = 0; c < w; ++c) st[c] = h0[c0 + c];
    for (int64_t s = 0; s < T; ++s) {
      const int64_t t = reverse ? T - 1 - s : s;
      const real *restrict at = a + t * M + c0, *restrict bt = b + t * M + c0;
      real *restrict ht = h + t * M + c0;
#pragma omp simd
      for (int64_t c = 0; c < w; ++c) {
        st[c] = at[c] * st[c] + bt[c];
        ht[c] = st[c];
      }
    }
  }
}
"""



@functools.lru_cache(maxsize=1)
def _scan_library() -> Library:
    lib = build([SCAN_BODY])
    for p in _PRECISION:
        f = getattr(lib.dll, f"gl_{p}_scan")
        f.restype = None
        f.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                      ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    return lib


def scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor, reverse: bool = False,
         out: torch.Tensor | None = None) -> torch.Tensor:
    """``h_t = a_t h_{t-1} + b_t`` for all t in one pass (``reverse``: from the end,
    ``h_t = a_t h_{t+1} + b_t``): ``a``, ``b`` ``(T, *S)``, ``h0`` ``S`` -> ``(T, *S)``, written
    into ``out`` (contiguous) when given. CPU float32/float64 only (:class:`KernelError`
    otherwise); non-contiguous inputs are copied first."""
    if not (supports(a) and a.dtype == b.dtype == h0.dtype and b.device == h0.device == a.device
            and a.shape == b.shape and a.shape[1:] == h0.shape):
        raise KernelError(f"the C scan takes CPU float32/float64 a, b (T, ...) and h0 of one "
                          f"dtype; got {a.dtype} {tuple(a.shape)}, {b.dtype} {tuple(b.shape)}, "
                          f"{h0.dtype} {tuple(h0.shape)}")
    T, M = a.shape[0], h0.numel()
    a, b, h0 = a.contiguous(), b.contiguous(), h0.contiguous()
    h = torch.empty_like(b) if out is None else out
    if not h.is_contiguous() or h.shape != b.shape or h.dtype != b.dtype:
        raise KernelError("the C scan writes into a contiguous tensor shaped like b")
    if T == 0 or M == 0:
        return h
    threads = torch.get_num_threads() if T * M >= PARALLEL_MIN else 1
    fn = getattr(_scan_library().dll, f"gl_{DTYPES[a.dtype]}_scan")
    fn(T, M, a.data_ptr(), b.data_ptr(), h0.data_ptr(), h.data_ptr(), int(reverse), threads)
    return h
