"""Draw a cell as a circuit of switches with schemdraw: SVG (schemdraw's own SVG backend, no
matplotlib) or PNG (schemdraw's matplotlib backend).

>>> from gatelab.diagram import draw
>>> svg = draw("lstm", {"i": 1, "f": 0, "o": 1})
>>> svg.startswith("<svg") and "LSTM, i=1 f=0 o=1: RNN" in svg
True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import schemdraw
from schemdraw.elements import Element
from schemdraw.segments import Segment, SegmentCircle, SegmentPoly, SegmentText

from ..analysis import Analysis, analyze, kind_text, reduce_setting
from ..cell import Cell, load_cell
from ..errors import UsageError
from .circuit import Circuit, build_circuit
from .layout import BOX_H, CONTACT, R_SUM, SW, THROW, Layout, layout, top_child_is_one
from .settings import Setting, identity_uses, live_parts, path_ids, setting_text, switch_value

INK = "#1d2330"
DEAD = "#c5cad3"
IDENTITY = "#1e8449"
CORE = "#c0392b"
LINK = "#2e6fb7"
TITLE_SIZE = 14.0



class Painter:
    """Colours for the drawing. With ``markers`` every tagged colour is replaced by a unique
    marker colour (``#e00001``...), so the SVG post-processing can find the exact SVG elements
    of each switch and wire and give them ``data-gate`` attributes and classes."""

    def __init__(self, markers: bool = False):
        self.markers = markers
        self.tags: dict[str, tuple[str, dict[str, str]]] = {}  # marker -> (colour, attributes)

    def __call__(self, colour: str, **attrs: str) -> str:
        if not self.markers or not attrs:
            return colour
        marker = f"#e{len(self.tags) + 1:05x}"
        self.tags[marker] = (colour, attrs)
        return marker


@dataclass
class Figure:
    """A circuit laid out, with the facts of one setting: what is live, what is the identity
    path, and the title."""

    circuit: Circuit
    layout: Layout
    setting: Setting
    title: str
    live: set[int]
    identity: set[int]

    def _repr_svg_(self) -> str:
        """The drawing as SVG, shown when a figure ends a Jupyter cell."""
        return svg_text(render(self))


def _title(circuit: Circuit, setting: Setting, analysis: Analysis) -> tuple[str, dict | None]:
    cell = circuit.cell
    name = cell.name.upper()
    if not setting:
        gates = ", ".join(cell.gates)
        plural = "s" if len(cell.gates) > 1 else ""
        return (f"{name}: gate{plural} {gates} as switches" if gates else f"{name}: no gates"), None
    mode = reduce_setting(analysis, setting)
    title = f"{name}, {setting_text(setting, list(cell.gates))}: {kind_text(mode)}"
    return title, mode.identity_path


def prepare(cell: str | Path | Cell | Analysis) -> tuple[Analysis, Circuit, Layout]:
    """Analyse, read and lay out a cell once; :func:`figure` reuses it for every setting."""
    analysis = cell if isinstance(cell, Analysis) else analyze(load_cell(cell))
    circuit = build_circuit(analysis)
    return analysis, circuit, layout(circuit)


def figure(cell: str | Path | Cell | Analysis | tuple, setting: Setting | None = None) -> Figure:
    """A cell (or a :func:`prepare` result) drawn for one setting: partial or empty settings
    leave switches symbolic."""
    analysis, circuit, lay = cell if isinstance(cell, tuple) else prepare(cell)
    setting = dict(setting or {})
    title, flags = _title(circuit, setting, analysis)
    identity: set[int] = set()
    for state, uses in identity_uses(circuit, setting).items():
        if flags is None or flags.get(state):
            for u in uses:
                identity |= path_ids(circuit, u)
    return Figure(circuit, lay, setting, title, live_parts(circuit, setting), identity)


# ---- schemdraw elements ---------------------------------------------------------------------

class Shape(Element):
    """A schemdraw element made of segments given in drawing coordinates (placed at the
    origin), so the layout's coordinates are the drawing's."""

    def __init__(self, segments: list, **kwargs):
        super().__init__(**kwargs)
        self.segments.extend(segments)


def _add(d: schemdraw.Drawing, *segments) -> None:
    d.add(Shape(list(segments)).at((0, 0)))


def _wire_colour(fig: Figure, child_id: int | None, parent_id: int) -> tuple[str, float]:
    if child_id is not None and child_id not in fig.live:
        return DEAD, 1.5
    if child_id is not None and child_id in fig.identity and parent_id in fig.identity:
        return IDENTITY, 3.0
    return INK, 1.8


def _draw_wires(d: schemdraw.Drawing, fig: Figure, paint: Painter) -> None:
    lay = fig.layout
    for w in lay.wires:
        if w.port < 0:  # the output wire of a drawn state
            ident = w.part.id in fig.identity
            colour, lw = (IDENTITY, 3.0) if ident else (INK, 1.8)
            z = 3
        else:
            child = w.leaf if w.leaf is not None else w.part.children[w.port]
            colour, lw = _wire_colour(fig, child.id, w.part.id)
            z = {DEAD: 1, INK: 2, IDENTITY: 3}[colour]
        cls = "gl-wire" + (" gl-identity" if colour == IDENTITY else "")
        cls += " gl-dead" if colour == DEAD else ""
        _add(d, Segment(w.points, color=paint(colour, **{"class": cls}), lw=lw, zorder=z,
                        capstyle="round", joinstyle="round"))
    live_sources = {p.name for p in fig.circuit.parts()
                    if p.kind == "source" and p.id in fig.live}
    for x, y, owner in lay.dots:
        on = owner in live_sources if isinstance(owner, str) else owner in fig.live
        _add(d, SegmentCircle((x, y), 0.07, color=INK if on else DEAD, fill=INK if on else DEAD,
                              zorder=4))
    for s, (x, y) in lay.terminals.items():
        on = s in live_sources
        _add(d, SegmentCircle((x, y), 0.1, color=INK if on else DEAD, fill="white", zorder=5))
    for x, y in lay.outputs.values():
        _add(d, SegmentCircle((x, y), 0.1, color=INK, fill="white", zorder=5))


def blade(fig: Figure, pl) -> tuple[tuple[float, float], tuple[float, float]]:
    """A switch blade's two ends: on the far contact when closed, up in the air when open; a
    selector's blade runs from its pole (right) to the thrown contact (left)."""
    p, x, y = pl.part, pl.x, pl.y
    value = switch_value(p, fig.setting)
    if p.kind == "switch":
        start = (x + 2 * CONTACT, y)
        if value is None or value == 0:
            return start, (x + SW - 0.2, y + 0.42)
        if value == 1:
            return start, (x + SW - 2 * CONTACT, y)
        return start, (x + SW - 0.2, y + 0.2)  # a fractional multiplier: half closed
    start = (x + pl.w - 2 * CONTACT, y)
    if value is None:
        return start, (x + 2 * CONTACT + 0.05, y + 0.12)  # a selector not yet thrown
    up = (value == 1) == top_child_is_one(fig.layout, p)
    return start, (x + 2 * CONTACT, y + (THROW if up else -THROW))


def _on_blade(fig: Figure, pl, x: float) -> tuple[float, float]:
    """The point of a blade above ``x`` (where a ganged link meets it)."""
    (sx, sy), (ex, ey) = blade(fig, pl)
    t = min(1.0, max(0.0, (x - sx) / (ex - sx))) if ex != sx else 0.0
    return (x, sy + t * (ey - sy))


def _draw_parts(d: schemdraw.Drawing, fig: Figure, paint: Painter) -> None:
    lay = fig.layout
    for pl in lay.placed.values():
        p = pl.part
        colour = INK if p.id in fig.live else DEAD
        x, y, w = pl.x, pl.y, pl.w
        h = BOX_H / 2
        if p.kind in ("map", "scale", "const"):
            _add(d, SegmentPoly([(x, y - h), (x + w, y - h), (x + w, y + h), (x, y + h)],
                                color=colour, fill="white", lw=1.8, zorder=4))
        elif p.kind == "func":
            _add(d, SegmentPoly([(x, y - h), (x + w, y - h), (x + w, y + h), (x, y + h)],
                                color=colour, fill="#fdf2f0", lw=1.8, zorder=4))
        elif p.kind in ("sum", "product"):
            c = (x + R_SUM, y)
            k = R_SUM * 0.55
            cx = c[0]
            bars = ([[(cx - k, y), (cx + k, y)], [(cx, y - k), (cx, y + k)]] if p.kind == "sum"
                    else [[(cx - k, y - k), (cx + k, y + k)], [(cx - k, y + k), (cx + k, y - k)]])
            _add(d, SegmentCircle(c, R_SUM, color=colour, fill="white", lw=1.8, zorder=4),
                 *(Segment(b, color=colour, lw=1.8, zorder=5) for b in bars))
        elif p.kind in ("switch", "select"):
            _draw_switch(d, fig, pl, colour, paint)


def _draw_switch(d: schemdraw.Drawing, fig: Figure, pl, colour: str, paint: Painter) -> None:
    """A spst switch (contacts left and right, blade from the left) or a single-pole
    double-throw selector (two throws left, pole right). ``data-gate`` tags make it clickable."""
    p, x, y = pl.part, pl.x, pl.y
    gate = p.gate if p.gate in fig.circuit.cell.gates else None
    attrs = {"class": "gl-switch", "data-gate": gate} if gate else {}
    if p.kind == "switch":
        contacts = [(x + CONTACT, y), (x + SW - CONTACT, y)]
    else:
        contacts = [(x + CONTACT, y + THROW), (x + CONTACT, y - THROW), (x + pl.w - CONTACT, y)]
    segs = [Segment(list(blade(fig, pl)), color=paint(colour, **attrs), lw=2.2, zorder=5)]
    for c in contacts:
        segs.append(SegmentCircle(c, CONTACT, color=paint(colour, **attrs), fill="white",
                                  lw=1.5, zorder=6))
    if attrs and paint.markers:  # an invisible, clickable hit area
        x0, y0 = x - 0.1, y - (THROW + 0.25 if p.kind == "select" else 0.3)
        x1, y1 = x + pl.w + 0.1, y + (THROW + 0.25 if p.kind == "select" else 0.6)
        hit = paint("none", **{**attrs, "class": "gl-switch-hit"})
        segs.append(SegmentPoly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color=hit, fill=hit,
                                zorder=7))
    _add(d, *segs)


def _draw_frame(d: schemdraw.Drawing, fig: Figure, paint: Painter) -> None:
    lay = fig.layout
    for x0, y0, x1, y1 in lay.cores:
        _add(d, SegmentPoly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color=CORE, lw=1.8,
                            fill="none", zorder=0))
    for gate, paths in lay.links.items():
        drops = zip(fig.circuit.switches(gate), paths, strict=False)  # the last path: the rail
        ends = {id(path): _on_blade(fig, lay.placed[p.id], path[0][0]) for p, path in drops}
        for path in paths:
            path = [ends.get(id(path), path[0]), *path[1:]]
            _add(d, Segment(path, color=LINK, lw=1.4, ls="--", zorder=1))
    for lab in lay.labels:
        colour = INK
        if lab.pid is not None and lab.pid not in fig.live:
            colour = DEAD
        if lab.source is not None and lab.source not in {
                p.name for p in fig.circuit.parts() if p.kind == "source" and p.id in fig.live}:
            colour = DEAD
        _add(d, SegmentText((lab.x, lab.y), lab.text, align=(lab.halign, lab.valign),
                            fontsize=lab.size, color=colour, zorder=8))
    x_min = lay.extent()[0]
    _add(d, SegmentText((x_min, lay.title_y), fig.title, align=("left", "bottom"),
                        fontsize=TITLE_SIZE, color=INK, zorder=8))


def render(fig: Figure, canvas: str = "svg", paint: Painter | None = None) -> schemdraw.Drawing:
    """The schemdraw drawing of a figure on the ``"svg"`` or ``"matplotlib"`` canvas."""
    paint = paint or Painter()
    d = schemdraw.Drawing(canvas=canvas, show=False)
    d.config(fontsize=12, font="sans-serif" if canvas == "matplotlib" else "sans")
    _draw_frame(d, fig, paint)
    _draw_wires(d, fig, paint)
    _draw_parts(d, fig, paint)
    return d


def svg_text(d: schemdraw.Drawing) -> str:
    """The SVG of a drawing. schemdraw shifts subscripts by 2 user units, which browsers show
    as barely lowered; ``sub`` lowers them as a subscript should be."""
    return d.get_imagedata("svg").decode().replace('baseline-shift="-2"', 'baseline-shift="sub"')


def draw(cell: str | Path | Cell | Analysis, setting: Setting | None = None) -> str:
    """The cell's circuit diagram as SVG text (schemdraw's SVG backend).

    ``setting`` (e.g. ``{"f": 0}``) throws those switches, greys out the dead wires and titles
    the drawing with the resulting kind; gates left out stay symbolic.
    """
    return svg_text(render(figure(cell, setting)))


def save(cell: str | Path | Cell | Analysis, path: str | Path,
         setting: Setting | None = None) -> Path:
    """Write the diagram to ``path``: ``.svg`` (no matplotlib) or ``.png`` (150 dpi)."""
    return write(figure(cell, setting), path)


def write(fig: Figure, path: str | Path) -> Path:
    """Write a figure as ``.svg`` (schemdraw's SVG backend) or ``.png`` (its matplotlib one)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        import matplotlib.pyplot as plt

        render(fig, canvas="matplotlib").save(str(path), dpi=150)
        plt.close("all")
    elif path.suffix.lower() == ".svg":
        path.write_text(svg_text(render(fig)), encoding="utf-8")
    else:
        raise UsageError(f"cannot write {path.name!r}: expected a .svg or .png file name")
    return path
