"""Attribution & ROI: spend, attributed conversions and revenue per channel under each model, marketing ROI and
cost per new patient (one definition with the Overview's KPIs), the marketing-mix model's incremental effect
beside path credit, and the paths to a decision.

Clinics: the heuristic models' credit, spend, ROI and cost per new patient cover the clinics in view (the user's
scope and the clinic filter). The practice's marts (`attribution_roi`, `practice_kpis` 'ALL') serve every clinic;
a subset is read from the clinic-grained marts they are built from (`attribution_touches`, `marketing_mix_monthly`,
the clinics' `practice_kpis` rows). The marketing-mix model and the data-driven models are fitted on the whole
practice and have no clinic: a clinic-scoped user does not get them (`practice_wide_allowed`), as their SQL page does
not hold those tables (app/lib/sql_guard.py SCOPE_SHARED_TABLES). The paths to a decision are read from the
clinic-grained `referral_touches`, so they follow the months and clinics in view like the heuristic credit.

Spend and the marketing flag of a channel are the same whichever model is picked: Markov and Shapley rows take the
period's spend of every channel (one with spend but no path credit too) and the flag from `marketing_channels`; only
the credited conversions and revenue differ between models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from app.lib import labels
from app.lib.queries.base import Filters, Reader, clinic_params, range_params
from app.lib.queries.overview import known_numerator

HEURISTIC_MODELS: tuple[str, ...] = ("first", "last", "linear", "time_decay", "position")
DATA_DRIVEN_MODELS: tuple[str, ...] = ("markov", "shapley")
# The models' names as people read them: the label table's `attribution_model` domain (app/lib/labels.py).
MODEL_LABELS: Mapping[str, str] = labels.labels_for("attribution_model")


def practice_wide_allowed(r: Reader) -> bool:
    """May this user see figures that exist only for the whole practice (the marketing-mix model, Markov and
    Shapley credit, the paths)? Not when their role is limited to some clinics: those figures hold the others'."""
    return r.scope.clinics is None


def clinics_in_view(r: Reader, f: Filters) -> tuple[str, ...] | None:
    """The clinics the page covers (scope intersected with the filter); None = every clinic (the practice)."""
    return r.scope.effective_clinics(f.clinics)


# The bought channels (dbt macro marketing_channels, through the columns that carry it): the is_marketing channels of
# attribution_roi, and every channel of marketing_mix_monthly (the spend and marketing-lead channels). Channel names
# only, no figure: the same list for every user and every model.
MARKETING_CHANNELS_SQL = """
    select channel from marts.attribution_roi group by channel having bool_or(is_marketing)
    union
    select channel from marts.marketing_mix_monthly where channel is not null group by channel
"""


def marketing_channels(r: Reader) -> set[str]:
    """The channels a practice buys: the only ones a marketing spend, return or ROI sums, under every model."""
    return set(r.df(MARKETING_CHANNELS_SQL)["channel"].dropna().astype(str))


def _credit_rows_sql(models: tuple[str, ...]) -> str:
    """Heuristic credit and spend per model, channel and month over the clinics in view: marts.attribution_roi's
    formula (dbt_project/models/marts/attribution/attribution_roi.sql) on its clinic-grained inputs."""
    unknown = [m for m in models if m not in HEURISTIC_MODELS]
    if unknown:
        raise ValueError(f"not a heuristic attribution model: {', '.join(unknown)}")
    credited = " union all ".join(
        f"select '{m}' as model, channel, conversion_month as month, sum(share_{m}) as attributed_conversions, "
        f"sum(credit_{m}) as attributed_revenue_usd from touches group by all"
        for m in models
    )
    names = ", ".join(f"('{m}')" for m in models)
    return f"""
    with touches as (
        select * from marts.attribution_touches
        where ($all_clinics or list_contains($clinics, clinic_id))
          and conversion_month between date_trunc('month', $start::date) and $end
    ),
    credited as ({credited}),
    spend as (
        select channel, month, sum(spend_usd) as spend_usd from marts.marketing_mix_monthly
        where ($all_clinics or list_contains($clinics, clinic_id)) and spend_usd <> 0
          and month between date_trunc('month', $start::date) and $end
        group by all
    ),
    models as (select * from (values {names}) as m (model)),
    spend_by_model as (select m.model, s.channel, s.month, s.spend_usd from spend s cross join models m),
    marketing as ({MARKETING_CHANNELS_SQL})
    select coalesce(c.model, s.model) as model, coalesce(c.channel, s.channel) as channel,
           coalesce(c.month, s.month) as month,
           coalesce(c.channel, s.channel) in (select channel from marketing) as is_marketing,
           coalesce(s.spend_usd, 0) as spend_usd, coalesce(c.attributed_conversions, 0) as attributed_conversions,
           coalesce(c.attributed_revenue_usd, 0) as attributed_revenue_usd
    from credited c
    full outer join spend_by_model s on c.model = s.model and c.channel = s.channel and c.month = s.month
    """


def attribution_by_channel(r: Reader, f: Filters) -> pd.DataFrame:
    """Spend, attributed conversions and revenue per model and channel over the months in range, in the clinics
    in view (the practice's mart for every clinic)."""
    if clinics_in_view(r, f) is None:
        sql = """
        select model, channel, bool_or(is_marketing) as is_marketing, sum(spend_usd) as spend_usd,
               sum(attributed_conversions) as attributed_conversions,
               sum(attributed_revenue_usd) as attributed_revenue_usd
        from marts.attribution_roi
        where month between date_trunc('month', $start::date) and $end
        group by all
        """
        df = r.df(sql, range_params(f))
    else:
        sql = f"""
        with rows as ({_credit_rows_sql(HEURISTIC_MODELS)})
        select model, channel, bool_or(is_marketing) as is_marketing, sum(spend_usd) as spend_usd,
               sum(attributed_conversions) as attributed_conversions,
               sum(attributed_revenue_usd) as attributed_revenue_usd
        from rows group by all
        """
        df = r.df(sql, {**clinic_params(r, f), **range_params(f)})
    if r.has("ml.attribution_credit") and practice_wide_allowed(r):
        data_driven = _data_driven_for_period(r, df)
        if not data_driven.empty:
            df = pd.concat([df, data_driven], ignore_index=True)
    df["is_marketing"] = df["channel"].isin(marketing_channels(r))  # one flag per channel, whatever the model
    spend = df["spend_usd"].astype(float)
    df["roi"] = (df["attributed_revenue_usd"] - spend) / spend.where(spend > 0)
    df["cost_per_new_patient"] = spend / df["attributed_conversions"].where(df["attributed_conversions"] > 0)
    return df.sort_values(["model", "attributed_revenue_usd"], ascending=[True, False]).reset_index(drop=True)


def _data_driven_for_period(r: Reader, heuristic: pd.DataFrame) -> pd.DataFrame:
    """Markov and Shapley credit re-based onto the period in view.

    The data-driven models are fitted on every path in the warehouse, so their dollars cover all of
    history. Set beside a quarter's heuristic credit they would look several times larger. Their channel
    *shares* are what they estimate; applied to the period's conversions and revenue (the same totals every
    heuristic model distributes) the bars and ROI compare like with like.

    Spend is the period's, per channel, as every heuristic model carries it (each has a row for every channel with
    spend): a channel with spend and no Markov or Shapley credit (spend, no touch) keeps its spend at 0 credit, so
    the marketing spend and ROI of every model divide by the same dollars.
    """
    cols = ["model", "channel", "attributed_conversions", "attributed_revenue_usd", "spend_usd"]
    ml = r.df("select model, channel, attributed_conversions, attributed_revenue_usd from ml.attribution_credit")
    if heuristic.empty or ml.empty:
        return pd.DataFrame(columns=cols)
    one_model = heuristic[heuristic["model"] == heuristic["model"].iloc[0]]
    for col in ("attributed_conversions", "attributed_revenue_usd"):
        share = ml[col] / ml.groupby("model")[col].transform("sum").where(lambda t: t > 0)
        ml[col] = share.fillna(0.0) * float(one_model[col].sum())
    spend = one_model.groupby("channel", as_index=False)["spend_usd"].sum()
    spend = spend[spend["spend_usd"].fillna(0) != 0]
    rows = []
    for model, credit in ml.groupby("model", sort=False):
        both = credit.merge(spend, on="channel", how="outer").assign(model=model)
        rows.append(both.fillna({"attributed_conversions": 0.0, "attributed_revenue_usd": 0.0, "spend_usd": 0.0}))
    return pd.concat(rows, ignore_index=True)[cols]


# Measured against the generator's true incremental effects (medium practice, 25 clinics x 3 years, seeds 7 and
# 11 alike, `python bench/peers_attribution.py`): Spearman rank correlation per model, and the credit each gives
# the channel whose true effect is negative (ml/README.md "Attribution"). The page cites these, not a belief;
# tests/app/test_attribution_backtest_cited.py holds them equal to bench/results/ml-peers-medium.json.
BACKTEST: Mapping[str, Any] = {
    "spearman_mmm": 1.0,
    "spearman_best_path": 0.66,
    "negative_channel_share_paths": (0.17, 0.18),
}
PATH_FOR_INCREMENTALITY = ("markov", "linear")  # the path credit shown beside the MMM, first one present


def incrementality(r: Reader) -> pd.DataFrame:
    """The MMM's incremental new patients per channel (with its interval) beside a path model's credit.

    Both as shares over the marketing channels: effect / net incremental patients, and the path model's
    attributed conversions / its total over those channels, over all history (the MMM is fitted on every complete month). Empty until the ML step has scored a build.
    """
    cols = ["channel", "effect", "lo", "hi", "share", "share_lo", "share_hi", "path_model", "path_share"]
    if not r.has("ml.channel_incrementality"):
        return pd.DataFrame(columns=cols)
    inc = r.df("select channel, effect, lo, hi, share from ml.channel_incrementality order by effect desc")
    if inc.empty:
        return pd.DataFrame(columns=cols)
    net = float(inc["effect"].sum())
    inc["share_lo"] = inc["lo"] / net if net > 0 else None
    inc["share_hi"] = inc["hi"] / net if net > 0 else None
    credit = pd.DataFrame(columns=["model", "channel", "attributed_conversions"])
    if r.has("ml.attribution_credit"):
        credit = r.df("select model, channel, attributed_conversions from ml.attribution_credit")
    if credit.empty or not set(PATH_FOR_INCREMENTALITY) & set(credit["model"]):
        credit = r.df(
            "select model, channel, sum(attributed_conversions) as attributed_conversions "
            "from marts.attribution_roi where model = 'linear' group by all"
        )
    model = next((m for m in PATH_FOR_INCREMENTALITY if m in set(credit["model"])), None)
    # shares among the MMM's channels: physician referrals and direct access are not marketing channels
    part = credit[(credit["model"] == model) & credit["channel"].isin(inc["channel"])]
    total = float(part["attributed_conversions"].sum())
    path = part.assign(path_share=part["attributed_conversions"] / total if total > 0 else None)[
        ["channel", "path_share"]
    ]
    out = inc.merge(path, on="channel", how="left").assign(path_model=model)  # one row per MMM channel
    return out[cols]


def budget_guidance(inc: pd.DataFrame) -> dict[str, Any]:
    """Which numbers to move budget on, and why, from the backtest and this practice's intervals.

    `negative`: channels whose whole interval is below zero (cutting them adds patients); `uncertain`: intervals
    that cross zero (test before moving money); `positive`: intervals above zero.
    """
    if inc.empty:
        return {"negative": [], "uncertain": [], "positive": [], "text": None}
    neg = inc.loc[inc["hi"] < 0, "channel"].tolist()
    pos = inc.loc[inc["lo"] > 0, "channel"].tolist()
    unsure = inc.loc[(inc["lo"] <= 0) & (inc["hi"] >= 0), "channel"].tolist()
    lo, hi = BACKTEST["negative_channel_share_paths"]
    text = (
        "**Use the incremental effect for budget decisions; use path credit to see journeys.** On a practice "
        "whose true channel effects are known, the marketing-mix model ranked channels with a rank correlation "
        f"of {BACKTEST['spearman_mmm']:.2f} against the truth, the best path model {BACKTEST['spearman_best_path']:.2f}, "
        f"and every path model gave the channel that truly *costs* patients {lo:.0%}–{hi:.0%} of the credit "
        "(path models split credit among patients who came; they cannot see patients a channel displaced)."
    )
    return {"negative": neg, "uncertain": unsure, "positive": pos, "text": text}


def marketing_totals(by_channel: pd.DataFrame, model: str) -> dict[str, float | None]:
    """Marketing spend, revenue credited to bought channels, and ROI for one model.

    One definition everywhere (the Overview's attributed_roi is this with the linear model): only channels
    that carry spend enter, so physician referrals and direct access never inflate a marketing return.
    ROI is a fraction (0.5 = 50%), shown as a percentage.
    """
    paid = by_channel[(by_channel["model"] == model) & by_channel["is_marketing"]]
    spend = float(paid["spend_usd"].fillna(0).sum())
    revenue = float(paid["attributed_revenue_usd"].fillna(0).sum())
    return {
        "spend_usd": spend,
        "attributed_revenue_usd": revenue,
        "attributed_conversions": float(paid["attributed_conversions"].fillna(0).sum()),
        "roi": (revenue - spend) / spend if spend > 0 else None,
    }


def marketing_new_patients(r: Reader, f: Filters) -> dict[str, Any]:
    """Cost per new patient exactly as the Overview KPI: spend / marketing-sourced referrals evaluated, over the
    months in range, in the clinics in view: the practice's row ('ALL') for every clinic, else the clinics' own
    rows with their spend and new patients summed (numerators over denominators, never an average of ratios).

    A month with no spend reported (NULL spend: unknown, not $0) is left out of both sums, its new patients too,
    as on the Overview (overview.known_numerator); `unreported_months` lists those months (first days) for the
    page to name."""
    clinics = clinics_in_view(r, f)
    where = "k.clinic_id = 'ALL'" if clinics is None else "list_contains($clinics, k.clinic_id)"
    known = known_numerator("k")
    sql = f"""
    select sum(k.numerator) filter (where {known}) as spend_usd,
           sum(k.denominator) filter (where {known}) as new_patients,
           list_sort(list_distinct(list(k.period_start) filter (where not {known}))) as unreported_months
    from marts.practice_kpis k
    where k.kpi = 'cost_per_new_patient' and k.grain = 'month' and {where}
      and k.period_start between date_trunc('month', $start::date) and $end
    """
    row = r.df(sql, {**range_params(f), **({} if clinics is None else {"clinics": list(clinics)})}).iloc[0]
    spend = None if pd.isna(row["spend_usd"]) else float(row["spend_usd"])
    patients = None if pd.isna(row["new_patients"]) else float(row["new_patients"])
    unreported = row["unreported_months"]
    return {
        "spend_usd": spend,
        "new_patients": patients,
        "cost_per_new_patient": spend / patients if spend is not None and patients else None,
        "unreported_months": [pd.Timestamp(m) for m in unreported]
        if isinstance(unreported, list | tuple | np.ndarray)
        else [],
    }


def available_models(r: Reader) -> list[str]:
    models = r.df("select distinct model from marts.attribution_roi")["model"].tolist()
    if r.has("ml.attribution_credit") and practice_wide_allowed(r):
        models += r.df("select distinct model from ml.attribution_credit")["model"].tolist()
    order = list(HEURISTIC_MODELS) + list(DATA_DRIVEN_MODELS)
    return sorted(set(models), key=lambda m: order.index(m) if m in order else 99)


def attribution_monthly(r: Reader, f: Filters, model: str) -> pd.DataFrame:
    """ROI and cost per new patient by channel and month for one heuristic model, with each month's maturity, in
    the clinics in view.

    A month is maturing while the referral conversion for it is (practice_kpis.is_maturing, the build's own
    verdict; for a subset of clinics, while any of theirs is): its referrals are still turning into evaluations,
    so its conversions, revenue and ROI will still rise. The join is one row per month, so no channel-month is
    lost or doubled.
    """
    clinics = clinics_in_view(r, f)
    if clinics is None:
        sql = """
        select a.month, a.channel, a.spend_usd, a.attributed_conversions, a.attributed_revenue_usd, a.roi,
               a.cost_per_new_patient, coalesce(k.is_maturing, false) as is_maturing
        from marts.attribution_roi a
        left join marts.practice_kpis k
          on k.kpi = 'referral_conversion' and k.grain = 'month' and k.clinic_id = 'ALL' and k.period_start = a.month
        where a.model = $model and a.month between date_trunc('month', $start::date) and $end
        order by a.month, a.channel
        """
        return r.df(sql, {**range_params(f), "model": model})
    sql = f"""
    with a as ({_credit_rows_sql((model,))}),
    k as (
        select period_start, bool_or(is_maturing) as is_maturing from marts.practice_kpis
        where kpi = 'referral_conversion' and grain = 'month' and list_contains($clinics, clinic_id)
        group by all
    )
    select a.month, a.channel, a.spend_usd, a.attributed_conversions, a.attributed_revenue_usd,
           case when coalesce(a.spend_usd, 0) = 0 then null
                else cast(a.attributed_revenue_usd - a.spend_usd as double) / a.spend_usd end as roi,
           case when coalesce(a.attributed_conversions, 0) = 0 or a.spend_usd = 0 then null
                else cast(a.spend_usd as double) / a.attributed_conversions end as cost_per_new_patient,
           coalesce(k.is_maturing, false) as is_maturing
    from a left join k on k.period_start = a.month
    order by a.month, a.channel
    """
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})


# The paths of marts.attribution_paths (same rules: the channels of referral_touches in touch order; a conversion is an
# evaluated referral, a non-conversion referral_touches.is_non_conversion) for the referrals decided in the months in
# view (referral_touches.decided_at: the evaluation, for a conversion its conversion month as the credit above) and in
# the clinics in view. Over every month and clinic it is marts.attribution_paths, row for row.
_PATHS_SQL = """
with decided as (
    select referral_id, string_agg(channel, ' > ' order by touch_seq) as path, max(path_length) as path_length,
           bool_or(is_conversion) as is_conversion, bool_or(is_non_conversion) as is_non_conversion,
           sum(conversion_value_usd) filter (where touch_seq = 1) as value_usd
    from marts.referral_touches
    where ($all_clinics or list_contains($clinics, clinic_id))
      and cast(date_trunc('month', decided_at) as date) between date_trunc('month', $start::date) and $end
    group by referral_id
),
paths as (
    select path, max(path_length) as path_length, count(*) filter (where is_conversion) as conversions,
           count(*) filter (where is_non_conversion) as non_conversions,
           coalesce(sum(value_usd) filter (where is_conversion), 0) as revenue_usd
    from decided group by path having count(*) filter (where is_conversion or is_non_conversion) > 0
)
"""


def paths_in_view(r: Reader, f: Filters) -> pd.DataFrame:
    """Touch paths with their conversions, non-conversions and revenue, for the referrals decided (converted, or
    counted as not converting) in the months in range and the clinics in view."""
    return r.df(
        _PATHS_SQL + "select path, path_length, conversions, non_conversions, revenue_usd from paths order by path",
        {**clinic_params(r, f), **range_params(f)},
    )


def path_lengths(r: Reader, f: Filters) -> pd.DataFrame:
    """Conversions, non-conversions, revenue and conversion rate by number of touches, for the paths in view."""
    sql = (
        _PATHS_SQL
        + """
    select path_length, sum(conversions) as conversions, sum(non_conversions) as non_conversions,
           sum(revenue_usd) as revenue_usd,
           sum(conversions) / nullif(sum(conversions) + sum(non_conversions), 0) as conversion_rate
    from paths group by 1 order by 1
    """
    )
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})


def top_paths(r: Reader, f: Filters, limit: int = 25) -> pd.DataFrame:
    """The most converting paths in view, each channel of the path in words ('Search ads → Physician referral')."""
    df = r.df(
        _PATHS_SQL + "select path, path_length, conversions, non_conversions, revenue_usd from paths "
        "order by conversions desc, revenue_usd desc, path limit $limit",
        {**clinic_params(r, f), **range_params(f), "limit": int(limit)},
    )
    return df.assign(path=path_labels(df["path"]))


def path_labels(paths: pd.Series) -> pd.Series:
    """'search_ads > physician_referral' -> 'Search ads → Physician referral' (split, label, join back)."""
    steps = paths.astype("string").str.split(" > ").explode()
    named = labels.relabel(steps, "channel")
    return named.groupby(level=0).agg(" → ".join).reindex(paths.index)
