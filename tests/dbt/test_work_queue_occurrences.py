"""The work queue's one state rule, applied by the build (marts.work_queue_candidates) and folded by the app
(app/lib/actions.py) alike, on real builds of the hand-built tiny practice (as_of 2025-03-31 17:00) with app actions
recorded through the app's own writer:

- a task closed in one occurrence comes back, fresh, when its condition arises again (the booked visit was attended
  and nothing is next; a second evaluation no-show; booked visits happened and the plan is under-booked again);
- the latest action decides a snooze (a re-snooze to an earlier day, or an outreach after a snooze);
- a closed task stays closed when a queued message's write-back lands after the close.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

import duckdb
import pytest
from conftest import copy_of

from app.lib import actions
from ingestion.loader import ingest
from ptpulse.build.orchestrate import build

pytestmark = pytest.mark.slow

HEADER = (
    "event_id,appointment_id,episode_id,referral_id,patient_id,clinic_id,therapist_id,event_type,event_at,"
    "scheduled_start,duration_min,visit_type,cancel_reason,notice_hours,recorded_by"
)
# after as_of: E11 books and attends a visit and nothing is booked after it; R04 is rebooked and misses the
# evaluation again; E08 attends its booked visit (A16) and books one more, still under its 2x/week plan
LATER_EVENTS = """
SX01,A90,E11,R11,P11,CL001,T1,booked,2025-03-31 17:30:00,2025-04-02 08:00:00,45,follow_up,,,fd1
SX02,A90,E11,R11,P11,CL001,T1,arrived,2025-04-02 08:00:00,2025-04-02 08:00:00,45,follow_up,,,fd1
SX03,A90,E11,R11,P11,CL001,T1,completed,2025-04-02 08:45:00,2025-04-02 08:00:00,45,follow_up,,,fd1
SX04,A91,E04,R04,P04,CL001,T1,booked,2025-04-01 09:00:00,2025-04-02 10:00:00,60,initial_eval,,,fd1
SX05,A91,E04,R04,P04,CL001,T1,no_show,2025-04-02 10:30:00,2025-04-02 10:00:00,60,initial_eval,,,fd1
SX06,A16,E08,R08,P08,CL001,T1,arrived,2025-04-02 09:00:00,2025-04-02 09:00:00,45,follow_up,,,fd1
SX07,A16,E08,R08,P08,CL001,T1,completed,2025-04-02 09:45:00,2025-04-02 09:00:00,45,follow_up,,,fd1
SX08,A92,E08,R08,P08,CL001,T1,booked,2025-04-02 09:50:00,2025-04-04 09:00:00,45,follow_up,,,fd1
"""

RECURRING = ("active_no_future_appt:E11", "eval_no_show_rebook:R04", "below_poc_frequency:E08")


def _queue(home) -> dict[str, dict]:
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        df = con.execute(
            "select task_id, due_at, original_due_at, created_at, snoozed_until, claimed_by, last_action "
            "from marts.work_queue_candidates"
        ).df()
    return {r["task_id"]: r for r in df.to_dict("records")}


def _do(home, task: str, action: str, payload: dict | None = None, occurrence=None, at: str = "") -> None:
    actions.record(home.app_db, task, action, "desk@clinic.com", payload, "front_desk", at or None, True, occurrence)


def test_a_closed_task_comes_back_fresh_when_its_condition_arises_again(tiny_home, tmp_path):
    home = copy_of(tiny_home, tmp_path / "home")
    first = _queue(home)
    assert set(RECURRING) <= set(first)
    created = {t: first[t]["created_at"] for t in first}
    assert created["active_no_future_appt:E11"] == datetime(2025, 3, 31, 9, 0)  # the visit after which none is next

    # the Work queue's actions, each naming the occurrence it was taken on (the page passes the row's created_at)
    _do(home, "active_no_future_appt:E11", "claim", occurrence=created["active_no_future_appt:E11"])
    # a write-back naming no occurrence (a message sent before they carried one, ptpulse/core/outbound.py): the
    # current one's
    write_back = {"method": "sms", "outcome": "left_message", "note": "referral_outreach sent", "message_id": 1}
    actions.record(home.app_db, "active_no_future_appt:E11", "log_outreach", "desk@clinic.com", write_back)
    _do(
        home,
        "active_no_future_appt:E11",
        "log_outreach",
        {"method": "call", "outcome": "scheduled"},
        created["active_no_future_appt:E11"],
    )
    _do(home, "eval_no_show_rebook:R04", "mark_lost", {"reason": "Moved away"}, created["eval_no_show_rebook:R04"])
    _do(home, "below_poc_frequency:E08", "confirm", {}, created["below_poc_frequency:E08"])
    # snoozes: the latest action decides, not the farthest snooze ever
    _do(home, "auth_expiring:AU1", "snooze", {"until": "2025-05-01T08:00:00"}, created["auth_expiring:AU1"])
    _do(home, "auth_expiring:AU1", "snooze", {"until": "2025-04-03T08:00:00"}, created["auth_expiring:AU1"])
    _do(
        home,
        "uncontacted_referral:R09",
        "snooze",
        {"until": "2025-05-01T08:00:00"},
        created["uncontacted_referral:R09"],
    )
    _do(
        home,
        "uncontacted_referral:R09",
        "log_outreach",
        {"method": "call", "outcome": "no_answer"},
        created["uncontacted_referral:R09"],
    )
    # closed, then a message queued for after quiet hours is delivered: its write-back lands after the close
    _do(
        home,
        "auth_expiring:AU2",
        "log_outreach",
        {"method": "call", "outcome": "scheduled"},
        created["auth_expiring:AU2"],
    )
    actions.record(home.app_db, "auth_expiring:AU2", "log_outreach", "desk@clinic.com", write_back)
    _do(home, "unsigned_note:N14", "mark_lost", {"reason": "Other"}, created["unsigned_note:N14"])
    actions.record(home.app_db, "unsigned_note:N14", "log_outreach", "desk@clinic.com", write_back)

    result = build(home)
    assert result.ok, result.message
    queue = _queue(home)
    app = actions.task_states(home.app_db, occurrences=created)  # what the page showed before this build
    closed = {"active_no_future_appt:E11", "eval_no_show_rebook:R04", "below_poc_frequency:E08"}
    closed |= {"auth_expiring:AU2", "unsigned_note:N14"}
    for task in closed:  # the build and the app agree: closed (a write-back did not reopen AU2 or N14)
        assert task not in queue, task
        assert app[task].status in ("done", "lost"), (task, app[task])
    assert (app["auth_expiring:AU2"].status, app["unsigned_note:N14"].status) == ("done", "lost")
    assert queue["auth_expiring:AU1"]["due_at"] == datetime(2025, 4, 3, 8, 0)  # the later, earlier snooze
    assert app["auth_expiring:AU1"].snoozed_until == "2025-04-03T08:00:00"
    r09 = queue["uncontacted_referral:R09"]  # worked after its snooze: due again as before
    assert r09["due_at"] == r09["original_due_at"] == datetime(2025, 3, 25, 11, 0)
    assert pd_null(r09["snoozed_until"]) and app["uncontacted_referral:R09"].status == "open"

    # the conditions arise again after the actions: new occurrences, fresh open tasks under the same ids
    later = tmp_path / "later"
    later.mkdir()
    (later / "scheduling_events.csv").write_text(HEADER + LATER_EVENTS, encoding="utf-8")
    loaded = ingest([later], home)
    assert [(r.status, r.rows_quarantined) for r in loaded] == [("loaded", 0)]
    result = build(home)
    assert result.ok, result.message
    queue = _queue(home)
    assert {t: queue[t]["created_at"] for t in RECURRING if t in queue} == {
        "active_no_future_appt:E11": datetime(2025, 4, 2, 8, 0),  # the visit the call booked, attended
        "eval_no_show_rebook:R04": datetime(2025, 4, 2, 10, 0),  # the second missed evaluation
        "below_poc_frequency:E08": datetime(2025, 4, 2, 9, 0),  # A16 attended, under-booked again
    }
    for task in RECURRING:  # fresh: nothing of the past occurrence applies
        assert pd_null(queue[task]["claimed_by"]) and pd_null(queue[task]["last_action"]), queue[task]
    now_created = {t: r["created_at"] for t, r in queue.items()}
    app = actions.task_states(home.app_db, list(now_created), now_created)
    assert not set(RECURRING) & set(app)  # the app: no state in this occurrence, an open task like the build's
    assert all(actions.is_visible(app.get(t), "2025-04-02T12:00:00") for t in RECURRING)
    assert [h["action"] for h in actions.history(home.app_db, "active_no_future_appt:E11")] == [
        "claim",
        "log_outreach",
        "log_outreach",
    ]  # the old actions stay audited
    # the closed, non-recurring tasks stay closed; a new action on the fresh occurrence is accepted and counts
    assert "auth_expiring:AU2" not in queue and "unsigned_note:N14" not in queue
    _do(
        home,
        "active_no_future_appt:E11",
        "mark_lost",
        {"reason": "Moved away"},
        now_created["active_no_future_appt:E11"],
    )
    assert actions.task_states(home.app_db, None, now_created)["active_no_future_appt:E11"].status == "lost"
    with sqlite3.connect(home.app_db) as con:
        payloads = [json.loads(p) for (p,) in con.execute("select payload from actions where task_id like 'active%'")]
    first, second = "2025-03-31T09:00:00", "2025-04-02T08:00:00"
    assert [p.get("occurrence") for p in payloads] == [first, None, first, second]


def pd_null(value) -> bool:
    return value is None or value != value
