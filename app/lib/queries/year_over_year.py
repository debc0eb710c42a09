"""Year over year: each monthly KPI of marts.practice_kpis for the last 12 months against the same month a
year earlier, for the practice or the chosen clinics, and the monthly numerators and denominators behind a
KPI. Months are combined with the Overview's formula (summed numerator / summed denominator, never an
average of ratios), imported from queries.overview so there is one rule."""

from __future__ import annotations

from datetime import date

import pandas as pd

from app.lib.queries.base import Filters, Reader, clinic_params
from app.lib.queries.overview import _KPI_VALUE, _PRACTICE_OR_CLINICS, KPI_ORDER


def _window(f: Filters, months: int) -> dict[str, date]:
    end = date(f.end.year, f.end.month, 1)
    first = (pd.Timestamp(end) - pd.DateOffset(months=months - 1)).date()
    return {"first": first, "last": end, "first_ly": date(first.year - 1, first.month, 1)}


def yoy(r: Reader, f: Filters, months: int = 12) -> pd.DataFrame:
    """One row per KPI x month of the last `months` months up to the range's end month: value, value a year
    earlier, the change, and the KPI's label, unit and direction."""
    sql = f"""
    with m as (
        select r.kpi, r.period_start as month, {_KPI_VALUE} as value
        from marts.practice_kpis r join marts.kpi_definitions d using (kpi)
        where r.grain = 'month' and r.period_start between $first_ly and $last and {_PRACTICE_OR_CLINICS}
        group by r.kpi, r.period_start, d.unit
    )
    select d.kpi, d.label, d.unit, d.better, cur.month, cur.value, ly.value as last_year
    from m cur
    join marts.kpi_definitions d using (kpi)
    left join m ly on ly.kpi = cur.kpi and ly.month = cur.month - interval 1 year
    where cur.month between $first and $last
    order by d.kpi, cur.month
    """
    df = r.df(sql, {**clinic_params(r, f), **_window(f, months)})
    return with_change(df)


def with_change(df: pd.DataFrame) -> pd.DataFrame:
    """change = value - last_year; relative change when last year was not 0; 'better' when the change goes
    the KPI's better direction (higher or lower); KPIs in the Overview's order."""
    out = df.copy()
    out["value"] = pd.to_numeric(out["value"], errors="coerce")
    out["last_year"] = pd.to_numeric(out["last_year"], errors="coerce")
    out["change"] = out["value"] - out["last_year"]
    base = out["last_year"].where(out["last_year"] != 0)
    out["change_pct"] = out["change"] / base.abs()
    sign = out["better"].map({"higher": 1.0, "lower": -1.0}).fillna(1.0)
    out["improved"] = (out["change"] * sign) > 0
    rank = {k: i for i, k in enumerate(KPI_ORDER)}
    out["_rank"] = out["kpi"].map(lambda k: rank.get(k, len(rank)))
    return out.sort_values(["_rank", "month"]).drop(columns="_rank").reset_index(drop=True)


def kpi_year_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per KPI (Overview order): its latest month's value, the same month last year and the change."""
    if df.empty:
        return df
    latest = df[df["month"] == df.groupby("kpi")["month"].transform("max")]
    cols = ["kpi", "label", "unit", "better", "month", "value", "last_year", "change", "change_pct", "improved"]
    return latest[cols].reset_index(drop=True)


def kpi_months(r: Reader, f: Filters, kpi_label: str, months: int = 12) -> pd.DataFrame:
    """The rows behind one KPI's year-over-year figure: numerator and denominator per month, this year and last."""
    sql = f"""
    select r.period_start as month, sum(r.numerator) as numerator, sum(r.denominator) as denominator,
           {_KPI_VALUE} as value
    from marts.practice_kpis r join marts.kpi_definitions d using (kpi)
    where d.label = $label and r.grain = 'month' and r.period_start between $first_ly and $last
      and {_PRACTICE_OR_CLINICS}
    group by r.period_start, d.unit order by month desc
    """
    w = _window(f, months)
    return r.df(sql, {**clinic_params(r, f), "first_ly": w["first_ly"], "last": w["last"], "label": kpi_label})
