"""``gatelab analyze CELL|FILE [--format text|md|json|latex] [--set g=0,h=1]``."""

from __future__ import annotations

import json
from enum import Enum

import typer
from rich.console import Console

from ..cell import load_cell
from .analyze import analyze, reduce_setting
from .stages import parse_setting


class Format(str, Enum):
    text = "text"
    md = "md"
    json = "json"
    latex = "latex"


def analyze_command(
    cell: str = typer.Argument(..., help="built-in cell name or path to a .cell file"),
    format: Format = typer.Option(Format.text, "--format", "-f", help="text, md, json or latex"),
    set_: str = typer.Option("", "--set", help="a gate setting to reduce, e.g. f=1,i=0 "
                             "(gates left out stay free)"),
) -> None:
    """The three simplifications: stages, every 0/1 gate setting, switches, memory, core."""
    from . import render

    c = load_cell(cell)
    # 2^k settings: a many-gate cell takes seconds, so say what is happening (on stderr,
    # keeping stdout clean for --format json).
    with Console(stderr=True).status(f"analysing {c.name}: {2 ** len(c.gates)} settings"):
        a = analyze(c)
        mode = reduce_setting(a, parse_setting(set_, a.gates)) if set_ else None
    if format == Format.json:
        data = mode.to_dict() if mode else a.to_dict()
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif format == Format.md:
        if mode:
            print(f"`{c.name}` at `{mode.label}`\n\n| setting | reduced update | kind | identity "
                  f"path |\n|---|---|---|---|\n{render.markdown_mode(mode, a.memory_states)}\n\n"
                  f"{mode.note}")
        else:
            print(render.markdown(a))
    elif format == Format.latex:
        print(render.latex_mode(a, mode) if mode else render.latex(a), end="")
    else:
        render.print_rich(render.rich_mode(a, mode) if mode else render.rich_analysis(a))


def register(app: typer.Typer) -> None:
    """Add ``gatelab analyze`` to the CLI."""
    app.command("analyze")(analyze_command)
