"""``gatelab explain``: per-token gates of a trained text model, saturation and fidelity.

    gatelab explain [TEXT | --file F] [--run RUN] [--format text|html|json]
    gatelab explain saturation [--run RUN] [--plot saturation.png]
    gatelab explain fidelity [--run RUN]

    gatelab explain build-model [--force]

With no ``--run`` the cached model of ``build-model`` is used when it is built, else the quick
tour's sentiment model (``report/runs/sentiment``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from ..files import read_limited
from .gates import REVIEW
from .model import ExplainError, TextModel, from_run

DEFAULT_RUN = Path("report/runs/sentiment")
# The replay runs the cell's equations token by token and the page shows every token: a review
# is a few hundred tokens; these bound the time and memory of a long argument or file.
MAX_TEXT_BYTES = 256 * 1024
MAX_TOKENS = 2000
console = Console()
err = Console(stderr=True)


class Format(str, Enum):
    text = "text"
    html = "html"
    json = "json"


class TextOrJson(str, Enum):
    text = "text"
    json = "json"


class _DefaultToText(TyperGroup):
    """``gatelab explain "some text"`` runs the hidden ``text`` command: anything that is not a
    subcommand (or the group's ``--help``) is that command's arguments."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:  # noqa: ANN001 - click Context
        if not args or (args[0] not in self.commands and args[0] != "--help"):
            args = ["text", *args]
        return super().parse_args(ctx, args)


def default_run() -> Path:
    """The model ``gatelab explain`` reads without ``--run``: the cached model the
    measurements favour when it is built, else the quick tour's."""
    from . import tourmodel

    return tourmodel.model_path() if tourmodel.is_built() else DEFAULT_RUN


def _open(run: Path | None) -> TextModel:
    path = run or default_run()
    if run is None and not (path / "config.json").is_file():
        raise ExplainError(f"no sentiment model at {path}: build the explained model once with "
                           "`gatelab explain build-model` (a few minutes), or the report with "
                           "`gatelab tour --quick` (it trains a quick one there in a minute), or "
                           "train one with `gatelab train tweets --cell mgu --out RUN` and "
                           "pass --run RUN")
    return from_run(path)


def _test_set(model: TextModel, limit: int | None):
    if model.test_set is None:
        raise ExplainError(f"{model.source}: the data set this model was evaluated on is unknown")
    data = model.test_set()
    if limit:
        data.ids, data.labels = data.ids[:limit], data.labels[:limit]
    return data


def _progress(total: int, what: str) -> tuple[Progress, Callable[[int], None]]:
    bar = Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=err, transient=True)
    task = bar.add_task(what, total=total)
    return bar, lambda n: bar.advance(task, n)


def register(app: typer.Typer) -> None:
    """Add ``gatelab explain`` (with ``saturation`` and ``fidelity``) to the app."""
    sub = typer.Typer(cls=_DefaultToText, no_args_is_help=False, invoke_without_command=False,
                      help="What the gates do on real text.\n\n"
                           "gatelab explain [TEXT | --file F] [--run RUN] [--format text|html|json]"
                           ": per-token gates and switch settings (default text: the article's "
                           "review).\n\n"
                           "gatelab explain saturation | fidelity [--run RUN]: over the test set."
                           "\n\ngatelab explain build-model: train the explained model once "
                           "into the cache.\n\nWithout --run: that model when built, else the "
                           f"quick tour's, {DEFAULT_RUN}.")
    app.add_typer(sub, name="explain")

    @sub.command("text", hidden=True)
    def explain_cmd(
        text: str = typer.Argument(None, help="text to explain (default: the article's review)"),
        file: Path = typer.Option(None, "--file", help="read the text from a file"),
        run: Path = typer.Option(None, "--run", help="run folder (default: the built model, "
                         f"else {DEFAULT_RUN})"),
        format: Format = typer.Option(Format.text, "--format", "-f"),
        units: int = typer.Option(3, "--units", max=4096,
                                  help="most varying units shown per gate"),
        gate: str = typer.Option(None, "--gate", help="gate shown unit by unit (default: the "
                                 "keep gate, e.g. z; L2.z for layer 2)"),
        top: int = typer.Option(12, "--top", min=0, max=4096,
                                help="units in the unit-by-unit view"),
    ) -> None:
        """Per-token gate values and switch settings of a trained text model."""
        from .gates import explain_text
        from .render import html_page, to_json, to_rich

        if text is not None and file is not None:
            raise ExplainError("give a TEXT or --file, not both")
        if file is not None:
            try:  # a bounded regular file: /dev/zero or a FIFO cannot hang it
                text = read_limited(file, MAX_TEXT_BYTES, "text file").decode("utf-8")
            except UnicodeDecodeError as e:
                raise ExplainError(f"cannot read {file}: {e}") from None
        elif text is not None and len(text.encode("utf-8", "replace")) > MAX_TEXT_BYTES:
            raise ExplainError(f"the text is longer than {MAX_TEXT_BYTES} bytes: explain a part "
                               "of it")
        model = _open(run)
        n_tokens = len(model.encode(text)[0]) if text is not None else 0
        if n_tokens > MAX_TOKENS:
            raise ExplainError(f"the text has {n_tokens} tokens, more than the {MAX_TOKENS} "
                               "explain shows: explain a part of it")
        ex = explain_text(model, REVIEW if text is None else text)
        if gate is not None and gate not in ex.gates:
            raise ExplainError(f"--gate {gate}: this model's gates are "
                               f"{', '.join(ex.gates) or 'none'}")
        if format == Format.json:
            print(to_json(model.cell, ex, gate, top))
        elif format == Format.html:
            print(html_page(model.cell, ex, f"gatelab explain — {model.cell.name}", gate, top),
                  end="")
        else:
            console.print(f"[dim]{escape(model.source)}: {escape(model.cell.name)}, "
                          f"{len(model.layers)} layer(s), {model.hidden_size} units[/dim]")
            to_rich(model.cell, ex, console, units=max(0, units), gate=gate, top=top)

    @sub.command("build-model")
    def build_model_cmd(
        force: bool = typer.Option(False, "--force", help="train again even if cached"),
    ) -> None:
        """Train the explained sentiment model once into the user's cache (a few minutes)."""
        from . import tourmodel

        path = tourmodel.model_path()
        if tourmodel.is_built(path) and not force:
            console.print(f"already built: {escape(tourmodel.describe(path))}")
            return
        steps = int(tourmodel.MODEL["steps"])
        bar, tick = _progress(steps, "training")
        with bar:
            path = tourmodel.build(force=force, progress=lambda _step: tick(1))
        console.print(f"built: {escape(tourmodel.describe(path))}")

    @sub.command("saturation")
    def saturation_cmd(
        run: Path = typer.Option(None, "--run", help="run folder (default: the built model, "
                         f"else {DEFAULT_RUN})"),
        limit: int = typer.Option(None, "--limit", min=1, help="use the first N test texts"),
        plot: Path = typer.Option(None, "--plot", help="write the scatter plot (PNG) here"),
        format: TextOrJson = typer.Option(TextOrJson.text, "--format", "-f"),
    ) -> None:
        """How often each gate unit is below 0.1 or above 0.9 over the test set."""
        from .saturation import plot as plot_saturation
        from .saturation import saturation

        model = _open(run)
        data = _test_set(model, limit)
        bar, tick = _progress(len(data), "saturation")
        with bar:
            sat = saturation(model, data.ids, max_len=model.max_len, progress=tick)
        if plot is not None:
            plot_saturation(sat, plot, f"{model.cell.name}: {len(data)} texts, {sat.steps} steps")
        if format == TextOrJson.json:
            print(json.dumps(sat.to_json()))
            return
        table = Table(title=f"gate saturation over {len(data)} test texts ({sat.steps} steps)")
        for col in ("gate", "units", "< 0.1 (open)", "> 0.9 (closed)", "in between"):
            table.add_column(col, justify="right" if col != "gate" else "left")
        for gate, s in sat.summary().items():
            table.add_row(gate, str(len(sat.left[gate])), f"{s['below_0.1']:.1%}",
                          f"{s['above_0.9']:.1%}", f"{s['between']:.1%}")
        console.print(table)
        if plot is not None:
            console.print(f"wrote {plot}")

    @sub.command("fidelity")
    def fidelity_cmd(
        run: Path = typer.Option(None, "--run", help="run folder (default: the built model, "
                         f"else {DEFAULT_RUN})"),
        limit: int = typer.Option(None, "--limit", min=1, help="use the first N test texts"),
        format: TextOrJson = typer.Option(TextOrJson.text, "--format", "-f"),
    ) -> None:
        """Accuracy, loss and predictions with every gate rounded to 0/1 (and each alone)."""
        from .fidelity import fidelity

        model = _open(run)
        data = _test_set(model, limit)
        n_cond = 1 + (len(model.cell.gates) > 0) + (len(model.cell.gates) > 1) * len(
            model.cell.gates)
        bar, tick = _progress(len(data) * n_cond, "fidelity")
        with bar:
            fid = fidelity(model, data.ids, data.labels, max_len=model.max_len,
                           progress=tick)
        if format == TextOrJson.json:
            print(json.dumps(fid.to_json()))
            return
        table = Table(title=f"fidelity of the 0/1 switch reading, {fid.n} test texts")
        for col in ("gates", "accuracy", "loss", "predictions changed", "mean prob. shift"):
            table.add_column(col, justify="right" if col != "gates" else "left")
        for c in fid.conditions:
            table.add_row(c.name, f"{c.accuracy:.1%}", f"{c.loss:.3f}", f"{c.changed:.1%}",
                          f"{c.shift:.3f}")
        console.print(table)
