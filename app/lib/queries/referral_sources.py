"""Referral sources: the scorecard per referring source (all history, in the clinics the user may see and asked
for) and where each source's referrals end up (date range and clinics applied).

The practice-wide scorecard is the mart `referral_source_performance`, which has no clinic. When the clinics in
view are not all of them (a clinic-scoped user, or a clinic picked in the filter) the same scorecard is computed
here from the clinic-grained marts it is built from (`referral_funnel` and `episodes`), with the mart's formulas
and its `fading_*` settings; tests/app/test_scope_shared_pages.py holds the two equal over every clinic."""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import Any

import pandas as pd
import yaml

from app.lib import labels
from app.lib.queries.base import Filters, Reader, clinic_params, range_params, received_in_range
from ptpulse.core.config import DBT_PROJECT_DIR

# Every history; the clinics come from the Filters (a scope's clinics apply whatever the range).
ALL_HISTORY = Filters(date.min, date.max)
SCORECARD_COLUMNS = (
    "source_type, source_id, source_name, specialty, referrals, evaluated, conversion_rate, "
    "median_business_days_to_eval, visits_per_episode, poc_completion_rate, net_revenue_usd, "
    "last_referral_date, referrals_last_90d, referrals_prior_90d, trend_pct, is_fading"
)
# The fading flag's settings (dbt_project.yml vars), read when the file has none: the mart's defaults.
FADING_DEFAULTS = {"fading_min_prior": 3, "fading_drop_share": 0.5}


@cache
def fading_settings() -> dict[str, float]:
    """The liaison's fading rule as the build applies it (`fading_min_prior`, `fading_drop_share` of
    dbt_project.yml), so a clinic's scorecard flags the same sources the practice's mart would."""
    try:
        data = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        data = {}
    found = (data.get("vars") or {}) if isinstance(data, dict) else {}
    return {k: float(found.get(k, v)) for k, v in FADING_DEFAULTS.items()}


def by_clinic(r: Reader, f: Filters | None) -> bool:
    """True when the clinics in view are a subset (the user's scope, or the filter): the practice-wide mart
    would show more than they may or asked to see."""
    return r.scope.effective_clinics(None if f is None else f.clinics) is not None


def _params(r: Reader, f: Filters | None) -> dict[str, Any]:
    return clinic_params(r, f or ALL_HISTORY)


def source_types(r: Reader, f: Filters | None = None) -> list[str]:
    if by_clinic(r, f):
        sql = (
            "select distinct source_type from marts.referral_funnel "
            "where source_type is not null and ($all_clinics or list_contains($clinics, clinic_id)) order by 1"
        )
        df = r.df(sql, _params(r, f))
    else:
        df = r.df("select distinct source_type from marts.referral_source_performance order by 1")
    return [s for s in df["source_type"].tolist() if s is not None]


def open_referrals_by_source_type(
    r: Reader, source_type: str | None = None, f: Filters | None = None
) -> dict[str, float]:
    """Referrals (all history, in the clinics in view) and how many are still open: the scorecard's maturity in
    one line."""
    sql = """
    select count(*) as referrals,
           count(*) filter (where is_open) as open
    from marts.referral_funnel
    where ($source_type is null or source_type = $source_type)
      and ($all_clinics or list_contains($clinics, clinic_id))
    """
    row = r.df(sql, {**_params(r, f), "source_type": source_type}).iloc[0]
    return {"referrals": float(row["referrals"]), "open": float(row["open"])}


def _episode_join(r: Reader) -> str:
    """How a referral takes its episode's visits, closure and revenue. A build whose funnel marks secondary
    referrals (`is_secondary_referral`: another referral owns the episode) counts the episode for its owner only,
    as the mart does, so the sources' revenue sums to the episodes' once; an older build has no such referral."""
    columns = r.df("select * from marts.referral_funnel limit 0").columns
    own = " and not f.is_secondary_referral" if "is_secondary_referral" in columns else ""
    return f"left join marts.episodes e on f.episode_id = e.episode_id{own}"


def _scorecard_by_clinic_sql(episode_join: str) -> str:
    """marts.referral_source_performance's formulas over the referrals of `$clinics` (dbt_project/models/marts/
    funnel/referral_source_performance.sql, repeated on the clinic-grained marts it reads)."""
    return f"""
    with f as (
        select f.source_type, f.received_at, f.is_evaluated, f.converted_webpt, f.business_days_to_eval,
               case f.source_type when 'physician' then f.referring_physician_id
                                  when 'marketing' then f.channel else 'direct_access' end as source_id,
               e.attended_visits, e.is_closed, e.plan_completed, e.net_revenue_usd
        from marts.referral_funnel f
        {episode_join}
        where f.source_type is not null and ($all_clinics or list_contains($clinics, f.clinic_id))
          and ($source_type is null or f.source_type = $source_type)
    ),
    k as (select max(as_of) as as_of from marts.build_info),
    agg as (
        select f.source_type, f.source_id,
               count(*) as referrals,
               count(*) filter (where f.is_evaluated) as evaluated,
               count(*) filter (where f.converted_webpt) as converted,
               median(f.business_days_to_eval) as median_business_days_to_eval,
               avg(f.attended_visits) filter (where f.attended_visits > 0) as visits_per_episode,
               count(*) filter (where f.is_closed) as closed_episodes,
               count(*) filter (where f.plan_completed) as completed_episodes,
               coalesce(sum(f.net_revenue_usd), 0) as net_revenue_usd,
               cast(max(f.received_at) as date) as last_referral_date,
               count(*) filter (where f.received_at > k.as_of - interval 90 day and f.received_at <= k.as_of)
                   as referrals_last_90d,
               count(*) filter (where f.received_at > k.as_of - interval 180 day
                                  and f.received_at <= k.as_of - interval 90 day) as referrals_prior_90d
        from f, k
        group by f.source_type, f.source_id
    ),
    card as (
        select a.source_type, a.source_id,
               case a.source_type
                   when 'physician' then coalesce(p.physician_name, 'Unknown physician ' || a.source_id)
                   when 'marketing' then replace(a.source_id, '_', ' ')
                   else 'Direct access' end as source_name,
               p.specialty, a.referrals, a.evaluated,
               {_safe_div("a.converted", "a.referrals")} as conversion_rate,
               a.median_business_days_to_eval, a.visits_per_episode,
               {_safe_div("a.completed_episodes", "a.closed_episodes")} as poc_completion_rate,
               a.net_revenue_usd, a.last_referral_date, a.referrals_last_90d, a.referrals_prior_90d,
               {_safe_div("a.referrals_last_90d - a.referrals_prior_90d", "a.referrals_prior_90d")} as trend_pct,
               a.source_type = 'physician' and a.referrals_prior_90d >= $fading_min_prior
                   and a.referrals_last_90d <= $fading_drop_share * a.referrals_prior_90d as is_fading
        from agg a
        left join marts.dim_referring_physicians p on a.source_type = 'physician' and a.source_id = p.physician_id
    )
    select {SCORECARD_COLUMNS} from card order by referrals desc, source_type, source_id
    """


def _safe_div(num: str, den: str) -> str:
    """The dbt macro safe_div: a double, null when the denominator is 0 or missing."""
    return f"case when coalesce({den}, 0) = 0 then null else cast(({num}) as double) / ({den}) end"


def source_scorecard(r: Reader, source_type: str | None = None, f: Filters | None = None) -> pd.DataFrame:
    """Referring sources ranked by referrals, with conversion, completion, revenue and trend: the practice's mart
    when every clinic is in view, else the same figures over the referrals of the clinics in view."""
    if by_clinic(r, f):
        sql = _scorecard_by_clinic_sql(_episode_join(r))
        return r.df(sql, {**_params(r, f), "source_type": source_type, **fading_settings()})
    sql = f"""
    select {SCORECARD_COLUMNS}
    from marts.referral_source_performance
    where ($source_type is null or source_type = $source_type)
    order by referrals desc, source_type, source_id
    """
    return r.df(sql, {"source_type": source_type})


def source_outcomes(r: Reader, f: Filters, by: str = "source_type") -> pd.DataFrame:
    """Referrals from each source type (or channel) to their outcome, for the Sankey; sources and exits in
    words from the label table. The channel is the source as a channel (source_channel: physician referral,
    direct access or the marketing channel), so only a referral with no recorded source reads 'Not recorded'."""
    col, domain = {"source_type": ("source_type", "source_type"), "channel": ("source_channel", "channel")}[by]
    sql = f"""
    select cast({col} as varchar) as source, exit_stage,
           case when exit_stage is not null then 'Exited'
                when discharged_at is not null then 'Discharged'
                when active_at is not null then 'In care'
                when evaluated_at is not null then 'Evaluated'
                else 'Not yet evaluated' end as outcome,
           count(*) as referrals
    from marts.referral_funnel where {received_in_range(f)}
    group by all order by referrals desc
    """
    df = r.df(sql, {**clinic_params(r, f), **range_params(f)})
    exited = df["exit_stage"].notna()
    df["source"] = labels.relabel(df["source"], domain)
    df.loc[exited, "outcome"] = "Exited: " + labels.relabel(df.loc[exited, "exit_stage"], "exit_stage")
    return df[["source", "outcome", "referrals"]]
