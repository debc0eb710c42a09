"""The Work queue at a chain's size (~170k open tasks at 900 clinics): the page ranks, counts and filters the whole
queue from a lean index (the user's clinics and the role's queues filtered in SQL, no patient join, no details) and
reads the patients and details of the rows it lists only, the top of the ranked view (work_queue.LISTED_ROWS).

Before, it fetched every task with its patient joined and its details, and listed (and wrote into the CSV) all of
them on every run: 4.9 s cold and 3.1 s warm at 900 clinics. Real builds and DuckDB: the two-clinic practice for the
clinic scope, the small practice with its ML scores (confirm tasks, lead scores) for the page.
"""

from __future__ import annotations

import sqlite3
from datetime import date, datetime

import pandas as pd
import pytest
from app_helpers import app_test
from multi_practice import reader

from app.lib import work_queue as wq
from app.lib.db import AnalyticsDb
from app.lib.queries.base import Filters
from app.lib.queries.work_queue import HIGH_RISK_RULE, queue_candidates, queue_index, queued_appointments, task_details
from ptpulse.core.config import scoped_environ

ANY_DAY = Filters(date.today(), date.today())  # the queue has no date filter
INDEX = ["task_id", "rule", "clinic_id", "referral_id", "priority", "due_at", "created_at"]


def _values(column: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in column]  # an all-null column may come as None or as NaN


@pytest.mark.parametrize("clinics", [None, ("CL002",)])
@pytest.mark.parametrize("role", ["front_desk", "manager", "owner"])
def test_the_index_is_the_roles_queue_in_the_users_clinics_filtered_in_sql(multi_built, role, clinics):
    r = reader(multi_built, role, clinics)
    index = queue_index(r, ANY_DAY, role)
    whole = wq.for_role(queue_candidates(r, ANY_DAY), role)  # what the page cut in pandas before
    assert len(index) and sorted(index["task_id"]) == sorted(whole["task_id"])
    assert list(index.columns) == INDEX  # no patient, no details: those are read for the listed rows only
    if clinics:
        assert set(index["clinic_id"]) == set(clinics)
    clinicians = {k for k, rule in wq.RULES.items() if rule.queue == "clinician"}
    if role == "front_desk":  # the clinicians' tasks (unsigned notes) are cut in SQL: never fetched for the desk
        assert queue_candidates(r, ANY_DAY)["rule"].isin(clinicians).any()
        assert not index["rule"].isin(clinicians).any()
    # in rank order, ties by task id: the same order on every run
    ranked = index.sort_values(["priority", "due_at", "task_id"], na_position="last", kind="stable")
    assert index["task_id"].tolist() == ranked["task_id"].tolist()


def test_details_are_read_for_the_asked_tasks_of_the_users_clinics_only(multi_built):
    owner = reader(multi_built, "owner")
    everything = queue_candidates(owner, ANY_DAY).set_index("task_id")
    ids = queue_index(owner, ANY_DAY, "owner").groupby("clinic_id")["task_id"].first()
    details = task_details(owner, ANY_DAY, ids.tolist()).set_index("task_id").sort_index()
    assert details.index.tolist() == sorted(ids)
    for col in ("patient_name", "phone", "patient_key", "episode_id", "appointment_id", "reason"):
        assert _values(details[col]) == _values(everything.loc[details.index, col]), col
    # a desk limited to CL002 asking for the CL001 task gets nothing
    desk = reader(multi_built, "front_desk", ("CL002",))
    assert task_details(desk, ANY_DAY, [ids["CL001"]]).empty
    assert task_details(desk, ANY_DAY, [ids["CL002"]])["task_id"].tolist() == [ids["CL002"]]


def test_the_page_lists_the_top_of_the_queue_and_reads_patients_for_those_rows_only(app_home, copy_home, monkeypatch):
    home = copy_home(app_home)
    with sqlite3.connect(home.app_db) as con:  # other tests act on the session's home: start from no actions
        if con.execute("select 1 from sqlite_master where type = 'table' and name = 'actions'").fetchone():
            con.execute("delete from actions")
    listed_rows = 5
    monkeypatch.setattr(wq, "LISTED_ROWS", listed_rows)
    frames: list[tuple[str, pd.DataFrame]] = []  # every query the page ran on the analytics file, and its rows
    query = AnalyticsDb.query

    def recorded(self, sql, params=None):
        frame = query(self, sql, params)
        frames.append((sql, frame))
        return frame

    monkeypatch.setattr(AnalyticsDb, "query", recorded)

    with scoped_environ({"PTPULSE_HOME": str(home.home), "PTPULSE_DEMO_ROLE": "manager", "PTPULSE_DEMO_CLINICS": "*"}):
        at = app_test()
        at.run()  # the role's home page
        frames.clear()
        at.switch_page("app_pages/work_queue.py").run()
    assert not at.exception, [e.value for e in at.exception]
    page_frames = list(frames)
    r = reader(home, "manager")
    leads = wq.lead_scores(r)
    assert leads is not None and len(leads)
    queue = wq.assemble(queue_index(r, ANY_DAY, "manager"), {}, datetime(2100, 1, 1), leads)
    assert len(queue) > listed_rows and queue["rule"].eq("confirm_high_risk").any()  # the model's tasks too

    table = at.dataframe[0].value
    assert table["task_id"].tolist() == queue["task_id"].head(listed_rows).tolist()  # the top of the ranked queue
    assert {m.label: m.value for m in at.metric}["Open tasks"] == f"{len(queue):,}"  # counted over all of it
    (caption,) = [c.value for c in at.caption if "ranked by priority" in c.value]
    assert f"{len(queue):,} tasks" in caption and f"listed: the first {listed_rows}" in caption
    assert len(at.selectbox(key="wq_task").options) == listed_rows

    # the listed rows read as before: patient, phone and details (with the lead text of scored referral tasks)
    before = wq.assemble(wq.for_role(queue_candidates(r, ANY_DAY), "manager"), {}, datetime(2100, 1, 1), leads)
    before = before.set_index("task_id").loc[table["task_id"]]
    for col in ("patient_name", "phone", "reason", "rule_label", "status_label"):
        assert _values(table[col]) == _values(before[col]), col

    # patients and details were read for the listed rows (and the selected task's send dialog) only
    wide = [(sql, len(f)) for sql, f in page_frames if {"reason", "patient_name", "phone"} & set(f.columns)]
    assert wide and all(n <= listed_rows for _, n in wide), wide
    assert all(len(f) <= listed_rows for sql, f in page_frames if "dim_patients" in sql)


@pytest.mark.parametrize("clinics", [None, ("CL001",)])
def test_the_no_show_pages_queued_visits_are_read_as_one_column(app_home, clinics):
    """The No-show page's "In work queue" column: the confirm tasks' appointments, as the whole queue gave them."""
    r = reader(app_home, "manager", clinics)
    queue = queue_candidates(r, ANY_DAY)
    expected = set(queue.loc[queue["rule"] == HIGH_RISK_RULE, "appointment_id"].dropna().astype(str))
    assert queued_appointments(r, ANY_DAY, HIGH_RISK_RULE) == expected
    if clinics is None:
        assert expected  # the small practice's model writes confirm tasks
    without_model = queue_candidates(r, ANY_DAY, scores_servable=False)
    assert queued_appointments(r, ANY_DAY, HIGH_RISK_RULE, scores_servable=False) == set(
        without_model.loc[without_model["rule"] == HIGH_RISK_RULE, "appointment_id"].dropna().astype(str)
    )
