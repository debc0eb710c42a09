"""Data health shows the refresh service from a real logs/service.json (docs/interfaces.md section 6): scheduler
state, last run with its problems and alert, next run, pending retries, history, and sources against their
expected cadence with stale ones as an error."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

from tests.app.app_helpers import open_page, rendered_text


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _status(now: datetime, pid: int, stopped: bool = False) -> dict:
    problem = {
        "what": "claims.csv",
        "problem": "refused: column claim_id is missing",
        "fix": "fix the export and drop the corrected file into incoming/ again",
    }
    failed = {
        "trigger": "incoming",
        "attempt": 1,
        "exports": ["export-1"],
        "archived": {"export-1": "failed/20261130-export-1"},
        "started_at": _iso(now - timedelta(hours=3, minutes=5)),
        "finished_at": _iso(now - timedelta(hours=3)),
        "result": "load_failed",
        "files_loaded": 4,
        "build_id": None,
        "build_seconds": None,
        "problems": [problem],
        "alert": {"sent": True, "detail": "alert emailed", "at": _iso(now - timedelta(hours=3))},
        "log": "/tmp/x.log",
    }
    ok = {**failed, "trigger": "schedule", "result": "ok", "problems": [], "alert": None, "files_loaded": 9}
    ok["finished_at"] = _iso(now - timedelta(hours=20))
    return {
        "version": 1,
        "pid": pid,
        "started_at": _iso(now - timedelta(days=2)),
        "stopped_at": _iso(now - timedelta(hours=1)) if stopped else None,
        "updated_at": _iso(now),
        "schedule": "0 2 * * *",
        "next_run": _iso(now + timedelta(hours=5)),
        "cadence_hours": {"charges": 0.001, "claims": 48, "clinics": None},
        "max_build_age_hours": 36,
        "running": None,
        "pending": [{"trigger": "retry", "exports": [], "attempt": 2, "due": _iso(now + timedelta(minutes=4))}],
        "last_run": failed,
        "history": [failed, ok],
        "last_success": ok["finished_at"],
        "app": {"url": "http://127.0.0.1:8501", "pid": pid, "restarts": 0},
    }


def test_data_health_shows_the_service_and_stale_sources(built_home, copy_home):
    home = copy_home(built_home)
    now = datetime.now(UTC)
    (home.home / "logs").mkdir(exist_ok=True)
    (home.home / "logs" / "service.json").write_text(json.dumps(_status(now, os.getpid())), encoding="utf-8")

    at = open_page(home, "admin", "data_health")
    assert not at.exception
    successes = [s.value for s in at.success]
    assert "The scheduler is running." in successes
    errors = " ".join(e.value for e in at.error)
    assert "1 problem(s)" in errors
    assert "Stale: Charges export" in errors  # 0.001 h cadence: every load is too old
    assert "Claims" not in errors.split("Stale:")[1].split("had no load")[0]  # 48 h: fresh
    metrics = {m.label: m.value for m in at.metric}
    assert "(in 5 h)" in metrics["Next scheduled run"] or "(in 4 h)" in metrics["Next scheduled run"]
    assert "(20 h ago)" in metrics["Last success"]
    assert metrics["Pending retries"] == "1"
    text = rendered_text(at)
    for expected in (
        "Result: a file was refused",
        "Alert: emailed to the admin",
        "refused: column claim_id is missing",
        "fix the export and drop the corrected file",
        "export dropped in incoming/",
        "succeeded",
        "Not checked",
    ):
        assert expected in text, expected
    tables = {tuple(df.value.columns): df.value for df in at.dataframe}
    cadence = tables[("Source", "Last loaded", "Expected every", "Status")]
    by_source = cadence.set_index("Source")["Status"]  # sources as the practice knows its exports
    assert by_source["Charges export (or 837P claim files)"] == "Stale"
    assert by_source["Claims export (or 837P claim files)"] == "Fresh"
    history = tables[("Finished", "Trigger", "Result", "Files loaded", "Problems", "Alert")]
    assert history["Result"].tolist() == ["a file was refused", "succeeded"]
    for table in tables.values():  # plain words: no None / nan / NaT in any cell
        cells = set(table.astype(str).to_numpy().ravel())
        assert not cells & {"None", "nan", "NaT", "<NA>"}, cells


def test_data_health_says_when_the_scheduler_stopped_or_never_ran(built_home, copy_home):
    home = copy_home(built_home)
    at = open_page(home, "admin", "data_health")
    assert not at.exception
    assert any("No scheduler runs for this data folder" in i.value for i in at.info)

    (home.home / "logs").mkdir(exist_ok=True)
    status = home.home / "logs" / "service.json"
    status.write_text(json.dumps(_status(datetime.now(UTC), os.getpid(), stopped=True)), encoding="utf-8")
    at = open_page(home, "admin", "data_health")
    assert any("The scheduler is stopped" in w.value for w in at.warning)

    dead = _status(datetime.now(UTC), 2**22 + 12345)  # a pid that is not running, no clean stop
    status.write_text(json.dumps(dead), encoding="utf-8")
    at = open_page(home, "admin", "data_health")
    assert any("did not stop cleanly" in e.value for e in at.error)
