"""Demand forecast: the series a user may see, each series' forecast, the staffing gap, and how the backtest
judged the series and measure on screen (from the backtest file, not the warehouse)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd

from app.lib.queries.base import CLINIC_FILTER, Filters, Reader, clinic_params, clinics

# How ml/demand.py forecast_all forecasts a series, by its complete weeks of history (after the ramp-up):
MODEL_MIN_WEEKS = 8  # ml/demand.py MIN_WEEKS: from here the model (ensemble); shorter gets the flat baseline
BASELINE_MIN_WEEKS = 3  # ml/demand.py BASELINE_MIN_WEEKS: shorter gets no forecast, hence no staffing gap
YOUNG_SHARE = 0.5  # a clinic with under half the practice's weeks joined a practice history fitted mostly without it


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


def history_weeks(r: Reader, f: Filters, metric: str = "visits") -> pd.DataFrame:
    """Every clinic the user may see (and has filtered to) with the complete weeks of `metric` history behind its
    forecast (`weeks`) and how it was forecast (`method`): "model", "baseline" (the flat mean of a young
    series, ml/demand.py short_history_baseline) or "none" (fewer than BASELINE_MIN_WEEKS weeks, or no visits at
    all: no forecast, no staffing gap, and `weeks` 0 as the table does not say how many). Read from
    ml.demand_forecast, whose history rows carry the actuals each forecast was made from."""
    p = clinic_params(r, f)
    counts = r.df(
        "select series as clinic_id, count(actual) as weeks from ml.demand_forecast "
        "where metric = $metric and series <> 'ALL' and ($all_clinics or list_contains($clinics, series)) "
        "group by 1",
        {**p, "metric": metric},
    )
    seen = clinics(r)
    if f.clinics is not None:
        seen = seen[seen["clinic_id"].isin(f.clinics)]
    out = seen.merge(counts, on="clinic_id", how="outer")
    out["clinic_name"] = out["clinic_name"].fillna(out["clinic_id"])
    out["weeks"] = out["weeks"].fillna(0).astype(int)
    out["method"] = [
        "model" if w >= MODEL_MIN_WEEKS else "baseline" if w >= BASELINE_MIN_WEEKS else "none" for w in out["weeks"]
    ]
    return out.sort_values("clinic_id", ignore_index=True)[["clinic_id", "clinic_name", "weeks", "method"]]


def practice_weeks(r: Reader, metric: str = "visits") -> int | None:
    """Complete weeks of `metric` history behind the whole-practice forecast; None for a clinic-scoped user."""
    if r.scope.clinics is not None:
        return None
    df = r.df(
        "select count(actual) as weeks from ml.demand_forecast where series = 'ALL' and metric = $metric",
        {"metric": metric},
    )
    return int(df["weeks"].iloc[0]) if len(df) else 0


def _who(row: Any) -> str:
    return row.clinic_id if row.clinic_name == row.clinic_id else f"{row.clinic_name} ({row.clinic_id})"


def _weeks(n: int) -> str:
    return f"{n} complete week{'' if n == 1 else 's'}"


def not_assessed(hist: pd.DataFrame, label: str = "visits") -> str | None:
    """The clinics with no forecast, hence not in the staffing gap, and why; None when every clinic has one."""
    rows = hist[hist["method"] == "none"]
    if rows.empty:
        return None
    names = ", ".join(_who(r) for r in rows.itertuples())
    return (
        f"Not forecast, so not assessed for capacity: {names}: fewer than {BASELINE_MIN_WEEKS} complete weeks of "
        f"{label} after the first weeks' ramp-up. A clinic needs {BASELINE_MIN_WEEKS} for a simple forecast "
        f"({MODEL_MIN_WEEKS} for the model)."
    )


def on_baseline(hist: pd.DataFrame, label: str = "visits") -> str | None:
    """The clinics forecast by the flat baseline (too young for the model) and what that means; None when none."""
    rows = hist[hist["method"] == "baseline"]
    if rows.empty:
        return None
    names = "; ".join(f"{_who(r)}: {_weeks(r.weeks)} of {label}, needs {MODEL_MIN_WEEKS}" for r in rows.itertuples())
    return (
        f"Too young for the model: {names}. The forecast is then flat at the mean of the last weeks (up to 4), "
        "with a range from the week-to-week spread; it is not backtested, and a clinic still filling its "
        "caseload will outrun it, so a staffing gap from it is more likely too small than too large."
    )


def young_in_practice(hist: pd.DataFrame, practice: int | None, label: str = "visits") -> str | None:
    """When a clinic's history is much shorter than the whole practice's, the practice forecast was fitted mostly
    on weeks without it: say so (None when no clinic is that young, or for a clinic-scoped user)."""
    if not practice:
        return None
    rows = hist[(hist["method"] != "model") | (hist["weeks"] < YOUNG_SHARE * practice)]
    if rows.empty:
        return None
    names = ", ".join(
        f"{_who(r)} ({_weeks(r.weeks) if r.method != 'none' else f'under {BASELINE_MIN_WEEKS} weeks'})"
        for r in rows.itertuples()
    )
    return (
        f"The whole-practice forecast was fitted on {_weeks(practice)} of {label}, mostly before {names} "
        "had any: it may lag what a new clinic adds. Each clinic's own forecast (and the staffing gap) takes it "
        "on its own history."
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
