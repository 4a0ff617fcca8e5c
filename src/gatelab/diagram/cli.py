"""``gatelab diagram CELL|FILE [-o out.svg|out.png] [--set g=0,h=1]``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..analysis import analyze, parse_setting
from ..cell import load_cell
from ..errors import NotFound, UsageError
from ..files import safe_name


def diagram_command(
    cell: str = typer.Argument(..., help="built-in cell name or path to a .cell file"),
    out: Path = typer.Option(None, "--out", "-o",
                             help="output file, .svg or .png (default: CELL.svg here)"),
    set_: str = typer.Option("", "--set", help="throw switches, e.g. f=0,i=1 (gates left out "
                             "stay symbolic)"),
) -> None:
    """Draw a cell as a circuit: inputs left, output right, gates as switches, core in red."""
    from .drawing import figure, prepare, write

    console = Console(stderr=True)
    c = load_cell(cell)
    analysis = analyze(c)
    setting = parse_setting(set_, analysis.gates) if set_ else {}
    if out is None:
        suffix = "-" + "".join(f"{g}{v}" for g, v in setting.items()) if setting else ""
        out = Path(f"{safe_name(c.name)}{suffix}.svg")  # here, whatever the cell's name
    kind = out.suffix.lower()
    if kind not in (".svg", ".png"):
        raise UsageError(f"gatelab diagram: cannot write {str(out)!r}; expected a file name "
                         "ending in .svg or .png")
    if not out.parent.exists():
        raise NotFound(f"gatelab diagram: folder {str(out.parent)!r} does not exist")
    with console.status(f"drawing {c.name}"):
        fig = figure(prepare(analysis), setting)
        write(fig, out)
    console.print(f"{fig.title} -> [bold]{out}[/bold]", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("diagram")(diagram_command)
