"""``gatelab tour`` and ``gatelab serve``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from .serve import serve_folder
from .tour import run_tour


def register(app: typer.Typer) -> None:
    @app.command()
    def tour(out: Path = typer.Option(Path("report"), "--out", "-o", help="report folder"),
             quick: bool = typer.Option(True, "--quick/--full",
                                        help="quick (a few minutes on 2 cores) or full runs")
             ) -> None:
        """Build the HTML report (the main job of `make demo`)."""
        # run_tour checks --out before any work starts (a TourError: gatelab.cli's handler)
        index = run_tour(out, quick=quick, console=(console := Console()))
        console.print(f"wrote [bold]{index}[/bold]")

    @app.command()
    def serve(folder: Path = typer.Option(Path("report"), "--dir", help="report folder"),
              port: int = typer.Option(8765, "--port",
                                       help="port on 127.0.0.1, 1-65535 (0 picks a free one)")
              ) -> None:
        """Serve the report on http://127.0.0.1:PORT (only files under the folder)."""
        serve_folder(folder, port)  # a ServeError goes to gatelab.cli's handler
