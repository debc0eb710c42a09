"""The Overview's drill behind 'Cost per new patient' and 'Attributed marketing ROI' covers the clinics in view, as
the tiles do (review of the KPI tiles, defect 2): it read the practice-wide marts.attribution_roi whatever the
clinic filter and the user's scope, so a manager limited to CL002 was shown CL001's spend and credit ($31,360 of
spend against CL002's $7,812, Aug - Sep 2026) and the rows did not add up to their (CL002) tile. Also, on the same
real build, defect 1: the default 90 days end in a month whose spend is not reported yet; cost per new patient
leaves that month out of both sums and the tile says so.

Real two-clinic build (tests/app/multi_practice.py), the query functions on DbReader and the page in AppTest.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest
from multi_practice import open_page, reader, run, sql_frame, writable

from app.lib.queries import overview_drill
from app.lib.queries.attribution import marketing_new_patients
from app.lib.queries.base import Filters
from app.lib.queries.overview import kpi_summary

SCOPED = "CL002"
MARKETING_KPIS = ("cost_per_new_patient", "attributed_roi")


@pytest.fixture(scope="module")
def home(multi_built, tmp_path_factory):
    return writable(multi_built, tmp_path_factory.mktemp("marketing_drill") / "home")


def _as_of(home) -> date:
    return pd.Timestamp(sql_frame(home, "select max(as_of) from marts.build_info").iloc[0, 0]).date()


def _two_whole_months(home) -> Filters:
    """The two calendar months before as_of's (spend reported for both)."""
    end = _as_of(home).replace(day=1) - timedelta(days=1)
    return Filters((end.replace(day=1) - timedelta(days=1)).replace(day=1), end)


def _spend(home, f: Filters, clinics: list[str] | None) -> float:
    """Marketing spend of the months in range: the clinics' own, or the practice's paid channels."""
    if clinics is None:
        sql = (
            "select sum(spend_usd) from marts.attribution_roi where model = 'linear' and is_marketing "
            "and month between $start and $end"
        )
        return float(sql_frame(home, sql, {"start": f.start.replace(day=1), "end": f.end}).iloc[0, 0])
    sql = (
        "select sum(spend_usd) from marts.marketing_mix_monthly where list_contains($clinics, clinic_id) "
        "and month between $start and $end"
    )
    return float(sql_frame(home, sql, {"clinics": clinics, "start": f.start.replace(day=1), "end": f.end}).iloc[0, 0])


def _other_clinic(home) -> str:
    return sql_frame(home, "select clinic_id from marts.dim_clinics where clinic_id <> $c", {"c": SCOPED}).iloc[0, 0]


@pytest.mark.parametrize("kpi", MARKETING_KPIS)
def test_a_scoped_managers_drill_is_their_clinic_and_adds_up_to_their_tile(home, kpi):
    f = _two_whole_months(home)
    manager = reader(home, "manager", (SCOPED,))
    rows = overview_drill.rows_behind(manager, f, kpi)
    tile = kpi_summary(manager, f).set_index("kpi")
    spend, revenue = float(rows["spend_usd"].sum()), float(rows["attributed_revenue_usd"].sum())
    # the clinic's spend, not the practice's (the defect: every clinic's rows)
    assert spend == pytest.approx(_spend(home, f, [SCOPED]), abs=0.005)
    assert spend < _spend(home, f, None) - 1
    # the rows add up to the clinic's tiles: ROI's denominator is the spend, its value (revenue - spend) / spend
    assert spend == pytest.approx(tile.loc["attributed_roi", "denominator"], abs=0.005)
    assert (revenue - spend) / spend == pytest.approx(tile.loc["attributed_roi", "value"], rel=1e-9)
    cpp = tile.loc["cost_per_new_patient"]
    assert spend == pytest.approx(cpp["value"] * cpp["denominator"], rel=1e-9)  # cost per new patient's spend
    # an owner who picks the clinic sees the same rows; the other clinic's rows are the rest of the practice
    owner = reader(home)
    picked = overview_drill.rows_behind(owner, Filters(f.start, f.end, (SCOPED,)), kpi)
    pd.testing.assert_frame_equal(picked, rows)
    other = overview_drill.rows_behind(owner, Filters(f.start, f.end, (_other_clinic(home),)), kpi)
    assert float(other["spend_usd"].sum()) + spend == pytest.approx(_spend(home, f, None), abs=0.01)
    # every clinic: still the practice's mart, row for row
    practice = overview_drill.rows_behind(owner, f, kpi)
    assert float(practice["spend_usd"].sum()) == pytest.approx(_spend(home, f, None), abs=0.005)


def test_the_overview_page_drill_shows_a_scoped_manager_their_clinic_only(home):
    at = open_page(home, "manager", "overview", clinics=SCOPED)
    f = at.session_state["ptpulse_filters"]
    at.selectbox(key="ov_drill").set_value("attributed_roi")
    run(at, home, PTPULSE_DEMO_ROLE="manager", PTPULSE_DEMO_CLINICS=SCOPED)  # the same user again
    (frame,) = [d.value for d in at.dataframe if "spend_usd" in d.value.columns]
    assert float(frame["spend_usd"].sum()) == pytest.approx(_spend(home, f, [SCOPED]), abs=0.005)
    assert float(frame["spend_usd"].sum()) < _spend(home, f, None) - 1


def test_the_default_range_leaves_out_the_month_without_reported_spend(home):
    """Defect 1 on a real build: the default 90 days end at as_of, whose month has no spend reported yet."""
    as_of = _as_of(home)
    f = Filters(as_of - timedelta(days=89), as_of)
    months = sql_frame(
        home,
        "select period_start, numerator, denominator from marts.practice_kpis where kpi = 'cost_per_new_patient' "
        "and grain = 'month' and clinic_id = $c and period_start between $start and $end order by 1",
        {"c": SCOPED, "start": f.start.replace(day=1), "end": f.end},
    )
    unreported = months[months["numerator"].isna()]
    assert len(unreported) == 1 and unreported["denominator"].iloc[0] > 0, "precondition: as_of's month"
    known = months[months["numerator"].notna()]
    expected = known["numerator"].sum() / known["denominator"].sum()
    manager = reader(home, "manager", (SCOPED,))
    tile = kpi_summary(manager, f).set_index("kpi").loc["cost_per_new_patient"]
    assert tile["value"] == pytest.approx(expected, rel=1e-12)
    assert marketing_new_patients(manager, f)["cost_per_new_patient"] == pytest.approx(expected, rel=1e-12)
    month = f"{pd.Timestamp(unreported['period_start'].iloc[0]):%b %Y}"
    for page in ("overview", "attribution"):  # both pages name the month left out
        at = open_page(home, "manager" if page == "overview" else "marketing", page, clinics=SCOPED)
        captions = " ".join(c.value for c in at.caption)
        assert f"{month}: spend not reported yet, left out" in captions, (page, captions)
