"""The two KPIs the mart keeps by month only (cost per new patient, attributed marketing ROI) over a range, on a
small hand-made DuckDB file holding the marts the Overview and Attribution queries read (practice_kpis with
the mart's columns, kpi_definitions loaded from the dbt seed, build_info). Review of the KPI tiles:

1. A month whose marketing spend is not reported yet (practice_kpis: NULL spend, its new patients counted) was
   summed as $0 spend: Aug 3 - Oct 31 read $94.81 instead of $162.09 = (3,867.14 + 1,157.71) / (16 + 15). Such a
   month is left out of both sums, on the Overview and on the Attribution page, and the tile names it. Attributed
   ROI keeps its definition (practice_kpis.sql, session 13): a month without reported spend adds its credited
   revenue at $0 spend.
3. The previous period of N whole calendar months was every month the previous N *days* touch (July against
   May + June, Q3 against March - June); it is the N calendar months before, and the tile says which months a
   comparison covers when they differ from its dates.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from app.lib import auth, formatting
from app.lib.db import AnalyticsDb
from app.lib.queries.attribution import marketing_new_patients
from app.lib.queries.base import DbReader, Filters
from app.lib.queries.overview import kpi_by_clinic, kpi_summary

SEED = Path(__file__).resolve().parents[2] / "dbt_project" / "seeds" / "kpi_definitions.csv"
MONTHS = [date(2026, m, 1) for m in range(3, 11)]  # Mar .. Oct 2026; as_of Oct 31
# per clinic and month: spend (None = not reported), new patients from marketing, linear-credited paid revenue
MARKETING = {
    "CL001": {
        3: (2709.24, 15, 5100.0),
        4: (3069.22, 10, 6100.0),
        5: (2870.11, 14, 4200.0),
        6: (2351.33, 7, 3900.0),
        7: (4154.53, 16, 9100.0),
        8: (2867.14, 9, 7456.82),
        9: (857.71, 8, 2781.19),
        10: (None, 12, 1599.41),
    },
    "CL002": {
        3: (1000.0, 10, 2000.0),
        4: (1000.0, 7, 1500.0),
        5: (1000.0, 10, 2600.0),
        6: (1000.0, 5, 1200.0),
        7: (2000.0, 10, 4300.0),
        8: (1000.0, 7, 2000.0),
        9: (300.0, 7, 900.0),
        10: (None, 10, 800.0),
    },
}


def _month_rows() -> list[tuple]:
    """practice_kpis month rows as practice_kpis.sql makes them: cost per new patient = spend / new patients (NULL
    spend for a month not reported); attributed ROI = (revenue - spend) / spend with unreported spend at $0."""
    rows = []
    for m in MONTHS:
        per = {c: MARKETING[c][m.month] for c in MARKETING}
        spend_all = None if all(p[0] is None for p in per.values()) else sum(p[0] or 0 for p in per.values())
        groups = {**per, "ALL": (spend_all, sum(p[1] for p in per.values()), sum(p[2] for p in per.values()))}
        for clinic, (spend, patients, revenue) in groups.items():
            cpp = None if spend is None else spend / patients
            rows.append((clinic, "month", m, "cost_per_new_patient", spend, float(patients), cpp))
            roi_den = spend or 0.0
            roi = None if roi_den == 0 else (revenue - roi_den) / roi_den
            rows.append((clinic, "month", m, "attributed_roi", revenue - roi_den, roi_den, roi))
    return rows


def _day_rows() -> list[tuple]:
    """no_show_rate by day for the practice, Mar 1 - Sep 30: a day-grain KPI keeps its exact dates."""
    rows = []
    for d in pd.date_range("2026-03-01", "2026-09-30"):
        num, den = float(d.day % 4), 20.0
        rows.append(("ALL", "day", d.date(), "no_show_rate", num, den, num / den))
    return rows


@pytest.fixture(scope="module")
def db_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("month_only") / "analytics.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema marts")
    con.execute(f"create table marts.kpi_definitions as select * from read_csv('{SEED}', header = true)")
    con.execute(
        "create table marts.build_info as select 'b1' as build_id, timestamp '2026-10-31 23:59:59' as as_of, "
        "'data' as as_of_source, timestamp '2026-11-01 06:00:00' as built_at, 0.95 as maturity_resolved_share"
    )
    con.execute(
        "create table marts.dim_clinics as select * from (values ('CL001', 'Northside'), ('CL002', 'Riverside')) "
        "as c (clinic_id, clinic_name)"
    )
    con.execute(
        """create table marts.practice_kpis (clinic_id varchar, grain varchar, period_start date, kpi varchar,
           numerator double, denominator double, value double, cohort double, pending double,
           resolved_share double, is_maturing boolean)"""
    )
    con.executemany(
        "insert into marts.practice_kpis values (?, ?, ?, ?, ?, ?, ?, null, null, null, false)",
        _month_rows() + _day_rows(),
    )
    con.close()
    return path


def _reader(path: Path, role: str = "owner", clinics: tuple[str, ...] | None = None) -> DbReader:
    return DbReader(AnalyticsDb(path), auth.Scope(role, clinics=clinics))


def _cost(clinics: list[str], months: list[int]) -> float:
    """Spend over new patients of the months with spend reported, summed over `clinics`."""
    spend = sum(MARKETING[c][m][0] for c in clinics for m in months)
    patients = sum(MARKETING[c][m][1] for c in clinics for m in months)
    return spend / patients


def _tile(summary: pd.DataFrame, kpi: str, compare: str = "previous"):
    return formatting.kpi_tile({**summary.set_index("kpi").loc[kpi].to_dict(), "kpi": kpi}, compare)


DEFAULT_90_DAYS = Filters(date(2026, 8, 3), date(2026, 10, 31))  # filters.default_range at as_of Oct 31


# ------------------------------------------------ 1. a month without reported spend is left out of both sums


def test_cost_per_new_patient_leaves_out_a_month_without_reported_spend(db_path):
    s = kpi_summary(_reader(db_path), DEFAULT_90_DAYS)
    row = s.set_index("kpi").loc["cost_per_new_patient"]
    expected = _cost(["CL001", "CL002"], [8, 9])  # not (Aug + Sep spend) / (Aug + Sep + Oct patients)
    assert row["value"] == pytest.approx(expected, rel=1e-12)
    assert row["denominator"] == sum(MARKETING[c][m][1] for c in MARKETING for m in (8, 9))
    assert [pd.Timestamp(m) for m in row["unreported_periods"]] == [pd.Timestamp("2026-10-01")]
    tile = _tile(s, "cost_per_new_patient")
    assert "Oct 2026: spend not reported yet, left out" in tile.note, tile.note
    assert "Whole months: Aug – Oct 2026" in tile.note
    assert "no spend reported yet" in tile.help and "not $0" in tile.help


def test_the_attribution_page_leaves_out_the_same_month(db_path):
    got = marketing_new_patients(_reader(db_path), DEFAULT_90_DAYS)
    assert got["cost_per_new_patient"] == pytest.approx(_cost(["CL001", "CL002"], [8, 9]), rel=1e-12)
    assert got["spend_usd"] == pytest.approx(sum(MARKETING[c][m][0] for c in MARKETING for m in (8, 9)))
    assert got["new_patients"] == sum(MARKETING[c][m][1] for c in MARKETING for m in (8, 9))
    assert got["unreported_months"] == [pd.Timestamp("2026-10-01")]
    assert formatting.unreported_text(got["unreported_months"], "cost_per_new_patient") == (
        "Oct 2026: spend not reported yet, left out"
    )


def test_a_scoped_manager_and_the_clinic_comparison_leave_it_out_too(db_path):
    manager = _reader(db_path, "manager", ("CL002",))
    one = kpi_summary(manager, DEFAULT_90_DAYS).set_index("kpi").loc["cost_per_new_patient", "value"]
    assert one == pytest.approx(_cost(["CL002"], [8, 9]), rel=1e-12)
    assert marketing_new_patients(manager, DEFAULT_90_DAYS)["cost_per_new_patient"] == pytest.approx(one, rel=1e-12)
    two = kpi_summary(_reader(db_path), Filters(DEFAULT_90_DAYS.start, DEFAULT_90_DAYS.end, ("CL001", "CL002")))
    assert two.set_index("kpi").loc["cost_per_new_patient", "value"] == pytest.approx(
        _cost(["CL001", "CL002"], [8, 9]), rel=1e-12
    )
    by_clinic = kpi_by_clinic(_reader(db_path), DEFAULT_90_DAYS, "cost_per_new_patient").set_index("clinic_id")
    assert by_clinic["value"].to_dict() == pytest.approx({c: _cost([c], [8, 9]) for c in MARKETING}, rel=1e-12)


def test_a_range_of_unreported_months_only_has_no_value_and_says_why(db_path):
    s = kpi_summary(_reader(db_path), Filters(date(2026, 10, 1), date(2026, 10, 31)))
    row = s.set_index("kpi").loc["cost_per_new_patient"]
    assert pd.isna(row["value"])
    tile = _tile(s, "cost_per_new_patient")
    assert tile.value == "–" and "Oct 2026: spend not reported yet, left out" in tile.note
    got = marketing_new_patients(_reader(db_path), Filters(date(2026, 10, 1), date(2026, 10, 31)))
    assert got["spend_usd"] is None and got["cost_per_new_patient"] is None  # the page shows "–", not $0


def test_a_range_with_every_month_reported_names_none(db_path):
    f = Filters(date(2026, 6, 3), date(2026, 9, 30))
    s = kpi_summary(_reader(db_path), f)
    assert s.set_index("kpi").loc["cost_per_new_patient", "value"] == pytest.approx(
        _cost(["CL001", "CL002"], [6, 7, 8, 9]), rel=1e-12
    )
    assert "not reported" not in _tile(s, "cost_per_new_patient").note
    got = marketing_new_patients(_reader(db_path), f)
    assert got["unreported_months"] == [] and got["cost_per_new_patient"] == pytest.approx(
        _cost(["CL001", "CL002"], [6, 7, 8, 9]), rel=1e-12
    )


def test_attributed_roi_keeps_its_definition_for_a_month_without_reported_spend(db_path):
    """practice_kpis.sql (session 13): a month without reported spend adds its credited revenue at $0 spend, as the
    Attribution page sums a range. Its numerator is never NULL, so nothing is left out and no month is named."""
    s = kpi_summary(_reader(db_path), DEFAULT_90_DAYS)
    revenue = sum(MARKETING[c][m][2] for c in MARKETING for m in (8, 9, 10))
    spend = sum(MARKETING[c][m][0] for c in MARKETING for m in (8, 9))
    row = s.set_index("kpi").loc["attributed_roi"]
    assert row["value"] == pytest.approx((revenue - spend) / spend, rel=1e-12)
    assert row["denominator"] == pytest.approx(spend)
    assert "not reported" not in _tile(s, "attributed_roi").note


# ------------------------------------------------ 3. the previous period of N whole months is the N months before


def _month_value(kpi: str, months: list[int]) -> float:
    rows = [r for r in _month_rows() if r[0] == "ALL" and r[3] == kpi and r[2].month in months]
    return sum(r[4] for r in rows) / sum(r[5] for r in rows)


@pytest.mark.parametrize(
    ("f", "before", "shown"),
    [
        (Filters(date(2026, 7, 1), date(2026, 7, 31)), [6], "Jun 2026"),  # was May + June
        (Filters(date(2026, 7, 1), date(2026, 9, 30)), [4, 5, 6], "Apr – Jun 2026"),  # was March - June
    ],
)
@pytest.mark.parametrize("kpi", ["cost_per_new_patient", "attributed_roi"])
def test_whole_months_compare_with_as_many_months_just_before(db_path, f, before, shown, kpi):
    s = kpi_summary(_reader(db_path), f)
    row = s.set_index("kpi").loc[kpi]
    assert row["previous"] == pytest.approx(_month_value(kpi, before), rel=1e-12)
    assert pd.Timestamp(row["previous_first_period"]) == pd.Timestamp(2026, before[0], 1)
    assert pd.Timestamp(row["previous_last_period"]) == pd.Timestamp(2026, before[-1], 1)
    tile = _tile(s, kpi)
    assert f"Previous period: {shown}" in tile.note, tile.note
    assert f"the previous period covers {shown}" in tile.help
    assert "Whole months" not in tile.note  # the period itself is whole months: nothing to say about it
    # a day-grain KPI keeps the previous N days (July: May 31 - June 30), and says nothing
    days = pd.date_range(f.previous.start, f.previous.end)
    assert s.set_index("kpi").loc["no_show_rate", "previous"] == pytest.approx(
        sum(d.day % 4 for d in days) / (20.0 * len(days)), rel=1e-12
    )
    assert _tile(s, "no_show_rate").note == ""


def test_a_previous_period_that_is_whole_months_itself_is_not_named(db_path):
    """August's previous 31 days are July 1-31: the months are the dates, so the tile adds nothing."""
    s = kpi_summary(_reader(db_path), Filters(date(2026, 8, 1), date(2026, 8, 31)))
    row = s.set_index("kpi").loc["cost_per_new_patient"]
    assert row["previous"] == pytest.approx(_month_value("cost_per_new_patient", [7]), rel=1e-12)
    assert _tile(s, "cost_per_new_patient").note == ""


def test_a_range_that_is_not_whole_months_still_compares_the_months_its_previous_days_touch(db_path):
    """Aug 3 - Oct 31: previous May 5 - Aug 2, months May - July (stopping before August, the current first)."""
    s = kpi_summary(_reader(db_path), DEFAULT_90_DAYS)
    row = s.set_index("kpi").loc["cost_per_new_patient"]
    assert row["previous"] == pytest.approx(_month_value("cost_per_new_patient", [5, 6, 7]), rel=1e-12)
    assert "Previous period: May – Jul 2026" in _tile(s, "cost_per_new_patient").note


def test_months_text():
    assert formatting.months_text([pd.Timestamp("2026-10-01")]) == "Oct 2026"
    assert formatting.months_text([date(2026, 10, 1), date(2026, 9, 1)]) == "Sep – Oct 2026"
    assert formatting.months_text([date(2026, 6, 1), date(2026, 10, 1)]) == "Jun 2026, Oct 2026"
    assert (
        formatting.months_text(None) == ""
        and formatting.months_text(float("nan")) == ""
        and formatting.unreported_text([]) == ""
    )
