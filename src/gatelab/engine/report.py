"""The tour's engine section: how a step is planned from the equations, and a short timing table
of the generated layers against torch and the plain Python loop (same comparisons as
``gatelab bench``, at a smaller size so the quick tour stays short)."""

from __future__ import annotations

import html

from ..report.page import Section, TourContext


def _plan_rows() -> str:
    from ..cell import load_cell
    from .autograd import compiled
    from .plan import is_scan_parallel

    rows = []
    for name in ("lstm", "gru-torch", "mgu", "mingru"):
        cell = load_cell(name)
        if is_scan_parallel(cell):
            how = "no recurrent GEMM: a, b of h' = a*h + b for all steps, then a parallel scan"
        else:
            plan = compiled(cell, True, "torch").plan
            how = "; ".join(
                f"stage {g.stage}: {'Gx[t] + ' if g.ih_rows else ''}({g.vector}) @ "
                f"[{', '.join(g.matrices)}]ᵀ" for g in plan.groups)
        rows.append(f"<tr><td>{html.escape(name)}</td><td><code>{html.escape(how)}</code></td>"
                    "</tr>")
    return "<p>The matrix products one time step needs, as planned from the equations:</p>"\
           "<table><tr><th>cell</th><th>GEMMs of one step (after Gx = x W_ihᵀ for all steps)"\
           "</th></tr>" + "".join(rows) + "</table>"


def _target(t: float | None) -> str:
    return "-" if t is None else f"≤ {t:.2f}"


def section(ctx: TourContext) -> Section:
    """Plans of a few cells and a quick forward+backward timing table."""
    from .bench import format_markdown, run_benchmark

    # quick: the benchmark's batch and width at half its length (a few seconds); smaller sizes
    # measure Python's per-step overhead rather than the engine (T=30 N=16 H=64: LSTM 6.6x torch)
    sizes = dict(T=50, N=64, H=256, repeats=3, scan_T=512, scan_N=8, scan_H=32) if ctx.quick \
        else dict(T=100, N=64, H=256, repeats=5, scan_T=2048, scan_N=64, scan_H=256)
    ctx.say("engine: timing layers")
    result = run_benchmark(**sizes, memory=False, progress=ctx.say)
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.1f}</td></tr>"
        for k, v in result["median_ms"].items())
    ratios = "".join(
        f"<tr><td>{html.escape(q['name'])}</td><td>{q['value']:.2f}</td>"
        f"<td>{_target(q['target'])}</td></tr>" for q in result["ratios"])
    sc = result.get("scan")
    scan = "" if sc is None else (
        f"<p>minGRU, T={sc['sizes']['T']}: parallel scan {sc['median_ms']['minGRU scan']:.1f} ms"
        f" vs its generated sequential loop {sc['median_ms']['minGRU sequential']:.1f} ms "
        f"(<b>{sc['speedup']:.1f}×</b>) and its plain Python loop "
        f"{sc['median_ms']['minGRU Python loop']:.1f} ms "
        f"(<b>{sc['speedup_vs_python_loop']:.1f}×</b>).</p>")
    (ctx.out / "engine-bench.md").write_text(format_markdown(result), encoding="utf-8")
    s = result["sizes"]
    body = f"""
<p class="muted">This section is about speed, not about what the gates do; skip it on a first
read.</p>
<p>Every layer of <code>gatelab.nn</code> is generated from the cell's equations: all
<code>W @ x</code> of all steps in one GEMM (one large matrix multiplication) before the
loop, the <code>U @ state</code> products of a step in one GEMM per distinct vector (a second stage
only where the cell needs it, as MGU's
<code>U_n @ (f*h)</code>), the pointwise rest as generated code, and the backward pass from SymPy
derivatives, with weight gradients as single large GEMMs after the loop.</p>
{_plan_rows()}
<p class="muted">Forward+backward, T={s['T']} N={s['N']} I=H={s['H']}, {result['threads']}
thread(s), median of {result['repeats']} interleaved rounds, measured while this report was built
(a shared machine: ratios matter, absolute times are noisy). The issue's benchmark sizes are in
<code>benchmarks/RESULTS-engine.md</code>; raw table: <a href="engine-bench.md">engine-bench.md</a>.
</p>
<table><tr><th>layer</th><th>ms</th></tr>{rows}</table>
<p class="muted">Ratios are time divided by time: below 1, the first layer is faster. The
targets are the issue's, set for T=100 N=64 I=H=256. Each step of a gatelab layer is its GEMMs
plus one generated C kernel per pointwise function (compiled from the equations, multi-threaded),
called from Python, so for small layers (hidden size 64 and below) the per-step call overhead
dominates and torch's own C++ LSTM/GRU are faster; gatelab's advantage is that the same engine
runs any cell you write.</p>
<table><tr><th>ratio</th><th>value</th><th>target (at the benchmark size)</th></tr>{ratios}
</table>
{scan}
"""
    return Section("engine", "Engine: generated layers and their speed", body,
                   summary="speed of the generated layers against torch (optional)")
