"""Days in A/R is a balance at a point in time, not a flow (kpi_definitions.aggregation = 'last'): over a range of
several days, weeks or months the Overview shows the balance of the range's last day (or as_of, when earlier),
summed across the selected clinics, as the mart's own week and month rows are; so do the previous period, the same
dates last year, the healthy-band verdict and the clinic comparison. Summing every day's A/R and every day's
average daily charges (what the tile did) gave a weighted average of the daily values: 49.78 days against 44.23
by definition on the small practice's default 90 days.

Every other KPI sums (aggregation 'sum'): checked against the mart itself, whose month rows are the sums of their
days for those KPIs and the last day's row for days in A/R.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest
from multi_practice import build_multi

from app.lib import auth
from app.lib.db import AnalyticsDb
from app.lib.filters import default_range
from app.lib.formatting import band_status, fmt, fmt_delta
from app.lib.queries.base import DbReader, Filters, data_date_range
from app.lib.queries.overview import kpi_by_clinic, kpi_summary, last_year

KPI = "days_in_ar"


def _reader(home) -> DbReader:
    return DbReader(AnalyticsDb(home.analytics_db), auth.Scope("owner"))


@pytest.fixture(scope="module")
def reader(app_home) -> DbReader:
    return _reader(app_home)


def _as_of(reader) -> date:
    return data_date_range(reader)[1]


def _day_rows(reader, day: date, clinics: list[str] | None = None) -> tuple[float, float]:
    """(A/R, average daily charges) of the mart's day rows on `day`: the practice's ('ALL') or the clinics' summed."""
    where = "clinic_id = 'ALL'" if clinics is None else "list_contains($clinics, clinic_id)"
    df = reader.df(
        f"select sum(numerator) as n, sum(denominator) as d from marts.practice_kpis "
        f"where kpi = 'days_in_ar' and grain = 'day' and period_start = $day and {where}",
        {"day": day, **({} if clinics is None else {"clinics": clinics})},
    )
    return float(df["n"].iloc[0]), float(df["d"].iloc[0])


def _balance(reader, end: date, clinics: list[str] | None = None) -> float:
    """Days in A/R by definition: A/R at the range's last day (or as_of) / average daily charges then."""
    n, d = _day_rows(reader, min(end, _as_of(reader)), clinics)
    return n / d


def _ranges(reader) -> dict[str, Filters]:
    lo, hi = data_date_range(reader)
    last_month_end = hi.replace(day=1) - timedelta(days=1)
    sunday = hi - timedelta(days=hi.weekday() + 1)
    return {
        "default 90 days": Filters(*default_range(lo, hi, hi)),
        "three whole months": Filters((last_month_end - timedelta(days=62)).replace(day=1), last_month_end),
        "Monday-Sunday week": Filters(sunday - timedelta(days=6), sunday),
        "custom, ends mid-week": Filters(hi - timedelta(days=40), hi - timedelta(days=10)),
        "runs past as_of": Filters(hi - timedelta(days=20), hi + timedelta(days=15)),
    }


# ------------------------------------------------------------------ the marking, checked against the mart


def test_every_kpi_says_how_its_rows_combine_and_the_mart_agrees(reader):
    defs = reader.df("select kpi, aggregation from marts.kpi_definitions").set_index("kpi")["aggregation"]
    assert set(defs) <= {"sum", "last"} and defs[KPI] == "last"
    assert (defs.drop(KPI) == "sum").all(), "only days in A/R is a balance"
    # each month row of the practice against its day rows: their sum ('sum') or the last day's row ('last')
    months = reader.df(
        """with days as (
               select kpi, date_trunc('month', period_start)::date as month, sum(numerator) as num_sum,
                      sum(denominator) as den_sum, arg_max(numerator, period_start) as num_last,
                      arg_max(denominator, period_start) as den_last, max(period_start) as last_day
               from marts.practice_kpis where clinic_id = 'ALL' and grain = 'day' group by all)
           select m.kpi, m.period_start, m.numerator, m.denominator, d.num_sum, d.den_sum, d.num_last, d.den_last,
                  d.last_day, d.month
           from marts.practice_kpis m join days d on d.kpi = m.kpi and d.month = m.period_start
           where m.clinic_id = 'ALL' and m.grain = 'month'"""
    )
    as_of = _as_of(reader)
    assert set(months["kpi"]) == set(defs.index) - {"cost_per_new_patient", "attributed_roi"}  # monthly only
    for row in months.itertuples():
        if defs[row.kpi] == "sum":
            assert (row.numerator, row.denominator) == pytest.approx((row.num_sum, row.den_sum), rel=1e-9, abs=1e-6)
        else:
            month_end = min((pd.Timestamp(row.month) + pd.offsets.MonthEnd(0)).date(), as_of)
            assert pd.Timestamp(row.last_day).date() == month_end  # a balance on every day
            assert (row.numerator, row.denominator) == pytest.approx((row.num_last, row.den_last), rel=1e-12)


# ------------------------------------------------------------------ the tile, one clinic (the small practice)


def test_days_in_ar_over_a_range_is_the_balance_at_its_last_day(reader):
    for name, f in _ranges(reader).items():
        row = kpi_summary(reader, f).set_index("kpi").loc[KPI]
        assert row["value"] == pytest.approx(_balance(reader, f.end), rel=1e-12), name
        assert row["denominator"] == pytest.approx(_day_rows(reader, min(f.end, _as_of(reader)))[1], rel=1e-12)
        assert row["previous"] == pytest.approx(_balance(reader, f.previous.end), rel=1e-12), name
        assert row["last_year"] == pytest.approx(_balance(reader, last_year(f).end), rel=1e-12), name


def test_the_default_view_no_longer_averages_the_days(reader):
    """The reviewer's numbers: 44.23 days at the range's end, not 49.78 (every day's balance summed)."""
    f = _ranges(reader)["default 90 days"]
    days = reader.df(
        "select sum(numerator) / sum(denominator) as v from marts.practice_kpis where kpi = 'days_in_ar' "
        "and clinic_id = 'ALL' and grain = 'day' and period_start between $start and $end",
        {"start": f.start, "end": f.end},
    )
    averaged, balance = float(days["v"].iloc[0]), _balance(reader, f.end)
    assert abs(averaged - balance) > 1  # the precondition: the two readings differ on this practice
    assert kpi_summary(reader, f).set_index("kpi").loc[KPI, "value"] == pytest.approx(balance, rel=1e-12)


def test_clinic_comparison_shows_each_clinics_balance_at_the_last_day(reader):
    f = _ranges(reader)["custom, ends mid-week"]
    got = kpi_by_clinic(reader, f, KPI).set_index("clinic_id")["value"]
    assert len(got)
    for clinic, value in got.items():
        assert value == pytest.approx(_balance(reader, f.end, [clinic]), rel=1e-12), clinic


def test_overview_page_tile_delta_and_verdict(app_home, reader):
    from app_helpers import open_page

    at = open_page(app_home, "owner", "overview")
    assert not at.exception, [e.value for e in at.exception]
    f = _ranges(reader)["default 90 days"]  # the page's default dates
    value, previous = _balance(reader, f.end), _balance(reader, f.previous.end)
    [tile] = [m for m in at.metric if m.label.startswith("Days in A/R")]
    assert tile.value == fmt(value, "days")
    assert tile.proto.delta == fmt_delta(value, previous, "days")
    assert f"now {band_status(value, None, 35)}" in tile.proto.help


# ------------------------------------------------------------------ several clinics (the two-clinic scale)


@pytest.fixture(scope="module")
def multi_reader(tmp_path_factory) -> DbReader:
    """The two-clinic `multi_test` practice, generated and built once per run (tests/app/multi_practice.py)."""
    return _reader(build_multi(tmp_path_factory))


def test_several_clinics_sum_their_balances_at_the_last_day(multi_reader):
    r = multi_reader
    clinics = sorted(
        r.df("select distinct clinic_id from marts.practice_kpis where kpi = 'days_in_ar' and clinic_id <> 'ALL'")[
            "clinic_id"
        ]
    )
    assert len(clinics) == 2
    for name, f in _ranges(r).items():
        for chosen in (None, tuple(clinics), (clinics[0],), (clinics[1],)):
            picked = None if chosen is None else list(chosen)
            fc = Filters(f.start, f.end, chosen)
            row = kpi_summary(r, fc).set_index("kpi").loc[KPI]
            where = (name, chosen)
            assert row["value"] == pytest.approx(_balance(r, f.end, picked), rel=1e-12), where
            assert row["previous"] == pytest.approx(_balance(r, f.previous.end, picked), rel=1e-12), where
        # both clinics summed = the practice's own row
        assert _balance(r, f.end, clinics) == pytest.approx(_balance(r, f.end), rel=1e-12)
        got = kpi_by_clinic(r, f, KPI).set_index("clinic_id")["value"]
        assert got.to_dict() == pytest.approx({c: _balance(r, f.end, [c]) for c in clinics}, rel=1e-12), name
