"""The diagram section of the tour: every zoo cell as a circuit with clickable switches."""

from __future__ import annotations

from ..cell import zoo_names
from ..report.page import Section, TourContext
from .drawing import figure
from .svgpost import web_svg
from .web import cell_data, page_html

INTRO = """
<p>The article's fourth step, for every cell: with the gates as 0/1 switches, the cell is a
circuit. Inputs enter on the left (<i>x<sub>t</sub></i> and the <em>memory state</em>; for LSTM the
readout <i>h<sub>t-1</sub> = o ⊙ tanh(c<sub>t-1</sub>)</i> is substituted, so the input is
<i>c<sub>t-1</sub></i>), the new memory state leaves on the right. White boxes are linear maps, pink
boxes nonlinearities, ⊕ sums. The shared core, linear maps of the input and the state plus
the nonlinearity, sits in the <span style="color:#c0392b">red box</span>. Each gate is a switch:
a simple switch where it multiplies one signal, a single-pole double-throw where it chooses
between two, and switches joined by a dashed link where one gate drives several (MGU).</p>
<p><strong>Click a switch</strong> (or a gate button) to flip that gate: the drawing, the reduced
update and its kind follow; dead wires turn grey and the identity path, a route from the state to
its new value with no weight on it, is drawn in green. Everything is computed from the cells'
equations by the analysis; the page needs no server.</p>
"""


def section(ctx: TourContext) -> Section:
    """Build the section: all zoo cells, every setting precomputed (a few seconds)."""
    out = ctx.out / "diagrams"
    out.mkdir(parents=True, exist_ok=True)
    cells = []
    names = zoo_names()
    for i, name in enumerate(names):
        ctx.say(f"diagram {i + 1}/{len(names)}: {name}")
        data = cell_data(name)
        cells.append(data)
        (out / f"{name}.svg").write_text(web_svg(figure(name)), encoding="utf-8")
    links = " ".join(f'<a href="diagrams/{n}.svg">{n}</a>' for n in names)
    body = (INTRO + page_html(cells)
            + f"<p class='muted'>Symbolic drawings (all gates free) as SVG files: {links}</p>")
    return Section("diagram", "One diagram: cells as circuits of switches", body,
                   summary="every zoo cell drawn as a circuit; click a switch to flip its gate")
