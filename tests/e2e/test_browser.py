"""One real-browser smoke test: the app served by `streamlit run`, Debian's chromium driven by Playwright.

Acts as the front desk (PTPULSE_DEMO_ROLE=front_desk), logs an outreach on a work-queue task, sees the
queue change, then switches the demo role to owner, checks that the maturing denial rate says so (tile and
greyed trend) and saves a screenshot of the Overview.
Never runs `playwright install`: it uses /usr/bin/chromium (`apt-get install -y chromium`).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian chromium at /usr/bin/chromium (apt-get install -y chromium); .ci/run installs it",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not become healthy at {url}")


@pytest.fixture
def served_app(built_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(built_home.home, home, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
    port = _free_port()
    env = dict(os.environ, PTPULSE_HOME=str(home), PTPULSE_DEMO_ROLE="front_desk")
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app" / "streamlit_app.py"),
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
            "--client.toolbarMode",  # as `ptpulse app` serves it: no Deploy button or developer menu
            "viewer",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(tmp_path),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url, home
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _metric(page, label: str) -> int:
    value = page.locator('[data-testid="stMetric"]', has_text=label).locator('[data-testid="stMetricValue"]')
    return int(re.sub(r"[^0-9]", "", value.first.inner_text()) or 0)


def test_front_desk_logs_outreach_and_owner_overview_screenshot(served_app, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, home = served_app
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(30_000)
        page.goto(f"{url}/work_queue")
        expect(page.locator('[data-testid="stMetric"]', has_text="Open tasks")).to_be_visible()
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
        page.wait_for_timeout(1500)  # let plotly finish drawing
        shot = tmp_path / "overview.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    # refresh the README's screenshot only when asked, so a test run never dirties the work tree
    if os.environ.get("PTPULSE_UPDATE_SCREENSHOTS"):
        docs = ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, docs / "overview.png")
