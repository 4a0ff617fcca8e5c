"""Open the whole tour report in Debian's Chromium (Playwright) and check that it renders.

The report is built once per test session by the real tour machinery (``run_tour``, quick mode).
To keep the suite fast, the sentiment section trains its tiniest models (3 steps, 4 units, 40
texts each): this test checks that every section renders, not what the models learn; the numbers
in a real report come from ``gatelab tour``. Set ``GATELAB_TEST_REPORT=path/to/report`` to check an
already built report (e.g. the output of ``make demo``) instead of building one.

Checks: every section in the navigation exists and has content, every image loaded
(``naturalWidth > 0``), no console error or uncaught page error; a full-page screenshot goes to
``test-artifacts/report.png``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _sync_playwright():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    return sync_playwright


@pytest.fixture(scope="session")
def report(tmp_path_factory) -> Path:
    given = os.environ.get("GATELAB_TEST_REPORT")
    if given:
        index = Path(given) / "index.html"
        assert index.is_file(), f"GATELAB_TEST_REPORT={given} has no index.html"
        return index
    _sync_playwright()  # skip before the expensive build when the browser is missing
    out = tmp_path_factory.mktemp("report")
    # Built in a fresh process, as `gatelab tour` runs: the tour's live study starts a Ray whose
    # settings (its token mode) a worker that ran other tests may already have fixed.
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from rich.console import Console\n"
        "from gatelab.explain import report as explain_report\n"
        "from gatelab.report.tour import run_tour\n"
        "tiny = {'steps': 3, 'hidden': 4, 'embed': 4, 'max_len': 12, 'lr': 1e-2, "
        "'eval_every': 3, 'train_size': 40, 'eval_size': 24}\n"
        "explain_report.QUICK = {'drugs': tiny, 'tweets': tiny}\n"
        "print(run_tour(Path(sys.argv[1]), quick=True, console=Console(quiet=True)))\n")
    res = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True,
                         timeout=1500)
    assert res.returncode == 0, res.stderr[-3000:]
    return Path(res.stdout.strip().splitlines()[-1])


def test_report_renders_in_chromium(report):
    sync_playwright = _sync_playwright()
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            # A big local page in a browser that shares 2 cores with the rest of the suite:
            # give it time (a 30 s "networkidle" wait once timed out under that load).
            page.set_default_timeout(180_000)
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"failed to load {r.url}"))
            # "load" fires after every image and script of the page has loaded or failed
            # (a failure lands in `errors` through the listeners above).
            page.goto(report.as_uri(), wait_until="load")

            ids = page.eval_on_selector_all("nav a", "els => els.map(a => a.hash.slice(1))")
            assert ids, "the report has no sections"
            for sid in ids:
                sec = page.locator(f"section#{sid}")
                assert sec.count() == 1, f"section {sid} is in the navigation but not the page"
                assert len(sec.inner_text().strip()) > 40, f"section {sid} is empty"
            assert "explain" in ids, "the sentiment section is missing"

            images = page.eval_on_selector_all(
                "img", "els => els.map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
            broken = [src for src, complete, width in images if not complete or width == 0]
            assert not broken, f"broken images: {broken}"
            assert any(src == "explain-gates.png" for src, _, _ in images)

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
            page.locator("section#explain").screenshot(path=str(ARTIFACTS / "explain.png"))
        finally:
            browser.close()
    assert not errors, "\n".join(errors)
