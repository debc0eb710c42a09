"""`ptpulse serve` as a practice runs it: one process serves the app and watches incoming/. A dropped export
is ingested and built (real dbt) and the running app shows the new build without being restarted."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from tests.conftest import free_port
from tests.e2e.e2e_helpers import TIMEOUT_MS

CHROMIUM = Path("/usr/bin/chromium")


def _wait(predicate, timeout_s: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"ptpulse serve exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()}"
            )
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


def _app_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _expect_build_shown(page, url: str, build_id: str) -> None:
    """Open a page afresh and read the build id under "About this data" (every page shows it)."""
    from playwright.sync_api import expect

    page.goto(f"{url}/data_health")
    page.get_by_text("About this data").first.click()
    expect(page.get_by_text(f"Build: {build_id}")).to_be_visible()


@pytest.mark.slow
def test_serve_picks_up_a_dropped_export_and_serves_the_new_build_without_restart(
    built_home, small_practice, tmp_path, no_secrets, request
):
    home = tmp_path / "home"
    shutil.copytree(built_home.home, home, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    env = dict(os.environ, PTPULSE_DEMO_ROLE="admin")
    cmd = [sys.executable, "-m", "ptpulse.cli", "serve", "--home", str(home), "--port", str(port)]
    cmd += ["--schedule", "off", "--settle", "2", "--poll", "0.5"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=str(tmp_path))
    browser = None
    try:
        _wait(lambda: _app_up(url), 90, "the app", proc, log)
        status_file = home / "logs" / "service.json"
        status = json.loads(_wait(lambda: status_file.exists() and status_file.read_text(), 30, "status", proc, log))
        app_pid = status["app"]["pid"]
        with duckdb.connect(str(home / "analytics.duckdb"), read_only=True) as con:
            (old_build,) = con.execute("select build_id from marts.build_info").fetchone()

        if CHROMIUM.exists():
            browser = request.getfixturevalue("chromium").new_context()  # the session's chromium, own context
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            _expect_build_shown(page, url, old_build)

        # the EMR drops tonight's export: a re-sent marketing spend row with a corrected amount, written slowly
        export = home / "incoming" / "nightly"
        export.mkdir(parents=True)
        with open(small_practice / "marketing_spend.csv", newline="") as fh:
            header, *rows = list(csv.reader(fh))
        row = dict(zip(header, rows[-1], strict=True))
        row["spend_usd"] = f"{float(row['spend_usd']) + 123.45:.2f}"
        with open(export / "marketing_spend.csv", "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            fh.flush()
            time.sleep(1.0)  # still being written: not picked up before it settles
            writer.writerow([row[c] for c in header])

        def finished():
            state = json.loads(status_file.read_text())
            return state["last_run"] if state.get("last_run") and state["last_run"]["exports"] == ["nightly"] else None

        last = _wait(finished, 420, "the refresh of the dropped export", proc, log)
        assert last["result"] == "ok", last
        assert last["trigger"] == "incoming" and last["files_loaded"] == 1
        assert last["archived"]["nightly"].startswith("processed/") and not export.exists()
        assert last["build_id"] and last["build_id"] != old_build
        with duckdb.connect(str(home / "analytics.duckdb"), read_only=True) as con:
            assert con.execute("select build_id from marts.build_info").fetchone() == (last["build_id"],)
        with duckdb.connect(str(home / "raw.duckdb"), read_only=True) as con:
            loads = con.execute(
                "select status, rows_landed from raw.raw._loads where file like '%nightly%marketing_spend.csv'"
            ).fetchall()
        assert loads == [("loaded", 1)]

        state = json.loads(status_file.read_text())
        assert state["app"]["pid"] == app_pid and state["app"]["restarts"] == 0 and _app_up(url)
        if browser is not None:  # the same app process, never restarted, shows the new build
            _expect_build_shown(page, url, last["build_id"])
    finally:
        if browser is not None:
            browser.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0, log.read_text()[-3000:]
    final = json.loads((home / "logs" / "service.json").read_text())
    assert final["stopped_at"] and final["running"] is None
