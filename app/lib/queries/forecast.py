"""Demand forecast: the series a user may see, each series' forecast, the staffing gap, and how the backtest
judged the series and measure on screen (from the backtest file, not the warehouse)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd

from app.lib.queries.base import CLINIC_FILTER, Filters, Reader, clinic_params


def forecast_series(r: Reader, f: Filters) -> list[str]:
    """Series the user may see: ALL only for practice-wide scopes, plus their clinics."""
    df = r.df(
        "select distinct series from ml.demand_forecast where series = 'ALL' or "
        "list_contains($clinics, series) or $all_clinics order by 1",
        clinic_params(r, Filters(date.min, date.max)),
    )
    series = df["series"].tolist()
    if r.scope.clinics is not None:
        series = [s for s in series if s != "ALL"]
    return series


def forecast(r: Reader, series: str, metric: str) -> pd.DataFrame:
    allowed = r.scope.effective_clinics(None)
    if allowed is not None and series not in allowed:
        return pd.DataFrame(columns=["week_start", "actual", "yhat", "yhat_lower", "yhat_upper"])
    return r.df(
        "select week_start, actual, yhat, yhat_lower, yhat_upper from ml.demand_forecast "
        "where series = $series and metric = $metric order by week_start",
        {"series": series, "metric": metric},
    )


def staffing(r: Reader, f: Filters) -> pd.DataFrame:
    sql = f"""
    select week_start, sum(forecast_visits) as forecast_visits, sum(capacity_visits) as capacity_visits,
           sum(gap_visits) as gap_visits
    from ml.staffing_gap where {CLINIC_FILTER} group by 1 order by 1
    """
    return r.df(sql, clinic_params(r, f))


def staffing_by_clinic(r: Reader, f: Filters) -> pd.DataFrame:
    sql = f"""
    select clinic_id, week_start, forecast_visits, capacity_visits, gap_visits
    from ml.staffing_gap where {CLINIC_FILTER} and gap_visits > 0 order by gap_visits desc limit 200
    """
    return r.df(sql, clinic_params(r, f))


COVERAGE_BAND = (0.75, 0.85)  # an honest 80% range holds about 80% of actual weeks


def backtest_row(backtest: dict[str, Any] | None, series: str, metric: str) -> dict[str, Any] | None:
    """The backtest figures for one series and measure (or "pooled"); None when that series was not backtested."""
    for row in (backtest or {}).get("breakdown") or []:
        if row.get("series") == series and row.get("metric") == metric:
            return row
    return None


def losses_to_naive(backtest: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every series x measure that lost to "same week last year" in the backtest, whatever the pooled figure.

    The pooled headline averages measures, so one losing measure can hide behind two winning ones; a manager
    planning that measure should know, so the page lists each loss.
    """
    rows = (backtest or {}).get("breakdown") or []
    return [r for r in rows if r.get("metric") != "pooled" and r.get("loses_to_naive")]


def coverage_off(row: dict[str, Any] | None) -> bool:
    """True when the row's 80% range held fewer than 75% or more than 85% of actual weeks."""
    cov = (row or {}).get("coverage_80")
    return cov is not None and not COVERAGE_BAND[0] <= cov <= COVERAGE_BAND[1]
