"""One real-browser smoke test: the app served by `streamlit run`, Debian's chromium driven by Playwright.

Acts as the front desk (PTPULSE_DEMO_ROLE=front_desk), logs an outreach on a work-queue task, sees the
queue change, then switches the demo role to owner, checks that the maturing denial rate says so (tile and
greyed trend) and saves a screenshot of the Overview (the README's screenshots come from test_walk.py).
Never runs `playwright install`: it uses /usr/bin/chromium (`apt-get install -y chromium`). Waits are generous
(TIMEOUT_MS) and end as soon as the page is there; there are no sleeps.
"""

from __future__ import annotations

import re
import shutil

import pytest
from e2e_helpers import CHROMIUM, SKIP_REASON, TIMEOUT_MS, serve_app, wait_idle

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)]


@pytest.fixture
def served_app(built_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(built_home.home, home, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
    with serve_app(home, tmp_path, demo_role="front_desk") as url:
        yield url, home


def _metric(page, label: str) -> int:
    value = page.locator('[data-testid="stMetric"]', has_text=label).locator('[data-testid="stMetricValue"]')
    return int(re.sub(r"[^0-9]", "", value.first.inner_text()) or 0)


def test_front_desk_logs_outreach_and_owner_overview_screenshot(served_app, chromium, tmp_path):
    from playwright.sync_api import expect

    url, home = served_app
    context = chromium.new_context(viewport={"width": 1500, "height": 1100})
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{url}/work_queue")
        expect(page.locator('[data-testid="stMetric"]', has_text="Open tasks")).to_be_visible()
        wait_idle(page)
        expect(page.get_by_text("Demo mode")).to_be_visible()
        assert page.get_by_role("button", name="Deploy").count() == 0  # staff never see Streamlit's Deploy
        open_before, closed_before = _metric(page, "Open tasks"), _metric(page, "Done or lost")
        assert open_before > 0

        page.get_by_text("SMS", exact=True).click()
        page.locator('[data-testid="stSelectbox"]', has_text="Outcome").click()
        page.get_by_role("option", name="Reached - appointment booked").click()
        page.get_by_role("button", name="Log outreach").click()

        expect(
            page.locator('[data-testid="stMetric"]', has_text="Done or lost").locator('[data-testid="stMetricValue"]')
        ).to_have_text(str(closed_before + 1))
        assert _metric(page, "Open tasks") == open_before - 1
        page.screenshot(path=str(tmp_path / "work_queue.png"), full_page=True)

        # the action is in app state, with the demo user's identity
        import sqlite3

        con = sqlite3.connect(home / "app.sqlite")
        ((actor, payload),) = con.execute("select actor, payload from actions").fetchall()
        assert actor == "demo-front-desk@ptpulse.local" and '"outcome": "scheduled"' in payload

        # switch the demo role to owner and open the Overview
        page.locator('[data-testid="stSelectbox"]', has_text="Demo role").click()
        page.get_by_role("option", name="Practice owner").click()
        page.get_by_role("link", name="Overview").click()
        expect(page.locator('[data-testid="stMetric"]', has_text="No-show rate").first).to_be_visible()
        # young cohorts say so: the denial-rate tile is maturing, and its trend greys out the young months
        expect(page.locator('[data-testid="stMetric"]', has_text="Denial rate (maturing)")).to_be_visible()
        page.locator('[data-testid="stSelectbox"]', has_text="Look closer at").click()
        page.keyboard.type("Denial rate")  # the option list is virtualised: filter it, then pick
        page.get_by_role("option", name="Denial rate").first.click()
        expect(page.get_by_text("Still maturing").first).to_be_visible()
        wait_idle(page)
        page.wait_for_function(  # plotly has drawn every chart
            "() => Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"]'))"
            ".every(c => { const g = c.querySelector('.js-plotly-plot'); return g && g._fullLayout; })"
        )
        shot = tmp_path / "overview.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        context.close()
    assert shot.stat().st_size > 10_000
