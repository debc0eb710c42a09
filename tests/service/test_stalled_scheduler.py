"""A channel that never answers must not stop the scheduler, and a scheduler that stops moving must not pass
`ptpulse health` because its pid is alive.

Before: `ptpulse serve` sent due queued messages synchronously before each scheduler tick, so an SMS gateway
that accepted the connection and never replied held the loop for minutes (20 s timeout x retries x messages):
no export was picked up, the status file was not even written at start-up, and health said healthy."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from app.lib import outreach, service_status
from ptpulse import serve
from ptpulse.core import service_clock
from ptpulse.core.config import get_settings
from ptpulse.health import health_report


@pytest.fixture
def hung_gateway():
    """A TCP server on 127.0.0.1 that accepts every connection and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(50)
    held: list = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept())
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn, _ in held:
            conn.close()
        server.close()


def _queue_due_messages(app_db, n: int = 4) -> None:
    """n reminders held for quiet hours long ago, all due now (the pages' own sending code queues them)."""
    templates, policy = outreach.load()
    for i in range(n):
        outreach.record_consent(app_db, str(i), "sms", True, "intake", "desk")
    who = pd.DataFrame(
        [
            {
                "task_id": f"confirm_high_risk:A{i}",
                "patient_id": str(i),
                "first_name": "Pat",
                "phone": f"+1555000000{i}",
                "clinic_name": "Plano",
                "clinic_timezone": "America/Chicago",
                # ahead of the machine's clock: a reminder whose appointment has passed is never delivered
                "appointment_time": (datetime.now() + timedelta(days=3)).replace(hour=9, minute=30, microsecond=0),
            }
            for i in range(n)
        ]
    )
    night = datetime(2020, 3, 10, 22, 0).astimezone()
    outreach.send(app_db, who, templates["appointment_reminder"], "sms", {}, "desk", night, policy)
    with sqlite3.connect(app_db) as con:
        con.execute("update messages set status = 'queued', reason = null")
        assert con.execute("select count(*) from messages where status = 'queued'").fetchone()[0] == n


def _status(home) -> dict:
    try:
        return json.loads((home / "logs" / "service.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def test_a_hung_sms_gateway_does_not_stop_exports_being_picked_up(
    built_home, copy_home, small_practice, hung_gateway, no_secrets, tmp_path
):
    settings = copy_home(built_home)
    home = settings.home
    (home / "logs").mkdir(exist_ok=True)
    (home / "logs" / "service.json").unlink(missing_ok=True)
    _queue_due_messages(settings.app_db)
    env = dict(
        os.environ,
        PTPULSE_SMS_ACCOUNT_SID="AC1",
        PTPULSE_SMS_AUTH_TOKEN="t",
        PTPULSE_SMS_FROM="+15550000000",
        PTPULSE_SMS_BASE_URL=hung_gateway,
    )
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "ptpulse.cli", "serve", "--no-app", "--home", str(home)]
    cmd += ["--schedule", "off", "--settle", "2", "--poll", "0.5"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=str(tmp_path))
    try:
        deadline = time.time() + 90  # start-up (slow on a loaded box): the status file is written first
        while _status(home).get("pid") != proc.pid:
            assert time.time() < deadline and proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(2)  # the delivery check has started and is stuck on the gateway
        export = settings.incoming / "tonight"
        export.mkdir(parents=True, exist_ok=True)
        shutil.copy(small_practice / "therapists.csv", export / "therapists.csv")
        (export / ".done").touch()
        deadline = time.time() + 120  # the old loop was stuck for 20 s x 3 attempts x 4 messages = 240 s
        while not (_status(home).get("running") or _status(home).get("last_run")):
            assert time.time() < deadline, f"export not picked up:\n{log.read_text()[-3000:]}"
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        report = health_report(get_settings(home))
        assert not any("alive but has" in p for p in report["problems"]), report["problems"]
    finally:
        proc.terminate()
        proc.wait(60)
    with sqlite3.connect(settings.app_db) as con:  # the stuck messages were never marked failed or sent twice
        assert con.execute("select count(*) from messages where status = 'sent'").fetchone()[0] == 0


def test_delivery_tick_returns_at_once_and_reports_when_the_check_ends(tmp_path, hung_gateway, no_secrets, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    settings = get_settings(home)
    monkeypatch.setenv("PTPULSE_SMS_ACCOUNT_SID", "AC1")
    monkeypatch.setenv("PTPULSE_SMS_AUTH_TOKEN", "t")
    monkeypatch.setenv("PTPULSE_SMS_FROM", "+15550000000")
    monkeypatch.setenv("PTPULSE_SMS_BASE_URL", hung_gateway)
    _queue_due_messages(settings.app_db, n=1)
    delivery = serve.QueuedDelivery(settings, every_s=60, budget_s=0.5)
    started = time.monotonic()
    assert delivery.tick() is False  # started, not finished
    assert time.monotonic() - started < 1.0
    time.sleep(0.8)
    assert delivery.tick() is True and "stalled_since" in delivery.status  # over budget: shown, not waited for
    assert delivery.tick() is False  # said once


def test_health_and_data_health_call_a_silent_scheduler_stuck(tmp_path, no_secrets):
    settings = get_settings(tmp_path / "home")
    scheduler = serve.Scheduler(settings, serve.ServiceConfig(schedule="off", poll_seconds=1))
    status = serve.read_status(settings)  # written at start-up, before the first tick
    assert status["pid"] == os.getpid() and status["updated_at"] and status["poll_seconds"] == 1

    now = datetime.now(UTC)
    assert not any("alive but has" in p for p in health_report(settings, now)["problems"])
    level, _ = service_status.scheduler_state(status, now)
    assert level == "ok"

    later = now + timedelta(
        seconds=service_clock.stale_after_s(status) + 5
    )  # the loop stopped ticking; pid still alive
    problems = health_report(settings, later)["problems"]
    assert any("alive but has not updated for" in p for p in problems), problems
    level, sentence = service_status.scheduler_state(status, later)
    assert level == "error" and "may be stuck" in sentence
    scheduler.stop()
    assert service_status.stale_after_s is service_clock.stale_after_s  # one rule for health and the app
