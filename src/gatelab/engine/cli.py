"""``gatelab bench`` (CPU benchmark of the engine) and ``gatelab engine CELL`` (show the plan and
the generated step code of a cell)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


def register(app: typer.Typer) -> None:
    @app.command()
    def bench(
        steps: int = typer.Option(100, "--T", help="sequence length"),
        batch: int = typer.Option(64, "--N", help="batch size"),
        hidden: int = typer.Option(256, "--H", help="input and hidden size"),
        repeats: int = typer.Option(7, "--repeats", min=1, help="interleaved rounds"),
        scan_steps: int = typer.Option(2048, "--scan-T", min=0,
                                       help="minGRU scan length (0: skip)"),
        scan_hidden: int = typer.Option(256, "--scan-H", min=1, help="minGRU scan size"),
        scan_batch: int = typer.Option(64, "--scan-N", min=1, help="minGRU scan batch"),
        threads: str = typer.Option("", "--threads",
                                    help="torch threads, one run each, e.g. 1,2 (default: "
                                    "torch's default)"),
        small_steps: int = typer.Option(35, "--small-T", min=0,
                                        help="small-layer length (0: skip)"),
        small_batch: int = typer.Option(20, "--small-N", min=1, help="small-layer batch"),
        small_hidden: int = typer.Option(64, "--small-H", min=1, help="small-layer size"),
        small_layers: int = typer.Option(2, "--small-layers", min=1, help="small-layer depth"),
        compile_time: bool = typer.Option(True, "--compile/--no-compile",
                                          help="time first-call compile and cached second "
                                          "process (fresh processes)"),
        memory: bool = typer.Option(True, "--memory/--no-memory", help="measure peak memory"),
        loops: bool = typer.Option(True, "--loops/--no-loops", help="time the Python loops"),
        user_cell: Path = typer.Option(None, "--cell", help="the user-written .cell to time "
                                       "(default: benchmarks/cells/mymgu.cell)"),
        as_json: Path = typer.Option(None, "--json", help="also write the result as JSON"),
        markdown: Path = typer.Option(None, "--markdown", help="also write Markdown tables"),
        peer: str = typer.Option("", "--peer", help="also time the same cells written in a "
                                 "peer framework: 'jax' (jax.lax.scan under jax.jit, needs the "
                                 "'peer' extra)"),
        peer_cells: str = typer.Option("mgu,lstm-peephole", "--peer-cells",
                                       help="cells of the peer rows, comma-separated"),
        peer_only: bool = typer.Option(False, "--peer-only", help="only the peer rows"),
        peer_backends: str = typer.Option("auto", "--peer-backends",
                                          help="gatelab backends of the peer rows, e.g. "
                                          "auto,sequence"),
    ) -> None:
        """Time the engine against torch and the Python loop (ratios, peak memory, scan).

        Forward+backward of gatelab LSTM/GRU/MGU and a user cell against torch nn.LSTM/GRU and
        the plain Python loop, interleaved rounds, medians; minGRU scan vs sequential."""
        from ..cell import load_cell
        from ..errors import GatelabError
        from . import jax_peer_bench
        from .bench import format_markdown, format_summary, run_benchmark
        from .bench_compile import compile_times, format_compile
        from .layout import EngineError, Layout
        from .route import check_backend

        for name, v in (("--T", steps), ("--N", batch), ("--H", hidden)):
            if v < 1:
                raise typer.BadParameter(f"{name} must be at least 1, got {v}")
        try:
            counts = [int(t) for t in threads.split(",") if t.strip()] or [0]
        except ValueError:
            raise typer.BadParameter(f"--threads wants counts like 1,2, got {threads!r}") from None
        if any(t < 0 for t in counts):
            raise typer.BadParameter(f"--threads wants counts of at least 0, got {threads!r}")
        from ..budget import check_bench  # every size bounded, memory within the budget

        check_bench(T=steps, N=batch, H=hidden, repeats=repeats, scan_T=scan_steps,
                    scan_H=scan_hidden, scan_N=scan_batch, small_T=small_steps,
                    small_N=small_batch, small_H=small_hidden, small_layers=small_layers,
                    threads=counts)
        if peer not in ("", "jax"):
            raise typer.BadParameter(f"--peer knows 'jax', got {peer!r}")
        if peer_only and not peer:
            raise typer.BadParameter("--peer-only needs --peer jax")
        small = (small_steps, small_batch, small_hidden, small_layers) if small_steps else None
        if user_cell is not None:
            try:
                Layout.of(load_cell(user_cell))
            except EngineError as e:
                raise typer.BadParameter(f"{user_cell}: {e}") from None
        cells = [c.strip() for c in peer_cells.split(",") if c.strip()]
        try:
            gl_backends = tuple(check_backend(b.strip()) for b in peer_backends.split(",")
                                if b.strip()) or ("auto",)
        except EngineError as e:
            raise typer.BadParameter(f"--peer-backends: {e}") from None
        for c in cells if peer else ():
            try:
                Layout.of(load_cell(c))
            except (EngineError, GatelabError) as e:
                raise typer.BadParameter(f"--peer-cells {c}: {e}") from None
        console = Console()
        runs, peer_runs, text = [], None, ""
        if peer and not jax_peer_bench.jax_available():
            console.print("JAX peer skipped: jax is not installed (pip install "
                          "'gatelab[peer]')", markup=False, highlight=False)
            peer = ""
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("bench", total=None)
            say = lambda s: progress.update(task, description=s)  # noqa: E731
            if not peer_only:
                runs = [run_benchmark(steps, batch, hidden, repeats, scan_steps, scan_batch,
                                      scan_hidden, n or None, memory, loops, user_cell,
                                      progress=say, small=small) for n in counts]
            if compile_time and not peer_only:
                progress.update(task, description="compile times (fresh processes)")
                times = compile_times()
            if peer:
                peer_runs = jax_peer_bench.run_peer_threads(
                    [n for n in counts if n] or [1, 2], cells=cells, repeats=repeats,
                    progress=say, backends=gl_backends)
        text = "\n".join(format_markdown(r) for r in runs)
        if len(runs) > 1:
            text += "\n" + format_summary(runs)
        if compile_time and not peer_only:
            text += "\nC kernels: first call and cached second process, per cell:\n\n" \
                + format_compile(times)
        if peer_runs:
            text += "\n" + jax_peer_bench.format_peer(peer_runs)
        console.print(text, markup=False, highlight=False, soft_wrap=True)
        if as_json:
            result = {} if peer_only else dict(runs[0]) if len(runs) == 1 else {"runs": runs}
            if compile_time and not peer_only:
                result["compile"] = times
            if peer_runs:
                result["peer"] = {"jax": peer_runs}
            as_json.write_text(json.dumps(result, indent=1), encoding="utf-8")
        if markdown:
            markdown.write_text(text, encoding="utf-8")

    @app.command()
    def engine(cell: str = typer.Argument(..., help="built-in name or .cell file"),
               code: bool = typer.Option(False, "--code", help="print the generated code"),
               backend: str = typer.Option("auto", "--backend",
                                           help="the backend whose path to state (CPU)"),
               double: bool = typer.Option(False, "--float64",
                                           help="the path for float64 (default float32)"),
               ) -> None:
        """Show how the engine runs a cell: which path a backend takes (``auto``: torch's
        kernels for a cell proved equal to torch's, else gatelab's), the GEMMs of a step and
        the pointwise code."""
        import torch

        from ..cell import load_cell
        from .autograd import compiled
        from .plan import is_scan_parallel
        from .route import route

        c = load_cell(cell)
        console = Console()
        # the one route (an EngineError, e.g. a backend this cell cannot take, goes to
        # gatelab.cli's handler as one line)
        where = route(c, backend=backend, dtype=torch.float64 if double else torch.float32)
        console.print(f"path (backend={backend!r}): {where.path}: {where.reason}",
                      highlight=False, markup=False)
        step = compiled(c, True, "torch")  # an EngineError goes to gatelab.cli's handler
        console.print("gatelab's own engine (backend='generated' forces it):")
        plan = step.plan
        console.print(f"{c.name}: weight_ih blocks {plan.layout.ih}, "
                      f"weight_hh blocks {plan.layout.hh}", highlight=False, markup=False)
        console.print("before the loop: Gx = x @ weight_ih.T + bias  (one GEMM, all steps)")
        for g in plan.groups:
            fused = "Gx[t] + " if g.ih_rows else ""
            console.print(f"stage {g.stage}: [{', '.join(map(str, g.symbols))}] = {fused}"
                          f"({g.vector}) @ [{', '.join(g.matrices)}].T", highlight=False,
                          markup=False)
        for s, e in zip(c.states, plan.nexts, strict=True):
            console.print(f"next {s} = {e}", highlight=False, markup=False)
        if is_scan_parallel(c):
            console.print("scan-parallel: trained with the parallel scan (backend 'scan')")
        if code:
            for title, fn in [("final", step.final), ("final backward", step.final_bwd),
                              *[(f"prepare {k}", f) for k, f in step.prep.items()],
                              *[(f"prepare {k} backward", f) for k, f in step.prep_bwd.items()]]:
                console.print(f"[bold]# {title}[/bold]")
                console.print(fn.source, markup=False, highlight=False, soft_wrap=True)
