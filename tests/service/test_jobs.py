"""The scheduler's refresh jobs for real: a child process ingests into raw.duckdb and builds with dbt under the
pipeline lock; failures email the admin through a real SMTP server; `ptpulse health` reports each state."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from ptpulse.cli import app as cli
from ptpulse.core.config import get_settings
from ptpulse.core.lock import pipeline_lock
from ptpulse.health import health_report
from ptpulse.serve import Scheduler, ServiceConfig, read_status


def _health(home) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["health", "--json", "--home", str(home)])
    return result.exit_code, json.loads(result.stdout)


def test_corrupt_export_is_alerted_moved_to_failed_and_reported_unhealthy(built_home, copy_home, smtp_inbox):
    settings = copy_home(built_home)
    code, report = _health(settings.home)
    assert code == 0 and report["healthy"], report["problems"]
    assert report["served_build"]["build_id"] and report["lock"] == {"held": False, "holder": None}

    export = settings.incoming / "nightly-2026-11-30"
    export.mkdir(parents=True)
    (export / "clinics.csv").write_text("clinic_id,nonsense\nC001,1\n")  # the export's clinics file is broken
    (export / ".done").write_text("")
    scheduler = Scheduler(settings, ServiceConfig(schedule="off", settle_seconds=60, retries=0))
    scheduler.tick()
    assert scheduler.running is not None and scheduler.state["running"]["exports"] == ["nightly-2026-11-30"]
    scheduler.wait_running(180)

    last = read_status(settings)["last_run"]
    assert last["result"] == "load_failed" and last["build_id"] is None  # nothing landed: no build
    assert last["archived"] == {"nightly-2026-11-30": last["archived"]["nightly-2026-11-30"]}
    assert last["archived"]["nightly-2026-11-30"].startswith("failed/")
    assert not export.exists() and (settings.incoming / last["archived"]["nightly-2026-11-30"] / "clinics.csv").exists()
    assert last["alert"]["sent"], last["alert"]

    (msg,) = smtp_inbox.messages
    body = msg.get_payload(decode=True).decode()
    assert "refresh needs attention" in msg["Subject"]
    # a file by its export folder and number, never its name (exporters name files after patients)
    assert re.search(r"nightly-2026-11-30, file \d+", body) and "clinics.csv" not in body
    assert "problem: refused: (file): missing required column(s)" in body and "fix:" in body
    assert "C001" not in body  # a value from the file never leaves in an alert

    code, report = _health(settings.home)
    assert code == 1 and any("ended with load_failed" in p for p in report["problems"])
    assert report["scheduler"]["running"] is True and report["last_refresh"]["result"] == "load_failed"
    scheduler.stop()
    code, report = _health(settings.home)
    assert any("scheduler (`ptpulse serve`) is not running" in p for p in report["problems"])


def test_health_reports_stale_sources_old_build_and_the_lock(built_home, copy_home, no_secrets):
    settings = copy_home(built_home)
    (settings.home / "service.yml").write_text("max_build_age_hours: 36\ncadence_hours: {marketing_spend: null}\n")
    later = datetime.now(UTC) + timedelta(days=3)
    report = health_report(settings, now=later)
    assert not report["healthy"]
    stale = {s["source"] for s in report["sources"] if s["stale"]}
    assert {"charges", "scheduling_events", "intake_events"} <= stale
    assert "marketing_spend" not in stale and "clinics" not in stale  # not checked / reference list
    assert any("served build is 7" in p for p in report["problems"])
    assert any(p.startswith("stale source(s)") and "charges" in p for p in report["problems"])
    with pipeline_lock(settings, "refresh"):
        held = health_report(settings)["lock"]
    assert held["held"] and "ptpulse refresh" in held["holder"]
    assert health_report(settings)["healthy"]

    empty = get_settings(settings.home.parent / "empty").ensure()
    code, report = _health(empty.home)
    assert code == 1 and report["served_build"] is None
    # nothing was ever loaded there: the problem says where the exports go (a refresh would build nothing)
    (problem,) = report["problems"]
    assert problem.startswith("nothing loaded yet") and f"put the practice's exports in {empty.incoming}" in problem


def test_the_lock_keeps_a_second_refresh_out_and_it_retries_with_backoff(tmp_path, no_secrets):
    settings = get_settings(tmp_path / "home").ensure()
    clock = {"t": datetime(2026, 11, 30, 1, 59, 59).astimezone().timestamp()}
    scheduler = Scheduler(settings, ServiceConfig(schedule="0 2 * * *", backoff_seconds=30), clock=lambda: clock["t"])
    scheduler.tick()
    assert scheduler.running is None and scheduler.queue == []  # not yet 02:00
    with pipeline_lock(settings, "refresh"):  # someone runs `ptpulse refresh` by hand
        clock["t"] += 1
        scheduler.tick()
        assert scheduler.running is not None and scheduler.running.job.trigger == "schedule"
        scheduler.wait_running(120)
    status = read_status(settings)
    # a busy lock is no result (last_run keeps the last real one) and no attempt (the retry is the same attempt)
    assert status["last_run"] is None and status["last_busy"]["result"] == "busy"
    assert status["last_busy"]["alert"] is None and status["history"][0]["result"] == "busy"
    assert not settings.analytics_db.exists() and not settings.raw_db.exists()  # the job did nothing
    (retry,) = scheduler.queue
    assert (retry.attempt, retry.busy, retry.due) == (1, 1, clock["t"] + 30)
    assert status["pending"][0]["attempt"] == 1
    assert status["next_run"] == scheduler.state["next_run"]  # tomorrow 02:00, one day after the first
    nxt = datetime.fromisoformat(status["next_run"].replace("Z", "+00:00"))
    assert timedelta(hours=23) < nxt - datetime.fromtimestamp(clock["t"], UTC) <= timedelta(hours=24, seconds=1)


@pytest.mark.slow
def test_failed_build_is_alerted_after_its_retries(tmp_path, smtp_inbox):
    settings = get_settings(tmp_path / "home").ensure()
    settings.raw_db.write_bytes(b"\x00not a duckdb file" * 512)  # injected failure: dbt cannot attach raw
    scheduler = Scheduler(settings, ServiceConfig(schedule="off", retries=0))
    scheduler.run_now()
    scheduler.tick()
    scheduler.wait_running(300)
    last = read_status(settings)["last_run"]
    assert last["result"] == "build_failed" and last["trigger"] == "manual"
    assert [p["what"] for p in last["problems"]] == ["dbt build"]
    (msg,) = smtp_inbox.messages
    body = msg.get_payload(decode=True).decode()
    assert "dbt build" in body and "the previous build is still served" in body and "`ptpulse build`" in body
