"""The per-unit view three ways: an HTML heatmap with a hover read-out, a Rich table, JSON.

Rows are the gate's most varying units in clustered order (a thin line between clusters), then
the share of all units that keep the memory, the word's verdict (kept / written), and the
evidence for the final class after each word and what the word added. Hovering (or focusing)
a cell shows its value in a read-out box; the values are also in ``data-v`` attributes.
"""

from __future__ import annotations

import html

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .render import shade
from .units import Evidence, UnitView

KEEP_HUE, WRITE_HUE = (0, 114, 178), (213, 94, 0)
POS_HUE, NEG_HUE = (0, 158, 115), (204, 121, 167)

CSS = """
.gu-wrap { overflow-x: auto; margin: 8px 0 14px; position: relative; }
table.gu { border-collapse: separate; border-spacing: 1px; font-size: 12px; }
table.gu td, table.gu th { border: none; padding: 1px 3px; white-space: nowrap; }
table.gu th { background: none; text-align: right; font-weight: 600; color: #333; }
table.gu th.u { font-weight: 400; color: #666; }
table.gu td.tok { font-weight: 600; text-align: center; border-bottom: 1px solid #ccc; }
table.gu td.c { min-width: 1.9em; height: 1.2em; text-align: center; border-radius: 2px;
  cursor: default; font-size: 10px; }
table.gu td.c:hover, table.gu td.c:focus { outline: 2px solid #222; }
table.gu tr.cut td, table.gu tr.cut th { border-top: 2px solid #999; }
table.gu td.kept { color: #0072b2; font-weight: 600; text-align: center; font-size: 11px; }
table.gu td.written { color: #d55e00; font-weight: 600; text-align: center; font-size: 11px; }
.gu-tip { position: fixed; z-index: 10; background: #222; color: #fff; padding: 4px 7px;
  border-radius: 4px; font-size: 12px; pointer-events: none; display: none; max-width: 28em; }
"""

# One read-out box per page, filled from the hovered cell's data-tip (idempotent: the report
# and a standalone page may hold several heatmaps).
SCRIPT = """
(function () {
  if (window.__gatelabUnitTip) return;
  window.__gatelabUnitTip = true;
  var tip = document.createElement('div'), from = null;
  tip.className = 'gu-tip'; tip.setAttribute('role', 'status');
  function cellOf(e) { return e.target.closest && e.target.closest('table.gu td[data-tip]'); }
  function show(td, how) {
    if (!tip.parentNode) document.body.appendChild(tip);
    tip.textContent = td.getAttribute('data-tip');
    var r = td.getBoundingClientRect();
    tip.style.left = Math.max(0, Math.min(r.left, window.innerWidth - 320)) + 'px';
    tip.style.top = (r.bottom + 6) + 'px';
    tip.style.display = 'block';
    from = how;
  }
  function hide(how) { if (from === how) { tip.style.display = 'none'; from = null; } }
  document.addEventListener('mouseover', function (e) {
    var td = cellOf(e); if (td) show(td, 'mouse'); else hide('mouse');
  });
  document.addEventListener('focusin', function (e) {
    var td = cellOf(e); if (td) show(td, 'focus'); else hide('focus');
  });
  document.addEventListener('focusout', function (e) { if (cellOf(e)) hide('focus'); });
})();
"""


def _td(value: float, hue: tuple[int, int, int], tip: str, text: str = "",
        scale: float = 1.0) -> str:
    bg, fg = shade(abs(value) / scale, hue)
    return (f'<td class="c" tabindex="0" style="background:{bg};color:{fg}" '
            f'data-v="{value:.4f}" data-tip="{html.escape(tip)}">{html.escape(text)}</td>')


def _side(view: UnitView, v: float) -> str:
    if view.keep is None:
        return "open" if v >= 0.5 else "closed"
    return "writes" if view.writing(v) else "keeps"


def units_html(view: UnitView, ev: Evidence | None) -> str:
    """The heatmap fragment (style, script, table) for one gate's units and the evidence."""
    esc = html.escape
    g = view.gate
    head = "".join(f'<td class="tok">{esc(t)}</td>' for t in view.tokens)
    rows = [f"<tr><th></th>{head}</tr>"]
    for r, (u, cl) in enumerate(zip(view.units, view.clusters, strict=True)):
        cut = " class='cut'" if r and cl != view.clusters[r - 1] else ""
        tds = "".join(_td(float(v), KEEP_HUE, f"{g}[{u}] on '{tok}': {float(v):.3f} "
                          f"({_side(view, float(v))}; cluster {cl})")
                      for tok, v in zip(view.tokens, view.values[r], strict=True))
        rows.append(f"<tr{cut}><th class='u'>unit {u} · c{cl}</th>{tds}</tr>")
    share = "".join(_td(float(s), KEEP_HUE, f"'{tok}': {float(s):.0%} of the {view.hidden} "
                        f"units of {g} keep the memory", f"{100 * float(s):.0f}")
                    for tok, s in zip(view.tokens, view.keep_share, strict=True))
    rows.append(f"<tr class='cut'><th>% units keeping</th>{share}</tr>")
    verdict = "".join(f"<td class='{'kept' if k else 'written'}' title='{view.reading(t)}'>"
                      f"{'kept' if k else 'w ' + ','.join(map(str, view.cluster_writes[t]))}"
                      "</td>" for t, k in enumerate(view.kept()))
    rows.append(f"<tr><th>kept / written by cluster</th>{verdict}</tr>")
    if ev is not None:
        scale = max(1e-6, float(ev.score.abs().max()))
        dscale = max(1e-6, float(ev.delta.abs().max()))
        score = "".join(_td(float(s), POS_HUE if s >= 0 else NEG_HUE,
                            f"after '{tok}': log-odds of {ev.cls} {float(s):+.3f}",
                            f"{float(s):+.1f}", scale)
                        for tok, s in zip(view.tokens, ev.score, strict=True))
        delta = "".join(_td(float(d), POS_HUE if d >= 0 else NEG_HUE,
                            f"'{tok}' added {float(d):+.3f} to the log-odds of {ev.cls}",
                            f"{float(d):+.1f}", dscale)
                        for tok, d in zip(view.tokens, ev.delta, strict=True))
        rows.append(f"<tr class='cut'><th>evidence for {esc(ev.cls)}</th>{score}</tr>")
        rows.append(f"<tr><th>added by the word</th>{delta}</tr>")
    return (f"<style>{CSS}</style><script>{SCRIPT}</script>"
            f"<div class='gu-wrap'><table class='gu' data-gate='{esc(g)}'>{''.join(rows)}"
            "</table></div>")


def writes_html(view: UnitView, limit: int = 8) -> str:
    """A list: each shown unit and the words it writes on."""
    verb = "is open on" if view.keep is None else "writes on"
    items = []
    for u, cl in zip(view.units, view.clusters, strict=True):
        words = view.writes[u]
        shown = ", ".join(f"“{html.escape(w)}”" for w in words[:limit])
        more = f" and {len(words) - limit} more" if len(words) > limit else ""
        items.append(f"<li>unit {u} (cluster {cl}) {verb} " +
                     (f"{len(words)} of the {len(set(view.tokens))} words: {shown}{more}"
                      if words else "no word") + "</li>")
    return "<ul class='gu-writes'>" + "".join(items) + "</ul>"


def units_rich(view: UnitView, ev: Evidence | None, console: Console) -> None:
    """Terminal view: a row per word with the share of units keeping, the verdict, the
    evidence; then the words each unit writes on."""
    table = Table(title=f"gate {view.gate}, unit by unit ({view.hidden} units; "
                        + ("keeps the memory at "
                           f"{view.gate.split('.')[-1]} = {view.keep}" if view.keep is not None
                           else "not a keep gate") + ")", title_justify="left")
    table.add_column("word")
    table.add_column("% units keeping", justify="right")
    table.add_column("memory")
    if ev is not None:
        table.add_column(f"evidence for {ev.cls}", justify="right")
        table.add_column("added", justify="right")
    for t, (tok, s, k) in enumerate(zip(view.tokens, view.keep_share, view.kept(),
                                        strict=True)):
        cells = [Text(tok), f"{100 * float(s):.0f}%", Text(view.reading(t),
                                                           style="blue" if k else "red")]
        if ev is not None:
            cells += [f"{float(ev.score[t]):+.2f}", f"{float(ev.delta[t]):+.2f}"]
        table.add_row(*cells)
    console.print(table)
    verb = "open on" if view.keep is None else "writes on"
    for u, cl in zip(view.units, view.clusters, strict=True):
        words = view.writes[u]
        line = Text(f"unit {u:>3} (cluster {cl}) {verb}: ", style="dim")
        line.append(", ".join(words) if words else "no word")
        console.print(line)
