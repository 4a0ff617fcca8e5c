"""The kernels build for a real GPU: Triton's compiler, run ahead of time for an H100 (sm_90), takes
the generated pointwise kernels and the scan kernels down to a cubin without needing the device.

The interpreter tests check what the kernels compute; this catches what only the GPU compiler
rejects (types of loop-carried values, unsupported ops). It runs in a subprocess because the
interpreter, once chosen for this process, cannot be switched off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sympy
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from gatelab import load_cell
    from gatelab.cell.functions import MatVec
    from gatelab.engine import triton_scan_kernels as scan
    from gatelab.engine.triton_codegen import kernel_source
    from gatelab.engine.triton_pointwise import _kernel_for

    TARGET = GPUTarget("cuda", 90, 32)

    def build(fn, sig, consts):
        c = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts), target=TARGET)
        assert c.asm["cubin"], fn

    for dt in ("fp32", "bf16"):
        ptrs = {n: "*" + dt for n in ("a_ptr", "b_ptr", "h0_ptr", "h_ptr")}
        build(scan.scan_fwd, {**ptrs, "T": "i32", "C": "i32", "BT": "constexpr",
                              "BC": "constexpr"}, {"BT": 64, "BC": 32})
        ptrs = {n: "*" + dt for n in ("a_ptr", "h0_ptr", "h_ptr", "dh_ptr", "da_ptr", "db_ptr",
                                      "dh0_ptr")}
        build(scan.scan_bwd, {**ptrs, "T": "i32", "C": "i32", "BT": "constexpr",
                              "BC": "constexpr"}, {"BT": 64, "BC": 32})
    n = 0
    for name in ("lstm", "mgu", "minlstm"):
        cell = load_cell(name)
        nexts = [cell.inline(e) for e in cell.nexts.values()]
        mvs = sorted(set().union(*(e.atoms(MatVec) for e in nexts)), key=str)
        nexts = [e.xreplace({m: sympy.Symbol(f"m{k}") for k, m in enumerate(mvs)})
                 for e in nexts]
        inputs = sorted(set().union(*(e.free_symbols for e in nexts)), key=str)
        derivs = [d for e in nexts for s in inputs if not (d := e.diff(s)).is_Number]
        for outs, dt in ((nexts, "bf16"), (derivs, "fp32")):
            kern = _kernel_for((tuple(inputs), tuple(outs)), kernel_source(inputs, outs))
            sig = {f"p{k}": "*" + dt for k in range(len(inputs))}
            sig.update({f"q{k}": "*" + dt for k in range(len(outs))})
            sig.update({f"s{k}": "i32" for k in range(len(inputs))})
            sig.update({f"r{k}": "i32" for k in range(len(outs))})
            sig.update({"numel": "i32", "H": "i32", "BLOCK": "constexpr"})
            build(kern, sig, {"BLOCK": 1024})
            n += 1
    print("built", n, "pointwise kernels and 4 scan kernels for sm_90")
""")


def test_kernels_compile_for_sm90(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"  # Triton 3.9 warns when it is unset
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")  # really compile, every time
    env["GATELAB_CACHE"] = str(tmp_path / "gatelab-cache")
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "built 6 pointwise kernels and 4 scan kernels for sm_90" in res.stdout
