"""Operational defects of the service, the probe, secret rotation and the digest, each reproduced without a build
(injected clocks, fake job children, a hand-made analytics file): a patient-named file never reaches an alert or
the status file; the digest reports the week before the day it is sent and says when the build does not cover it;
a hung refresh is unhealthy; rotation re-keys queued messages with their task's actions; a crashed export can be
put back; a busy lock is no attempt and no result; built_at is read as UTC."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ptpulse import notify
from ptpulse import serve as serve_mod
from ptpulse.core.config import get_settings
from ptpulse.health import health_report, served_build
from ptpulse.serve import Running, Scheduler, ServiceConfig, read_status

PATIENT_FILE = "Maria_Gonzalez_7f3c2a1e-0b1d-4c55-9e2a-1f0e6d8b9c77.json"
PATIENT_BITS = ("Maria", "Gonzalez", "7f3c2a1e")


class FakeProc:
    def __init__(self, rc: int):
        self.returncode, self.pid = rc, 999999

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        return self.returncode

    def terminate(self):
        pass

    def kill(self):
        pass


@pytest.fixture
def alerts(monkeypatch, no_secrets):
    sent: list[notify.Alert] = []

    def fake_send(alert, settings=None):
        sent.append(alert)
        return True, "alert emailed (test)"

    monkeypatch.setattr(notify, "send_alert", fake_send)
    return sent


def _scheduler(home: Path, results: list, clock: dict, **cfg):
    """A scheduler whose job children are fakes: each start takes the next result (None = a crash)."""
    settings = get_settings(home).ensure()
    s = Scheduler(settings, ServiceConfig(**cfg), clock=lambda: clock["t"])
    started: list[tuple[str, int]] = []

    def start(job):
        r = results.pop(0)
        n = len(started)
        rf, lf = settings.home / "logs" / f"fake-{n}.json", settings.home / "logs" / f"fake-{n}.log"
        lf.parent.mkdir(parents=True, exist_ok=True)
        lf.write_text("")
        if r is not None:
            rf.write_text(json.dumps(r))
        started.append((job.trigger, job.attempt))
        s.running = Running(job, FakeProc(0 if r is not None else -9), rf, serve_mod.now_utc(), lf)

    s._start = start
    return settings, s, started


BUSY = {"result": "busy", "holder": "another pipeline command"}
BUILD_FAILED = {
    "result": "build_failed",
    "exports": {},
    "files_loaded": 0,
    "build": {"ok": False, "build_id": None, "seconds": 1, "models": 0, "tests": 0, "message": "dbt build failed"},
}


# ------------------------------------------------------------------------------- 1: no file name in alerts or logs


def test_a_patient_named_file_never_reaches_the_alert_or_the_status_file(tmp_path, alerts, monkeypatch):
    import ptpulse.refresh

    settings = get_settings(tmp_path / "home").ensure()
    export = settings.incoming / "fhir_20261102"
    export.mkdir(parents=True)
    (export / PATIENT_FILE).write_text('{"resourceType": "Bundle", "entry": [')  # truncated: refused
    loose = settings.incoming / "Jose_Garcia_0b1d.json"  # a loose file is an export of its own
    loose.write_text('{"resourceType": "Bundle", "entry": [')
    monkeypatch.setattr(ptpulse.refresh, "run_build", lambda s: pytest.fail("nothing landed: no build expected"))
    settings.analytics_db.write_bytes(b"")  # a build is served: an incoming-only job with nothing loaded skips it

    result = serve_mod.run_job(settings, [export, loose], always_build=False)
    text = json.dumps(result)
    assert result["result"] == "load_failed"
    assert not any(bit in text for bit in (*PATIENT_BITS, "Jose", "Garcia")), text  # the job's result file too

    clock = {"t": time.time()}
    _, s, _ = _scheduler(settings.home, [result], clock, schedule="off", settle_seconds=0)
    s.queue.append(serve_mod.Job("incoming", [export, loose], False, due=clock["t"]))
    s.tick()
    s.tick()
    (alert,) = alerts
    body = alert.body()
    status = (settings.home / "logs" / "service.json").read_text()
    for bit in (*PATIENT_BITS, "Jose", "Garcia"):
        assert bit not in body and bit not in status, bit
    whats = [p.what for p in alert.problems]
    assert whats[0].startswith("fhir_20261102, file ") and any(w.startswith("single file 1") for w in whats)
    assert "is not valid JSON" in body  # the loader's message is kept, its file name is not
    last = read_status(settings)["last_run"]
    assert last["exports"] == ["fhir_20261102", "single file 1"]
    assert last["archived"]["fhir_20261102"].startswith("failed/") and last["archived"]["single file 1"].endswith("-*")


def test_scrub_file_names_removes_names_paths_and_file_like_words():
    text = "'Ann Lee_12.ndjson' and Maria_Gonzalez_7f3c.json refused; see /srv/data/incoming/x/Maria_Gonzalez_7f3c.json"
    out = notify.scrub_file_names(text, {"Maria_Gonzalez_7f3c"})
    assert "Maria" not in out and "Ann Lee" not in out and "/srv" not in out and "refused" in out


# ------------------------------------------------------------------------------------------- 2: the digest's week


def test_digest_reports_the_week_before_the_send_date_not_the_builds_as_of(tmp_path, monkeypatch, capsys):
    from app.lib import digest

    settings = get_settings(tmp_path / "home").ensure()
    settings.analytics_db.write_bytes(b"")
    seen = {}

    def compose(r, app_db, today, info=None):
        seen["today"] = today
        return digest.Digest(digest.last_full_week(today), pd.DataFrame(), pd.DataFrame(), None, "s")

    monkeypatch.setattr(digest, "DbReader", lambda *a, **k: None)
    monkeypatch.setattr(digest, "AnalyticsDb", lambda *a, **k: None)
    monkeypatch.setattr(digest, "build_info", lambda r: {"as_of": pd.Timestamp("2026-10-31 18:00")})
    monkeypatch.setattr(digest, "compose", compose)
    monkeypatch.setenv("PTPULSE_DEFAULT_TIMEZONE", "America/Chicago")
    assert digest.main(["--no-send"], settings=settings) == 0
    assert seen["today"] == datetime.now(UTC).astimezone(digest.practice_zone()).date()
    assert seen["today"] != date(2026, 10, 31)


def test_digest_says_plainly_when_the_build_does_not_cover_the_week(monkeypatch):
    from app.lib import digest

    monkeypatch.setenv("PTPULSE_DEFAULT_TIMEZONE", "America/Chicago")
    as_of, built = pd.Timestamp("2026-10-31 18:00"), pd.Timestamp("2026-11-02 08:00")  # Mon 02:00 Chicago, in UTC
    monday_nov_2 = digest.last_full_week(date(2026, 11, 2))
    assert (monday_nov_2.start, monday_nov_2.end) == (date(2026, 10, 26), date(2026, 11, 1))
    assert digest.coverage_notice(monday_nov_2, as_of, built) == ""  # closed on Sunday: the week is covered
    monday_nov_9 = digest.last_full_week(date(2026, 11, 9))  # the nightly refresh failed all week
    notice = digest.coverage_notice(monday_nov_9, as_of, built)
    assert notice.startswith("Data through Sat Oct 31 only") and "Nov 2–Nov 8" in notice
    d = digest.Digest(monday_nov_9, pd.DataFrame(), pd.DataFrame(), None, "PT Pulse weekly", stale=notice)
    assert d.text().splitlines()[2] == notice and notice in digest.email_html(d, False)


# --------------------------------------------------------------------------------------------- 3: a hung refresh


def _status(home: Path, **over) -> None:
    now = datetime.now(UTC)
    iso = serve_mod.iso
    state = {
        "version": 1,
        "pid": os.getpid(),
        "started_at": iso(now - timedelta(hours=12)),
        "stopped_at": None,
        "schedule": "0 2 * * *",
        "next_run": iso(now + timedelta(hours=14)),
        "poll_seconds": 5,
        "running": None,
        "pending": [],
        "last_run": {"result": "ok", "finished_at": iso(now - timedelta(hours=20))},
        "history": [],
        "updated_at": iso(now),
        **over,
    }
    (home / "logs").mkdir(parents=True, exist_ok=True)
    (home / "logs" / "service.json").write_text(json.dumps(state))


def test_a_refresh_running_past_the_limit_is_unhealthy(tmp_path, no_secrets):
    settings = get_settings(tmp_path / "home").ensure()
    now = datetime.now(UTC)
    _status(settings.home, running={"trigger": "schedule", "started_at": serve_mod.iso(now - timedelta(hours=10))})
    problems = health_report(settings)["problems"]
    assert any("running for 10.0 h (limit 4 h" in p for p in problems), problems
    _status(
        settings.home,
        running={"trigger": "schedule", "started_at": serve_mod.iso(now - timedelta(hours=1))},
        pending=[
            {"trigger": "incoming", "exports": ["a"], "attempt": 1, "due": serve_mod.iso(now - timedelta(hours=9))}
        ],
    )
    problems = health_report(settings)["problems"]
    assert any("has waited 9.0 h" in p for p in problems) and not any("running for" in p for p in problems)
    (settings.home / "service.yml").write_text("max_refresh_hours: 12\n")
    assert not any("h (limit" in p for p in health_report(settings)["problems"])


# ------------------------------------------------------------------------ 4: rotation re-keys the queued messages


def test_rotation_rekeys_messages_with_actions_and_is_idempotent(tmp_path):
    from ptpulse.core import outbound, secrets

    settings = get_settings(tmp_path / "home").ensure()
    with duckdb.connect(str(settings.raw_db)) as con:
        con.execute(
            "create schema raw.raw; create table raw.raw.patients(patient_id varchar); insert into raw.raw.patients values ('P1')"
        )
    old = secrets.load_key(secrets.ensure_key(settings))
    task = f"medicare_kx_threshold:{secrets.pseudonym_one(old, 'P1')}:2026"
    con = sqlite3.connect(settings.app_db)
    con.executescript(
        "create table actions(action_id integer primary key, task_id text, action text, actor text, acted_at text,"
        " payload text);"
    )
    con.executescript(outbound.MESSAGES_SCHEMA)
    con.execute("insert into actions(task_id, action, actor, acted_at) values (?, 'claim', 'a', 'now')", (task,))
    con.execute(
        "insert into messages(batch_id, task_id, patient_id, channel, template, status, actor, created_at, updated_at)"
        " values ('b', ?, 'P1', 'email', 't', 'queued', 'a', 'now', 'now')",
        (task,),
    )
    con.commit()
    con.close()

    rot = secrets.rotate_key(settings)
    new_task = f"medicare_kx_threshold:{secrets.pseudonym_one(secrets.load_key(rot.key_file), 'P1')}:2026"
    con = sqlite3.connect(settings.app_db)
    assert con.execute("select task_id from actions").fetchall() == [(new_task,)]
    assert con.execute("select task_id from messages").fetchall() == [(new_task,)]
    assert (rot.actions_rekeyed, rot.messages_rekeyed) == (1, 1)
    con.close()
    mapping = {secrets.pseudonym_one(old, "P1"): "ffffffffffffffff"}
    assert secrets.rekey_app_state(settings.app_db, mapping) == {"actions": 0, "messages": 0}  # re-run: nothing


# ---------------------------------------------------------------------- 5: a crashed export can be put back


def test_a_crashed_export_is_put_back_as_the_alert_says_and_picked_up(tmp_path, alerts):
    clock = {"t": time.time()}
    settings, s, started = _scheduler(
        tmp_path / "home", [None, None, None], clock, schedule="off", settle_seconds=0, retries=1, backoff_seconds=10
    )
    export = settings.incoming / "export_20261201"
    export.mkdir(parents=True)
    (export / "patients.csv").write_text("x\n")
    (export / ".done").write_text("")
    for _ in range(10):
        clock["t"] += 60
        s.tick()
    assert started[:2] == [("incoming", 1), ("incoming", 2)] and not export.exists()
    (alert,) = alerts
    fix = alert.problems[-1].fix
    command = fix.split("mv ", 1)[1].split(" (", 1)[0]
    src, dst = shlex.split(command)
    moved = list(settings.home.glob(src))
    assert len(moved) == 1 and dst == "incoming/"
    shutil.move(str(moved[0]), str(settings.home / dst))  # what the admin runs in the data folder
    clock["t"] += 60
    s.tick()
    assert started[-1] == ("incoming", 1)  # picked up again as a new export


# ------------------------------------------------------------------------ 6, 7: a busy lock is no attempt, no result


def test_busy_runs_neither_use_retries_nor_hide_the_last_failure(tmp_path, alerts):
    clock = {"t": time.time()}
    results = [BUSY, BUSY, BUSY, BUILD_FAILED, BUILD_FAILED, BUSY]
    settings, s, started = _scheduler(tmp_path / "home", results, clock, schedule="off", retries=1, backoff_seconds=10)
    s.run_now("schedule")
    for _ in range(200):
        clock["t"] += 30
        s.tick()
        if alerts:
            break
    assert started == [("schedule", 1)] * 4 + [("retry", 2)]  # 3 busy, then the 2 real attempts retries=1 allows
    assert "the build failed 2 time(s)" in alerts[0].problems[0].problem
    assert not health_report(settings)["healthy"]
    s.queue.append(serve_mod.Job("incoming", [], False, due=clock["t"]))  # then someone holds the lock
    clock["t"] += 30
    s.tick()
    s.tick()
    status = read_status(settings)
    assert status["last_busy"]["result"] == "busy" and status["last_run"]["result"] == "build_failed"
    report = health_report(settings)
    assert report["last_refresh"]["result"] == "build_failed"
    assert any("ended with build_failed" in p for p in report["problems"])


def test_health_skips_a_busy_last_run_left_by_an_older_status_file(tmp_path, no_secrets):
    settings = get_settings(tmp_path / "home").ensure()
    failed = {"result": "build_failed", "finished_at": "2026-12-01T02:10:00Z"}
    _status(settings.home, last_run={"result": "busy", "finished_at": "2026-12-01T03:00:00Z"}, history=[failed])
    assert any("ended with build_failed" in p for p in health_report(settings)["problems"])


# ------------------------------------------------------------------------------------ 8: built_at is UTC


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/Los_Angeles"])
def test_a_fresh_build_is_fresh_whatever_the_probes_time_zone(tmp_path, monkeypatch, zone):
    settings = get_settings(tmp_path / "home").ensure()
    built = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(minutes=30)  # stored UTC, no zone
    with duckdb.connect(str(settings.analytics_db)) as con:
        con.execute("create schema marts")
        con.execute(
            "create table marts.build_info as select 'b1' as build_id, ? as built_at, ? as as_of", [built, built]
        )
        con.execute("create table marts.source_coverage(source varchar, last_loaded_at timestamp)")
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        build, _ = served_build(settings)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    age_h = (datetime.now(UTC) - build["built_at"]).total_seconds() / 3600
    assert 0.4 < age_h < 0.6, age_h


def test_build_info_model_stores_built_at_in_utc():
    sql = (Path(__file__).parents[2] / "dbt_project/models/marts/platform/build_info.sql").read_text()
    assert "run_started_at" in sql and "local_now" not in sql
