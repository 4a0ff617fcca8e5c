"""Generate one fused Triton kernel from a list of elementwise SymPy expressions.

The engine hands over the pointwise part of a step (every ``W @ v`` already replaced by a symbol)
and gets back a function that evaluates all outputs in one kernel launch::

    z, r = symbols("z r")
    fn = compile_triton_pointwise([z, r, h], [sigmoid(z), (1 - sigmoid(z)) * tanh(r * h)])
    a, b = fn(z_t, r_t, h_t)          # (N, H) tensors, or (H,) vectors broadcast along rows

The kernel source is printed from the SymPy tree by :mod:`gatelab.engine.triton_codegen` (after
``sympy.cse``; only generated identifiers and float literals, never text from a cell). Compiled
kernels are cached per ``(inputs, outputs)`` in memory; the generated source is executed from
memory and registered in ``linecache`` (Triton's ``@triton.jit`` reads a kernel's source through
``inspect``), so nothing is written to or imported from disk.

Math is fp32 whatever the storage type (fp32, bf16, fp16): inputs are up-cast after loading and
outputs cast to the output dtype when stored. ``sigmoid``, ``tanh`` and ``softplus`` are written
in forms that never overflow (only ``exp`` of a non-positive number is taken).
"""

from __future__ import annotations

import hashlib
import linecache
import math
import os
import threading
import types
from collections.abc import Callable, Sequence

import sympy
import torch

from .triton_codegen import TritonCodegenError, kernel_source

__all__ = ["TritonCodegenError", "check_device", "compile_triton_pointwise", "kernel_source"]


# ---- compiling and caching -------------------------------------------------------------------

_LOCK = threading.Lock()
_KERNELS: dict[tuple, Callable] = {}


def _load_kernel(source: str):
    """The ``_kernel`` of ``source``, executed from memory: Triton reads a kernel's source
    through ``inspect``, which finds it in ``linecache`` under a name no file has, so no file is
    written or read (nothing another process could swap in before the import)."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:24]
    filename = f"<gatelab triton pw_{digest}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(f"gatelab_triton_pw_{digest}")
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)  # generated above, from SymPy
    return module._kernel


def _kernel_for(key: tuple, source: str):
    """The compiled kernel of ``source`` (loaded once per process and expression list)."""
    kernel = _KERNELS.get(key)
    if kernel is None:
        with _LOCK:
            kernel = _KERNELS.get(key)
            if kernel is None:
                kernel = _KERNELS[key] = _load_kernel(source)
    return kernel


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def check_device(tensors: Sequence[torch.Tensor]) -> None:
    """Raise a clear error when tensors are not on one device Triton can run on."""
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    dev = next(iter(devices))
    if dev.type == "cpu" and not _interpreting():
        raise RuntimeError("Triton kernels need a CUDA GPU; to run them on the CPU (slowly) set "
                           "TRITON_INTERPRET=1 before triton is imported")


def _block(numel: int) -> int:
    if _interpreting():
        # The interpreter runs each program in Python: few, wide programs are fastest.
        return min(1 << max(numel - 1, 0).bit_length(), 1 << 16)
    return 1024


def compile_triton_pointwise(inputs: list[sympy.Symbol],
                             outputs: list[sympy.Expr]) -> Callable[..., tuple[torch.Tensor, ...]]:
    """Compile ``outputs`` (elementwise expressions in ``inputs``) into one Triton kernel.

    Returns ``fn(*tensors, out_dtype=None, out=None) -> tuple`` with one tensor per output.

    - Arguments, in the order of ``inputs``: ``(N, H)`` tensors (rows may be strided, e.g. a
      column block of a GEMM result) or ``(H,)`` vectors broadcast along rows; None where no
      output uses that input.
    - Outputs: new contiguous ``(N, H)`` tensors (``(H,)`` when every argument is a vector) in
      ``out_dtype`` (default: the promoted dtype of the arguments), or the tensors given in
      ``out`` (e.g. slices ``buf[t]`` of preallocated buffers; entries may be None).
    - Math is fp32. ``fn`` is not differentiable itself: the engine compiles the SymPy
      derivatives into kernels of their own.

    >>> import sympy
    >>> from gatelab.cell.functions import sigmoid
    >>> x = sympy.Symbol("x")
    >>> fn = compile_triton_pointwise([x], [sigmoid(x), 1 - sigmoid(x) ** 2])  # doctest: +SKIP
    """
    inputs = list(inputs)
    outputs = list(outputs)
    source = kernel_source(inputs, outputs)  # validates: bad expressions fail here, not later
    key = (tuple(inputs), tuple(outputs))
    free = set().union(*(o.free_symbols for o in outputs if isinstance(o, sympy.Basic)))
    unused = frozenset(k for k, s in enumerate(inputs) if s not in free)

    def fn(*tensors: torch.Tensor, out_dtype: torch.dtype | None = None,
           out: Sequence[torch.Tensor | None] | None = None):
        if len(tensors) != len(inputs):
            raise ValueError(f"expected {len(inputs)} tensors ({', '.join(map(str, inputs))}), "
                             f"got {len(tensors)}")
        args, strides, shape, dtype = _arguments(inputs, tensors, unused)
        ref = args[0]
        check_device(args)
        kernel = _kernel_for(key, source)
        outs = _outputs(out, len(outputs), shape, out_dtype or dtype, ref.device)
        numel = math.prod(shape)
        if numel == 0 or not outs:
            return outs
        block = _block(numel)
        dests = [o.detach() if o.requires_grad else o for o in outs]
        kernel[(-(-numel // block),)](*args, *dests, *strides,
                                      *(o.stride(0) if o.dim() == 2 else 0 for o in outs),
                                      numel, shape[-1], BLOCK=block)
        return outs

    fn.inputs = tuple(inputs)
    fn.outputs = tuple(outputs)
    fn.source = source
    return fn


_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def _outputs(out: Sequence[torch.Tensor | None] | None, n: int, shape: tuple,
             dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The tensors results are written to: ``out[k]`` where given (any float dtype, rows may be
    strided), else a new contiguous tensor."""
    if out is None:
        return tuple(torch.empty(shape, dtype=dtype, device=device) for _ in range(n))
    if len(out) != n:
        raise ValueError(f"out must hold {n} tensors (or None), got {len(out)}")
    res = []
    for k, o in enumerate(out):
        if o is None:
            o = torch.empty(shape, dtype=dtype, device=device)
        elif (tuple(o.shape) != shape or o.dtype not in _FLOATS or o.stride(-1) != 1
              or o.device != device):
            raise ValueError(f"out[{k}] must be a float tensor of shape {shape} on {device} with "
                             f"unit stride along its last dimension, got {tuple(o.shape)} "
                             f"{o.dtype} on {o.device}")
        res.append(o)
    return tuple(res)


def _arguments(inputs: Sequence[sympy.Symbol], tensors: Sequence[torch.Tensor | None],
               unused: frozenset[int]):
    """Check the arguments in one pass (each an (N, H) tensor or an (H,) vector, None only where
    unused) and return the launch arguments: tensors, row strides, output shape and dtype."""
    args, strides = [], []
    full = width = dtype = None
    missing = []
    for k, (sym, t) in enumerate(zip(inputs, tensors, strict=True)):
        if t is None:
            if k not in unused:
                raise TypeError(f"argument {sym} is None, but the expressions use it")
            missing.append(k)
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"argument {sym} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in _FLOATS:
            raise TypeError(f"argument {sym} has dtype {t.dtype}; use float32, bfloat16 or "
                            "float16")
        dtype = t.dtype if dtype is None else torch.promote_types(dtype, t.dtype)
        if t.dim() == 2:
            if full is not None and t.shape != full:
                raise ValueError(f"argument {sym} has shape {tuple(t.shape)}, expected "
                                 f"{tuple(full)}")
            full = t.shape
        elif t.dim() != 1:
            raise ValueError(f"argument {sym} must be (N, H) or (H,), got shape {tuple(t.shape)}")
        if width is not None and t.shape[-1] != width:
            raise ValueError(f"argument {sym} has last dimension {t.shape[-1]}, expected {width}")
        width = t.shape[-1]
        if t.requires_grad:  # the interpreter reads tensors through numpy
            t = t.detach()
        if t.stride(-1) != 1:  # rows may be strided (column slices), elements may not
            t = t.contiguous()
        args.append(t)
        strides.append(t.stride(0) if t.dim() == 2 else 0)
    if not args:
        raise ValueError("a pointwise kernel needs at least one input tensor to size its outputs")
    for k in missing:  # not read by the kernel: any valid pointer will do
        args.insert(k, args[0])
        strides.insert(k, 0)
    return args, strides, (tuple(full) if full is not None else (width,)), dtype
