"""The interactive diagram page in Debian's Chromium (Playwright): a click on LSTM's ``f``
switch flips the gate, and the page shows the kind and update the analysis gives."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gatelab.analysis import KIND_LABELS as KIND_NAMES
from gatelab.analysis import reduce_setting
from gatelab.diagram.report import section
from gatelab.report.page import TourContext, render_page
from test_diagram_labels import hits_segment, overlaps, segments, shrink

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

# Every <text>'s box as the browser lays it out (real font metrics), in SVG user units.
TEXT_BOXES = """box => Array.from(box.querySelectorAll('.gl-svg svg text')).map(t => {
  const b = t.getBBox(); return [t.textContent, b.x, b.y, b.x + b.width, b.y + b.height]; })"""


@pytest.fixture(scope="module")
def page_file(tmp_path_factory) -> Path:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    out = tmp_path_factory.mktemp("report")
    sec = section(TourContext(out=out))
    index = out / "index.html"
    index.write_text(render_page("gatelab report", "", [sec]), encoding="utf-8")
    return index


@pytest.fixture(scope="module")
def browser(page_file: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def kind_text(kinds: dict) -> str:
    return ", ".join(f"{s}: {KIND_NAMES[k]}" for s, k in kinds.items())


def test_click_lstm_f(page_file: Path, browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(120_000)  # the suite shares 2 cores with this browser
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_file.as_uri())
    box = page.locator("#diagram-lstm")
    before = reduce_setting("lstm", {"i": 1, "f": 1, "o": 1})
    assert box.locator(".gl-kind").text_content() == kind_text(before.kind)
    assert box.get_attribute("data-setting") == "111"

    box.locator(".gl-svg .gl-switch-hit[data-gate='f']").click()

    after = reduce_setting("lstm", {"i": 1, "f": 0, "o": 1}).to_dict()
    assert box.get_attribute("data-setting") == "101"
    assert box.locator(".gl-kind").text_content() == kind_text(after["kind"])
    assert box.locator(".gl-kind").text_content() != kind_text(before.kind)
    assert box.locator(".gl-equation").text_content() == f"c' = {after['updates']['c']}"
    assert "LSTM, i=1 f=0 o=1: RNN" in box.locator(".gl-svg svg").text_content()
    assert box.locator(".gl-svg .gl-identity").count() == 0  # f open: no identity path
    box.screenshot(path=str(ARTIFACTS / "diagram-lstm-f0.png"))

    box.locator("button.gl-gate[data-gate='f']").click()  # and back, by the button
    assert box.get_attribute("data-setting") == "111"
    assert box.locator(".gl-svg .gl-identity").count() > 0
    assert errors == []
    page.close()


@pytest.mark.parametrize("name", ["lstm", "gru", "mgu"])
def test_labels_clear_with_real_fonts(page_file: Path, browser, name: str) -> None:
    """The browser's own text boxes: no label on another or on a wire."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(120_000)  # the suite shares 2 cores with this browser
    page.goto(page_file.as_uri())
    box = page.locator(f"#diagram-{name}")
    boxes = box.evaluate(TEXT_BOXES)
    svg = box.locator(".gl-svg").inner_html()
    page.close()
    root = ET.fromstring(svg)
    for parent in list(root.iter()):  # the invisible click areas are not drawn
        for child in list(parent):
            if "gl-switch-hit" in (child.get("class") or ""):
                parent.remove(child)
    segs = segments(root)
    assert len(boxes) > 5
    for i, (text, *a) in enumerate(boxes):
        a = shrink(tuple(a), 1.0)
        assert not any(hits_segment(a, s) for s in segs), text
        for other, *b in boxes[i + 1:]:
            assert not overlaps(a, shrink(tuple(b), 1.0)), (text, other)

