"""The interactive diagram block of the report: every setting's SVG precomputed and embedded as
JSON, and a small script that flips a gate when its switch is clicked. No server is needed.

A cell with k gates has 2^k settings (LSTM: 8), the analysis' modes; each is drawn once, with
the mode's reduced update and kind.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from ..analysis import Analysis, kind_label, reduce_setting
from ..cell import Cell
from .drawing import figure, prepare
from .settings import setting_text
from .svgpost import web_svg

MAX_INTERACTIVE_GATES = 6  # 64 drawings; beyond that only the symbolic drawing is shown


def bits(setting: dict[str, int], gates: list[str]) -> str:
    """``{"i": 1, "f": 0, "o": 1}`` -> ``"101"`` (the cell's gate order)."""
    return "".join(str(setting[g]) for g in gates)


def cell_data(cell: str | Path | Cell | Analysis) -> dict:
    """Everything the page needs for one cell: per setting (key ``"101"``) its SVG, title,
    kinds, reduced updates, identity paths and note."""
    prepared = prepare(cell)
    analysis, circuit, _ = prepared
    c = analysis.cell
    gates = list(c.gates)
    readouts = {r["state"]: r["previous"] for r in analysis.to_dict()["readouts"]}
    data = {"name": c.name, "title": c.title, "gates": gates,
            "memory": list(analysis.memory_states), "readouts": readouts,
            "switch_gates": circuit.gates, "settings": {}}
    if len(gates) > MAX_INTERACTIVE_GATES or not analysis.modes:
        modes = [reduce_setting(analysis, {})]  # the symbolic drawing only: every gate free
    else:
        modes = analysis.modes[::-1]  # every 0/1 setting, all gates at 1 first
    data["start"] = bits(modes[0].gates, gates) if modes[0].gates or not gates else ""
    for m in modes:
        setting = m.gates
        fig = figure(prepared, setting)
        mode = m.to_dict()
        data["settings"][bits(setting, gates) if setting or not gates else ""] = {
            "svg": web_svg(fig),
            "title": fig.title,
            "label": setting_text(setting, gates),
            "kind": mode["kind"],
            "kind_text": {s: kind_label(k) for s, k in mode["kind"].items()},
            "updates": mode["updates"],
            "identity": mode["identity_path"],
            "note": mode["note"],
        }
    return data


def _kind_line(entry: dict) -> str:
    return ", ".join(f"{s}: {t}" for s, t in entry["kind_text"].items())


def _equation_lines(entry: dict, memory: list[str]) -> str:
    return "\n".join(f"{s}' = {entry['updates'][s]}" for s in memory if s in entry["updates"])


def _identity_line(entry: dict) -> str:
    on = [s for s, v in entry["identity"].items() if v]
    if not on:
        return "no identity path: every route from the state to its new value passes a weight"
    return "; ".join(f"identity path {s} → {s}' (green): no weight on it" for s in on)


def cell_block(data: dict) -> str:
    """The HTML of one cell's interactive diagram (first setting shown before any script runs)."""
    entry = data["settings"][data["start"]]
    name = html.escape(data["name"])
    buttons = "".join(
        f'<button type="button" class="gl-gate" data-gate="{html.escape(g)}">'
        f'{html.escape(g)}</button>' for g in data["gates"]
        if data["start"] and g in data["gates"])
    readouts = "; ".join(f"{html.escape(r)} at the previous step = {html.escape(e)}"
                         for r, e in data["readouts"].items())
    return (
        f'<div class="card gl-diagram" id="diagram-{name}" data-cell="{name}" '
        f'data-setting="{data["start"]}">'
        f'<h3>{name} <span class="muted">— {html.escape(data["title"])}</span></h3>'
        f'<div class="gl-svg">{entry["svg"]}</div>'
        f'<p>{"flip a gate (or click its switch): " + buttons if buttons else ""} '
        f'<span class="gl-setting">{html.escape(entry["label"])}</span> → '
        f'<span class="kind gl-kind" data-kind="{html.escape(json.dumps(entry["kind"]))}">'
        f'{html.escape(_kind_line(entry))}</span></p>'
        f'<pre class="gl-equation">{html.escape(_equation_lines(entry, data["memory"]))}</pre>'
        f'<p class="gl-identity-note muted">{html.escape(_identity_line(entry))}</p>'
        + (f'<p class="muted">Drawn with the memory state as input: {readouts}.</p>'
           if readouts else "")
        + "</div>"
    )


CSS = """
<style>
.gl-diagram .gl-svg svg { max-width: 100%; height: auto; }
.gl-diagram .gl-switch-hit:hover { fill: rgba(46,111,183,.12) !important; }
.gl-diagram .gl-identity { filter: drop-shadow(0 0 2px rgba(30,132,73,.6)); }
.gl-diagram button.gl-gate { font: inherit; margin: 0 3px; padding: 1px 9px; cursor: pointer;
  border: 1px solid var(--line); border-radius: 4px; background: #fff; }
.gl-diagram button.gl-gate[data-on="1"] { background: #eaf4ec; border-color: #1e8449; }
</style>
"""

SCRIPT = """
<script>
(function () {
  var data = JSON.parse(document.getElementById('gl-diagram-data').textContent);
  function kindLine(e) {
    return Object.keys(e.kind_text).map(function (s) { return s + ': ' + e.kind_text[s]; })
      .join(', ');
  }
  function identityLine(e) {
    var on = Object.keys(e.identity).filter(function (s) { return e.identity[s]; });
    if (!on.length) {
      return 'no identity path: every route from the state to its new value passes a weight';
    }
    return on.map(function (s) {
      return 'identity path ' + s + ' \\u2192 ' + s + "' (green): no weight on it";
    }).join('; ');
  }
  document.querySelectorAll('.gl-diagram').forEach(function (box) {
    var cell = data[box.dataset.cell];
    if (!cell || !cell.start) { return; }
    var current = cell.start;
    function show() {
      var e = cell.settings[current];
      box.dataset.setting = current;
      box.querySelector('.gl-svg').innerHTML = e.svg;
      box.querySelector('.gl-setting').textContent = e.label;
      var k = box.querySelector('.gl-kind');
      k.textContent = kindLine(e);
      k.dataset.kind = JSON.stringify(e.kind);
      box.querySelector('.gl-equation').textContent = cell.memory
        .filter(function (s) { return s in e.updates; })
        .map(function (s) { return s + "' = " + e.updates[s]; }).join('\\n');
      box.querySelector('.gl-identity-note').textContent = identityLine(e);
      box.querySelectorAll('button.gl-gate').forEach(function (b) {
        var i = cell.gates.indexOf(b.dataset.gate);
        b.dataset.on = current[i];
        b.textContent = b.dataset.gate + '=' + current[i];
      });
    }
    box.addEventListener('click', function (ev) {
      var t = ev.target.closest('[data-gate]');
      if (!t || !box.contains(t)) { return; }
      var i = cell.gates.indexOf(t.getAttribute('data-gate'));
      if (i < 0) { return; }
      current = current.slice(0, i) + (current[i] === '1' ? '0' : '1') + current.slice(i + 1);
      show();
    });
    show();
  });
})();
</script>
"""


def page_html(cells: list[dict], fold: list[str] | None = None) -> str:
    """Every cell's block, the embedded data and the script. Cells named in ``fold`` go last,
    inside a closed ``<details>`` (they still work when it is opened)."""
    payload = json.dumps({d["name"]: d for d in cells}, ensure_ascii=False)
    payload = payload.replace("</", "<\\/")  # never close the script element early
    folded = [d for d in cells if d["name"] in (fold or [])]
    more = ("<details class='gl-more'><summary>Diagrams of the other "
            f"{len(folded)} cells</summary>" + "".join(cell_block(d) for d in folded)
            + "</details>") if folded else ""
    return (CSS + "".join(cell_block(d) for d in cells if d not in folded) + more
            + f'<script type="application/json" id="gl-diagram-data">{payload}</script>'
            + SCRIPT)
