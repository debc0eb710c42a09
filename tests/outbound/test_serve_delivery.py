"""`ptpulse serve` sends what quiet hours held back, with no page open: a real service process (scheduler only)
delivers a queued reminder to the local Twilio-shaped SMS server once it is due, writes it back to the task, and
records the check in logs/service.json."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from app.lib import actions, outreach


def test_serve_delivers_queued_messages_after_quiet_hours(tmp_path, sms_server):
    api, sms = sms_server
    home = tmp_path / "home"
    home.mkdir()
    app_db = home / "app.sqlite"
    templates, policy = outreach.load()
    policy = dataclasses.replace(policy, retry_wait_s=0.01)
    outreach.record_consent(app_db, "7", "sms", True, "intake form", "desk@practice.test")
    outreach.record_consent(app_db, "8", "sms", True, "intake form", "desk@practice.test")
    ahead = datetime.now() + timedelta(days=3)  # delivered by the service on the real clock: still ahead then
    who = pd.DataFrame(
        [
            {
                "task_id": f"confirm_high_risk:A{i}",
                "patient_id": str(i),
                "first_name": f"Pat{i}",
                "phone": f"+1555000000{i}",
                "clinic_name": "Riverside PT",
                "clinic_timezone": "America/Chicago",
                "appointment_time": ahead,
            }
            for i in (7, 8)
        ]
    )
    # asked for at 23:00 clinic time last night: both wait for 08:00 (long past now)
    night = datetime(2026, 3, 10, 23, 0, tzinfo=ZoneInfo("America/Chicago"))
    res = outreach.send(app_db, who, templates["appointment_reminder"], "sms", {"sms": sms}, "desk", night, policy)
    assert [r.status for r in res] == ["queued", "queued"]
    outreach.record_reply(app_db, "8", "STOP")  # patient 8 opted out while the message waited
    assert api.requests == []

    (home / "service.yml").write_text("deliver_seconds: 0.5\n", encoding="utf-8")
    settings = sms.settings
    env = dict(
        os.environ,
        PTPULSE_SECRETS_FILE=str(tmp_path / "no-secrets.toml"),
        PTPULSE_SMS_ACCOUNT_SID=settings.account_sid,
        PTPULSE_SMS_AUTH_TOKEN=settings.auth_token,
        PTPULSE_SMS_FROM=settings.sender,
        PTPULSE_SMS_BASE_URL=settings.base_url,
    )
    env.pop("PTPULSE_SMTP_HOST", None)
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "ptpulse.cli", "serve", "--home", str(home), "--no-app"]
    cmd += ["--schedule", "off", "--poll", "0.2"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=str(tmp_path))
    try:
        deadline = time.time() + 180  # a generous wait, not a timing: the process starts slowly on a busy box
        status: dict = {}
        while time.time() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                status = json.loads((home / "logs" / "service.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                status = {}
            if (status.get("outbound") or {}).get("sent"):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no delivery recorded:\n{log.read_text()[-3000:]}")
    finally:
        proc.terminate()
        proc.wait(30)
    assert [r["form"]["To"] for r in api.requests] == ["+15550000007"]  # the opted-out patient is not texted
    assert status["outbound"]["sent"] == 1 and status["outbound"]["skipped"] == 1
    assert status["outbound"]["channels"] == ["sms"]
    with sqlite3.connect(app_db) as con:
        rows = con.execute("select status, reason from messages order by message_id").fetchall()
    assert rows == [("sent", None), ("skipped", "opted out while queued for quiet hours")]
    (written,) = actions.history(app_db, "confirm_high_risk:A7")
    assert (written["action"], written["method"], written["outcome"]) == ("log_outreach", "sms", "left_message")
    assert "tok-secret" not in log.read_text()  # the provider's token never reaches the log
