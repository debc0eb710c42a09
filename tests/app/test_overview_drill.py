"""Overview drill-through (issue 14 item 5): picking a KPI under the tiles opens the rows behind its value, and
their count is the tile's denominator from marts.practice_kpis for the same period and clinics; identities go
only to roles allowed to see them (the page itself is owner/manager only)."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from app_helpers import open_page, rerun

from app.lib import auth, ui
from app.lib.db import AnalyticsDb
from app.lib.queries import overview_drill
from app.lib.queries.base import DbReader, Filters, data_date_range
from app.lib.queries.overview import kpi_summary

IDENTITIES = {"patient_name", "phone", "patient_id", "first_name", "last_name"}
PICKED = ("no_show_rate", "referral_conversion", "visits_per_discharge", "early_dropout_rate", "denial_rate")


def _reader(home, role: str) -> DbReader:
    return DbReader(AnalyticsDb(home.analytics_db), auth.Scope(role))


def _periods(home) -> list[Filters]:
    """A calendar month, a Monday-Sunday week and a custom range (summed day rows) ending at the data's end."""
    _, hi = data_date_range(_reader(home, "owner"))
    month_end = hi.replace(day=1) - timedelta(days=1)
    sunday = hi - timedelta(days=hi.weekday() + 1)
    return [
        Filters(month_end.replace(day=1), month_end),
        Filters(sunday - timedelta(days=6), sunday),
        Filters(hi - timedelta(days=75), hi - timedelta(days=3)),
    ]


def test_every_rate_kpi_rows_reconcile_with_the_mart_denominator(app_home):
    reader = _reader(app_home, "owner")
    for f in _periods(app_home):
        summary = kpi_summary(reader, f).set_index("kpi")
        for kpi, spec in overview_drill.DRILLS.items():
            if not spec.counts_denominator:
                continue
            rows = overview_drill.rows_behind(reader, f, kpi)
            assert len(rows) == summary.loc[kpi, "denominator"], (kpi, f)
        assert summary.loc["no_show_rate", "denominator"] > 0, f"{f}: the small practice has appointments"


def test_no_show_rows_carry_the_outcomes_that_make_the_numerator(app_home):
    f = _periods(app_home)[0]
    rows = overview_drill.rows_behind(_reader(app_home, "owner"), f, "no_show_rate")
    row = kpi_summary(_reader(app_home, "owner"), f).set_index("kpi").loc["no_show_rate"]
    assert (rows["status"] == "no_show").sum() / len(rows) == pytest.approx(row["value"])
    assert "scheduled" not in set(rows["status"])


@pytest.mark.parametrize("role", ["analyst", "marketing"])
def test_deidentified_roles_get_patient_key_never_names(app_home, role):
    reader = _reader(app_home, role)
    f = _periods(app_home)[2]
    for kpi in overview_drill.DRILLS:
        cols = set(overview_drill.rows_behind(reader, f, kpi).columns)
        practice_level = overview_drill.DRILLS[kpi].fetch is overview_drill.marketing_months  # no patient rows
        assert ("patient_key" in cols or practice_level) and not cols & IDENTITIES, (role, kpi)
    at = open_page(app_home, role, "overview")
    assert any("not available to the" in e.value for e in at.error)
    assert not at.dataframe


def test_page_drill_count_equals_the_tile_denominator(app_home):
    at = open_page(app_home, "owner", "overview")
    assert not at.exception, [e.value for e in at.exception]
    box = at.selectbox(key="ov_drill")
    assert box.value is None and not any(e.label.startswith("Appointments behind") for e in at.expander)
    f = at.session_state[ui.FILTERS_KEY]
    assert isinstance(f, Filters) and isinstance(f.start, date)
    summary = kpi_summary(_reader(app_home, "owner"), f).set_index("kpi")
    for kpi in PICKED:
        at.selectbox(key="ov_drill").set_value(kpi)
        rerun(at, app_home)
        assert not at.exception, [e.value for e in at.exception]
        label = summary.loc[kpi, "label"]
        shown = [e.label for e in at.expander if f"behind “{label}”" in e.label]
        assert len(shown) == 1, [e.label for e in at.expander]
        count = int(re.search(r": ([\d,]+)$", shown[0]).group(1).replace(",", ""))
        assert count == summary.loc[kpi, "denominator"], kpi
        cols = set().union(*(set(d.value.columns) for d in at.dataframe))
        assert {"patient_name", "patient_key"} <= cols, f"{kpi}: the owner sees who the rows are"


def test_marketing_rows_give_the_attributed_roi_tile(app_home):
    """Attributed ROI of a month = (attributed revenue - spend) / spend over the paid-channel rows listed."""
    reader = _reader(app_home, "owner")
    checked = 0
    for f in _periods(app_home)[:1]:
        rows = overview_drill.rows_behind(reader, f, "attributed_roi")
        value = kpi_summary(reader, f).set_index("kpi").loc["attributed_roi", "value"]
        spend = rows["spend_usd"].sum()
        if spend > 0 and value == value:
            roi = (rows["attributed_revenue_usd"].sum() - spend) / spend
            assert float(value) == pytest.approx(float(roi), rel=1e-6)  # a fraction, shown as %
            checked += 1
    assert checked == 1, "the small practice spends on marketing every month"


def test_open_claims_are_the_open_balance_of_the_practice(app_home):
    """Days in A/R's rows: every claim with a balance, serviced by the period's end; for a period ending at
    as_of their balances add up to the open A/R of the claims mart."""
    reader = _reader(app_home, "owner")
    hi = _periods(app_home)[2].end + timedelta(days=3)
    rows = overview_drill.rows_behind(reader, Filters(hi - timedelta(days=30), hi), "days_in_ar")
    total = reader.df(
        "select sum(insurance_balance_usd + patient_balance_usd) as ar from marts.claims "
        "where insurance_balance_usd + patient_balance_usd > 0"
    )["ar"].iloc[0]
    assert len(rows) > 0 and (rows["insurance_balance_usd"] + rows["patient_balance_usd"]).sum() == pytest.approx(total)
