"""From an empty install to a served dashboard without a terminal, in a real browser (issue 14, "done when"):
a clinic manager opens the app on an empty PTPULSE_HOME, sees the first-run screen, follows its link to Upload
data, uploads the practice's exports plus a file that cannot be read, sees the result per file, waits for the
background refresh and opens the Overview. Served by `streamlit run` as `ptpulse app` serves it; Debian's
chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from e2e_helpers import CHROMIUM, ROOT, SKIP_REASON, TIMEOUT_MS, serve_app, wait_idle
from test_walk import READ_PAGE, problems_in

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)]


@pytest.fixture
def empty_app(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with serve_app(home, tmp_path, demo_role="manager") as url:
        yield url, home


def test_manager_uploads_exports_and_reaches_the_overview(empty_app, small_practice, chromium, tmp_path):
    from playwright.sync_api import expect

    url, home = empty_app
    exports = sorted(Path(small_practice).glob("*.csv"))
    broken = tmp_path / "offered" / "payers_broken.csv"
    broken.parent.mkdir()
    broken.write_bytes(b"\xff\xfe\x00\x00 not a csv")  # UTF-32 bytes: refused with the fix
    context = chromium.new_context(viewport={"width": 1440, "height": 1000})
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        expect(page.get_by_text("no data has been loaded yet")).to_be_visible()
        page.get_by_role("link", name="Upload exports").click()
        expect(page.get_by_role("heading", name="Upload data")).to_be_visible()

        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
            [str(p) for p in exports] + [str(broken)]
        )
        for p in exports[:1]:
            expect(page.get_by_text(p.name).first).to_be_visible()
        page.get_by_role("button", name="Validate and load").click()

        landed = page.locator('[data-testid="stMetric"]', has_text="Files landed")
        expect(landed.locator('[data-testid="stMetricValue"]')).to_have_text(
            f"{len(exports)} of {len(exports) + 1}", timeout=180_000
        )
        expect(page.locator('[data-testid="stMetric"]', has_text="Files refused")).to_contain_text("1")
        expect(page.get_by_text("Updating the dashboards")).to_be_visible()
        wait_idle(page)
        assert problems_in(page.evaluate(READ_PAGE)) == []  # the result reads in words (no codes, None, nan)
        shot = tmp_path / "upload.png"
        page.screenshot(path=str(shot), full_page=True)

        expect(page.get_by_text("The dashboards are up to date with your upload.")).to_be_visible(timeout=900_000)
        page.get_by_role("link", name="Open your dashboards").click()
        expect(page.locator('[data-testid="stMetric"]', has_text="No-show rate").first).to_be_visible()
    finally:
        context.close()
    assert shot.stat().st_size > 10_000
    assert not list((home / "incoming").rglob("payers_broken.csv"))  # refused: moved out of incoming/
    if os.environ.get("PTPULSE_UPDATE_SCREENSHOTS"):
        docs = ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, docs / "upload.png")
