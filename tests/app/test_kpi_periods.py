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
