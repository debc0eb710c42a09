"""Funnel: referrals reaching each stage, where and why they leave, time in each stage, and the referrals
behind any number (names only for roles allowed to see identities)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from app.lib.queries.base import (
    MATURITY_BAR,
    Filters,
    Reader,
    clinic_params,
    identity_select,
    patients_join,
    range_params,
    received_in_range,
)

STAGES: tuple[str, ...] = ("received", "contacted", "scheduled", "evaluated", "plan_of_care", "active", "discharged")
STAGE_LABELS: Mapping[str, str] = {
    "received": "Received",
    "contacted": "Contacted",
    "scheduled": "Scheduled",
    "evaluated": "Evaluated",
    "plan_of_care": "Plan of care",
    "active": "Active (2nd visit)",
    "discharged": "Discharged",
}
# Breakdown choices -> the funnel column they group by (a whitelist: the only SQL text chosen by the UI).
# Channel is the source as a channel (source_channel: physician_referral, direct_access or the marketing channel),
# not the raw `channel`, which only marketing leads carry (every physician and direct-access referral read
# "(unknown)"); a referral with no recorded source is still "(unknown)".
FUNNEL_BREAKDOWNS: Mapping[str, str] = {
    "Clinic": "clinic_id",
    "Source type": "source_type",
    "Channel": "source_channel",
    "Payer class": "payer_class",
    "Intake kind": "intake_kind",
}


def funnel_summary(r: Reader, f: Filters) -> pd.DataFrame:
    """Headline conversion figures for the referrals received in the range.

    Time to first contact and time to first visit are the KPIs' own statistic (mean over the referrals that
    reached the step, kpi_definitions), so the Funnel and the Overview show one number under one name; the
    median is returned beside it, named as such.
    """
    sql = f"""
    select count(*) as referrals,
           avg(case when converted_webpt then 1.0 else 0.0 end) as conversion_webpt,
           avg(case when converted_7day then 1.0 else 0.0 end) as conversion_7day,
           avg(hours_to_contact) as hours_to_first_contact,
           median(hours_to_contact) as median_hours_to_contact,
           avg(business_days_to_eval) as business_days_to_first_visit,
           median(business_days_to_eval) as median_business_days_to_eval,
           count(*) filter (where is_open) as open_referrals,
           {MATURITY_BAR} as maturity_bar
    from marts.referral_funnel where {received_in_range(f)}
    """
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})


def funnel_stages(r: Reader, f: Filters, breakdown: str | None = None) -> pd.DataFrame:
    """Referrals reaching each stage (long form: [group], stage, stage_order, reached)."""
    group = FUNNEL_BREAKDOWNS.get(breakdown or "", None)
    gsel = f"coalesce(cast({group} as varchar), '(unknown)') as grp," if group else "'All referrals' as grp,"
    counts = ", ".join("count(*) as received" if s == "received" else f"count({s}_at) as {s}" for s in STAGES)
    sql = f"""
    with c as (
        select {gsel} {counts} from marts.referral_funnel where {received_in_range(f)} group by 1
    )
    unpivot c on {", ".join(STAGES)} into name stage value reached
    """
    df = r.df(sql, {**clinic_params(r, f), **range_params(f)})
    df["stage_order"] = df["stage"].map({s: i for i, s in enumerate(STAGES)})
    df["stage_label"] = df["stage"].map(STAGE_LABELS)
    return df.sort_values(["grp", "stage_order"]).reset_index(drop=True)


def funnel_exits(r: Reader, f: Filters) -> pd.DataFrame:
    """Where referrals left the funnel and why."""
    sql = f"""
    select exit_stage, coalesce(exit_reason, '(not recorded)') as exit_reason, count(*) as referrals
    from marts.referral_funnel where exit_stage is not null and {received_in_range(f)}
    group by all order by referrals desc
    """
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})


def stage_durations(r: Reader, f: Filters) -> pd.DataFrame:
    """Median and 90th-percentile days spent between consecutive stages."""
    parts = []
    for a, b in zip(STAGES, STAGES[1:], strict=False):
        parts.append(f"""select '{STAGE_LABELS[a]} → {STAGE_LABELS[b]}' as step, {STAGES.index(a)} as step_order,
            median(date_diff('minute', {a}_at, {b}_at) / 1440.0) as median_days,
            quantile_cont(date_diff('minute', {a}_at, {b}_at) / 1440.0, 0.9) as p90_days,
            count(*) filter (where {b}_at is not null) as referrals
            from f where {b}_at >= {a}_at""")
    sql = (
        f"with f as (select * from marts.referral_funnel where {received_in_range(f)}) "
        + " union all ".join(parts)
        + " order by step_order"
    )
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})


def funnel_drilldown(
    r: Reader, f: Filters, stage: str, breakdown: str | None = None, group_value: str | None = None, limit: int = 500
) -> pd.DataFrame:
    """The referrals behind a number: those that reached `stage` (and stopped there, if asked). Its `channel` is
    the Channel breakdown's (source_channel), so a row reads as the group it was picked from."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    group = FUNNEL_BREAKDOWNS.get(breakdown or "")
    stage_col = "received_at" if stage == "received" else f"{stage}_at"
    group_filter = (
        f"and coalesce(cast(f.{group} as varchar), '(unknown)') = $group_value" if group and group_value else ""
    )
    sql = f"""
    select f.referral_id, f.received_at, f.clinic_id, {identity_select(r, "f")},
           f.source_type, f.source_channel as channel, f.payer_class, f.current_stage, f.exit_stage, f.exit_reason,
           f.hours_to_contact, f.business_days_to_eval, f.next_step_owner
    from marts.referral_funnel f {patients_join(r, "f")}
    where f.{stage_col} is not null and f.received_at::date between $start and $end
      and ($all_clinics or list_contains($clinics, f.clinic_id)) {group_filter}
    order by f.received_at desc limit $limit
    """
    params = {**clinic_params(r, f), **range_params(f), "limit": int(limit)}
    if group_filter:
        params["group_value"] = group_value
    return r.df(sql, params)
