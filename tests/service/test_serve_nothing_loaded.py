"""`ptpulse serve` on a home where nothing was ever loaded behaves like `ptpulse refresh`: no build (it would serve
an empty practice as if healthy), no retry and no alert, and one clear line, in the log, logs/service.json and
`ptpulse health`, saying to put the practice's exports in incoming/.

Before: an export that landed no row (or a scheduled run on an empty home) built and served an empty warehouse
and reported the refresh `ok`. Real processes: the service, its job child and the health probe.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ptpulse.core.config import get_settings
from ptpulse.serve import ServiceConfig, read_status

TINY = Path(__file__).parents[1] / "dbt" / "tiny_practice"
ROOT = Path(__file__).parents[2]  # the checkout under test, for the service and its job child in another cwd


def _status(home: Path) -> dict:
    try:
        return json.loads((home / "logs" / "service.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def test_serve_on_an_empty_home_builds_nothing_and_says_where_to_put_exports(tmp_path, no_secrets):
    home = tmp_path / "home"
    export = home / "incoming" / "week1"
    export.mkdir(parents=True)
    # an export that lands no row: the header of the clinics list only
    header = (TINY / "clinics.csv").read_text(encoding="utf-8").splitlines()[0]
    (export / "clinics.csv").write_text(header + "\n", encoding="utf-8")
    (export / ".done").touch()
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "ptpulse.cli", "serve", "--home", str(home), "--no-app"]
    cmd += ["--schedule", "off", "--settle", "1", "--poll", "0.3"]
    env = dict(os.environ, COLUMNS="200", PYTHONPATH=str(ROOT))
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=str(tmp_path))
    try:
        deadline = time.time() + 180  # a hang guard: the refresh subprocess starts slowly on a loaded box
        while time.time() < deadline and not _status(home).get("last_run"):
            assert proc.poll() is None, log.read_text()
            time.sleep(0.3)
        state = _status(home)
        run = state.get("last_run")
        assert run, f"no refresh finished in 180 s:\n{log.read_text()}"
        health = subprocess.run(
            [sys.executable, "-m", "ptpulse.cli", "health", "--home", str(home), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert run["result"] == "nothing_loaded", run
    assert run["build_id"] is None and run["alert"] is None and run["problems"] == []
    assert state["pending"] == []  # no retry of a build that was never tried
    assert not (home / "analytics.duckdb").exists()  # no empty practice served
    assert "put the practice's exports in" in state["nothing_loaded"]
    assert str(home / "incoming") in state["nothing_loaded"]
    text = log.read_text()
    assert "nothing loaded yet" in text and "Traceback" not in text
    report = json.loads(health.stdout)
    assert health.returncode == 1 and not report["healthy"]
    assert any("put the practice's exports in" in p for p in report["problems"]), report["problems"]
    assert not any("ended with" in p for p in report["problems"]), report["problems"]


def test_a_scheduled_refresh_on_an_empty_home_builds_nothing(tmp_path, no_secrets):
    """The nightly run (here queued by run_now, as the schedule queues it) on a home with nothing ever loaded."""
    from ptpulse.serve import Scheduler

    settings = get_settings(tmp_path / "home")
    settings.ensure()
    settings.incoming.mkdir(parents=True, exist_ok=True)
    scheduler = Scheduler(settings, ServiceConfig(schedule="off", poll_seconds=0.2, retries=3))
    assert "put the practice's exports in" in (read_status(settings) or {}).get("nothing_loaded", "")
    scheduler.run_now("schedule")
    scheduler.tick()
    scheduler.wait_running(60)
    state = read_status(settings) or {}
    assert state["last_run"]["result"] == "nothing_loaded", state["last_run"]
    assert state["last_run"]["alert"] is None
    assert not scheduler.queue  # no retry, no alert storm
    assert not settings.analytics_db.exists()
