"""A clinic-scoped analyst reads only their clinics on the SQL page, as on every other page: their worker holds an
in-memory copy of the twin with only those clinics' rows (tables with clinic_id), the reference tables whole,
and no practice-wide table; the twin itself is detached before the statement runs (sql_guard.scope_twin).
Real worker processes on the real built twin."""

from __future__ import annotations

import duckdb
import pytest
from app_helpers import env, open_page, rerun

from app.lib import sql_guard, sql_worker

FUNNEL = "select clinic_id, count(*) as referrals from marts.referral_funnel group by 1"


def _clinics(home) -> list[str]:
    con = duckdb.connect(str(home.analytics_deid_db), read_only=True)
    try:
        return [r[0] for r in con.execute("select distinct clinic_id from marts.referral_funnel order by 1").fetchall()]
    finally:
        con.close()


@pytest.fixture(scope="module")
def box(app_home):
    return sql_guard.build_sandbox(app_home.analytics_deid_db)


def test_a_scoped_analyst_reads_only_their_clinics(app_home, box):
    (clinic,) = _clinics(app_home)[:1]
    everyone = sql_worker.run_readonly(box, FUNNEL).frame
    assert clinic in set(everyone["clinic_id"])
    assert sql_worker.run_readonly(box, FUNNEL, clinics=["CL999"]).frame.empty  # another clinic's analyst
    mine = sql_worker.run_readonly(box, FUNNEL, clinics=[clinic]).frame
    assert mine.to_dict("records") == everyone[everyone["clinic_id"] == clinic].to_dict("records")


@pytest.mark.parametrize(
    "sql",
    [
        "select count(*) as n from analytics_deid.marts.visits",  # the twin's own name: the scoped copy
        'select count(*) as n from "analytics_deid"."marts"."visits" where clinic_id is not null',
        "select count(*) as n from marts.visits v join marts.claims c using (clinic_id)",
    ],
)
def test_no_name_reaches_another_clinics_rows(box, sql):
    assert sql_worker.run_readonly(box, sql, clinics=["CL999"]).frame["n"].tolist() == [0]


@pytest.mark.parametrize(
    "sql",
    [
        f"select * from {sql_guard.SCOPE_SOURCE}.marts.visits",  # the unscoped twin is detached
        "select * from marts.attribution_roi",  # practice-wide: not there for a scoped analyst
        "select * from ml.demand_forecast",
        "select row_counts from meta.builds",  # practice-wide row counts: the other clinics' volume by subtraction
        "select * from marts.source_coverage",
    ],
)
def test_the_twin_and_practice_wide_tables_are_not_there(box, sql):
    with pytest.raises(sql_guard.SqlRefused, match="does not exist"):
        sql_worker.run_readonly(box, sql, clinics=["CL999"])


REFERENCE_LISTS = [
    "marts.build_info",
    "marts.dim_payers",
    "marts.dim_referring_physicians",
    "marts.kpi_definitions",
    "marts.labels",
    "marts.outcome_measures",
    "marts.work_queue_outcomes",
    "marts.work_queue_rules",
]


@pytest.mark.parametrize("table", REFERENCE_LISTS)
def test_every_reference_list_is_read_whole(box, table):
    """docs/deploy.md promises a scoped analyst the reference lists whole; review: outcome_measures and
    work_queue_outcomes (seeds: no clinic, patient or count in them) were missing for them."""
    sql = f"select count(*) as n from {table}"
    everyone = sql_worker.run_readonly(box, sql).frame["n"].iloc[0]
    assert everyone > 0 and sql_worker.run_readonly(box, sql, clinics=["CL999"]).frame["n"].iloc[0] == everyone


def test_reference_tables_stay_whole_and_the_catalog_says_what_is_there(box):
    assert (
        sql_worker.run_readonly(box, "select count(*) as n from marts.dim_payers", clinics=["CL999"]).frame["n"].iloc[0]
        > 0
    )
    shown = set(sql_guard.sandbox_catalog(box, ["CL999"])["table_name"])
    assert {"marts.referral_funnel", "marts.dim_payers"} <= shown
    assert not shown & {"marts.attribution_roi", "marts.referral_source_performance", "ml.demand_forecast"}
    assert set(sql_guard.sandbox_catalog(box)["table_name"]) > shown  # unscoped analysts see every table


def test_the_sql_page_of_a_scoped_analyst(app_home):
    """Review M2's repro: an analyst scoped to another clinic got every clinic's referrals on the SQL page."""
    clinic = _clinics(app_home)[0]
    with env(PTPULSE_DEMO_CLINICS="CL999"):
        at = open_page(app_home, "analyst", "sql")
        at.text_area(key="sql_text").input(FUNNEL)
        at.get("form_submit_button")[0].click()
        at = rerun(at, app_home)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not [d.value for d in at.dataframe if "referrals" in d.value.columns]  # before: every clinic's rows
    assert "The query returned no rows." in [i.value for i in at.info]
    assert "limited to clinic(s) CL999" in " ".join(i.value for i in at.info)
    with env(PTPULSE_DEMO_CLINICS=clinic):
        at = open_page(app_home, "analyst", "sql")
        at.text_area(key="sql_text").input(FUNNEL)
        at.get("form_submit_button")[0].click()
        at = rerun(at, app_home)
    (result,) = [d.value for d in at.dataframe if "referrals" in d.value.columns]
    assert result["clinic_id"].tolist() == [clinic]
