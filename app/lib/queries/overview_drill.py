"""Overview drill-through: the rows behind one KPI tile, for the same period and clinics, one query per KPI
family. Each query repeats the predicates of the KPI's CTE in marts/kpis/kpi_facts_daily.sql (the period
column, the as_of cut-off, the status filter), so the row count equals the tile's denominator (rate KPIs) and
a user can check a figure row by row. Identities (name, phone) come only for PHI roles (identity_select)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from app.lib.queries.attribution import _credit_rows_sql, clinics_in_view
from app.lib.queries.base import (
    CLINIC_FILTER,
    Filters,
    Reader,
    clinic_params,
    identity_select,
    patients_join,
    range_params,
)

_AS_OF = "(select max(as_of) from marts.build_info)"


def _clinics(alias: str) -> str:
    return CLINIC_FILTER.replace("clinic_id", f"{alias}.clinic_id")


def _run(r: Reader, f: Filters, sql: str) -> pd.DataFrame:
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})


def appointments(r: Reader, f: Filters, extra: str = "true") -> pd.DataFrame:
    """Appointments scheduled in the period with an outcome (status not 'scheduled', start at or before
    as_of): the denominator of no-show, cancel + no-show and arrival rates."""
    sql = f"""
    select a.scheduled_start, a.clinic_id, a.therapist_id, a.visit_type, a.status, a.duration_min,
           a.cancel_reason, {identity_select(r, "a")}
    from marts.appointments a {patients_join(r, "a")}
    where a.status <> 'scheduled' and a.scheduled_start <= {_AS_OF}
      and cast(a.scheduled_start as date) between $start and $end and {_clinics("a")} and {extra}
    order by a.scheduled_start, a.appointment_id
    """
    return _run(r, f, sql)


def referrals(r: Reader, f: Filters, extra: str = "true") -> pd.DataFrame:
    """Referrals received in the period (at or before as_of): the cohort of the conversion KPIs; `extra`
    narrows it to the times' denominators (contacted, evaluated)."""
    sql = f"""
    select f.received_at, f.clinic_id, f.source_type, f.source_channel as channel, f.current_stage, f.first_contact_at,
           f.hours_to_contact, f.evaluated_at, f.business_days_to_eval, f.converted_webpt, f.converted_7day,
           f.exit_stage, {identity_select(r, "f")}
    from marts.referral_funnel f {patients_join(r, "f")}
    where f.received_at <= {_AS_OF} and cast(f.received_at as date) between $start and $end
      and {_clinics("f")} and {extra}
    order by f.received_at, f.referral_id
    """
    return _run(r, f, sql)


def episodes(r: Reader, f: Filters, date_col: str, extra: str = "true") -> pd.DataFrame:
    """Episodes by `date_col` (discharge_date for closed episodes, eval_date for early dropout)."""
    sql = f"""
    select e.eval_date, e.discharge_date, e.clinic_id, e.therapist_id, e.status, e.discharge_reason,
           e.planned_visits, e.attended_visits, e.plan_completed, e.early_dropout, {identity_select(r, "e")}
    from marts.episodes e {patients_join(r, "e")}
    where e.{date_col} between $start and $end and {_clinics("e")} and {extra}
    order by e.{date_col}, e.episode_id
    """
    return _run(r, f, sql)


def visits(r: Reader, f: Filters) -> pd.DataFrame:
    """Attended visits of the period (at or before as_of): the net-revenue-per-visit denominator."""
    sql = f"""
    select v.scheduled_start, v.clinic_id, v.therapist_id, v.visit_type, v.visit_number, v.billable_units,
           v.charges_usd, v.net_collected_usd, {identity_select(r, "a")}
    from marts.visits v join marts.appointments a on a.appointment_id = v.appointment_id {patients_join(r, "a")}
    where v.scheduled_start <= {_AS_OF} and v.visit_date between $start and $end and {_clinics("v")}
    order by v.scheduled_start, v.appointment_id
    """
    return _run(r, f, sql)


def billable_visits(r: Reader, f: Filters) -> pd.DataFrame:
    """Attended visits with a counted charge line (G- and L-codes excluded) by the lines' service date and
    clinic, as units per visit counts them (lines linked to no attended visit count in neither), with the units
    billed on them."""
    sql = f"""
    with lines as (
        select l.appointment_id, l.service_date, l.clinic_id, sum(l.units) as counted_units,
               count(*) as counted_lines
        from marts.charge_lines l
        where not l.is_excluded_from_units and l.service_date between $start and $end and {_clinics("l")}
        group by all
    )
    select l.service_date, l.clinic_id, a.therapist_id, a.visit_type, l.counted_lines, l.counted_units,
           {identity_select(r, "a")}
    from lines l join marts.appointments a on a.appointment_id = l.appointment_id and a.status = 'completed'
    {patients_join(r, "a")}
    order by l.service_date, l.appointment_id
    """
    return _run(r, f, sql)


def claims(r: Reader, f: Filters, date_col: str, extra: str = "true") -> pd.DataFrame:
    """Claims by `date_col` (service_date: the charges of net collection rate; submitted_at: the denial
    cohort) with what was billed, paid, adjusted and denied."""
    sql = f"""
    select c.claim_id, c.service_date, c.submitted_at, c.clinic_id, c.payer_class, c.billed_usd,
           c.payer_paid_usd, c.patient_paid_usd, c.contractual_adj_usd, c.write_off_usd, c.is_adjudicated,
           c.is_denied, c.denial_carc, c.ar_age_bucket, {identity_select(r, "c")}
    from marts.claims c {patients_join(r, "c")}
    where cast(c.{date_col} as date) between $start and $end and {_clinics("c")} and {extra}
    order by c.{date_col}, c.claim_id
    """
    return _run(r, f, sql)


def open_claims(r: Reader, f: Filters) -> pd.DataFrame:
    """Claims serviced by the period's end that still carry a balance now: the open A/R behind Days in A/R
    (the tile divides it by average daily charges; a claim paid since the period ended is not listed)."""
    sql = f"""
    select c.claim_id, c.service_date, c.submitted_at, c.clinic_id, c.payer_class, c.billed_usd,
           c.insurance_balance_usd, c.patient_balance_usd, c.ar_age_bucket, {identity_select(r, "c")}
    from marts.claims c {patients_join(r, "c")}
    where c.service_date <= $end and c.insurance_balance_usd + c.patient_balance_usd > 0 and {_clinics("c")}
    order by c.service_date, c.claim_id
    """
    return r.df(sql, {**clinic_params(r, f), "end": range_params(f)["end"]})


def marketing_months(r: Reader, f: Filters) -> pd.DataFrame:
    """The paid channels' spend, attributed new patients and revenue per month (linear model), the rows behind
    cost per new patient and attributed ROI, in the clinics in view (the user's scope and the clinic filter): the
    practice's marts.attribution_roi for every clinic, else the clinics' own credit and spend, read as the
    Attribution page reads them (attribution._credit_rows_sql), so the rows add up to the clinics' tile and a
    user limited to some clinics never sees another clinic's spend or credit."""
    if clinics_in_view(r, f) is None:
        sql = """
        select month, channel, spend_usd, attributed_conversions, attributed_revenue_usd, roi, cost_per_new_patient
        from marts.attribution_roi
        where model = 'linear' and is_marketing and month between date_trunc('month', cast($start as date)) and $end
        order by month, channel
        """
        return r.df(sql, range_params(f))
    sql = f"""
    with a as ({_credit_rows_sql(("linear",))})
    select month, channel, spend_usd, attributed_conversions, attributed_revenue_usd,
           case when coalesce(spend_usd, 0) = 0 then null
                else cast(attributed_revenue_usd - spend_usd as double) / spend_usd end as roi,
           case when coalesce(attributed_conversions, 0) = 0 or spend_usd = 0 then null
                else cast(spend_usd as double) / attributed_conversions end as cost_per_new_patient
    from a
    where is_marketing
    order by month, channel
    """
    return _run(r, f, sql)


@dataclass(frozen=True)
class Drill:
    """How a KPI's rows are fetched, what they are called, and whether their count is the denominator."""

    what: str
    fetch: Callable[[Reader, Filters], pd.DataFrame]
    counts_denominator: bool = True


_CLOSED = "e.is_closed"
DRILLS: dict[str, Drill] = {
    "no_show_rate": Drill("appointments", appointments),
    "cancel_no_show_rate": Drill("appointments", appointments),
    "arrival_rate": Drill("appointments", appointments),
    "therapist_utilization": Drill(
        "booked appointments",
        lambda r, f: appointments(r, f, "a.status in ('completed', 'no_show', 'late_cancelled')"),
        counts_denominator=False,  # the denominator is available minutes; these rows are the booked minutes
    ),
    "referral_conversion": Drill("referrals", referrals),
    "conversion_7day": Drill("referrals", referrals),
    "hours_to_first_contact": Drill(
        "contacted referrals", lambda r, f: referrals(r, f, "f.hours_to_contact is not null")
    ),
    "business_days_to_first_visit": Drill(
        "evaluated referrals", lambda r, f: referrals(r, f, "f.business_days_to_eval is not null")
    ),
    "visits_per_discharge": Drill("closed episodes", lambda r, f: episodes(r, f, "discharge_date", _CLOSED)),
    "poc_completion_rate": Drill("closed episodes", lambda r, f: episodes(r, f, "discharge_date", _CLOSED)),
    "early_dropout_rate": Drill(
        "evaluated episodes", lambda r, f: episodes(r, f, "eval_date", "(e.is_closed or e.attended_visits >= 3)")
    ),
    "units_per_visit": Drill("billable visits", billable_visits),
    "net_revenue_per_visit": Drill("visits", visits),
    "net_collection_rate": Drill(
        "claims serviced", lambda r, f: claims(r, f, "service_date"), counts_denominator=False
    ),  # the denominator is dollars (charges - adjustments posted); the rows carry both
    "denial_rate": Drill("adjudicated claims", lambda r, f: claims(r, f, "submitted_at", "c.is_adjudicated")),
    "days_in_ar": Drill("open claims", open_claims, counts_denominator=False),  # a ratio of dollars
    "cost_per_new_patient": Drill("paid channel months", marketing_months, counts_denominator=False),
    "attributed_roi": Drill("paid channel months", marketing_months, counts_denominator=False),
}


def rows_behind(r: Reader, f: Filters, kpi: str) -> pd.DataFrame:
    """The rows behind one KPI tile (KeyError for a KPI without a row-level drill)."""
    return DRILLS[kpi].fetch(r, f)
