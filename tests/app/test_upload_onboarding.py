"""Uploads that meet a running pipeline, and files that land nothing (review of the onboarding flow):
- an upload that lands at the end of a running refresh (the CLI releases the pipeline lock before its process
  exits) used to be attached to that old run and never built, while the page said "up to date";
- an upload during a long refresh (busy past the ingest's wait) said "Files landed 0 of 0", "No file was offered"
  and "upload again", though its files stay in incoming/ and the next refresh loads them;
- files from which nothing landed (a FHIR resource no source maps, a Bulk export's manifest, a CSV whose rows
  were all set aside) showed as "Landed" and counted as landed.
Real DuckDB, real `ptpulse ingest` / `ptpulse refresh` subprocesses, the page driven by AppTest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import duckdb
import pytest
from app_helpers import open_page, rendered_text, rerun, wait_refresh

from app.lib import audit, refresh, uploads
from ptpulse.core.config import get_settings
from ptpulse.core.lock import lock_holder

pytestmark = pytest.mark.slow

THERAPIST_HEADER = (
    "therapist_id,clinic_id,first_name,last_name,credential,npi,hired_on,terminated_on,weekly_hours,work_days,"
    "day_start,day_end,updated_at\n"
)


def _therapist(therapist_id: str, hired_on: str = "2024-01-02") -> str:
    return (
        f"{therapist_id},CL001,Late,Upload,DPT,1790627999,{hired_on},,36.00,Mon|Tue|Wed|Thu|Fri,07:00,14:45,"
        "2024-10-02 09:00:00\n"
    )


def _upload(at, home, files):
    at.file_uploader[0].set_value([(name, data, "text/csv") for name, data in files])
    rerun(at, home)
    at.button(key="upload_go").click()
    rerun(at, home)
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_upload_landing_at_the_end_of_a_running_refresh_is_built(built_home, copy_home):
    """The old run still shows as running (its process has not exited) though it released the lock: the
    upload lands, and a new refresh must build it; the page must not pass the old run off as its own."""
    home = copy_home(built_home)
    # the old run: started a minute ago, still alive, past its pipeline lock (nothing holds it)
    old = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        logs = home.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        old_log = logs / "refresh-old.log"
        old_log.write_text("refresh: lead scores 5/5\n")
        began = time.time() - 60
        (logs / "app_refresh.json").write_text(
            json.dumps(
                {
                    "pid": old.pid,
                    "log": str(old_log),
                    "actor": "someone-else@practice",
                    "started_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(began)),
                }
            )
        )
        assert refresh.status(home).running and lock_holder(home) is None

        at = open_page(home, "admin", "upload")
        _upload(at, home, [("therapists_late.csv", (THERAPIST_HEADER + _therapist("TH90001")).encode())])
        table = at.dataframe[0].value.set_index("file")
        assert table.loc["therapists_late.csv", "result"] == "Landed"

        current = refresh.status(home)
        assert current.log_path != str(old_log), "the upload was attached to the refresh that began before it"
        started = audit.recent(home.app_db).query("event == 'refresh.started'")
        assert len(started) == 1 and str(old_log) not in started["detail"].iloc[0]
    finally:
        os.kill(old.pid, signal.SIGTERM)
        old.wait()

    status = wait_refresh(home)
    assert status.ok, status.tail
    con = duckdb.connect(str(home.home / "analytics.duckdb"), read_only=True)
    try:
        built = con.execute("select count(*) from marts.dim_therapists where therapist_id = 'TH90001'").fetchone()
    finally:
        con.close()
    assert built[0] == 1
    rerun(at, home)
    assert any("up to date with your upload" in s.value for s in at.success)


def test_upload_while_the_pipeline_stays_busy_lists_each_file_as_waiting(tmp_path, monkeypatch):
    home = get_settings(tmp_path / "home").ensure()
    monkeypatch.setattr(uploads, "INGEST_WAIT_S", 1)  # the ingest's wait, shortened: the holder outlasts it
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from ptpulse.core.config import get_settings\n"
            "from ptpulse.core.lock import pipeline_lock\n"
            "with pipeline_lock(get_settings(sys.argv[1]), 'refresh'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(120)\n",
            str(home.home),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        at = open_page(home, "manager", "upload")
        _upload(
            at,
            home,
            [
                ("therapists_busy.csv", (THERAPIST_HEADER + _therapist("TB001")).encode()),
                ("referring_physicians.csv", b"physician_id,first_name\nRP1,Ann\n"),
            ],
        )
    finally:
        holder.terminate()
        holder.wait()
    table = at.dataframe[0].value.set_index("file")
    assert sorted(table.index) == ["referring_physicians.csv", "therapists_busy.csv"]
    assert set(table["result"]) == {uploads.WAITING}
    assert set(table["fix"]) == {"waiting: the pipeline is busy; it will be loaded by the next refresh"}
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Files landed"] == "0 of 2"
    text = rendered_text(at)
    assert "upload again" not in text and "No file was offered" not in text
    assert any("will be loaded by the next refresh" in w.value for w in at.warning)
    assert not at.error, [e.value for e in at.error]
    detail = json.loads(audit.recent(home.app_db).query("event == 'upload.ingested'")["detail"].iloc[0])
    assert detail["files"] == 2 and detail["waiting"] == 2
    assert len(list(home.incoming.rglob("therapists_busy.csv"))) == 1  # still queued for the next refresh


def test_files_that_land_nothing_say_why_and_are_not_counted_as_landed(tmp_path):
    home = get_settings(tmp_path / "home").ensure()
    at = open_page(home, "admin", "upload")
    coverage = json.dumps({"resourceType": "Coverage", "id": "cov1", "status": "active"}) + "\n"
    manifest = json.dumps({"transactionTime": "2024-10-02T00:00:00Z", "request": "x", "output": []})
    _upload(
        at,
        home,
        [
            ("Coverage.000.ndjson", coverage.encode()),
            ("manifest.json", manifest.encode()),
            ("therapists_bad.csv", (THERAPIST_HEADER + _therapist("TB901", "") + _therapist("TB902", "")).encode()),
        ],
    )
    table = at.dataframe[0].value.set_index("file")
    assert table.loc["Coverage.000.ndjson", "result"] == uploads.NOTHING_TO_LOAD
    assert "not mapped to any source" in table.loc["Coverage.000.ndjson", "fix"]
    assert table.loc["manifest.json", "result"] == uploads.NOTHING_TO_LOAD and table.loc["manifest.json", "fix"]
    bad = table.loc["therapists_bad.csv"]
    assert bad["result"] == uploads.ALL_SET_ASIDE and bad["why_set_aside"].startswith("all 2 rows set aside: ")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Files landed"] == "0 of 3", metrics
    assert "were read but landed no rows" in rendered_text(at)


def test_rows_left_out_by_the_profile_are_not_told_to_be_fixed():
    """WebPT cancellations are quarantined by design (`excluded_by_profile`): nothing to fix in the source."""
    saved = uploads.Saved(upload_id="x", folder=uploads.Path("/nowhere"))
    answer = {
        "file": "webpt_appointments.csv",
        "source": "scheduling_events",
        "status": "loaded",
        "rows_read": 100,
        "rows_landed": 90,
        "rows_quarantined": 10,
        "rows_duplicate": 0,
        "quarantine_by_rule": [{"rule": "excluded_by_profile", "column": "event_type", "rows": 10}],
    }
    row = uploads.result_table(saved, uploads.IngestOutcome(0, [answer], {}, 0.0)).iloc[0]
    assert row["result"] == "Landed" and "source system" not in row["fix"] and "nothing to fix" in row["fix"]
    mixed = dict(answer, quarantine_by_rule=[*answer["quarantine_by_rule"], {"rule": "required", "rows": 2}])
    mixed["rows_quarantined"] = 12
    row = uploads.result_table(saved, uploads.IngestOutcome(0, [mixed], {}, 0.0)).iloc[0]
    assert "source system" in row["fix"] and "nothing to fix" in row["fix"]
