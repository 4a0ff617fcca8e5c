"""``gatelab tour`` and ``gatelab serve``."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from .serve import ServeError, serve_folder
from .tour import TourError, run_tour


def fail(message: str) -> NoReturn:
    """One plain ``error: ...`` line on stderr (never wrapped by Rich), then exit status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    @app.command()
    def tour(out: Path = typer.Option(Path("report"), "--out", "-o", help="report folder"),
             quick: bool = typer.Option(True, "--quick/--full",
                                        help="quick (a few minutes on 2 cores) or full runs")
             ) -> None:
        """Build the HTML report (the main job of `make demo`)."""
        try:  # run_tour checks --out before any work starts
            index = run_tour(out, quick=quick, console=(console := Console()))
        except TourError as e:
            fail(str(e))
        console.print(f"wrote [bold]{index}[/bold]")

    @app.command()
    def serve(folder: Path = typer.Option(Path("report"), "--dir", help="report folder"),
              port: int = typer.Option(8765, "--port",
                                       help="port on 127.0.0.1, 1-65535 (0 picks a free one)")
              ) -> None:
        """Serve the report on http://127.0.0.1:PORT (only files under the folder)."""
        try:
            serve_folder(folder, port)
        except ServeError as e:
            fail(str(e))
