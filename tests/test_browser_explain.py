"""The review sentence's unit-by-unit heatmap in Debian's Chromium (Playwright).

The tour's sentiment section is built by the real section builder on its tiniest models (a few
steps, 4 units; see tests/test_browser_report.py) and rendered as a page of its own. Checks: the
unit heatmap and its kept/written and evidence rows render, hovering a cell shows a read-out with
that cell's value (the number in its ``data-v``), keyboard focus does the same, and the page has
no console error. A screenshot goes to ``test-artifacts/explain-units.png``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from test_browser_report import ARGS, ARTIFACTS, CHROMIUM, _sync_playwright

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TINY = {"steps": 3, "hidden": 4, "embed": 4, "max_len": 12, "lr": 1e-2, "eval_every": 3,
        "train_size": 40, "eval_size": 24}


@pytest.fixture(scope="module")
def page_file(tmp_path_factory) -> Path:
    _sync_playwright()  # skip before building when the browser is missing
    from gatelab.data import DataUnavailable
    from gatelab.explain import report
    from gatelab.report.page import TourContext, render_page

    out = tmp_path_factory.mktemp("explain-page")
    mp = pytest.MonkeyPatch()
    mp.setattr(report, "QUICK", {"drugs": TINY, "tweets": TINY})
    try:
        sec = report.section(TourContext(out=out, quick=True))
    except DataUnavailable as e:  # pragma: no cover - the data packages come with `make setup`
        pytest.skip(f"sentiment data not installed: {e}")
    finally:
        mp.undo()
    if "table class='gu'" not in sec.html:
        pytest.skip("no sentiment data: the section is a note")  # pragma: no cover
    index = out / "index.html"
    index.write_text(render_page("explain", "", [sec]), encoding="utf-8")
    return index


def test_unit_heatmap_renders_and_hover_shows_values(page_file):
    sync_playwright = _sync_playwright()
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(120_000)  # the suite shares 2 cores with this browser
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.goto(page_file.as_uri(), wait_until="load")

            table = page.locator("section#explain table.gu")
            assert table.count() == 1
            heads = table.locator("th").all_inner_texts()
            assert any(h.startswith("unit ") for h in heads)
            assert any(h.startswith("evidence for") for h in heads)
            assert any(h.startswith("kept / written") for h in heads)
            tokens = table.locator("td.tok").all_inner_texts()
            assert tokens[:3] == ["amazing", "!", "this"]
            readings = table.locator("td.kept, td.written").all_inner_texts()
            assert len(readings) == len(tokens)
            tip = page.locator(".gu-tip")
            assert not tip.is_visible()

            cells = table.locator("td.c")
            for i in (0, cells.count() // 2, cells.count() - 1):
                cell = cells.nth(i)
                cell.scroll_into_view_if_needed()
                cell.hover()
                tip.wait_for(state="visible", timeout=3000)
                text = tip.inner_text()
                assert text == cell.get_attribute("data-tip")
                value = float(cell.get_attribute("data-v"))
                shown = [float(w.rstrip(")(,;%").lstrip("+")) for w in text.split()
                         if w.rstrip(")(,;%").lstrip("+-").replace(".", "", 1).isdigit()]
                assert any(abs(v - value) < 1e-3 or abs(v / 100 - value) < 6e-3 for v in shown), (
                    f"read-out {text!r} does not show the cell's value {value}")
            page.mouse.move(2, 2)  # away from the table: the read-out goes
            page.locator("h1").hover()
            assert not tip.is_visible()
            cells.first.focus()  # keyboard users get the same read-out
            assert tip.is_visible() and tip.inner_text() == cells.first.get_attribute("data-tip")

            ARTIFACTS.mkdir(exist_ok=True)
            page.locator("section#explain div.gu-wrap").screenshot(
                path=str(ARTIFACTS / "explain-units.png"))
        finally:
            browser.close()
    assert not errors, "\n".join(errors)
