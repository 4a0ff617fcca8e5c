"""Automatic layout of a :class:`~gatelab.diagram.circuit.Circuit`: where every symbol, wire and
label goes, in schemdraw drawing units (1 unit = 36 pt), y up.

The rule is the article's picture: signals flow left to right. Each part sits in a column given
by its depth below the drawn state (the state's new value is rightmost), so sibling linear maps
line up and the identity wire runs straight along the top. Each use of a source gets its own row;
a part shares the row of its first input, a selector sits between its two throws. The sources'
left terminals are joined to their uses by vertical buses. Nothing here depends on a setting:
:mod:`gatelab.diagram.drawing` colours and throws the switches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemdraw.backends.svgtext import text_approx_size

from .circuit import Circuit, Part

PT_PER_UNIT = 36.0  # schemdraw: 72 pt/inch * 0.5 inch/unit
ROW = 2.0  # vertical distance between rows
FONT = 12.0  # label size (pt)
SMALL = 9.0  # the 1/0 marks of a selector
R_SUM = 0.3
SW = 1.0  # width of a switch
SW_SELECT = 1.3  # width of a selector
THROW = 0.5  # a selector's throws sit at y ± THROW
BOX_H = 0.8
CONTACT = 0.12  # contact circle radius


def math_label(name: str, time: str = "") -> str:
    """Plain name -> schemdraw math text: ``W_g`` -> ``$W_g$``, ``c_new`` -> ``$c_{new}$``;
    ``time`` adds a time index: ``("c", "t-1")`` -> ``$c_{t-1}$``."""
    base, _, sub = name.partition("_")
    safe = "".join(ch for ch in base if ch not in "${}\\^")
    sub = ",".join(t for t in ("".join(ch for ch in sub.replace("_", ",")
                                       if ch not in "${}\\^"), time) if t)
    if not sub:
        return f"${safe}$"
    return f"${safe}_{{{sub}}}$"


def text_size(text: str, size: float = FONT) -> tuple[float, float]:
    """Width and height of a label in drawing units (schemdraw's own estimate for SVG text)."""
    w, h, _ = text_approx_size(text, font="sans", size=size)
    return w / PT_PER_UNIT, h / PT_PER_UNIT


@dataclass
class Label:
    text: str
    x: float
    y: float
    halign: str = "center"  # left | center | right
    valign: str = "center"  # top | center | bottom
    size: float = FONT
    role: str = "label"  # terminal | box | gate | mark | title
    pid: int | None = None  # the part it names
    source: str | None = None  # the terminal it names

    def bbox(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in units."""
        w, h = text_size(self.text, self.size)
        x0 = {"left": self.x, "center": self.x - w / 2, "right": self.x - w}[self.halign]
        y0 = {"bottom": self.y, "center": self.y - h / 2, "top": self.y - h}[self.valign]
        return (x0, y0, x0 + w, y0 + h)


@dataclass
class Wire:
    """A polyline feeding ``part`` (its ``port``-th input); ``leaf`` is the source use it carries
    when it starts at a terminal."""

    points: list[tuple[float, float]]
    part: Part
    port: int
    leaf: Part | None = None


@dataclass
class Placed:
    part: Part
    x: float  # left edge (input side)
    y: float  # centre line
    w: float

    @property
    def out(self) -> tuple[float, float]:
        return (self.x + self.w, self.y)


@dataclass
class Layout:
    circuit: Circuit
    placed: dict[int, Placed] = field(default_factory=dict)  # part id -> place
    wires: list[Wire] = field(default_factory=list)
    dots: list[tuple[float, float, int | str]] = field(default_factory=list)  # x, y, owner
    labels: list[Label] = field(default_factory=list)
    terminals: dict[str, tuple[float, float]] = field(default_factory=dict)  # source -> point
    outputs: dict[str, tuple[float, float]] = field(default_factory=dict)  # state -> point
    cores: list[tuple[float, float, float, float]] = field(default_factory=list)
    links: dict[str, list[list[tuple[float, float]]]] = field(default_factory=dict)
    parent: dict[int, tuple[Part, int]] = field(default_factory=dict)  # id -> (parent, port)
    label_below: set[int] = field(default_factory=set)  # switches labelled under the wire
    title_y: float = 0.0

    def extent(self) -> tuple[float, float, float, float]:
        xs, ys = [], []
        for p in self.placed.values():
            xs += [p.x, p.x + p.w]
            ys += [p.y - 1, p.y + 1]
        for lab in self.labels:
            x0, y0, x1, y1 = lab.bbox()
            xs += [x0, x1]
            ys += [y0, y1]
        return min(xs), min(ys), max(xs), max(ys)


def part_width(p: Part) -> float:
    if p.kind in ("sum", "product"):
        return 2 * R_SUM
    if p.kind == "switch":
        return SW
    if p.kind == "select":
        return SW_SELECT
    return max(1.0, text_size(math_label(p.label) if p.kind == "map" else p.label)[0] + 0.4)


class _Order:
    """Children top to bottom: uses of memory states before inputs, shorter paths first.

    Each part's order, first source and size are kept: a child's sort key reads its whole
    subtree in order, so recomputing it at every level doubled the work per nesting level
    (a 20-deep ``exp(exp(...))`` took half a minute)."""

    def __init__(self, rank: dict[str, int]) -> None:
        self.rank = rank
        self._kids: dict[Part, list[Part]] = {}
        self._first: dict[Part, Part | None] = {}
        self._size: dict[Part, int] = {}

    def __call__(self, p: Part) -> list[Part]:
        if p not in self._kids:
            self._kids[p] = sorted(p.children, key=self._key)
        return self._kids[p]

    def _key(self, c: Part) -> tuple:
        first = self.first_source(c)
        return (self.rank.get(first.name, 99) if first else 99, self.size(c))

    def first_source(self, p: Part) -> Part | None:
        """The first source met walking ``p`` parents first, children in this order."""
        if p not in self._first:
            found = p if p.kind == "source" else None
            for c in ([] if found else self(p)):
                if (found := self.first_source(c)) is not None:
                    break
            self._first[p] = found
        return self._first[p]

    def size(self, p: Part) -> int:
        if p not in self._size:
            self._size[p] = 1 + sum(self.size(c) for c in p.children)
        return self._size[p]


def layout(circuit: Circuit) -> Layout:
    """Place every part of ``circuit``; see the module docstring for the rules."""
    lay = Layout(circuit)
    rank = {s: i for i, s in enumerate(circuit.sources)}
    order = _Order(rank)
    depth: dict[int, int] = {}

    def set_depth(p: Part, d: int) -> None:
        depth[p.id] = d
        for i, c in enumerate(p.children):
            lay.parent[c.id] = (p, i)
            set_depth(c, d + 1)

    for root in circuit.roots.values():
        set_depth(root, 0)
    inner = [p for p in circuit.parts() if p.kind != "source"]
    max_depth = max((depth[p.id] for p in inner), default=0)
    n_src = len(circuit.sources)
    bus_x = {s: 0.7 + 0.4 * i for i, s in enumerate(circuit.sources)}
    col_w = max([2.0] + [part_width(p) + 0.9 for p in inner])
    x_first = 0.7 + 0.4 * n_src + 0.4

    def col_x(p: Part) -> float:
        col = max_depth - depth[p.id]
        return x_first + col * col_w + (col_w - 0.9 - part_width(p)) / 2

    # rows: one per source use, top to bottom
    next_row = [0]
    y_of: dict[int, float] = {}

    def place(p: Part) -> float:
        kids = order(p)
        if not kids:
            y = -next_row[0] * ROW
            next_row[0] += 1
        else:
            ys = [place(c) for c in kids]
            y = (ys[0] + ys[-1]) / 2 if p.kind == "select" else ys[0]
        y_of[p.id] = y
        if p.kind != "source":
            lay.placed[p.id] = Placed(p, col_x(p), y, part_width(p))
        return y

    for root in circuit.roots.values():
        place(root)

    _wire_up(lay, circuit, order, bus_x, y_of)
    _label_parts(lay)
    _cores(lay, circuit)
    x_out = max(pl.x + pl.w for pl in lay.placed.values()) + 1.0 if lay.placed else 3.0
    for state, root in circuit.roots.items():
        start = lay.placed[root.id].out if root.id in lay.placed else lay.terminals[root.name]
        lay.outputs[state] = (x_out, start[1])
        lay.wires.append(Wire([start, (x_out, start[1])], root, -1))
        lay.labels.append(Label(math_label(state, "t"), x_out + 0.25, start[1], "left",
                                role="terminal"))
    _links(lay, circuit)
    top = max(lab.bbox()[3] for lab in lay.labels) if lay.labels else 1.0
    top = max([top] + [y + 1 for _, y in lay.terminals.values()])
    for paths in lay.links.values():
        top = max([top] + [y for path in paths for _, y in path])
    lay.title_y = top + 0.6
    return lay


def _wire_up(lay: Layout, circuit: Circuit, order: _Order, bus_x: dict[str, float],
             y_of: dict[int, float]) -> None:
    """Wires from each part's output (or a source's bus) into its parent's port."""
    uses: dict[str, list[Part]] = {}
    for p in circuit.parts():
        if p.kind == "source":
            uses.setdefault(p.name, []).append(p)
    for s in circuit.sources:
        ys = [y_of[u.id] for u in uses.get(s, [])]
        if not ys:
            continue
        y_term = max(ys)  # the topmost use
        lay.terminals[s] = (0.0, y_term)
        if s.endswith("'"):  # a memory state's new value, read by a drawn readout
            label = math_label(s[:-1], "t")
        else:
            label = math_label(s, "t" if s in circuit.cell.inputs else "t-1")
        lay.labels.append(Label(label, -0.25, y_term, "right", role="terminal", source=s))
        for y in ys:
            if y != min(ys):  # the bus goes on below this use: a junction
                lay.dots.append((bus_x[s], y, s))
    merged: dict[int, list[float]] = {}
    for p in circuit.parts():
        if p.id not in lay.parent:
            continue
        parent, port = lay.parent[p.id]
        if p.kind == "source":
            xb, yt = bus_x[p.name], lay.terminals[p.name][1]
            y = y_of[p.id]
            head = [(0.0, yt), (xb, yt), (xb, y)]
        else:
            head = [lay.placed[p.id].out]
        pts = head + _entry(lay, parent, port, p, head[-1], y_of)
        lay.wires.append(Wire(_simplify(pts), parent, port, p if p.kind == "source" else None))
        if parent.kind in ("sum", "product") and order(parent).index(p) > 0:
            merged.setdefault(parent.id, []).append(y_of[p.id])
    for pid, ys in merged.items():  # inputs joining below a sum share one vertical: junctions
        pl = lay.placed[pid]
        for y in sorted(ys)[1:]:
            lay.dots.append((pl.x + R_SUM, y, pid))


def _entry(lay: Layout, parent: Part, port: int, child: Part, start: tuple[float, float],
           y_of: dict[int, float]) -> list[tuple[float, float]]:
    """The rest of the path from ``start`` (at the child's height) into the parent's port."""
    pl = lay.placed[parent.id]
    y = start[1]
    if parent.kind in ("sum", "product"):
        if abs(y - pl.y) < 1e-9:
            return [(pl.x, pl.y)]
        cx = pl.x + R_SUM
        return [(cx, y), (cx, pl.y - R_SUM if y < pl.y else pl.y + R_SUM)]
    if parent.kind == "select":
        ty = pl.y + THROW if y > pl.y else pl.y - THROW
        return [(pl.x - 0.3, y), (pl.x - 0.3, ty), (pl.x, ty)]
    return [(pl.x, pl.y)]


def _simplify(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for p in pts:
        if out and abs(out[-1][0] - p[0]) < 1e-9 and abs(out[-1][1] - p[1]) < 1e-9:
            continue
        out.append(p)
    return out


def _label_parts(lay: Layout) -> None:
    for pl in lay.placed.values():
        p = pl.part
        if p.kind in ("map", "func", "scale", "const"):
            text = math_label(p.label) if p.kind == "map" else p.label
            lay.labels.append(Label(text, pl.x + pl.w / 2, pl.y, role="box", pid=p.id))
        elif p.kind == "switch":
            text = math_label(p.label) if p.label.isidentifier() else p.label
            lay.labels.append(Label(text, pl.x + SW / 2, pl.y + 0.55, valign="bottom",
                                    role="gate", pid=p.id))
        elif p.kind == "select":
            lay.labels.append(Label(math_label(p.label), pl.x + pl.w + 0.05, pl.y - 0.3,
                                    "left", "top", role="gate", pid=p.id))
            top_is_one = top_child_is_one(lay, p)
            for sign, mark in ((1, "1" if top_is_one else "0"), (-1, "0" if top_is_one else "1")):
                lay.labels.append(Label(mark, pl.x + CONTACT, pl.y + sign * (THROW + 0.3),
                                        size=SMALL, role="mark", pid=p.id))


def top_child_is_one(lay: Layout, p: Part) -> bool:
    """Whether the gate=1 input of a selector enters at its upper throw."""
    wa = next(w for w in lay.wires if w.part is p and w.port == 0)
    return wa.points[-1][1] > lay.placed[p.id].y


def _cores(lay: Layout, circuit: Circuit) -> None:
    """The shared core, in a red box: the outermost nonlinearity over linear maps, with its maps;
    in a cell without one (minGRU, NIAF), the smallest part joining all linear maps."""
    def has_map(p: Part) -> bool:
        return any(q.kind == "map" for q in p.walk())

    def funcs_in(p: Part) -> list[Part]:
        if p.kind == "func" and has_map(p):
            return [p]
        return [c for ch in p.children for c in funcs_in(ch)]

    def joining(p: Part) -> Part:
        while p.kind != "map":
            holders = [c for c in p.children if has_map(c)]
            if len(holders) != 1:
                return p
            p = holders[0]
        return p

    for root in circuit.roots.values():
        cores = funcs_in(root) or ([joining(root)] if has_map(root) else [])
        for core in cores:
            maps = [q for q in core.walk() if q.kind == "map"]
            x_min = min(lay.placed[m.id].x for m in maps)
            inside = [q for q in core.walk() if q.id in lay.placed and lay.placed[q.id].x >= x_min]
            ids = {q.id for q in inside}
            boxes = [(lay.placed[i].x, lay.placed[i].y - BOX_H / 2,
                      lay.placed[i].x + lay.placed[i].w, lay.placed[i].y + BOX_H / 2)
                     for i in ids]
            boxes += [lab.bbox() for lab in lay.labels if lab.pid in ids]
            lay.cores.append((min(b[0] for b in boxes) - 0.3, min(b[1] for b in boxes) - 0.3,
                              max(b[2] for b in boxes) + 0.3, max(b[3] for b in boxes) + 0.3))


def _links(lay: Layout, circuit: Circuit) -> None:
    """Ganged switches: a dashed mechanical link from each blade to a rail above (or below)."""
    for gate in sorted(circuit.ganged()):
        parts = circuit.switches(gate)
        x0, y0, x1, y1 = lay.extent()
        for side, rail in ((1, y1 + 0.4), (-1, y0 - 0.4)):
            drops = []
            for p in parts:
                pl = lay.placed[p.id]
                mid = (pl.x + pl.w / 2, pl.y + (0.2 if p.kind == "switch" else 0.0))
                drops.append([mid, (mid[0], rail)])
            if side == -1 or not _blocked(lay, drops, parts):
                break
        if side == 1:  # labels of these switches move under their wire, out of the link's way
            for p in parts:
                if p.kind == "switch":
                    lab = next(lab for lab in lay.labels if lab.role == "gate" and lab.pid == p.id)
                    lab.y, lab.valign = lay.placed[p.id].y - 0.35, "top"
        xs = [d[0][0] for d in drops]
        lay.links[gate] = drops + [[(min(xs), rail), (max(xs), rail)]]


def _blocked(lay: Layout, drops: list, parts: list[Part]) -> bool:
    """Whether a vertical drop passes through another part or a label (not its own switch)."""
    own = {p.id for p in parts}
    boxes = [(pl.x, pl.y - BOX_H / 2, pl.x + pl.w, pl.y + BOX_H / 2)
             for pid, pl in lay.placed.items() if pid not in own]
    boxes += [lab.bbox() for lab in lay.labels if not (lab.role == "gate" and lab.pid in own)]
    for (x, ya), (_, yb) in drops:
        lo, hi = sorted((ya, yb))
        for bx0, by0, bx1, by1 in boxes:
            if bx0 - 0.05 <= x <= bx1 + 0.05 and by1 > lo + 0.5 and by0 < hi:
                return True
    return False
