"""Therapists: visits, arrival rate, units per visit and productivity per therapist and month
(marts.therapist_productivity), with the practice's healthy band where kpi_definitions has one, and the
appointments behind a therapist's figures.

Productivity = attended visits per day worked (a date with at least one attended visit); no published band."""

from __future__ import annotations

import pandas as pd

from app.lib import labels
from app.lib.queries.base import (
    CLINIC_FILTER,
    Filters,
    Reader,
    clinic_params,
    identity_select,
    patients_join,
    range_params,
)

_MONTHS = "month between date_trunc('month', $start::date) and $end"
# Summed parts -> the KPI formulas (never an average of monthly ratios).
_RATIOS = """
    sum(visits) as visits, sum(appointments) as appointments, sum(no_shows) as no_shows,
    sum(cancellations) as cancellations, sum(days_worked) as days_worked, sum(scheduled_hours) as scheduled_hours,
    sum(billed_units) as billed_units, sum(billable_visits) as billable_visits,
    sum(visits) / nullif(sum(appointments), 0) as arrival_rate,
    sum(billed_units) / nullif(sum(billable_visits), 0) as units_per_visit,
    sum(visits) / nullif(sum(days_worked), 0) as visits_per_day_worked
"""


def bands(r: Reader) -> pd.DataFrame:
    """Healthy bands of the KPIs the page shows per therapist (arrival rate, units per visit)."""
    return r.df(
        "select kpi, label, healthy_low, healthy_high from marts.kpi_definitions "
        "where kpi in ('arrival_rate', 'units_per_visit')"
    )


def therapist_summary(r: Reader, f: Filters) -> pd.DataFrame:
    """One row per therapist over the months in range, busiest first."""
    sql = f"""
    select therapist_id, any_value(therapist_name) as therapist, bool_or(is_current) as is_current, {_RATIOS}
    from marts.therapist_productivity where {_MONTHS} and {CLINIC_FILTER}
    group by therapist_id order by visits desc, therapist
    """
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})


def therapist_months(r: Reader, f: Filters) -> pd.DataFrame:
    """One row per therapist and month (the trend chart)."""
    sql = f"""
    select therapist_id, any_value(therapist_name) as therapist, month, {_RATIOS}
    from marts.therapist_productivity where {_MONTHS} and {CLINIC_FILTER}
    group by therapist_id, month order by month, therapist
    """
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})


def with_band_status(df: pd.DataFrame, band: pd.DataFrame) -> pd.DataFrame:
    """Add 'in band' / 'below band' / 'above band' (or '' without a band) for arrival rate and units/visit."""
    out = df.copy()
    for kpi in ("arrival_rate", "units_per_visit"):
        row = band[band["kpi"] == kpi]
        lo = row["healthy_low"].iloc[0] if len(row) else None
        hi = row["healthy_high"].iloc[0] if len(row) else None
        lo = None if lo is None or pd.isna(lo) else float(lo)
        hi = None if hi is None or pd.isna(hi) else float(hi)

        def status(v, lo=lo, hi=hi) -> str:
            if v is None or pd.isna(v) or (lo is None and hi is None):
                return ""
            if lo is not None and v < lo:
                return "below band"
            if hi is not None and v > hi:
                return "above band"
            return "in band"

        out[f"{kpi}_status"] = out[kpi].map(status)
    return out


def therapist_appointments(r: Reader, f: Filters, therapist: str) -> pd.DataFrame:
    """The appointments behind one therapist's figures: every appointment with an outcome in the months in
    range (the arrival-rate denominator), with its billed units (identities for roles that may see them)."""
    sql = f"""
    select a.appointment_id, a.scheduled_start, a.status, a.visit_type, a.duration_min,
           coalesce(v.billable_units, 0) as billable_units, {identity_select(r, "a")}
    from marts.appointments a
    left join marts.visits v using (appointment_id)
    left join marts.dim_therapists t on t.therapist_id = a.therapist_id
    {patients_join(r, "a")}
    where a.status <> 'scheduled' and a.scheduled_start <= (select max(as_of) from marts.build_info)
      and a.scheduled_start::date between date_trunc('month', $start::date) and last_day($end::date)
      and coalesce(t.therapist_name, 'Therapist not on file') = $therapist
      and {CLINIC_FILTER.replace("clinic_id", "a.clinic_id")}
    order by a.scheduled_start
    """
    df = r.df(sql, {**clinic_params(r, f), **range_params(f), "therapist": therapist})
    return labels.relabel_frame(df, {"status": "appointment_status", "visit_type": "visit_type"})
