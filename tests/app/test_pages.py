"""Every page for every role, on a real built home (AppTest): allowed roles see the key figures without an
exception; refused roles get a refusal and no data."""

from __future__ import annotations

import re

import pytest
from app_helpers import open_page, rendered_text, rerun

from app.lib import auth

# A metric label (or widget) that proves the page's key figures rendered.
KEY_FIGURE = {
    "overview": "No-show rate",
    "funnel": "Referrals received",
    "referral_sources": "Fading sources",
    "attribution": "Marketing spend",
    "leakage": "Revenue lost in range",
    "work_queue": "Open tasks",
    "no_show": "High risk",
    "data_health": "Rows quarantined",
}

# Repository file names mean nothing to a user (they do not have the files): no page may cite one.
FILE_NAME = re.compile(r"DESIGN\.md|[\w/.-]+\.(?:md|py)\b")


def assert_cites_no_repo_file(at) -> None:
    found = sorted({m.group(0) for m in FILE_NAME.finditer(rendered_text(at))})
    assert not found, f"user-facing text cites repository files: {found}"


CASES = [(role, page) for role in auth.ROLES for page in auth.PAGE_ACCESS]


@pytest.mark.parametrize("role,page", [c for c in CASES if auth.can_view(*c)])
def test_allowed_page_renders_key_figures(app_home, role, page):
    at = open_page(app_home, role, page)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    labels = [m.label for m in at.metric]
    if page in KEY_FIGURE:
        assert KEY_FIGURE[page] in labels, labels
    if page == "forecast":
        assert any(label.endswith("forecast, next 4 weeks") for label in labels), labels
        assert "Relative error (MASE vs baseline)" in labels, labels  # the backtest is shown beside it
    if page == "sql":
        assert at.text_area(key="sql_text") is not None
    if page == "admin":
        assert any(b.label == "Refresh now" for b in at.button)
    assert "Demo mode" in " ".join(w.value for w in at.warning)
    assert_cites_no_repo_file(at)


@pytest.mark.parametrize("role,page", [c for c in CASES if not auth.can_view(*c)])
def test_refused_page_shows_refusal_and_no_data(app_home, role, page):
    at = open_page(app_home, role, page)
    assert not at.exception
    assert any("not available to the" in e.value for e in at.error), [e.value for e in at.error]
    assert len(at.dataframe) == 0 and len(at.metric) == 0
    assert_cites_no_repo_file(at)


def test_menu_lists_only_the_roles_pages(app_home):
    at = open_page(app_home, "front_desk", "work_queue")
    text = rendered_text(at)
    assert "Work queue" in text
    assert at.title[0].value == "Work queue"


def test_sql_page_runs_a_query_for_analysts(app_home):
    at = open_page(app_home, "analyst", "sql")
    at.text_area(key="sql_text").input("select kpi, count(*) n from marts.practice_kpis group by kpi")
    at.get("form_submit_button")[0].click()
    rerun(at, app_home)
    assert not at.exception
    frames = [d.value for d in at.dataframe]
    assert any(list(f.columns) == ["kpi", "n"] and len(f) > 5 for f in frames)


def test_sql_page_refuses_writes(app_home):
    at = open_page(app_home, "analyst", "sql")
    at.text_area(key="sql_text").input("copy (select 1) to '/tmp/pwned.csv'")
    at.get("form_submit_button")[0].click()
    rerun(at, app_home)
    assert any("Only SELECT" in e.value for e in at.error)
