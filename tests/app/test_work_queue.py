"""Work-queue actions written in one session are visible in another at once (real SQLite, real build)."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import pandas as pd
from app_helpers import open_page, rerun

from app.lib import actions, auth
from app.lib import work_queue as wq
from app.lib.db import AnalyticsDb
from app.lib.queries.base import DbReader, Filters, clinics, data_date_range
from app.lib.queries.funnel import funnel_summary
from app.lib.queries.work_queue import queue_candidates


def _row(at, task_id: str) -> pd.Series:
    frame = at.dataframe[0].value
    hit = frame[frame["task_id"] == task_id]
    assert len(hit) == 1, f"{task_id} not shown"
    return hit.iloc[0]


def test_outreach_logged_in_one_session_shows_in_another(app_home):
    alice = open_page(app_home, "front_desk", "work_queue")
    assert not alice.exception
    task_id = alice.selectbox(key="wq_task").value
    before = _row(alice, task_id)
    assert before["outreach_count"] == 0

    alice.radio(key="wq_method").set_value("sms")
    alice.selectbox(key="wq_outcome").set_value("no_answer")
    alice.get("form_submit_button")[0].click()
    rerun(alice, app_home)
    assert not alice.exception
    assert _row(alice, task_id)["last_outreach"] == "sms: No answer"

    bob = open_page(app_home, "manager", "work_queue")
    row = _row(bob, task_id)
    assert row["last_outreach"] == "sms: No answer" and row["outreach_count"] == 1
    hist = actions.history(app_home.app_db, task_id)
    assert hist[-1]["actor"] == "demo-front-desk@ptpulse.local"


def test_two_users_both_recorded_latest_state_wins(app_home):
    db = AnalyticsDb(app_home.analytics_db)
    reader = DbReader(db, auth.Scope("manager"))
    cands = queue_candidates(reader, Filters(*data_date_range(reader)))
    task = cands.iloc[-1]["task_id"]
    actions.record(app_home.app_db, task, "claim", "ann@clinic")
    actions.record(app_home.app_db, task, "mark_lost", "bob@clinic", {"reason": "Moved away"})
    states = actions.task_states(app_home.app_db, [task])
    view = wq.assemble(cands, states, datetime(2100, 1, 1))
    row = view[view["task_id"] == task].iloc[0]
    assert row["status"] == "lost" and row["assignee"] == "ann@clinic" and not row["in_queue"]
    assert [h["actor"] for h in actions.history(app_home.app_db, task)][-2:] == ["ann@clinic", "bob@clinic"]


def test_front_desk_sees_only_their_clinics(app_home):
    db = AnalyticsDb(app_home.analytics_db)
    f = Filters(*data_date_range(DbReader(db, auth.Scope("owner"))))
    other = DbReader(db, auth.Scope("front_desk", ("NO-SUCH-CLINIC",)))
    assert queue_candidates(other, f).empty
    assert funnel_summary(other, f).iloc[0]["referrals"] == 0
    assert clinics(other).empty
    # asking for a clinic outside the scope does not widen it
    sneaky = Filters(f.start, f.end, tuple(clinics(DbReader(db, auth.Scope("owner")))["clinic_id"]))
    assert queue_candidates(other, sneaky).empty


def _cands() -> pd.DataFrame:
    t = pd.Timestamp("2024-05-01 09:00")
    return pd.DataFrame(
        {
            "task_id": [
                "uncontacted_referral:R1",
                "active_no_future_appt:E1",
                "uncontacted_referral:R2",
                "contacted_unscheduled:R3",
                "uncontacted_referral:R4",
            ],
            "rule": [
                "uncontacted_referral",
                "active_no_future_appt",
                "uncontacted_referral",
                "contacted_unscheduled",
                "uncontacted_referral",
            ],
            "referral_id": ["R1", None, "R2", "R3", "R4"],
            "clinic_id": "C1",
            "reason": [
                "New referral: call.",
                "Book the next visit.",
                "New referral: call.",
                "Offer a time.",
                "New referral: call.",
            ],
            "priority": [1, 1, 1, 2, 1],
            "due_at": [t, t + pd.Timedelta(hours=1), t + pd.Timedelta(hours=2), t, t + pd.Timedelta(hours=3)],
        }
    )


def test_referral_tasks_ranked_by_value_at_stake_within_priority():
    leads = pd.DataFrame(
        {
            "referral_id": ["R1", "R2", "R3", "R9"],
            "p_convert": [0.3, 0.72, 0.5, 0.9],
            "value_at_stake_usd": [200.0, 640.0, 300.0, 999.0],
        }
    )
    view = wq.assemble(_cands(), {}, datetime(2024, 5, 1, 8), leads)
    # priority 1 slots held by referral tasks (1st, 3rd, 4th) are refilled by value; the unscored R4 and the
    # non-referral task keep their places
    assert view["task_id"].tolist() == [
        "uncontacted_referral:R2",
        "active_no_future_appt:E1",
        "uncontacted_referral:R1",
        "uncontacted_referral:R4",
        "contacted_unscheduled:R3",
    ]
    row = view[view["task_id"] == "uncontacted_referral:R2"].iloc[0]
    assert row["reason"] == "New referral: call. Likely to convert: 72% · ≈$640 at stake"
    assert "Likely" not in view[view["task_id"] == "active_no_future_appt:E1"].iloc[0]["reason"]
    assert view["rank"].tolist() == [1, 2, 3, 4, 5]


def test_queue_unchanged_without_lead_scores():
    plain = wq.assemble(_cands(), {}, datetime(2024, 5, 1, 8))
    empty = wq.assemble(
        _cands(), {}, datetime(2024, 5, 1, 8), pd.DataFrame(columns=["referral_id", "p_convert", "value_at_stake_usd"])
    )
    order = [
        "uncontacted_referral:R1",
        "active_no_future_appt:E1",
        "uncontacted_referral:R2",
        "uncontacted_referral:R4",
        "contacted_unscheduled:R3",
    ]
    assert plain["task_id"].tolist() == order and empty["task_id"].tolist() == order
    assert not plain["reason"].str.contains("Likely").any()


def test_lead_scores_read_only_when_the_table_exists(app_home, copy_home):
    db = AnalyticsDb(app_home.analytics_db)
    leads = wq.lead_scores(DbReader(db, auth.Scope("manager")))
    assert leads is not None and {"referral_id", "p_convert", "value_at_stake_usd"} <= set(leads.columns)

    class NoTable:
        def has(self, table):
            return False

        def df(self, sql, params=None):
            raise AssertionError("must not query a missing table")

    assert wq.lead_scores(NoTable()) is None


def test_work_queue_page_renders_without_lead_scores(app_home, copy_home):
    import duckdb

    home = copy_home(app_home)
    con = duckdb.connect(str(home.analytics_db))
    con.execute("drop table if exists ml.lead_scores")
    con.close()
    at = open_page(home, "front_desk", "work_queue")
    assert not at.exception


def test_an_action_on_a_task_closed_meanwhile_is_refused_not_moved_to_another(app_home, copy_home):
    """Ann has task X selected and fills "Log outreach → Scheduled"; a colleague marks X lost first. X leaves the
    options and Streamlit falls back to the first task in the very run carrying the submit: the action must not
    land on that other patient's task (the log is append-only), and Ann is told nothing was recorded (H1)."""
    home = copy_home(app_home)
    ann = open_page(home, "front_desk", "work_queue")
    ids = ann.dataframe[0].value["task_id"].tolist()
    task_x = ids[2]
    ann.selectbox(key="wq_task").set_value(task_x)
    rerun(ann, home)
    assert ann.selectbox(key="wq_task").value == task_x
    actions.record(home.app_db, task_x, "mark_lost", "colleague@clinic.com", {"reason": "Moved away"}, "front_desk")
    with sqlite3.connect(home.app_db) as con:
        last = con.execute("select max(action_id) from actions").fetchone()[0]

    ann.radio(key="wq_method").set_value("call")
    ann.selectbox(key="wq_outcome").set_value("scheduled")
    ann.text_input(key="wq_note").input("called, booked Tue")
    (submit,) = [b for b in ann.button if b.label == "Log outreach"]
    submit.click()
    rerun(ann, home)
    assert not ann.exception
    assert ann.selectbox(key="wq_task").value != task_x  # the fallback happened ...
    with sqlite3.connect(home.app_db) as con:
        logged = con.execute("select task_id, action, actor from actions where action_id >= ?", (last,)).fetchall()
    assert logged == [(task_x, "mark_lost", "colleague@clinic.com")]  # ... nothing written to anyone's task ...
    errors = [e.value for e in ann.error]
    assert len(errors) == 1 and "changed or was closed by someone else; nothing was recorded" in errors[0]  # ... said
    assert not [t.value for t in ann.toast]


def test_me_finds_tasks_assigned_in_another_spelling_of_my_email(app_home, copy_home):
    """A colleague types the address in another case than the IdP's (Ann.Lee@Clinic.com / ann.lee@clinic.com):
    "Assignee: Me" still shows the task (L3)."""
    home = copy_home(app_home)
    desk = open_page(home, "front_desk", "work_queue")
    task = desk.dataframe[0].value["task_id"].iloc[0]
    me = "demo-front-desk@ptpulse.local"  # the demo front desk's address
    actions.record(home.app_db, task, "assign", "boss@clinic.com", {"assignee": "Demo-Front-Desk@PTPulse.Local"})
    desk.selectbox(key="wq_assignee").set_value("Me")
    rerun(desk, home)
    assert not desk.exception
    shown = desk.dataframe[0].value
    assert shown["task_id"].tolist() == [task] and shown["assignee"].tolist() == [me]
    assert "Demo-Front-Desk@PTPulse.Local" not in desk.selectbox(key="wq_assignee").options  # not a second person
