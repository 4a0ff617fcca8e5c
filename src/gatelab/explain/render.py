"""Show per-token gates three ways: a coloured terminal view (Rich), HTML, and JSON.

Every view shows, for each gate, its mean over units per token (the one-dimensional gate of
simplification 2) and the units that vary most, then each token's switch setting (simplification
3) with the analysis' kind. Colour: white is 0, full colour is 1.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..cell import Cell
from .gates import TextGates
from .switches import Switch, layer_prefixes, switches

# One hue per gate, in order (colour-blind safe pairs from the Okabe-Ito palette).
HUES = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233),
        (230, 159, 0)]


def shade(value: float, hue: tuple[int, int, int]) -> tuple[str, str]:
    """``(background, text colour)`` as ``#rrggbb`` for a gate value in [0, 1]."""
    v = min(1.0, max(0.0, float(value)))
    bg = tuple(round(255 + (c - 255) * v) for c in hue)
    return "#{:02x}{:02x}{:02x}".format(*bg), ("#ffffff" if v > 0.6 else "#111111")


def _hue(i: int) -> tuple[int, int, int]:
    return HUES[i % len(HUES)]


def all_switches(cell: Cell, ex: TextGates) -> dict[str, list[Switch]]:
    """Each layer's per-token switches, keyed by layer prefix (``""`` for one layer)."""
    return {p: switches(cell, ex, p) for p in layer_prefixes(cell, ex)}


# ---- terminal ---------------------------------------------------------------------------------
def to_rich(cell: Cell, ex: TextGates, console: Console, units: int = 3,
            gate: str | None = None, top: int = 12) -> None:
    """Print the coloured view: one line per gate (mean, then the most varying units), a table
    of every token's switch setting and kind, then the per-unit view of ``gate`` (default the
    keep gate; ``top`` units) with the evidence word by word."""
    probs = ", ".join(f"{c} {float(p):.2f}" for c, p in zip(ex.classes, ex.probs, strict=True))
    console.print(f"[bold]prediction:[/bold] {escape(ex.label)}  ({escape(probs)})")
    console.print("[dim]colour: white = 0, full colour = 1 (gate rows: the gate's value; "
                  "last row: the verdict's probability after each word)[/dim]")
    for i, label in enumerate(ex.gates):
        H = ex.gates[label].shape[1]
        rows = [(f"{label} mean of {H}", ex.mean(label))]
        rows += [(f"{label} unit {j}", ex.gates[label][:, j])
                 for j in ex.varying_units(label, units)]
        for name, values in rows:
            line = Text(f"{name:>16} ", style="bold" if "mean" in name else "dim")
            for tok, v in zip(ex.tokens, values, strict=True):
                bg, fg = shade(float(v), _hue(i))
                line.append(f" {tok} ", style=f"{fg} on {bg}")
                line.append(" ")
            console.print(line)
    if ex.running is not None:
        k = int(ex.probs.argmax())
        line = Text(f"{'p(' + ex.classes[k] + ')':>16} ", style="bold")
        for tok, v in zip(ex.tokens, ex.running[:, k], strict=True):
            bg, fg = shade(float(v), RUNNING_HUE)
            line.append(f" {tok} ", style=f"{fg} on {bg}")
            line.append(" ")
        console.print(line)
    for prefix, sw in all_switches(cell, ex).items():
        table = Table(title=f"switch settings{' of layer ' + prefix[1:-1] if prefix else ''}",
                      title_justify="left")
        table.add_column("token")
        for g in cell.gates:
            table.add_column(f"{g} mean", justify="right")
        table.add_column("setting")
        table.add_column("kind")
        table.add_column("reduced update")
        for t, s in enumerate(sw):
            cells = [f"{float(ex.mean(prefix + g)[t]):.2f}" for g in cell.gates]
            table.add_row(Text(s.token), *cells, s.label or "-", s.kind, Text(s.update))
        console.print(table)
    if cell.gates and top > 0:
        from .render_units import units_rich
        from .units import evidence, unit_view

        units_rich(unit_view(cell, ex, gate, top), evidence(ex), console)


# ---- HTML -------------------------------------------------------------------------------------
CSS = """
.gx-wrap { overflow-x: auto; margin: 8px 0 14px; }
table.gx { border-collapse: separate; border-spacing: 2px; font-size: 13px; }
table.gx td, table.gx th { border: none; padding: 2px 4px; white-space: nowrap; }
table.gx th { background: none; text-align: right; font-weight: 600; color: #333; }
table.gx th.unit { font-weight: 400; color: #777; font-size: 12px; }
table.gx td.tok { font-weight: 600; text-align: center; border-bottom: 1px solid #ccc; }
table.gx td.v { text-align: center; min-width: 2.2em; border-radius: 3px; }
table.gx td.sw { text-align: center; font-size: 11px; color: #444; }
table.gx td.kind { text-align: center; font-size: 11px; font-weight: 600; color: #c0392b; }
table.gx td.kind.hold { color: #0072b2; }
"""


def _cell_td(value: float, hue: tuple[int, int, int], tip: str, text: str = "") -> str:
    bg, fg = shade(value, hue)
    return (f'<td class="v" style="background:{bg};color:{fg}" title="{html.escape(tip)}">'
            f"{html.escape(text)}</td>")


def to_html(cell: Cell, ex: TextGates, units: int = 3, caption: str = "") -> str:
    """An HTML fragment (a ``<style>`` and tables): tokens across, a row per gate (mean), rows
    for its most varying units, then the switch setting and kind per token; hovering a cell
    shows its numbers."""
    esc = html.escape
    head = "".join(f'<td class="tok">{esc(t)}</td>' for t in ex.tokens)
    rows = [f"<tr><th></th>{head}</tr>"]
    for i, label in enumerate(ex.gates):
        g = ex.gates[label]
        mean = ex.mean(label)
        tds = "".join(
            _cell_td(float(m), _hue(i),
                     f"{label} on '{tok}': mean {float(m):.3f} over {g.shape[1]} units "
                     f"(min {float(g[t].min()):.2f}, max {float(g[t].max()):.2f})",
                     f"{float(m):.2f}")
            for t, (tok, m) in enumerate(zip(ex.tokens, mean, strict=True)))
        rows.append(f"<tr><th>gate {esc(label)} (mean)</th>{tds}</tr>")
        for j in ex.varying_units(label, units):
            tds = "".join(_cell_td(float(v), _hue(i), f"{label}[{j}] on '{tok}': {float(v):.3f}")
                          for tok, v in zip(ex.tokens, g[:, j], strict=True))
            rows.append(f'<tr><th class="unit">unit {j}</th>{tds}</tr>')
    rows += _running_rows(ex)
    for prefix, sw in all_switches(cell, ex).items():
        where = f" (layer {prefix[1:-1]})" if prefix else ""
        settings = "".join(
            f'<td class="sw" title="{esc(_agree_tip(s))}">{esc(s.label) or "–"}</td>' for s in sw)
        kinds = "".join(f'<td class="kind {esc(s.kind.split()[0])}" title="{esc(s.update)}">'
                        f"{esc(s.kind)}</td>" for s in sw)
        rows.append(f"<tr><th>switches{where}</th>{settings}</tr>")
        rows.append(f"<tr><th>kind{where}</th>{kinds}</tr>")
    probs = ", ".join(f"{esc(c)} {float(p):.2f}" for c, p in zip(ex.classes, ex.probs, strict=True))
    cap = f"<p>{caption}</p>" if caption else ""
    return (f"<style>{CSS}</style>{cap}<p><strong>prediction:</strong> {esc(ex.label)} "
            f"({probs})</p><div class='gx-wrap'><table class='gx'>{''.join(rows)}</table></div>")


RUNNING_HUE = (90, 90, 90)


def _running_rows(ex: TextGates) -> list[str]:
    """A row with the probability of the final verdict after each token."""
    if ex.running is None:
        return []
    k = int(ex.probs.argmax())
    tds = "".join(_cell_td(float(p), RUNNING_HUE,
                           f"after '{tok}': " + ", ".join(
                               f"{c} {float(v):.2f}" for c, v in
                               zip(ex.classes, ex.running[t], strict=True)), f"{float(p):.2f}")
                  for t, (tok, p) in enumerate(zip(ex.tokens, ex.running[:, k], strict=True)))
    return [f"<tr><th>p({html.escape(ex.classes[k])}) so far</th>{tds}</tr>"]


def _agree_tip(s: Switch) -> str:
    parts = [f"{g}={v}: {100 * s.agreement[g]:.0f}% of units agree" for g, v in s.setting.items()]
    return "; ".join(parts + ([s.update] if s.update else [])) or "no gates"


def html_page(cell: Cell, ex: TextGates, title: str = "gatelab explain",
              gate: str | None = None, top: int = 12) -> str:
    """A whole standalone HTML page: :func:`to_html`, then the per-unit heatmap of ``gate``
    (default the keep gate) with the evidence, and the words each unit writes on."""
    units = ""
    if cell.gates and top > 0:
        from .render_units import units_html, writes_html
        from .units import evidence, unit_view

        view = unit_view(cell, ex, gate, top)
        units = (f"<h2>Gate {html.escape(view.gate)}, unit by unit</h2>"
                 f"{units_html(view, evidence(ex))}{writes_html(view)}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title></head><body style='font-family:sans-serif'>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(ex.text)}</p>"
            f"{to_html(cell, ex)}{units}</body></html>\n")


# ---- JSON -------------------------------------------------------------------------------------
def to_json(cell: Cell, ex: TextGates, gate: str | None = None, top: int = 12) -> str:
    """``tokens``, ``gates`` (``{name: [[value per unit] per token]}``), ``prediction``,
    ``switches`` (per token: ``setting`` and ``kind``, per layer prefix), ``units`` (the
    per-unit view of ``gate``, :meth:`UnitView.to_json`) and ``evidence`` (log-odds of the
    verdict after each word)."""
    data = ex.to_json()
    data["cell"] = cell.name
    data["switches"] = {(p[:-1] or "L1"): [{"token": s.token, "setting": s.setting,
                                            "kind": s.kind, "update": s.update} for s in sw]
                        for p, sw in all_switches(cell, ex).items()}
    if cell.gates and top > 0:
        from .units import evidence, unit_view

        data["units"] = unit_view(cell, ex, gate, top).to_json()
        ev = evidence(ex)
        data["evidence"] = None if ev is None else ev.to_json()
    return json.dumps(data)


# ---- image ------------------------------------------------------------------------------------
def plot_heatmap(ex: TextGates, path: Path, max_units: int = 64) -> Path:
    """Every unit (rows, at most ``max_units``) of every gate on every token (columns), one panel
    per gate, white = 0 and full colour = 1. Writes a PNG and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap

    labels = list(ex.gates)
    T = len(ex.tokens)
    heights = [min(max_units, ex.gates[k].shape[1]) for k in labels] or [1]
    fig, axes = plt.subplots(len(heights), 1, squeeze=False,
                             figsize=(max(6.0, 0.36 * T + 1.5), 1.0 + 0.09 * sum(heights) +
                                      0.9 * len(heights)),
                             gridspec_kw={"height_ratios": heights})
    for i, (ax, label) in enumerate(zip(axes[:, 0], labels, strict=False)):
        cmap = LinearSegmentedColormap.from_list(label, ["#ffffff",
                                                         "#{:02x}{:02x}{:02x}".format(*_hue(i))])
        values = ex.gates[label][:, :max_units].T.numpy()  # (units, T)
        im = ax.imshow(values, aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_ylabel(f"{label}\nunit")
        ax.set_xticks(range(T))
        ax.set_xticklabels(ex.tokens, rotation=70, fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    if not labels:
        axes[0][0].text(0.5, 0.5, "this cell has no gates", ha="center", va="center")
        axes[0][0].set_axis_off()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
