"""``gatelab tour``: build the whole report, one section per feature, into ``report/index.html``."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .page import Section, TourContext, render_page

# "module:function" -> function(ctx: TourContext) -> Section | list[Section]. In report order.
TOUR_SECTIONS = [
    "gatelab.report.zoo_section:build",
    "gatelab.analysis.report:section",
    "gatelab.diagram.report:section",
    "gatelab.dynamics.report:section",
    "gatelab.engine.report:section",
    "gatelab.train.report:section",
    "gatelab.explain.report:section",
]

INTRO = """
<p><strong>gatelab</strong> takes recurrent cells written as equations (RNN, LSTM, GRU, MGU and
any cell in the <code>.cell</code> language) and explains them with the article's method:
<em>three simplifications, one diagram</em>. (1) Ignore where the gates come from; (2) make each
gate a scalar; (3) make each gate a 0/1 switch; then (4) draw the cell as a circuit whose
switches are the gates. Every section below is computed from the cells' equations and from real
training runs made while this report was built.</p>
"""


def _builders() -> list[tuple[str, object]]:
    out = []
    for spec in TOUR_SECTIONS:
        mod, fn = spec.split(":")
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and mod.startswith(e.name):
                continue  # that feature package is not part of this build
            raise
        out.append((spec, getattr(module, fn)))
    return out


class TourError(Exception):
    """A problem the user can fix before any work starts. ``str()`` is one line: what is wrong
    and what to do."""


def prepare_out(out: Path) -> None:
    """Create the report folder ``out`` (and its parents), or raise TourError saying why not."""
    if out.exists() and not out.is_dir():
        raise TourError(f"--out {out} is an existing file, not a folder; pass a folder path "
                        "with --out (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TourError(f"cannot create report folder {out} ({e.strerror or e}); pass another "
                        "folder with --out") from None


def run_tour(out: Path, quick: bool = True, console: Console | None = None) -> Path:
    """Build every section and write ``out/index.html``. Returns its path. Raises TourError
    before any work when ``out`` cannot be a folder."""
    prepare_out(out)
    console = console or Console()
    builders = _builders()
    sections: list[Section] = []
    timings: list[tuple[str, float]] = []
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  TextColumn("[dim]{task.fields[note]}"), console=console) as progress:
        task = progress.add_task("tour", total=len(builders), note="")

        def say(msg: str) -> None:
            progress.update(task, note=msg)

        ctx = TourContext(out=out, quick=quick, say=say)
        for spec, build in builders:
            progress.update(task, description=spec.split(":")[0].removeprefix("gatelab."))
            t0 = time.perf_counter()
            result = build(ctx)
            timings.append((spec, time.perf_counter() - t0))
            sections.extend(result if isinstance(result, list) else [result])
            progress.advance(task)
    footer = "<p class='muted'>Built by <code>gatelab tour</code>" + (" --quick" if quick else "")
    footer += " in " + ", ".join(f"{s.split(':')[0].split('.')[1]} {t:.0f}s" for s, t in timings)
    footer += ".</p>"
    page = render_page("gatelab report", INTRO + footer, sections)
    index = out / "index.html"
    tmp = index.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(index)
    return index
