"""Issue 10 item 4 (app side): a KPI tile over a period the mart has a row for shows that row's value; any
other period is put together with the mart's own formula (summed numerator / summed denominator)."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest

from app.lib import auth
from app.lib.db import AnalyticsDb
from app.lib.queries.base import DbReader, Filters, data_date_range
from app.lib.queries.overview import kpi_by_clinic, kpi_summary, mart_grain


@pytest.fixture(scope="module")
def reader(app_home):
    return DbReader(AnalyticsDb(app_home.analytics_db), auth.Scope("owner"))


def _last_whole_month(reader) -> Filters:
    _, hi = data_date_range(reader)
    end = date(hi.year, hi.month, 1) - timedelta(days=1)
    return Filters(date(end.year, end.month, 1), end)


def _mart(reader, grain: str, start: date, end: date, practice: bool = True) -> pd.DataFrame:
    return reader.df(
        """select kpi, clinic_id, value, numerator, denominator from marts.practice_kpis
                        where grain = $grain and period_start between $start and $end
                          and (clinic_id = 'ALL') = $practice""",
        {"grain": grain, "start": start, "end": end, "practice": practice},
    )


def test_mart_grain_is_the_coarsest_that_tiles_the_range():
    assert mart_grain(date(2025, 2, 1), date(2025, 2, 28)) == "month"
    assert mart_grain(date(2025, 1, 1), date(2025, 3, 31)) == "month"
    assert mart_grain(date(2025, 3, 3), date(2025, 3, 9)) == "week"  # Monday to Sunday
    assert mart_grain(date(2025, 3, 3), date(2025, 3, 8)) == "day"
    assert mart_grain(date(2025, 2, 2), date(2025, 3, 1)) == "day"


def test_a_whole_month_tile_is_the_marts_value_for_that_month(reader):
    f = _last_whole_month(reader)
    tiles = kpi_summary(reader, f).set_index("kpi")["value"]
    mart = _mart(reader, "month", f.start, f.start).set_index("kpi")["value"]
    assert len(mart) >= 15
    for kpi, value in mart.items():
        assert (pd.isna(value) and pd.isna(tiles[kpi])) or tiles[kpi] == value, kpi  # the row itself, not re-divided


def test_a_whole_week_tile_is_the_marts_value_for_that_week(reader):
    f = _last_whole_month(reader)
    monday = f.start + timedelta(days=(7 - f.start.weekday()) % 7)
    tiles = kpi_summary(reader, Filters(monday, monday + timedelta(days=6))).set_index("kpi")["value"]
    mart = _mart(reader, "week", monday, monday).set_index("kpi")["value"].dropna()
    assert len(mart) >= 10 and all(tiles[k] == v for k, v in mart.items())


def test_clinic_comparison_over_a_month_is_each_clinics_mart_value(reader):
    f = _last_whole_month(reader)
    got = kpi_by_clinic(reader, f, "no_show_rate").set_index("clinic_id")["value"]
    mart = _mart(reader, "month", f.start, f.start, practice=False)
    mart = mart[mart["kpi"] == "no_show_rate"].set_index("clinic_id")["value"]
    assert len(mart) and got.to_dict() == mart.to_dict()


def test_any_other_period_uses_the_marts_formula_over_the_rows_that_tile_it(reader):
    last = _last_whole_month(reader)
    start = date((last.start - timedelta(days=40)).year, (last.start - timedelta(days=40)).month, 1)
    f = Filters(start, last.end)  # two whole months: no single mart row
    tiles = kpi_summary(reader, f).set_index("kpi")
    for grain in ("month", "day"):  # the same figure from either tiling
        rows = _mart(reader, grain, f.start, f.end)
        ratio = rows[rows["kpi"] == "no_show_rate"]
        assert tiles.loc["no_show_rate", "value"] == pytest.approx(
            ratio["numerator"].sum() / ratio["denominator"].sum(), rel=1e-12
        )
    odd = Filters(last.start + timedelta(days=3), last.end - timedelta(days=2))  # a custom range: day rows
    days = _mart(reader, "day", odd.start, odd.end)
    days = days[days["kpi"] == "denial_rate"]
    assert kpi_summary(reader, odd).set_index("kpi").loc["denial_rate", "value"] == pytest.approx(
        days["numerator"].sum() / days["denominator"].sum(), rel=1e-12
    )


# ------------------------------------------------ review #2: month-only KPIs cover every month the range touches


def _months_touching(reader, kpi: str, start: date, end: date) -> pd.DataFrame:
    """The recomputation: the practice's month rows of every calendar month [start, end] touches."""
    return reader.df(
        """select period_start, numerator, denominator from marts.practice_kpis
           where kpi = $kpi and clinic_id = 'ALL' and grain = 'month'
             and period_start between date_trunc('month', $start::date) and $end order by 1""",
        {"kpi": kpi, "start": start, "end": end},
    )


def _odd_range(reader) -> Filters:
    """Like the default 90-day range: starts after the 1st of a month, ends at a month's end, three months."""
    last = _last_whole_month(reader)
    first = date((last.start - timedelta(days=45)).year, (last.start - timedelta(days=45)).month, 3)
    return Filters(first, last.end)


@pytest.mark.parametrize("kpi", ["cost_per_new_patient", "attributed_roi"])
def test_month_only_kpi_covers_every_month_the_range_touches(reader, kpi):
    f = _odd_range(reader)
    rows = _months_touching(reader, kpi, f.start, f.end)
    assert len(rows) == 3 and rows["period_start"].min().day == 1 and rows["period_start"].min() < pd.Timestamp(f.start)
    s = kpi_summary(reader, f).set_index("kpi")
    # the defect: the first month (it starts before Aug 3) was dropped
    assert s.loc[kpi, "value"] == pytest.approx(rows["numerator"].sum() / rows["denominator"].sum(), rel=1e-12)
    assert pd.Timestamp(s.loc[kpi, "first_period"]) == rows["period_start"].min()
    assert pd.Timestamp(s.loc[kpi, "last_period"]) == rows["period_start"].max()
    # the previous period's months end before this one's first month: no month on both sides of the delta
    assert pd.Timestamp(s.loc[kpi, "previous_last_period"]) < rows["period_start"].min()
    prev = _months_touching(reader, kpi, f.previous.start, f.start.replace(day=1) - timedelta(days=1))
    assert s.loc[kpi, "previous"] == pytest.approx(prev["numerator"].sum() / prev["denominator"].sum(), rel=1e-12)
    # day-grain KPIs keep the exact dates
    days = _mart(reader, "day", f.start, f.end)
    ns = days[days["kpi"] == "no_show_rate"]
    assert s.loc["no_show_rate", "value"] == pytest.approx(ns["numerator"].sum() / ns["denominator"].sum(), rel=1e-12)


def test_a_range_inside_one_month_still_has_its_monthly_kpis(reader):
    last = _last_whole_month(reader)
    f = Filters(last.start + timedelta(days=5), last.start + timedelta(days=19))
    s = kpi_summary(reader, f).set_index("kpi")
    rows = _months_touching(reader, "cost_per_new_patient", f.start, f.end)
    assert len(rows) == 1
    assert s.loc["cost_per_new_patient", "value"] == pytest.approx(
        rows["numerator"].iloc[0] / rows["denominator"].iloc[0], rel=1e-12
    )


def test_clinic_comparison_of_a_month_only_kpi_uses_the_same_months(reader):
    f = _odd_range(reader)
    got = kpi_by_clinic(reader, f, "cost_per_new_patient")
    rows = reader.df(
        """select clinic_id, sum(numerator) / sum(denominator) as v from marts.practice_kpis
           where kpi = 'cost_per_new_patient' and clinic_id <> 'ALL' and grain = 'month'
             and period_start between date_trunc('month', $start::date) and $end group by 1""",
        {"start": f.start, "end": f.end},
    ).set_index("clinic_id")["v"]
    assert len(rows) and got.set_index("clinic_id")["value"].to_dict() == pytest.approx(rows.to_dict(), rel=1e-12)


def test_overview_tile_agrees_with_attribution_and_names_its_months(app_home, reader):
    """The pages, same filter: Overview's Cost per new patient = Attribution's, and the tile names the months."""
    from app_helpers import open_page, rerun

    from app.lib.formatting import fmt

    f = _odd_range(reader)
    shown, captions = {}, {}
    for page in ("overview", "attribution"):
        at = open_page(app_home, "owner", page)
        at.date_input(key="f_dates").set_value((f.start, f.end))
        rerun(at, app_home)
        assert not at.exception, [e.value for e in at.exception]
        shown[page] = {m.label: m.value for m in at.metric}["Cost per new patient"]
        captions[page] = " ".join(c.value for c in at.caption)
    rows = _months_touching(reader, "cost_per_new_patient", f.start, f.end)
    assert shown["overview"] == shown["attribution"] == fmt(rows["numerator"].sum() / rows["denominator"].sum(), "usd")
    first, last = rows["period_start"].min(), rows["period_start"].max()
    assert f"Whole months: {first:%b} – {last:%b %Y}" in captions["overview"], captions["overview"]


# ------------------------------------------------ review #4: a ratio whose denominator is <= 0 has no value


def _negative_collection_day(reader) -> date:
    day = reader.df(
        """select period_start from marts.practice_kpis where kpi = 'net_collection_rate' and clinic_id = 'ALL'
           and grain = 'day' and denominator < 0 and value < 0 order by period_start desc limit 1"""
    )
    assert len(day), "the small practice has days with adjustments but no charges (the defect's precondition)"
    return pd.Timestamp(day["period_start"].iloc[0]).date()


def test_net_collection_rate_with_a_negative_denominator_shows_a_dash_and_why(reader):
    from app.lib.formatting import kpi_tile

    day = _negative_collection_day(reader)
    row = kpi_summary(reader, Filters(day, day)).set_index("kpi").loc["net_collection_rate"]
    assert row["denominator"] < 0 and pd.isna(row["value"])  # the mart's own row says e.g. -152.4%
    tile = kpi_tile({**row.to_dict(), "kpi": row.name})
    assert tile.value == "–" and tile.delta is None
    assert "denominator is negative" in tile.note and "undefined" in tile.help
    assert "%" not in tile.value
