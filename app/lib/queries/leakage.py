"""Revenue leakage: dollars at stake by cause and month (app/lib/leakage.py turns them into a low-high range)."""

from __future__ import annotations

import pandas as pd

from app.lib.queries.base import CLINIC_FILTER, Filters, Reader, clinic_params, range_params


def revenue_leakage(r: Reader, f: Filters) -> pd.DataFrame:
    """Dollars at stake by category and month in range (selected clinics); app/lib/leakage.py makes the range."""
    sql = f"""
    select category, month, sum(events) as events, sum(units_at_stake) as units_at_stake,
           sum(dollars_at_stake) as dollars_at_stake, any_value(assumption) as assumption
    from marts.revenue_leakage
    where month between date_trunc('month', $start::date) and $end and {CLINIC_FILTER}
    group by all order by month, category
    """
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})


# Denial risk before submission (ml/denial.py): open claims the model scored, by the reason to fix first.
DENIAL_REASON_LABELS = {
    "auth": "Authorization (exhausted, expired or missing)",
    "note": "Visit note not signed",
    "progress": "Progress note overdue",
    "kx": "KX modifier missing",
    "ncci": "Modifier 59 missing (97140 + 97530)",
    "units": "Units vs minutes",
    "diagnosis": "Diagnosis coding (initial encounter)",
    "dx_group": "Diagnosis coverage",
    "payer": "Payer's denial rate",
    "visit": "Kind of visit",
}


def denial_risk_by_reason(r: Reader, f: Filters) -> pd.DataFrame:
    """Open claims' dollars at risk of denial (probability x billed) by the first reason, selected clinics.

    Open claims are those at as_of, so the date range does not apply; claims with no reason raising their
    risk are grouped as 'no specific reason'.
    """
    sql = f"""
    select coalesce(reason_group, 'none') as reason_group, count(*) as claims, sum(billed_usd) as billed_usd,
           sum(dollars_at_risk) as dollars_at_risk, avg(probability) as mean_probability,
           arg_max(reason_1, dollars_at_risk) as example_reason
    from ml.denial_scores
    where {CLINIC_FILTER}
    group by all order by dollars_at_risk desc
    """
    df = r.df(sql, clinic_params(r, f))
    return df.assign(reason=df["reason_group"].map(DENIAL_REASON_LABELS).fillna("No specific reason"))
