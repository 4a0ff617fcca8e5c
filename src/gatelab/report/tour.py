"""``gatelab tour``: build the whole report, one section per feature, into ``report/index.html``."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..errors import GatelabError
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
    "gatelab.study.report:section",
]

INTRO = """
<p><strong>gatelab</strong> explains <em>gated</em> recurrent networks (LSTM, GRU, MGU and their
variants) with one simple method: <em>three simplifications, one diagram</em>. Everything below
is computed from the cells' equations and from real training runs made while this report was
built.</p>
"""

HOW_TO_READ = """
<div class="card" id="how-to-read">
<h3 style="margin-top:4px">How to read this report</h3>
<p>A recurrent network reads a sequence one step at a time and carries a <b>memory</b>, a
vector it rewrites at every step. The plain RNN rewrites all of it, every step:
<code>h' = tanh(W·x + U·h + b)</code>. A gated cell adds <b>gates</b>: vectors of numbers between
0 and 1 (sigmoid outputs, written σ), computed from the input and the memory, that multiply
signals elementwise and so decide how much of the old memory is kept and how much of the new
input gets in. The method turns those gates into something you can read:</p>
<ol>
<li>treat each gate as a given symbol (forget where it comes from);</li>
<li>treat each gate as one number instead of a vector;</li>
<li>set each gate to 0 or 1, like a switch, and read off what the cell becomes in each
setting (for example LSTM with <code>i=0, f=1</code> keeps its memory unchanged);</li>
<li>draw the cell as a circuit whose switches are the gates.</li>
</ol>
<p><b>Words used throughout</b></p>
<ul>
<li><b>memory state</b>: what the cell carries from step to step (<code>h</code>; for LSTM the
cell state <code>c</code>). In the equations a state's name means its value at the previous step
and <code>h'</code> its new value; <code>⊙</code> is elementwise multiplication, <code>W·x</code> a
learned matrix times a vector.</li>
<li><b>switch setting</b>: one choice of 0/1 for every gate, e.g. <code>i=0, f=1, o=1</code>. A
switch is <em>closed</em> (lets its signal through) at 1 and <em>open</em> (cuts it) at 0.
<b>spst</b> (single-pole single-throw) is an on/off switch on one wire; <b>spdt</b>
(single-pole double-throw) chooses between two wires; <b>ganged</b> means one gate drives several
switches at once.</li>
<li><b>kind</b>: what the update becomes in a setting. <span class="kind">hold</span>: the memory
is kept as it is (<code>s' = s</code>), the input is ignored; <span class="kind">rnn</span>: a plain
RNN step; <span class="kind">residual_rnn</span>: the old memory plus an RNN step;
<span class="kind">feedforward</span>: the old memory is dropped, the new one comes from the input
alone; <span class="kind">zero</span>: the memory is cleared; <span class="kind">other</span>:
anything else (the update itself is shown).</li>
<li><b>identity path</b>: a route from the old memory to the new one that passes no weight
matrix. Along it the gradient flows back through time unchanged, so it does not vanish: this is
why LSTM and GRU can learn long-range dependencies (the same idea as ResNet's skip
connections).</li>
<li><b>core</b> (the article's <span style="color:#c0392b">red box</span>): the part every cell
shares, linear maps of the input and of the memory followed by tanh; the cells differ only in
the gates around it.</li>
</ul>
<p><b>A short path through it:</b> read the LSTM and GRU analyses (start with
“What each gate does”), click the switches of their diagrams, look at the gradient-flow plot, then
the review sentence in the last section. The engine section is about speed and can be skipped.</p>
</div>
"""


def _builders() -> list[tuple[str, object]]:
    out = []
    for spec in TOUR_SECTIONS:
        mod, fn = spec.split(":")
        out.append((spec, getattr(importlib.import_module(mod), fn)))
    return out


class TourError(GatelabError):
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
    page = render_page("gatelab report", INTRO + footer + HOW_TO_READ, sections)
    index = out / "index.html"
    tmp = index.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(index)
    return index
