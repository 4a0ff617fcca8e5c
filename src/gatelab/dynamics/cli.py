"""``gatelab grad law|flow|clip|spectrum``: the gradient lab on the command line.

Every subcommand prints a Rich table (``--format text``) or JSON (``--format json``) and, with
``--plot STEM``, writes ``STEM.png`` and ``STEM.svg``. Bad input exits with status 2 and one
line saying what is wrong.
"""

from __future__ import annotations

import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .. import budget
from ..cell import load_cell
from ..errors import UsageError

grad_app = typer.Typer(no_args_is_help=True, add_completion=False,
                       help="Gradient lab: the σ_max^t law, gradient flow, clipping, spectra.")
console = Console()
err = Console(stderr=True)


class Format(str, Enum):
    text = "text"
    json = "json"


class Activation(str, Enum):
    identity = "identity"
    tanh = "tanh"


class Coupling(str, Enum):
    symmetric = "symmetric"
    independent = "independent"


FORMAT = typer.Option(Format.text, "--format", "-f", help="text (Rich table) or json")
PLOT = typer.Option(None, "--plot", help="write STEM.png and STEM.svg")



def check_plot_stem(stem: Path | None) -> None:
    """:class:`UsageError` (before any work) unless ``stem`` can name ``STEM.png`` and
    ``STEM.svg``: not a folder, not a name ending in a separator, not empty."""
    if stem is None:
        return
    text = str(stem)
    if not stem.name or text.endswith(("/", "\\")) or stem.is_dir():
        raise UsageError(f"--plot {text!r} is a folder: give a file stem such as "
                         f"{Path(text) / 'figure'} (writes figure.png and figure.svg there)")


def _report_written(paths: list[Path]) -> None:
    """Say which figures were written, after checking that each one is there."""
    missing = [str(p) for p in paths if not (p.is_file() and p.stat().st_size > 0)]
    if missing:
        raise UsageError(f"the figure was not written: {', '.join(missing)} is missing or empty")
    err.print("wrote " + ", ".join(str(p) for p in paths), highlight=False)


def _plot(kind: str, result: Any, stem: Path | None) -> None:
    if stem is None:
        return
    from . import plots

    draw = {"law": lambda r, s: plots.law_plot([r], s), "clip": plots.clip_plot,
            "spectrum": plots.spectrum_plot}[kind]
    _report_written(draw(result, stem))


def _samples(n: int, count: int = 11) -> list[int]:
    """About ``count`` evenly spaced indices in ``0..n`` for a readable table."""
    return sorted({round(i * n / (count - 1)) for i in range(count)})


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=err, transient=True)


@grad_app.command()
def law(sigma_max: float = typer.Option(..., "--sigma-max", help="largest singular value of W"),
        steps: int = typer.Option(60, "--steps", help="T, steps to unroll"),
        hidden: int = typer.Option(32, "--hidden", help="H, size of the state"),
        sigma_min: float = typer.Option(None, "--sigma-min", help="smallest σ (default σ_max/2)"),
        activation: Activation = typer.Option(Activation.identity, "--activation"),
        coupling: Coupling = typer.Option(Coupling.symmetric, "--coupling",
                                          help="V = U (symmetric) or independent U, V"),
        seed: int = typer.Option(0, "--seed"),
        format: Format = FORMAT, plot: Path = PLOT) -> None:
    """Measure ‖∂h_t/∂h_0‖ of a linear RNN with W = U diag(σ) Vᵀ and fit its per-step rate."""
    from .law import measure_law

    check_plot_stem(plot)
    if not math.isfinite(sigma_max) or (sigma_max > 1 and steps * math.log(sigma_max)
                                        >= math.log(sys.float_info.max)):
        raise UsageError(f"--sigma-max {sigma_max:g} with --steps {steps}: σ_max^T is not a "
                         "finite number; choose a smaller --sigma-max or fewer --steps")
    with err.status("unrolling and differentiating"):
        r = measure_law(sigma_max, steps=steps, hidden=hidden, sigma_min=sigma_min,
                        activation=activation.value, coupling=coupling.value, seed=seed)
    _plot("law", r, plot)
    if format == Format.json:
        print(json.dumps(r.to_json()))
        return
    console.print(f"[bold]σ_max = {r.sigma_max:g}[/bold]  fitted rate = [bold]"
                  f"{r.fitted_rate:.6f}[/bold]  (relative error {r.relative_error:+.2e}); "
                  f"spectral radius ρ(W) = {r.spectral_radius:.6f}; {r.activation} activation, "
                  f"{r.coupling} U, V, H={r.hidden}", highlight=False)
    table = Table(title="‖∂h_t/∂h_0‖ (operator norm) against the article's σ_max^t")
    for col in ("t", "‖∂h_t/∂h_0‖", "σ_max^t"):
        table.add_column(col, justify="right")
    for k in _samples(r.steps):
        table.add_row(str(r.t[k]), f"{r.norm[k]:.4e}", f"{r.bound[k]:.4e}")
    console.print(table)


@grad_app.command()
def flow(cell: str = typer.Argument(None, help="built-in cell name or .cell file (the run's "
                                                 "own cell with --trained)"),
         settings: str = typer.Option(None, "--set", help="force gates, e.g. 'i=0,f=1', or 'hold'"),
         steps: int = typer.Option(50, "--steps", help="T, steps to unroll"),
         batch: int = typer.Option(32, "--batch", help="sequences (quartiles over them)"),
         hidden: int = typer.Option(32, "--hidden", help="H (ignored with --trained)"),
         trained: Path = typer.Option(None, "--trained", help="a trained run folder"),
         seed: int = typer.Option(0, "--seed"),
         format: Format = FORMAT, plot: Path = PLOT) -> None:
    """‖∂L/∂s_k‖ against the distance T−k (median and quartiles over a batch)."""
    from .flow import gradient_flow, parse_settings, trained_flow

    check_plot_stem(plot)
    budget.check_flow(None if trained is not None or cell is None else load_cell(cell),
                      steps=steps, batch=batch, hidden=hidden, seed=seed)

    def run():
        if trained is not None:
            return trained_flow(trained, steps=steps, batch=batch, settings=settings, seed=seed)
        if cell is None:
            raise UsageError("give a CELL (e.g. lstm) or --trained RUN")
        c = load_cell(cell)
        return gradient_flow(c, steps=steps, batch=batch, hidden=hidden,
                             force=parse_settings(settings, c), seed=seed)

    with err.status("measuring gradients through time"):
        r = run()
    if trained is not None and cell is not None and cell != r.cell:
        err.print(f"note: the run's cell is {r.cell!r}, not {cell!r}; measured the run's",
                  highlight=False)
    if plot is not None:
        from . import plots

        label = ", ".join(f"{k}={v:g}" for k, v in r.force.items()) or "gates free"
        _report_written(plots.flow_plot([(f"{r.cell} ({r.state})", [(label, r)])], plot))
    if format == Format.json:
        print(json.dumps(r.to_json()))
        return
    forced = ", ".join(f"{k}={v:g}" for k, v in r.force.items()) or "none"
    console.print(f"[bold]{r.cell}[/bold]: memory state {r.state}, gates forced: {forced}, "
                  f"T={r.steps}, batch={r.batch}, H={r.hidden}"
                  + (f", trained run {r.trained}" if r.trained else ", at initialisation")
                  + f"; inputs: {r.inputs}", highlight=False)
    console.print(f"per-step factor {r.rate:.4f}; largest relative change from d=0: "
                  f"{r.spread:.2e}", highlight=False)
    if r.no_path:
        console.print(f"no gradient path through time: {', '.join(r.no_path)} (the update "
                      "reads no state, so ‖∂L/∂s_(T−d)‖ = 0 for d ≥ 1)", highlight=False)
    table = Table(title=f"‖∂L/∂{r.state}_(T−d)‖ over {r.batch} sequences")
    table.add_column("d", justify="right")
    for col in ("q25", "median", "q75"):
        table.add_column(f"{r.state} {col}", justify="right")
    others = [s for s in r.states if s != r.state]
    for s in others:
        table.add_column(f"{s} median", justify="right")
    for d in _samples(r.steps):
        table.add_row(str(d), f"{r.q25[d]:.4e}", f"{r.grad_norm[d]:.4e}", f"{r.q75[d]:.4e}",
                      *(f"{r.states[s]['grad_norm'][d]:.4e}" for s in others))
    console.print(table)


# PLR0913: Typer reads a command's options from its signature
@grad_app.command()
def clip(steps: int = typer.Option(200, "--steps", help="SGD steps per run"),  # noqa: PLR0913
         seq_len: int = typer.Option(100, "--seq-len", help="T of the adding problem"),
         hidden: int = typer.Option(32, "--hidden"),
         batch: int = typer.Option(32, "--batch"),
         sigma_max: float = typer.Option(2.0, "--sigma-max", help="initial σ_max of U"),
         lr: float = typer.Option(0.1, "--lr", help="SGD learning rate"),
         max_norm: float = typer.Option(1.0, "--max-norm", help="θ of clip_grad_norm_"),
         clip_value: float = typer.Option(0.1, "--clip-value", help="c of clip_grad_value_"),
         seed: int = typer.Option(0, "--seed"),
         format: Format = FORMAT, plot: Path = PLOT) -> None:
    """Train a plain RNN with σ_max > 1: no clipping vs norm clipping vs value clipping."""
    from .clip import check_clip_options, clip_experiment

    check_plot_stem(plot)
    check_clip_options(steps=steps, seq_len=seq_len, hidden=hidden, batch=batch,
                       sigma_max=sigma_max, lr=lr, max_norm=max_norm, clip_value=clip_value)
    budget.check_clip(steps=steps, seq_len=seq_len, hidden=hidden, batch=batch, seed=seed,
                      sigma_max=sigma_max, lr=lr, max_norm=max_norm, clip_value=clip_value)
    with _progress() as progress:
        task = progress.add_task("training 3 runs", total=3 * steps)
        r = clip_experiment(
            steps=steps, seq_len=seq_len, hidden=hidden, batch=batch, sigma_max=sigma_max,
            lr=lr, max_norm=max_norm, clip_value=clip_value, seed=seed,
            tick=lambda: progress.advance(task))
    _plot("clip", r, plot)
    if format == Format.json:
        print(json.dumps(r.to_json()))
        return
    table = Table(title=f"adding problem T={r.seq_len}, RNN H={r.hidden}, "
                        f"σ_max={r.sigma_max:g}, SGD lr={r.lr:g}, {r.steps} steps "
                        f"(predicting 1 scores {r.trivial_loss:.3f})")
    for col in ("clipping", "non-finite steps", "first", "final loss", "peak loss", "max ‖g‖"):
        table.add_column(col, justify="right")
    for mode, run in r.runs.items():
        finite = [v for v in run.grad_norm if math.isfinite(v)]
        table.add_row(mode, str(run.nonfinite_steps),
                      "-" if run.first_nonfinite is None else str(run.first_nonfinite),
                      f"{run.final_loss:.4g}", f"{run.peak_loss:.4g}",
                      f"{max(finite):.4g}" if finite else "-")
    console.print(table)


@grad_app.command()
def spectrum(run: Path = typer.Argument(..., help="a trained run folder"),
             format: Format = FORMAT, plot: Path = PLOT) -> None:
    """Singular values of every recurrent matrix (W @ v with v depending on a state)."""
    from .spectrum import run_spectrum

    check_plot_stem(plot)
    with err.status("loading the run"):
        r = run_spectrum(run)
    _plot("spectrum", r, plot)
    if format == Format.json:
        print(json.dumps(r.to_json()))
        return
    table = Table(title=f"recurrent spectra of {r.cell} ({r.run})")
    for col in ("layer", "dir", "matrix", "shape", "σ_max", "σ_min", "#σ>1"):
        table.add_column(col, justify="right")
    for m in r.matrices:
        table.add_row(str(m.layer), "bwd" if m.direction else "fwd", m.name,
                      "×".join(map(str, m.shape)), f"{m.sigma_max:.4f}", f"{m.sigma_min:.4f}",
                      str(m.above_one))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``gatelab grad ...`` to the main app."""
    app.add_typer(grad_app, name="grad")
