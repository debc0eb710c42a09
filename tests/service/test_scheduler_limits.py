"""Three things the service must do on its own, measured on the real Scheduler and the real loader:
- a refresh running longer than max_refresh_hours is stopped (it would hold the lock and block every later refresh),
  reported as `timed_out`, alerted and not retried; its export goes to failed/;
- a restart inside the hour the clocks repeat does not run the night again (the slot that fired is kept);
- the job's log (logs/service-job-*.log) names no data file: exporters name files after patients."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ptpulse.core.config import get_settings
from ptpulse.serve import Job, Running, Scheduler, ServiceConfig, _log_without_file_names, now_utc
from tests.ingestion.ingest_helpers import example_row, write_csv

CHICAGO = ZoneInfo("America/Chicago")


def test_a_refresh_past_max_refresh_hours_is_stopped_reported_and_not_retried(tmp_path):
    settings = get_settings(tmp_path / "home")
    settings.ensure()
    export = settings.incoming / "nightly"
    export.mkdir(parents=True)
    write_csv(export, "payers.csv", [example_row("payers")])
    clock = {"now": 1_000_000.0}
    s = Scheduler(settings, ServiceConfig(schedule="", max_refresh_hours=2, retries=3), clock=lambda: clock["now"])
    hung = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    logs = settings.home / "logs"
    logs.mkdir(exist_ok=True)
    s.running = Running(
        Job("schedule", [export], True), hung, logs / "job.json", now_utc(), logs / "job.log", clock["now"]
    )
    try:
        clock["now"] += 1.5 * 3600
        s.tick()
        assert s.running is not None and hung.poll() is None  # within the limit: left alone
        clock["now"] += 1.0 * 3600
        s.tick()
        assert hung.poll() is not None, "the hung refresh was not stopped"
    finally:
        if hung.poll() is None:
            hung.kill()
    assert s.running is None
    last = s.state["last_run"]
    assert last["result"] == "timed_out"
    assert "max_refresh_hours (2 h)" in last["problems"][0]["problem"]
    assert "previous build is still served" in last["problems"][0]["problem"]
    assert last["alert"] is not None  # an alert was composed (sent or not: no SMTP server here)
    assert not any(j.trigger == "retry" for j in s.queue)  # it would hang again: a person looks first
    assert not export.exists() and (settings.incoming / "failed").exists()  # the export waits in failed/


def test_a_restart_inside_the_repeated_hour_does_not_run_the_night_again(tmp_path, chicago):
    settings = get_settings(tmp_path / "home")
    config = ServiceConfig(schedule="30 1 * * *")
    clock = {"now": datetime(2026, 10, 31, 20, 0, tzinfo=CHICAGO).timestamp()}
    first = Scheduler(settings, config, clock=lambda: clock["now"])
    started = []
    first._start = lambda job: started.append(job.trigger)
    clock["now"] = datetime(2026, 11, 1, 6, 31, tzinfo=UTC).timestamp()  # 01:31 CDT: the night's run fires
    first.tick()
    assert started == ["schedule"]
    # the service restarts at 01:10 CST, an hour later on the clock but the same wall time again
    clock["now"] = datetime(2026, 11, 1, 7, 10, tzinfo=UTC).timestamp()
    second = Scheduler(settings, config, clock=lambda: clock["now"])
    assert second.next_run.astimezone(CHICAGO).replace(tzinfo=None) == datetime(2026, 11, 2, 1, 30)
    second._start = lambda job: started.append(job.trigger)
    for minutes in range(0, 120, 5):  # 01:10 .. 03:10 CST
        clock["now"] = datetime(2026, 11, 1, 7, 10, tzinfo=UTC).timestamp() + minutes * 60
        second.tick()
        second.queue.clear()
    assert started == ["schedule"]
    # and an ordinary restart earlier in the evening still runs the night
    clock["now"] = datetime(2026, 11, 1, 20, 0, tzinfo=CHICAGO).timestamp()
    third = Scheduler(settings, config, clock=lambda: clock["now"])
    assert third.next_run.astimezone(CHICAGO).replace(tzinfo=None) == datetime(2026, 11, 2, 1, 30)


def test_the_job_log_names_no_data_file(tmp_path, capfd):
    from ingestion.loader import ingest

    settings = get_settings(tmp_path / "home")
    settings.ensure()
    export = tmp_path / "Maria_Gonzalez_export"
    export.mkdir()
    write_csv(export, "payers_Maria_Gonzalez_7f3c.csv", [example_row("payers")])
    write_csv(export, "Jose Garcia_99.csv", [example_row("payers")])  # no source of that name: refused
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        _log_without_file_names([export])
        results = ingest([export], settings)
        logging.getLogger("ptpulse.test").info("read %s", export / "payers_Maria_Gonzalez_7f3c.csv")
    finally:
        root.handlers[:], root.level = saved
    out = capfd.readouterr().out
    assert {r.status for r in results} >= {"loaded"}
    assert "load " in out and "landed" in out  # the loader's own lines are there
    for name in ("Maria_Gonzalez", "Jose Garcia", str(tmp_path)):
        assert name not in out
