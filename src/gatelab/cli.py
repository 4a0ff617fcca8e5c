"""The ``gatelab`` command line: one command per verb (Typer + Rich).

Feature packages add their own commands through a ``register(app)`` function listed in
``PLUGINS``. The one error handler is here (:class:`GatelabGroup`): a
:class:`~gatelab.errors.GatelabError` raised by any command (a bad cell: ``PATH:LINE:COL: ...``
lines; anything else: one ``error: ...`` line) goes to stderr with exit status 2; a bug keeps its
traceback.
"""

from __future__ import annotations

import importlib
import json
import sys
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

try:  # the Click that Typer runs on: its own copy from Typer 0.29 on
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older Typer on the click package
    from click.exceptions import ClickException

from .cell import CellError, cell_latex, cell_text, cell_unicode, load_cell, load_file, zoo_names
from .cell.support import COMMANDS_NEEDING_VECTOR_CELLS, reference_only_features
from .engine.layout import EngineError, Layout
from .errors import GatelabError


def print_error(error: GatelabError | OSError) -> None:
    """The error's lines on stderr, as plain text (never read as Rich markup)."""
    lines = error.lines() if isinstance(error, GatelabError) else [f"error: {error}"]
    for line in lines:
        print(line, file=sys.stderr)


class GatelabGroup(TyperGroup):
    """The one handler: a GatelabError raised by any command becomes its lines on stderr and its
    exit status (2), inside the app itself, so the console entry and ``CliRunner`` behave alike.
    An OSError (a file or folder the system refused: permissions, a full disk) is the user's to
    fix too. Everything else is a bug and keeps its traceback."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except (GatelabError, OSError) as e:
            print_error(e)
            raise typer.Exit(getattr(e, "exit_code", 2)) from None

    def main(self, args=None, prog_name=None, complete_var=None,  # type: ignore[no-untyped-def]
             standalone_mode=True, **extra):
        """As Typer's, except that a command line Click cannot parse (an option of the wrong
        type, an unknown option or command, a missing argument) is one ``error:`` line naming
        the command, exit status 2, instead of a usage box."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as e:
            ctx = getattr(e, "ctx", None)
            if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
                print(ctx.get_help())
                sys.exit(0)
            path = ctx.command_path if ctx is not None else "gatelab"
            message = " ".join(e.format_message().split())
            print(f"error: {path}: {message} (see '{path} --help')", file=sys.stderr)
            sys.exit(e.exit_code)
        except typer.Abort:
            print("Aborted!", file=sys.stderr)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(cls=GatelabGroup, add_completion=False, no_args_is_help=True,
                  help="Define, explain, train and inspect gated recurrent networks.")
console = Console()

# Modules that add commands: each has register(app: typer.Typer) -> None.
PLUGINS = [
    "gatelab.analysis.cli",
    "gatelab.diagram.cli",
    "gatelab.engine.cli",
    "gatelab.dynamics.cli",
    "gatelab.train.cli",
    "gatelab.explain.cli",
    "gatelab.report.cli",
    "gatelab.study.cli",
]


class TableOrJson(str, Enum):
    table = "table"
    json = "json"


def cells_json() -> list[dict]:
    """The zoo as JSON rows (stable keys, documented in the README)."""
    rows = []
    for name in zoo_names():
        c = load_cell(name)
        rows.append({
            "name": c.name,
            "title": c.title,
            "inputs": list(c.inputs),
            "states": list(c.states),
            "gates": list(c.gates),
            "output": c.output,
            "params": str(c.param_count()),
        })
    return rows


@app.command()
def cells(format: TableOrJson = typer.Option(TableOrJson.table, "--format", "-f")) -> None:
    """List the built-in cells: name, title, states, gates, parameter count for I=H=d."""
    rows = cells_json()
    if format == TableOrJson.json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="gatelab zoo (parameters for input size = hidden size = d)")
    for col in ("name", "states", "gates", "params", "title"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], " ".join(r["states"]), " ".join(r["gates"]) or "-",
                      r["params"], r["title"])
    console.print(table)


@app.command()
def show(cell: str = typer.Argument(..., help="built-in name or .cell file"),
         latex: bool = typer.Option(False, "--latex", help="print LaTeX"),
         source: bool = typer.Option(False, "--source", help="print normalised .cell text"),
         ) -> None:
    """Print a cell's equations (Unicode by default)."""
    c = load_cell(cell)
    if latex:
        print(cell_latex(c))
    elif source:
        print(cell_text(c), end="")
    else:
        # the title is the file's own comment: printed literally, never read as Rich markup
        console.print(f"[bold]{escape(c.name)}[/bold] — {escape(c.title)}", highlight=False)
        console.print(f"inputs: {', '.join(c.inputs)}   states: {', '.join(c.states)}   "
                      f"output: {c.output}")
        console.print(cell_unicode(c), highlight=False)


@app.command()
def check(files: list[Path] = typer.Argument(..., help=".cell files to validate")) -> None:
    """Validate cell files: exit 0 if all are valid, 2 otherwise (one line per problem)."""
    bad = False
    for f in files:
        try:
            c = load_file(f)
        except CellError as e:  # every file is checked: report this one and go on
            bad = True
            print_error(e)
            continue
        later = reference_only_features(c)
        if later:  # valid, and said plainly which commands cannot run it yet
            console.print(escape(f"{f}: ok ({c.name}: {len(c.states)} state(s), "
                                 f"{len(c.gates)} gate(s)); reference loop and show only: "
                                 f"{', '.join(COMMANDS_NEEDING_VECTOR_CELLS)} do not run it "
                                 f"yet (it uses {', '.join(later[:3])})"), highlight=False)
            continue
        try:  # passing means every command works, training included
            Layout.of(c)
        except EngineError as e:
            bad = True
            print_error(EngineError(f"{f}: the recurrent layers (train, gatelab.nn) cannot run "
                                    f"this cell: {e} (analyze, diagram and show do)"))
            continue
        console.print(escape(f"{f}: ok ({c.name}: {len(c.states)} state(s), "
                             f"{len(c.gates)} gate(s))"), highlight=False)
    if bad:
        raise typer.Exit(2)


def _register_plugins() -> None:
    for mod in PLUGINS:
        importlib.import_module(mod).register(app)


_register_plugins()


def main() -> None:
    """Console entry point (errors: see :class:`GatelabGroup`)."""
    try:
        app()
    except GatelabError as e:  # raised outside a command (the group handles those)
        print_error(e)
        sys.exit(e.exit_code)
