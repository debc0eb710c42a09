"""Referral sources: the scorecard per referring source (all history, practice-wide) and where each source's
referrals end up (date range and clinics applied)."""

from __future__ import annotations

import pandas as pd

from app.lib import labels
from app.lib.queries.base import Filters, Reader, clinic_params, range_params, received_in_range


def source_types(r: Reader) -> list[str]:
    df = r.df("select distinct source_type from marts.referral_source_performance order by 1")
    return [s for s in df["source_type"].tolist() if s is not None]


def open_referrals_by_source_type(r: Reader, source_type: str | None = None) -> dict[str, float]:
    """Referrals (all history) and how many are still open: the scorecard's maturity in one line."""
    sql = """
    select count(*) as referrals,
           count(*) filter (where is_open) as open
    from marts.referral_funnel where ($source_type is null or source_type = $source_type)
    """
    row = r.df(sql, {"source_type": source_type}).iloc[0]
    return {"referrals": float(row["referrals"]), "open": float(row["open"])}


def source_scorecard(r: Reader, source_type: str | None = None) -> pd.DataFrame:
    """Referring sources ranked by referrals, with conversion, completion, revenue and trend."""
    sql = """
    select source_type, source_id, source_name, specialty, referrals, evaluated, conversion_rate,
           median_business_days_to_eval, visits_per_episode, poc_completion_rate, net_revenue_usd,
           last_referral_date, referrals_last_90d, referrals_prior_90d, trend_pct, is_fading
    from marts.referral_source_performance
    where ($source_type is null or source_type = $source_type)
    order by referrals desc
    """
    return r.df(sql, {"source_type": source_type})


def source_outcomes(r: Reader, f: Filters, by: str = "source_type") -> pd.DataFrame:
    """Referrals from each source type (or channel) to their outcome, for the Sankey; sources and exits in
    words from the label table (a referral with no channel reads 'Not recorded')."""
    col = {"source_type": "source_type", "channel": "channel"}[by]
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
    df["source"] = labels.relabel(df["source"], col)
    df.loc[exited, "outcome"] = "Exited: " + labels.relabel(df.loc[exited, "exit_stage"], "exit_stage")
    return df[["source", "outcome", "referrals"]]
