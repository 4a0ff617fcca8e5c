"""The tour's unit-by-unit reading of the review sentence: the words the model keeps and the
words it writes, by its own gate values, and how the verdict's evidence builds up.

All prose is generated from :func:`gatelab.explain.units.unit_view` and
:func:`gatelab.explain.units.evidence` on the explained model; nothing is written in advance.
"""

from __future__ import annotations

import html

from ..cell import Cell
from .gates import TextGates
from .render_units import units_html, writes_html
from .units import Evidence, UnitView, evidence, unit_view

esc = html.escape


def _words(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(f"“{esc(t)}”" for t in items[:limit])
    return (shown + (f" and {len(items) - limit} more" if len(items) > limit else "")) or "none"


def _reading(view: UnitView) -> str:
    """Which words the clusters of units keep past and which they write on, or why no word
    differs."""
    if view.keep is None:
        return (f"<p>Gate {esc(view.gate)} has no position that keeps the memory on its own, so "
                "the rows show where its units are open (≥ 0.5) rather than what is kept.</p>")
    kept = [t for t, k in zip(view.tokens, view.kept(), strict=True) if k]
    lo, hi = float(view.keep_share.min()), float(view.keep_share.max())
    spread = (f"Over all {view.hidden} units, the share that keep their memory ranges from "
              f"{100 * lo:.0f}% to {100 * hi:.0f}% across the {len(view.tokens)} words.")
    by_cluster = []
    for c in sorted(set(view.clusters)):
        units = [u for u, cl in zip(view.units, view.clusters, strict=True) if cl == c]
        words = list(dict.fromkeys(t for t, cw in zip(view.tokens, view.cluster_writes,
                                                       strict=True) if c in cw))
        unit_list = ", ".join(map(str, units[:6])) + (", …" if len(units) > 6 else "")
        by_cluster.append(f"<li>cluster c{c} (units {unit_list}) writes on "
                          + (f"{len(words)} words: {_words(words)}" if words else
                             "no word of this sentence") + "</li>")
    clusters = "<ul>" + "".join(by_cluster) + "</ul>"
    if kept and len(kept) < len(view.tokens):
        return (f"<p>By its own gate values the model treats the words differently. It "
                f"<b>keeps</b> its memory past {len(kept)} words — no cluster of its varying "
                f"units writes on them, so they are skipped: {_words(kept)}. It <b>writes</b> on "
                f"the other {len(view.tokens) - len(kept)}, each cluster on its own words:</p>"
                f"{clusters}<p>{spread}</p>")
    side = "keeps its memory past" if kept else "writes on"
    return (f"<p>Every cluster of varying units {side} every word of this sentence: by its "
            f"gate values, read cluster by cluster, this model treats all these words alike. "
            f"{spread} The differences are unit by unit (the rows above).</p>{clusters}")


def _evidence_text(ev: Evidence, view: UnitView) -> str:
    order = ev.delta.argsort(descending=True).tolist()
    up = [f"{view.tokens[i]} ({float(ev.delta[i]):+.2f}, {view.reading(i)})"
          for i in order[:4] if float(ev.delta[i]) > 0]
    down = [f"{view.tokens[i]} ({float(ev.delta[i]):+.2f}, {view.reading(i)})"
            for i in order[::-1][:3] if float(ev.delta[i]) < 0]
    return (f"<p>The evidence rows read the classifier after each word: the log-odds of "
            f"<b>{esc(ev.cls)}</b> (the final verdict) start at {ev.start:+.2f} on an empty memory "
            f"and end at {float(ev.score[-1]):+.2f}. The words that added most are {_words(up)}"
            + (f"; the ones that took most away, {_words(down)}." if down else ".")
            + (" A kept word can still move the verdict a little: no cluster's mean writes on "
               "it, but single units may (the list below), and the head reads every unit."
               if any("kept" in w for w in up + down) else "") + "</p>")


def unit_section(cell: Cell, ex: TextGates, k: int = 16) -> str:
    """The subsection's HTML: explanation, heatmap, reading, evidence, words per unit."""
    if not cell.gates:
        return ""
    view = unit_view(cell, ex, None, k=k)
    ev = evidence(ex)
    g = view.gate.split(".")[-1]
    what = ("" if view.keep is None else
            f" Gate <b>{esc(view.gate)}</b> is this cell's keep gate: at {g} = {view.keep} a unit "
            f"holds its memory, at {g} = {1 - view.keep} it rewrites it.")
    return (f"<h3>Unit by unit: the words the model keeps and the words it writes</h3>"
            f"<p>A gate is a vector: each of the {view.hidden} units of memory has its own "
            f"switch, and one word can open some and close others.{what} The heatmap shows the "
            f"{len(view.units)} units of {esc(view.gate)} whose value varies most over the "
            "sentence, ordered by hierarchical clustering (average linkage) so that units that "
            "switch on the same words sit together; a line separates the clusters (c1, c2, ...). "
            "Blue is 1, white 0; hover or tab to any cell for its value. Under them: the share "
            "of all units that keep the memory on each word; whether any cluster writes on the "
            "word (its mean on the writing side: <i>w 1,2</i> = written by c1 and c2) or the "
            "word is kept; and the classifier's evidence after each word.</p>"
            f"{units_html(view, ev)}{_reading(view)}"
            + (_evidence_text(ev, view) if ev is not None else "")
            + f"<p>The words each unit above writes on:</p>{writes_html(view)}")
