"""One self-contained HTML page built from sections. No server is needed to read it."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Section:
    """A part of the report. ``html`` is the body (trusted, built by gatelab); files it refers to
    are written by its builder into ``TourContext.out`` (relative links)."""

    id: str
    title: str
    html: str
    summary: str = ""


@dataclass
class TourContext:
    """What a section builder gets: where to write, how quick to be, a way to say what it does,
    and ``shared`` for results later sections reuse (e.g. the path of a trained run)."""

    out: Path
    quick: bool = True
    say: Callable[[str], None] = lambda msg: None
    shared: dict[str, Any] = field(default_factory=dict)


CSS = """
:root { --ink:#1d2330; --muted:#5b6475; --line:#d9dee8; --accent:#c0392b; --bg:#fbfbfd; }
* { box-sizing: border-box; }
body { font: 15px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       background: var(--bg); margin: 0; display: flex; }
nav { position: sticky; top: 0; height: 100vh; overflow: auto; width: 230px; flex: none;
      padding: 18px 14px; border-right: 1px solid var(--line); background: #fff; }
nav a { display: block; color: var(--muted); text-decoration: none; padding: 3px 0; }
nav a:hover { color: var(--accent); }
main { max-width: 1100px; padding: 10px 36px 80px; flex: 1; min-width: 0; }
h1 { margin-top: 18px; } h2 { border-bottom: 2px solid var(--line); padding-bottom: 4px;
     margin-top: 48px; } h3 { margin-top: 28px; }
pre, code { font: 13px/1.45 ui-monospace, "DejaVu Sans Mono", monospace; }
pre { background: #f3f4f8; padding: 10px 12px; border-radius: 6px; overflow-x: auto; }
table { border-collapse: collapse; margin: 10px 0; }
th, td { border: 1px solid var(--line); padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #f3f4f8; }
.muted { color: var(--muted); }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px;
        margin: 14px 0; }
img, svg { max-width: 100%; }
.kind { font-weight: 600; color: var(--accent); }
.toc ol { margin: 6px 0 2px; padding-left: 22px; } .toc li { margin: 2px 0; }
.toc .muted { font-size: 14px; }
details > summary { cursor: pointer; color: var(--muted); }
"""

# A link to an element inside a closed <details> (e.g. a zoo cell) opens it first.
OPEN_TARGET = """<script>
(function () {
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id && document.getElementById(id);
    for (var d = el && el.closest('details'); d; d = d.parentElement.closest('details')) {
      d.open = true;
    }
    if (el) { el.scrollIntoView(); }
  }
  window.addEventListener('hashchange', openTarget);
  if (location.hash) { openTarget(); }
})();
</script>"""


def _contents(sections: list[Section]) -> str:
    """The table of contents at the top of the page: each section with its one-line summary."""
    if len(sections) < 2:
        return ""
    items = "".join(
        f'<li><a href="#{s.id}">{html.escape(s.title)}</a>'
        + (f' <span class="muted">— {html.escape(s.summary)}</span>' if s.summary else "")
        + "</li>" for s in sections)
    return f'<div class="card toc"><b>Contents</b><ol>{items}</ol></div>'



def render_page(title: str, intro_html: str, sections: list[Section],
                extra_head: str = "") -> str:
    """The whole report as one HTML string."""
    nav = "\n".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>\n{s.html}\n</section>'
        for s in sections
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{CSS}</style>{extra_head}
</head><body>
<nav><strong>gatelab</strong>{nav}</nav>
<main><h1>{html.escape(title)}</h1>
{intro_html}
{_contents(sections)}
{body}
</main>{OPEN_TARGET}</body></html>
"""
