"""Post-process schemdraw's SVG for the web page: give switch elements ``data-gate`` attributes
and classes, and restore the real colours behind the marker colours used to find them.

schemdraw writes one flat list of ``<path>``/``<circle>``/``<text>`` elements with inline styles
and no grouping, so :class:`gatelab.diagram.drawing.Painter` paints every element that needs an
attribute with a unique marker colour; here each marker is looked up and replaced.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from .drawing import Figure, Painter, render, svg_text

SVG_NS = "http://www.w3.org/2000/svg"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")
MARKER = re.compile(r"#e[0-9a-f]{5}")


def tag_svg(svg: str, tags: dict[str, tuple[str, dict[str, str]]]) -> str:
    """Replace marker colours by their real colour and add their attributes to the element."""
    root = ET.fromstring(svg)
    for el in root.iter():
        found = set()
        for key in ("style", "fill", "stroke"):
            value = el.get(key)
            if value:
                found |= set(MARKER.findall(value))
        for marker in found:
            colour, attrs = tags.get(marker, ("black", {}))
            for key in ("style", "fill", "stroke"):
                if el.get(key):
                    el.set(key, el.get(key).replace(marker, colour))
            for k, v in attrs.items():
                if k == "class" and el.get("class"):
                    v = f"{el.get('class')} {v}"
                el.set(k, v)
            if "gl-switch-hit" in attrs.get("class", ""):
                el.set("style", "fill:transparent;stroke:none;cursor:pointer;")
    return ET.tostring(root, encoding="unicode")


def web_svg(fig: Figure) -> str:
    """The figure as SVG for the page: switches carry ``data-gate`` and ``class="gl-switch"``
    (a transparent ``gl-switch-hit`` rectangle over each makes it easy to click), identity-path
    wires ``gl-identity``, dead wires ``gl-dead``."""
    paint = Painter(markers=True)
    svg = svg_text(render(fig, paint=paint))
    return tag_svg(svg, paint.tags)
