"""The zoo section of the tour: every built-in cell with its equations and parameter count."""

from __future__ import annotations

import html

from ..cell import cell_text, cell_unicode, load_cell, zoo_names
from .page import Section, TourContext


def build(ctx: TourContext) -> Section:
    rows = []
    cards = []
    for name in zoo_names():
        c = load_cell(name)
        rows.append(
            f"<tr><td><a href='#cell-{name}'>{name}</a></td><td>{html.escape(c.title)}</td>"
            f"<td>{', '.join(c.states)}</td><td>{', '.join(c.gates) or '—'}</td>"
            f"<td><code>{c.param_count()}</code></td></tr>"
        )
        cards.append(
            f"<div class='card' id='cell-{name}'><h3>{name}</h3>"
            f"<p>{'<br>'.join(html.escape(d) for d in c.doc)}</p>"
            f"<pre class='equations'>{html.escape(cell_unicode(c))}</pre>"
            f"<details><summary>.cell source</summary><pre>{html.escape(cell_text(c))}</pre>"
            f"</details></div>"
        )
    body = (
        "<p>Every cell below is a <code>.cell</code> data file: the equations are the single "
        "source from which the analysis, the diagrams and the training engine are derived. "
        "A state's name means its value at the previous step; <code>x'</code> is the new value; "
        "⊙ is elementwise, · a learned linear map. Parameter counts are for input size = hidden "
        "size = d.</p>"
        "<table><tr><th>cell</th><th>what</th><th>states</th><th>gates</th><th>parameters</th>"
        "</tr>" + "".join(rows) + "</table>" + "".join(cards)
    )
    return Section("zoo", "The cell zoo", body)
