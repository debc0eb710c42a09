"""The Work queue's Assignee filter of a user limited to some clinics lists the people of the tasks in their view
only (review of the clinic scope, defect 3): actions.assignees read the whole action log, so a front desk limited to
CL002 was shown the CL001 staff who claimed or were assigned CL001 tasks (their emails, and that they work tasks).

Real two-clinic build (tests/app/multi_practice.py), actions written to its app.sqlite, the page in AppTest.
"""

from __future__ import annotations

import pytest
from multi_practice import open_page, sql_frame, writable

from app.lib import actions

SCOPED, OTHER = "CL002", "CL001"
OTHER_STAFF = ("sam.sanantonio@clinic.com", "lee.sanantonio@clinic.com")
OWN_STAFF = "pat.oakpark@clinic.com"


@pytest.fixture(scope="module")
def home(multi_built, tmp_path_factory):
    home = writable(multi_built, tmp_path_factory.mktemp("assignee_scope") / "home")

    def tasks(clinic: str):
        return sql_frame(
            home,
            "select task_id, created_at from marts.work_queue_candidates where clinic_id = $c and queue = 'front_desk' "
            "order by task_id limit 2",
            {"c": clinic},
        )

    other, own = tasks(OTHER), tasks(SCOPED)
    assert len(other) and len(own)
    for t, c in zip(other["task_id"], other["created_at"], strict=True):
        actions.record(home.app_db, t, "claim", OTHER_STAFF[0], role="front_desk", occurrence=c)
        actions.record(home.app_db, t, "assign", OTHER_STAFF[0], {"assignee": OTHER_STAFF[1]}, occurrence=c)
    actions.record(
        home.app_db,
        own["task_id"][0],
        "assign",
        "boss@clinic.com",
        {"assignee": OWN_STAFF},
        occurrence=own["created_at"][0],
    )
    return home


def test_a_scoped_desk_sees_only_the_people_of_its_clinics_tasks(home):
    at = open_page(home, "front_desk", "work_queue", SCOPED)
    options = at.selectbox(key="wq_assignee").options
    assert OWN_STAFF in options
    assert not set(OTHER_STAFF) & set(options), options


def test_the_whole_practice_still_sees_everyone(home):
    at = open_page(home, "manager", "work_queue", "*")
    options = at.selectbox(key="wq_assignee").options
    assert {OWN_STAFF, *OTHER_STAFF} <= set(options)


def test_assignees_of_some_tasks(home):
    """The function: only the given tasks' people (None: the whole log, as before)."""
    other = sql_frame(home, "select task_id from marts.work_queue_candidates where clinic_id = $c", {"c": OTHER})
    own = sql_frame(home, "select task_id from marts.work_queue_candidates where clinic_id = $c", {"c": SCOPED})
    assert actions.assignees(home.app_db, own["task_id"]) == [OWN_STAFF]
    assert set(actions.assignees(home.app_db, other["task_id"])) == set(OTHER_STAFF)
    assert set(actions.assignees(home.app_db)) == {OWN_STAFF, *OTHER_STAFF}
    assert actions.assignees(home.app_db, []) == []
