"""The Work queue on the clinic's clock and per occurrence, on the built two-clinic practice (clinics in
America/Chicago) served by a server whose clock is UTC, as a container's is:

- an SLA countdown, a snooze's wake-up and the snooze date picker use "now" on the clinic's wall clock (the due
  times and snooze ends are written in it), not the server's;
- an action from a form names the occurrence of the task it was taken on (the build's created_at).
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb
import pytest
from multi_practice import build_multi, open_page, run, writable

from app.lib import actions


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    return build_multi(tmp_path_factory)


@pytest.fixture
def server_in_utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("PTPULSE_DEFAULT_TIMEZONE", raising=False)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _row(at, task_id: str):
    frame = at.dataframe[0].value
    hit = frame[frame["task_id"] == task_id]
    return None if hit.empty else hit.iloc[0]


def test_sla_snooze_and_picker_run_on_the_clinics_clock(multi, tmp_path, server_in_utc):
    home = writable(multi, tmp_path / "home")
    clinic_now = datetime.now(ZoneInfo("America/Chicago")).replace(tzinfo=None, microsecond=0)
    with duckdb.connect(str(home.analytics_db)) as con:
        assert con.execute("select distinct timezone from marts.dim_clinics").fetchall() == [("America/Chicago",)]
        due, snoozed = (
            r[0]
            for r in con.execute(
                "select task_id from marts.work_queue_candidates where clinic_id = 'CL001' and queue = 'front_desk' "
                "order by queue_rank limit 2"
            ).fetchall()
        )
        # current data (as a nightly build's): 30 minutes old; one task due in 2 h on the clinic's clock
        con.execute("update marts.build_info set as_of = ?", [clinic_now - timedelta(minutes=30)])
        con.execute(
            "update marts.work_queue_candidates set due_at = ? where task_id = ?",
            [clinic_now + timedelta(hours=2), due],
        )
    # snoozed until an hour from now at the clinic (already past on the server's UTC wall clock)
    until = (clinic_now + timedelta(hours=1)).isoformat()
    actions.record(home.app_db, snoozed, "snooze", "desk@clinic.com", {"until": until}, "front_desk")

    at = open_page(home, "front_desk", "work_queue", clinics="CL001")
    assert _row(at, due)["sla"] == "due in 2 h"  # not "overdue by 4 h" (UTC's wall clock read as Chicago's)
    assert _row(at, snoozed) is None  # still snoozed at the clinic: not in the Open view
    at.segmented_control(key="wq_view").set_value("Snoozed")
    run(at, home)
    assert _row(at, snoozed)["status_label"] == "Snoozed"
    picker = at.date_input(key="wq_until")
    assert picker.value == (clinic_now + timedelta(days=1)).date()  # tomorrow at the clinic, not on the server
    assert picker.min == clinic_now.date()


def test_a_form_action_names_the_occurrence_it_was_taken_on(multi, tmp_path):
    home = writable(multi, tmp_path / "home")
    at = open_page(home, "front_desk", "work_queue", clinics="CL001")
    task_id = at.selectbox(key="wq_task").value
    at.radio(key="wq_method").set_value("call")
    at.selectbox(key="wq_outcome").set_value("no_answer")
    (submit,) = [b for b in at.button if b.label == "Log outreach"]
    submit.click()
    run(at, home)
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        (created,) = con.execute(
            "select created_at from marts.work_queue_candidates where task_id = ?", [task_id]
        ).fetchone()
    with sqlite3.connect(home.app_db) as con:
        (payload,) = con.execute("select payload from actions where task_id = ?", (task_id,)).fetchone()
    assert json.loads(payload)["occurrence"] == created.replace(microsecond=0).isoformat()
    assert _row(at, task_id)["last_outreach"] == "call: No answer"


def test_each_clinic_on_its_own_clock(multi, tmp_path, server_in_utc):
    """One queue over a Chicago and a New York clinic: each task's countdown runs on its own clinic's clock; the
    ranking is the one ranking of the whole queue."""
    home = writable(multi, tmp_path / "home")
    chicago = datetime.now(ZoneInfo("America/Chicago")).replace(tzinfo=None, microsecond=0)
    new_york = datetime.now(ZoneInfo("America/New_York")).replace(tzinfo=None, microsecond=0)
    with duckdb.connect(str(home.analytics_db)) as con:
        con.execute("update marts.dim_clinics set timezone = 'America/New_York' where clinic_id = 'CL002'")
        con.execute("update marts.build_info set as_of = ?", [chicago - timedelta(minutes=30)])
        due = {}
        for clinic, now in (("CL001", chicago), ("CL002", new_york)):
            (due[clinic],) = con.execute(
                "select task_id from marts.work_queue_candidates where clinic_id = ? and queue = 'front_desk' "
                "order by queue_rank limit 1",
                [clinic],
            ).fetchone()
            con.execute(
                "update marts.work_queue_candidates set due_at = ? where task_id = ?",
                [now + timedelta(hours=2), due[clinic]],
            )
    at = open_page(home, "front_desk", "work_queue")
    assert {c: _row(at, t)["sla"] for c, t in due.items()} == {"CL001": "due in 2 h", "CL002": "due in 2 h"}
    frame = at.dataframe[0].value
    assert frame["rank"].tolist() == list(range(1, len(frame) + 1))
    assert set(frame["clinic_id"]) == {"CL001", "CL002"}
