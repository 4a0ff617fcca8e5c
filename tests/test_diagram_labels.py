"""Labels never overlap wires, symbols or each other: checked on the SVG schemdraw writes.

Text boxes are computed from each ``<text>`` element's position, alignment and font size, with
the width from schemdraw's own character-width table (the same estimate its SVG backend uses);
wires and symbols are the straight segments of every ``<path>``/``<polygon>`` and the boxes of
every ``<circle>``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from schemdraw.backends.svgtext import string_width

from gatelab import zoo_names
from gatelab.diagram import draw

NS = "{http://www.w3.org/2000/svg}"
Box = tuple[float, float, float, float]


def text_boxes(root: ET.Element) -> list[tuple[str, Box]]:
    out = []
    for t in root.iter(NS + "text"):
        size = float(t.get("font-size"))
        content = "".join(t.itertext())
        tspan = t.find(NS + "tspan")
        x = float(t.get("x"))
        y = float(t.get("y")) + float(tspan.get("dy") if tspan is not None else 0)
        w = string_width(content, fontsize=size)
        x0 = {"start": x, "middle": x - w / 2, "end": x - w}[t.get("text-anchor", "start")]
        base = t.get("dominant-baseline", "alphabetic")
        y0 = {"central": y - size / 2, "hanging": y, "ideographic": y - size,
              "alphabetic": y - 0.8 * size}[base]
        out.append((content, (x0, y0, x0 + w, y0 + size)))
    return out


def segments(root: ET.Element) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    segs = []
    for el in root.iter():
        if el.tag == NS + "path":
            nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", el.get("d", ""))]
        elif el.tag == NS + "polygon":
            nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", el.get("points", ""))]
            nums += nums[:2]
        else:
            continue
        pts = list(zip(nums[::2], nums[1::2], strict=False))
        segs += list(zip(pts, pts[1:], strict=False))
    return segs


def circles(root: ET.Element) -> list[Box]:
    out = []
    for c in root.iter(NS + "circle"):
        x, y, r = float(c.get("cx")), float(c.get("cy")), float(c.get("r"))
        out.append((x - r, y - r, x + r, y + r))
    return out


def overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def hits_segment(box: Box, seg) -> bool:
    """Whether an axis-aligned box meets a segment (sampled finely: segments are short)."""
    (x0, y0), (x1, y1) = seg
    n = max(2, int(max(abs(x1 - x0), abs(y1 - y0)) / 0.5) + 1)
    for k in range(n + 1):
        x = x0 + (x1 - x0) * k / n
        y = y0 + (y1 - y0) * k / n
        if box[0] < x < box[2] and box[1] < y < box[3]:
            return True
    return False


def shrink(b: Box, d: float = 0.5) -> Box:
    return (b[0] + d, b[1] + d, b[2] - d, b[3] - d)


def problems(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    texts = text_boxes(root)
    segs = segments(root)
    found = []
    for i, (ta, a) in enumerate(texts):
        a = shrink(a)
        for tb, b in texts[i + 1:]:
            if overlaps(a, shrink(b)):
                found.append(f"text {ta!r} overlaps text {tb!r}")
        if any(hits_segment(a, s) for s in segs):
            found.append(f"text {ta!r} crosses a line")
        if any(overlaps(a, c) for c in circles(root)):
            found.append(f"text {ta!r} covers a contact")
    return found


def test_the_check_can_fail() -> None:
    """A label put on a wire on purpose is caught."""
    svg = ('<svg xmlns="http://www.w3.org/2000/svg"><path d="M 0,0 L 100,0" />'
           '<text x="50" y="-6" dominant-baseline="central" font-size="12" '
           'text-anchor="middle"><tspan x="50" dy="6">label</tspan></text>'
           '<text x="52" y="-6" dominant-baseline="central" font-size="12" '
           'text-anchor="middle"><tspan x="52" dy="6">label</tspan></text></svg>')
    found = problems(svg)
    assert "text 'label' crosses a line" in found
    assert "text 'label' overlaps text 'label'" in found


@pytest.mark.parametrize("name", zoo_names())
def test_zoo_labels_clear(name: str) -> None:
    assert problems(draw(name)) == []


@pytest.mark.parametrize("name,setting", [
    ("lstm", {"i": 1, "f": 0, "o": 1}), ("lstm", {"i": 0, "f": 1, "o": 0}),
    ("gru", {"z": 1, "r": 0}), ("gru", {"z": 0, "r": 1}), ("mgu", {"f": 0}), ("mgu", {"f": 1}),
])
def test_set_labels_clear(name: str, setting: dict) -> None:
    assert problems(draw(name, setting)) == []
