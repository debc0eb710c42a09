"""The actions store with a real SQLite file: validation, latest-state fold, concurrent writers."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from multiprocessing import get_context
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from app.lib import actions, audit


def test_record_and_fold_latest_wins(tmp_path):
    db = tmp_path / "app.sqlite"
    actions.record(db, "uncontacted:R1", "claim", "ann", acted_at="2025-01-01T10:00:00+00:00")
    actions.record(
        db,
        "uncontacted:R1",
        "log_outreach",
        "ann",
        {"method": "call", "outcome": "no_answer"},
        acted_at="2025-01-01T10:05:00+00:00",
    )
    actions.record(
        db, "uncontacted:R1", "snooze", "bob", {"until": "2025-01-03T09:00:00"}, acted_at="2025-01-01T11:00:00+00:00"
    )
    state = actions.task_states(db)["uncontacted:R1"]
    assert state.status == "snoozed"
    assert state.assignee == "ann"
    assert state.outreach_count == 1
    assert state.last_outreach == "call: No answer"
    assert state.last_actor == "bob"
    assert not actions.is_visible(state, "2025-01-02T00:00:00")
    assert actions.is_visible(state, "2025-01-04T00:00:00")


def test_closing_outcome_and_confirm_finish_a_task(tmp_path):
    db = tmp_path / "app.sqlite"
    actions.record(db, "t1", "log_outreach", "ann", {"method": "sms", "outcome": "scheduled"})
    actions.record(db, "t2", "confirm", "ann")
    actions.record(db, "t3", "mark_lost", "ann", {"reason": "Moved away"})
    states = actions.task_states(db, ["t1", "t2", "t3", "t4"])
    assert states["t1"].status == "done"
    assert states["t2"].status == "done"
    assert states["t3"].status == "lost" and states["t3"].lost_reason == "Moved away"
    assert "t4" not in states
    assert actions.is_visible(None, "2025-01-01")
    # fewer ids than actions (a temp table of the ids) and more (every action read, the wanted kept): same states
    assert actions.task_states(db, ["t3", "t1"]) == {t: states[t] for t in ("t1", "t3")}


@pytest.mark.parametrize(
    "action,payload,message",
    [
        ("fly", {}, "unknown action"),
        ("assign", {}, "assignee"),
        ("log_outreach", {"method": "fax", "outcome": "no_answer"}, "method"),
        ("log_outreach", {"method": "call", "outcome": "maybe"}, "outcome"),
        ("snooze", {"until": "next tuesday"}, "ISO"),
        ("mark_lost", {}, "reason"),
    ],
)
def test_invalid_actions_are_refused(tmp_path, action, payload, message):
    with pytest.raises(actions.ActionError, match=message):
        actions.record(tmp_path / "app.sqlite", "t1", action, "ann", payload)
    assert actions.task_states(tmp_path / "app.sqlite") == {}


def test_store_is_wal_and_matches_the_interface(tmp_path):
    db = tmp_path / "app.sqlite"
    actions.record(db, "t1", "claim", "ann", role="front_desk")
    con = sqlite3.connect(db)
    assert con.execute("pragma journal_mode").fetchone()[0] == "wal"
    cols = [r[1] for r in con.execute("pragma table_info(actions)")]
    assert cols == ["action_id", "task_id", "action", "actor", "acted_at", "payload"]
    audit_cols = [r[1] for r in con.execute("pragma table_info(audit_log)")]
    assert audit_cols == ["id", "actor", "role", "event", "detail", "at"]
    ((event, role),) = con.execute("select event, role from audit_log").fetchall()
    assert event == "action.claim" and role == "front_desk"


def test_two_users_on_one_task_both_recorded_latest_shown(tmp_path):
    db = tmp_path / "app.sqlite"
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(actor: str, action: str, payload: dict) -> None:
        try:
            barrier.wait()
            for _ in range(25):
                actions.record(db, "shared:1", action, actor, payload)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=("ann", "log_outreach", {"method": "call", "outcome": "no_answer"})),
        threading.Thread(target=worker, args=("bob", "claim", {})),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    hist = actions.history(db, "shared:1")
    assert len(hist) == 50
    assert {h["actor"] for h in hist} == {"ann", "bob"}
    state = actions.task_states(db)["shared:1"]
    assert state.actions == 50
    assert state.last_actor == hist[-1]["actor"]


def _write_many(path: str, actor: str, n: int) -> None:
    from pathlib import Path

    for i in range(n):
        actions.record(Path(path), f"task:{i % 5}", "assign", actor, {"assignee": actor})


def test_concurrent_writes_from_two_processes(tmp_path):
    db = tmp_path / "app.sqlite"
    actions.record(db, "warmup", "claim", "x")
    ctx = get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(db), who, 40)) for who in ("ann", "bob")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    con = sqlite3.connect(db)
    assert con.execute("select count(*) from actions where task_id like 'task:%'").fetchone()[0] == 80
    assert con.execute("select count(*) from audit_log").fetchone()[0] == 81


def test_audit_log_records_exports(tmp_path):
    db = tmp_path / "app.sqlite"
    audit.log(db, "ann@x", "owner", "export.identified", {"table": "drill", "rows": 3})
    df = audit.recent(db)
    assert df.iloc[0]["event"] == "export.identified"
    assert '"rows": 3' in df.iloc[0]["detail"]


def test_assignees_lists_claimers_and_assignees(tmp_path):
    db = tmp_path / "app.sqlite"
    actions.record(db, "t1", "claim", "ann")
    actions.record(db, "t2", "assign", "ann", {"assignee": "bob"})
    assert actions.assignees(db) == ["ann", "bob"]


def test_require_open_refuses_a_task_closed_meanwhile(tmp_path):
    """The work-queue forms record with require_open: a task a colleague closed is refused inside the write
    transaction, and nothing is appended (H1)."""
    db = tmp_path / "app.sqlite"
    actions.record(db, "t1", "claim", "ann@clinic", require_open=True)  # open (or never acted on): recorded
    actions.record(db, "t1", "mark_lost", "bob@clinic", {"reason": "Moved away"})
    with pytest.raises(actions.ActionError, match="changed or was closed by someone else; nothing was recorded"):
        actions.record(
            db, "t1", "log_outreach", "ann@clinic", {"method": "call", "outcome": "scheduled"}, "", None, True
        )
    assert [h["action"] for h in actions.history(db, "t1")] == ["claim", "mark_lost"]


def test_assignees_are_compared_in_lower_case(tmp_path):
    """Ann.Lee@Clinic.com (the IdP's spelling) and ann.lee@clinic.com (typed by a colleague) are one person (L3)."""
    db = tmp_path / "app.sqlite"
    actions.record(db, "t1", "claim", "Ann.Lee@Clinic.com")
    actions.record(db, "t2", "assign", "boss@clinic", {"assignee": " ann.lee@clinic.com "})
    actions.record(db, "t3", "assign", "boss@clinic", {"assignee": "ANN.LEE@CLINIC.COM"})
    states = actions.task_states(db)
    assert {s.assignee for s in states.values()} == {"ann.lee@clinic.com"}
    assert actions.assignees(db) == ["ann.lee@clinic.com"]
    assert actions.history(db, "t3")[0]["assignee"] == "ann.lee@clinic.com"  # stored in lower case


def test_an_action_covers_the_occurrence_it_was_taken_on(tmp_path):
    """A task id comes back when its condition arises again (the booked visit was attended and nothing is next):
    an action names the occurrence it was taken on (the build's created_at, to the second), and once the build's
    created_at is later the task is a fresh open one, its old actions history only (defect 1)."""
    db = tmp_path / "app.sqlite"
    task = "active_no_future_appt:E1"
    first, second = datetime(2025, 3, 31, 9, 0, 0, 400000), pd.Timestamp("2025-04-02 08:00")
    actions.record(db, task, "claim", "ann", require_open=True, occurrence=first)
    text = {"method": "sms", "outcome": "left_message", "message_id": 1}  # a sent message's write-back: no occurrence
    actions.record(db, task, "log_outreach", "outbound", text)
    booked = {"method": "call", "outcome": "scheduled"}
    actions.record(db, task, "log_outreach", "ann", booked, require_open=True, occurrence=first)
    assert actions.history(db, task)[2]["occurrence"] == "2025-03-31T09:00:00"
    same = {task: pd.Timestamp("2025-03-31 09:00:00.900")}  # the same occurrence, read again by a later build
    assert actions.task_states(db, [task], same)[task].status == "done"
    with pytest.raises(actions.ActionError, match="nothing was recorded"):
        actions.record(db, task, "snooze", "bob", {"until": "2025-04-05"}, require_open=True, occurrence=first)

    assert actions.task_states(db, [task], {task: second}) == {}  # a new occurrence: no state, open
    assert actions.is_visible(actions.task_states(db, [task], {task: second}).get(task), "2025-04-02T09:00:00")
    actions.record(db, task, "snooze", "bob", {"until": "2025-04-05T08:00:00"}, require_open=True, occurrence=second)
    state = actions.task_states(db, [task], {task: second})[task]
    assert (state.status, state.assignee, state.outreach_count, state.actions) == ("snoozed", None, 0, 1)
    assert [h["action"] for h in actions.history(db, task)] == ["claim", "log_outreach", "log_outreach", "snooze"]

    # a model's task is one appointment: its created_at (the scoring time) moves with every build, no occurrence
    actions.record(db, "confirm_high_risk:A1", "confirm", "ann", {"appointment_id": "A1"}, occurrence=first)
    assert "occurrence" not in actions.history(db, "confirm_high_risk:A1")[0]
    assert actions.task_states(db, None, {"confirm_high_risk:A1": second})["confirm_high_risk:A1"].status == "done"


def test_a_closed_task_is_not_reopened_by_a_later_row(tmp_path):
    """A message queued for after quiet hours is delivered after the task was booked or marked lost: its write-back
    (log_outreach left_message) is history, the task stays done or lost, as the build keeps it (defect 4)."""
    db = tmp_path / "app.sqlite"
    write_back = {"method": "sms", "outcome": "left_message", "note": "referral_outreach sent", "message_id": 3}
    actions.record(db, "t1", "log_outreach", "ann", {"method": "call", "outcome": "scheduled"})
    actions.record(db, "t1", "log_outreach", "outbound", write_back)
    actions.record(db, "t2", "mark_lost", "ann", {"reason": "Moved away"})
    actions.record(db, "t2", "log_outreach", "outbound", write_back)
    states = actions.task_states(db)
    assert (states["t1"].status, states["t2"].status, states["t2"].lost_reason) == ("done", "lost", "Moved away")
    assert states["t2"].last_outreach == "sms: Left voicemail / message" and states["t2"].outreach_count == 1
    assert not actions.is_visible(states["t1"], "2100-01-01") and not actions.is_visible(states["t2"], "2100-01-01")


def test_snooze_and_sla_clocks_are_the_clinics_wall_clock(tmp_path):
    """'Now' for a task is its clinic's wall clock, not the server's (UTC on a server): a snooze 'until 08:00'
    wakes at 08:00 in the clinic; stale data keeps its as_of (defect 2)."""
    at = datetime(2026, 12, 1, 23, 4, tzinfo=UTC)  # 17:04 in Chicago, 08:04 next morning in Tokyo
    chicago, tokyo = ZoneInfo("America/Chicago"), ZoneInfo("Asia/Tokyo")
    assert actions.clinic_now(chicago, None, at) == datetime(2026, 12, 1, 17, 4)
    assert actions.clinic_now(tokyo, None, at) == datetime(2026, 12, 2, 8, 4)
    assert actions.clinic_now(chicago, datetime(2026, 12, 1, 16, 34), at) == datetime(2026, 12, 1, 17, 4)
    assert actions.clinic_now(chicago, datetime(2026, 10, 31, 22, 6), at) == datetime(2026, 10, 31, 22, 6)  # stale
    db = tmp_path / "app.sqlite"
    actions.record(db, "t1", "snooze", "ann", {"until": "2026-12-02T08:00:00"})
    state = actions.task_states(db)["t1"]
    assert not actions.is_visible(state, actions.clinic_now(chicago, None, at).isoformat())
    assert actions.is_visible(state, actions.clinic_now(tokyo, None, at).isoformat())
