"""Work-queue actions written in one session are visible in another at once (real SQLite, real build)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from app.lib import actions, auth, queries
from app.lib import work_queue as wq
from app.lib.db import AnalyticsDb
from app_helpers import open_page, rerun


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
    reader = queries.DbReader(db, auth.Scope("manager"))
    info = queries.build_info(reader)
    cands = queries.queue_candidates(reader, queries.Filters(*queries.data_date_range(reader)), info["as_of"])
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
    f = queries.Filters(*queries.data_date_range(queries.DbReader(db, auth.Scope("owner"))))
    other = queries.DbReader(db, auth.Scope("front_desk", ("NO-SUCH-CLINIC",)))
    assert queries.queue_candidates(other, f, None).empty
    assert queries.funnel_summary(other, f).iloc[0]["referrals"] == 0
    assert queries.clinics(other).empty
    # asking for a clinic outside the scope does not widen it
    sneaky = queries.Filters(f.start, f.end, tuple(queries.clinics(queries.DbReader(db, auth.Scope("owner")))["clinic_id"]))
    assert queries.queue_candidates(other, sneaky, None).empty
