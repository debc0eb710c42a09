"""Everyday paths that must never break (issue 14 item 6), on a real built home (AppTest, real SQLite/DuckDB):
role switch and refusals land on the role's home with a menu, downloads are not deferred (the "Deferred file not
found" race), the work queue's labels, closed tasks and front-desk filter, and a URL period outside the data."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import pytest
from app_helpers import app_test, env, open_page, rendered_text, rerun

from app.lib import actions, auth, filters
from app.lib import work_queue as wq
from app.lib.db import AnalyticsDb
from app.lib.queries.base import DbReader, Filters, data_date_range
from app.lib.queries.work_queue import queue_candidates


def _links(at) -> list[str]:
    return [link.proto.page for link in at.get("page_link")]


# ------------------------------------------------------------------ navigation


def test_role_switch_lands_on_the_new_roles_home_with_its_menu(app_home):
    at = open_page(app_home, "owner", "overview")
    assert at.title[0].value == "Overview"
    at.selectbox(key="demo_role").set_value("front_desk")
    rerun(at, app_home)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Work queue"  # the front desk's home, not a refused Overview
    assert not any("not available to the" in e.value for e in at.error)
    # a one-page role still gets a menu: Streamlit draws none for one visible page, so the app adds its link
    assert "work_queue" in " ".join(_links(at))


def test_role_switch_from_a_page_the_new_role_may_open_goes_home_too(app_home):
    at = open_page(app_home, "owner", "work_queue")
    at.selectbox(key="demo_role").set_value("manager")
    rerun(at, app_home)
    assert not at.exception
    assert at.title[0].value == auth.PAGE_TITLES[auth.HOME_PAGE["manager"]]


@pytest.mark.parametrize("role,page", [("front_desk", "overview"), ("marketing", "admin"), ("manager", "sql")])
def test_refusal_links_to_the_roles_home(app_home, role, page):
    at = open_page(app_home, role, page)
    assert any("not available to the" in e.value for e in at.error)
    home = auth.home_page_file(role)
    assert any(link.endswith(home) or link.endswith(auth.HOME_PAGE[role]) for link in _links(at)), _links(at)
    assert len(at.dataframe) == 0 and len(at.metric) == 0


def test_multi_page_roles_get_no_extra_links(app_home):
    at = open_page(app_home, "owner", "overview")
    assert "Your pages" not in rendered_text(at)


# ------------------------------------------------------------------ downloads


def _downloads(at) -> list:
    return [b for b in at.get("download_button")]


def test_downloads_are_not_deferred_and_keep_their_url_across_reruns(app_home):
    """The cause of "MediaFileStorageError: Deferred file … not found" (~12 of 30 clicks): `data=` was a
    callable, which Streamlit registers under a new random id on every rerun; a click's own `on_click` starts a
    rerun that drops the old id while the browser is still fetching it. Bytes get an id from their content:
    the same URL on every rerun, so a click during or after a rerun still finds the file."""
    at = open_page(app_home, "owner", "funnel")
    first = _downloads(at)
    assert first, "the funnel page has downloads"
    assert all(not b.proto.HasField("deferred_file_id") for b in first)
    assert all(b.proto.url for b in first)
    urls = [b.proto.url for b in first]
    for _ in range(3):
        rerun(at, app_home)
        assert [b.proto.url for b in _downloads(at)] == urls


def test_download_click_is_audited_and_keeps_working(app_home):
    at = open_page(app_home, "manager", "work_queue")
    before = [b.proto.url for b in _downloads(at)]
    at.get("download_button")[0].click()
    rerun(at, app_home)
    assert not at.exception
    assert [b.proto.url for b in _downloads(at)] == before
    from app.lib import audit

    recent = audit.recent(app_home.app_db)
    assert (recent["event"] == "export.identified").any()


# ------------------------------------------------------------------ work queue


def _candidates(home, role="owner"):
    reader = DbReader(AnalyticsDb(home.analytics_db), auth.Scope(role))
    return queue_candidates(reader, Filters(*data_date_range(reader)))


def test_every_queue_reason_has_its_own_label(app_home):
    cands = _candidates(app_home)
    for rule in cands["rule"].unique():
        assert rule in wq.RULES, f"rule {rule} has no row in the work-queue rules seed"
        assert wq.rule_label(rule) == wq.RULES[rule].label and "_" not in wq.rule_label(rule)


def test_front_desk_does_not_get_clinicians_tasks(app_home):
    cands = _candidates(app_home)
    clinician = {k for k, r in wq.RULES.items() if r.queue == "clinician"}
    assert cands["rule"].isin(clinician).any(), "the small practice has unsigned notes"
    desk = wq.for_role(cands, "front_desk")
    assert not desk["rule"].isin(clinician).any() and len(desk) == (~cands["rule"].isin(clinician)).sum()
    assert len(wq.for_role(cands, "manager")) == len(cands) == len(wq.for_role(cands, "owner"))

    at = open_page(app_home, "front_desk", "work_queue")
    shown = at.dataframe[0].value
    labels = {wq.RULES[r].label for r in clinician}
    assert not shown["rule_label"].isin(labels).any()
    assert "worked_by" not in shown.columns  # one queue: the column says nothing


def test_queue_key_columns_come_first(app_home):
    at = open_page(app_home, "manager", "work_queue")
    cols = list(at.dataframe[0].value.columns)
    assert cols[:5] == ["rank", "sla", "rule_label", "patient_name", "phone"]


def test_closed_task_has_no_sla_clock_and_no_action_form(app_home, copy_home):
    home = copy_home(app_home)
    cands = _candidates(home)
    task = cands.iloc[0]["task_id"]
    actions.record(home.app_db, task, "log_outreach", "ann@clinic", {"method": "call", "outcome": "scheduled"})
    view = wq.assemble(cands, actions.task_states(home.app_db, [task]), datetime(2100, 1, 1))
    row = view[view["task_id"] == task].iloc[0]
    assert row["status"] == "done" and row["sla"] == "Done" and row["hours_left"] != row["hours_left"]  # NaN
    assert not re.search(r"overdue|due in", row["sla"])

    at = open_page(home, "owner", "work_queue")
    at.segmented_control(key="wq_view").set_value("Done or lost")
    rerun(at, home)
    at.selectbox(key="wq_task").set_value(task)
    rerun(at, home)
    assert not at.exception
    shown = at.dataframe[0].value
    assert not shown["sla"].str.contains("overdue|due in").any()
    assert any("This task is done" in s.value for s in at.success)
    assert not at.get("form_submit_button") and not at.tabs  # no action form on a finished task


# ------------------------------------------------------------------ URL period


def test_period_outside_the_data_falls_back_to_the_default_and_says_so():
    lo, hi, today = date(2024, 1, 1), date(2025, 6, 30), date(2030, 1, 1)
    start, end, _, note = filters.from_query_checked({"from": "2019-01-01", "to": "2019-03-31"}, lo, hi, [], today)
    assert (start, end) == filters.default_range(lo, hi, today) and (end - start).days == 89
    assert note and "outside the data" in note
    start, end, _, note = filters.from_query_checked({"from": "2025-06-01", "to": "2026-01-31"}, lo, hi, [], today)
    assert (start, end) == (date(2025, 6, 1), hi) and note and "trimmed" in note
    start, end, _, note = filters.from_query_checked({"from": "2025-01-01", "to": "2025-01-31"}, lo, hi, [], today)
    assert (start, end) == (date(2025, 1, 1), date(2025, 1, 31)) and note is None
    assert filters.from_query_checked({"from": "junk"}, lo, hi, [], today)[3]
    assert filters.from_query_checked({}, lo, hi, [], today)[3] is None


def test_out_of_range_url_period_is_announced_on_the_page(app_home):

    with env(PTPULSE_HOME=str(app_home.home), PTPULSE_DEMO_ROLE="owner"):
        at = app_test()
        at.query_params["from"] = "2001-01-01"
        at.query_params["to"] = "2001-02-01"
        at.run()
    assert not at.exception
    assert any("outside the data" in w.value for w in at.warning), [w.value for w in at.warning]
    start, end = at.session_state["f_dates"]
    reader = DbReader(AnalyticsDb(app_home.analytics_db), auth.Scope("owner"))
    hi = data_date_range(reader)[1]
    assert end == hi and end - start == timedelta(days=filters.DEFAULT_DAYS - 1)
