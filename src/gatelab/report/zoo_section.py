"""The zoo section of the tour: every built-in cell with its equations and parameter count."""

from __future__ import annotations

import html

from ..cell import cell_text, cell_unicode, load_cell, zoo_names
from .page import Section, TourContext

ARTICLE_CELLS = ("rnn", "lstm", "gru", "mgu")  # the cells the article explains, shown first


def build(ctx: TourContext) -> Section:
    rows = []
    cards = []
    more = []
    for name in zoo_names():
        c = load_cell(name)
        rows.append(
            f"<tr><td><a href='#cell-{name}'>{name}</a></td><td>{html.escape(c.title)}</td>"
            f"<td>{', '.join(c.states)}</td><td>{', '.join(c.gates) or '—'}</td>"
            f"<td><code>{c.param_count()}</code></td></tr>"
        )
        card = (
            f"<div class='card' id='cell-{name}'><h3>{name}</h3>"
            f"<p>{'<br>'.join(html.escape(d) for d in c.doc)}</p>"
            f"<pre class='equations'>{html.escape(cell_unicode(c))}</pre>"
            f"<details><summary>.cell source</summary><pre>{html.escape(cell_text(c))}</pre>"
            f"</details></div>"
        )
        (cards if name in ARTICLE_CELLS else more).append(card)
    shown = [n for n in zoo_names() if n in ARTICLE_CELLS]
    folded = (f"<details class='zoo-more'><summary>The equations of the other {len(more)} "
              "cells (variants from the literature)</summary>" + "".join(more) + "</details>"
              if more else "")
    body = (
        "<p>A <em>cell</em> is the rule that turns the input <code>x</code> and the memory into "
        "the new memory, applied at every step of the sequence. The article explains four: "
        + ", ".join(f"<a href='#cell-{n}'>{n}</a>" for n in shown)
        + "; the others are published variants, analysed the same way. Each cell is a small "
        "<code>.cell</code> text file of equations, the single source from which the analysis, "
        "the diagrams and the training code are all derived.</p>"
        "<p>How to read the equations: a state's name means its value at the previous step and "
        "<code>h'</code> its new value; σ is the sigmoid (a gate, between 0 and 1), ⊙ elementwise "
        "multiplication, <code>W·x</code> a learned matrix times a vector, <code>b</code> a bias. "
        "Parameter counts are for input size = hidden size = d.</p>"
        "<table><tr><th>cell</th><th>what</th><th>states</th><th>gates</th><th>parameters</th>"
        "</tr>" + "".join(rows) + "</table>" + "".join(cards) + folded
    )
    return Section("zoo", "The cell zoo", body,
                   summary="every built-in cell and its equations")
