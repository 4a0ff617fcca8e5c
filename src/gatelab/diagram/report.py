"""The diagram section of the tour: every zoo cell as a circuit with clickable switches."""

from __future__ import annotations

from ..cell import zoo_names
from ..report.page import Section, TourContext
from .drawing import figure
from .svgpost import web_svg
from .web import cell_data, page_html

ARTICLE_CELLS = ("rnn", "lstm", "gru", "mgu")  # shown open; the other cells are folded

INTRO = """
<p>The article's fourth step: with the gates as 0/1 switches, each cell is a small circuit.
<b>How to read a drawing:</b> inputs enter on the left, <i>x<sub>t</sub></i> (this step's input)
and the memory state from the previous step; the new memory state leaves on the right. White
boxes are learned matrices, pink boxes nonlinearities (tanh), ⊕ a sum. The
<span style="color:#c0392b">red box</span> is the core every cell shares. Each gate is a switch:
an on/off switch where it multiplies one signal, a two-way switch (single-pole double-throw)
where it chooses between two signals, and switches joined by a dashed line where one gate drives
several (MGU). For LSTM the previous <i>h<sub>t-1</sub> = o ⊙ tanh(c<sub>t-1</sub>)</i> is
substituted, so its memory input is <i>c<sub>t-1</sub></i>.</p>
<p><b>How to use it: click a switch</b> in a drawing, or a gate button under it, to flip that
gate between 1 and 0. The drawing, the setting, its kind (after the arrow) and the reduced update
follow. Wires that no longer carry anything turn grey; the <b style="color:#1e8449">green</b>
wire is the identity path, the weight-free route from the old memory to the new one that keeps
gradients from vanishing. Try LSTM: it starts with every gate at 1; click <i>f</i> to set the
forget gate to 0: the green path disappears and the kind becomes RNN, a plain recurrent
network. Every drawing is precomputed from the
analysis; the page needs no server.</p>
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
    body = (INTRO + page_html(cells, fold=[n for n in names if n not in ARTICLE_CELLS])
            + f"<p class='muted'>Symbolic drawings (all gates free) as SVG files: {links}</p>")
    return Section("diagram", "One diagram: cells as circuits of switches", body,
                   summary="every zoo cell drawn as a circuit; click a switch to flip its gate")
