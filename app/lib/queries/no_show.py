"""No-show risk: scored upcoming appointments, the model's calibration and the observed weekly rate."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from app.lib.queries.base import (
    CLINIC_FILTER,
    Filters,
    Reader,
    clinic_params,
    identity_select,
    patients_join,
    range_params,
)

UPCOMING = """
    from ml.no_show_scores s
    where s.scheduled_start >= $as_of and s.scheduled_start < $as_of + to_days($days)
      and ($all_clinics or list_contains($clinics, s.clinic_id))"""


def upcoming_by_band(r: Reader, f: Filters, as_of: datetime, days: int = 14) -> pd.DataFrame:
    """Scored future appointments in the next `days` days per risk band: appointments, expected no-shows (the
    summed probabilities). The page's counts and bar chart, without the rows (106 k at 900 clinics)."""
    sql = f"""
    select s.risk_band, count(*) as appointments, sum(s.probability) as expected_no_shows
    {UPCOMING}
    group by s.risk_band
    """
    return r.df(sql, {**clinic_params(r, f), "as_of": as_of, "days": int(days)})


def upcoming_risk(r: Reader, f: Filters, as_of: datetime, days: int = 14, band: str | None = None) -> pd.DataFrame:
    """Scored future appointments in the next `days` days (of risk band `band` when given), riskiest first."""
    sql = f"""
    select s.appointment_id, s.scheduled_start, s.clinic_id, {identity_select(r, "a")},
           t.therapist_name, a.visit_type, a.visit_number, s.probability, s.risk_band, s.reason_1, s.reason_2
    from (select s.* {UPCOMING} and ($band is null or s.risk_band = $band)) as s
    join marts.appointments a using (appointment_id)
    left join marts.dim_therapists t on t.therapist_id = a.therapist_id
    {patients_join(r, "a")}
    order by s.probability desc
    """
    return r.df(sql, {**clinic_params(r, f), "as_of": as_of, "days": int(days), "band": band})


def calibration(r: Reader) -> pd.DataFrame:
    return r.df("select bin, mean_predicted, observed_rate, n from ml.no_show_calibration order by bin")


def no_show_history(r: Reader, f: Filters) -> pd.DataFrame:
    """Observed weekly no-show rate for context beside the predictions."""
    sql = f"""
    select date_trunc('week', scheduled_start)::date as week,
           avg(case when status = 'no_show' then 1.0 else 0.0 end) as no_show_rate, count(*) as appointments
    from marts.appointments
    where not is_future and status <> 'scheduled' and scheduled_start::date between $start and $end
      and {CLINIC_FILTER}
    group by 1 order by 1
    """
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})
