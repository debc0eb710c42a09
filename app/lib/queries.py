"""Every question a page asks the warehouse, as parameterised SQL. Aggregation happens in DuckDB.

Privacy lives here, server-side: each function receives a `Reader` bound to a `Scope`.
- Clinics: the requested clinics are intersected with the scope (`Scope.effective_clinics`) and bound as
  a list parameter, so a front-desk user cannot ask for another clinic's rows.
- Identities: only PHI roles get patient names and phones (joined from dim_patients); everyone else gets
  `patient_key`. The reader also strips any PHI column from results for de-identified roles.
User input is never formatted into SQL: values are bound (`$name` parameters); the only text assembled
is from fixed whitelists in this module (column names of breakdowns, for example).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping, Protocol

import pandas as pd

from app.lib.auth import Scope
from app.lib.db import AnalyticsDb
from app.lib.privacy import deidentify

STAGES: tuple[str, ...] = ("received", "contacted", "scheduled", "evaluated", "plan_of_care", "active", "discharged")
STAGE_LABELS: Mapping[str, str] = {
    "received": "Received", "contacted": "Contacted", "scheduled": "Scheduled", "evaluated": "Evaluated",
    "plan_of_care": "Plan of care", "active": "Active (2nd visit)", "discharged": "Discharged",
}
# Breakdown choices -> the funnel column they group by (a whitelist: the only SQL text chosen by the UI).
FUNNEL_BREAKDOWNS: Mapping[str, str] = {
    "Clinic": "clinic_id", "Source type": "source_type", "Channel": "channel", "Payer class": "payer_class",
    "Intake kind": "intake_kind",
}
HEURISTIC_MODELS: tuple[str, ...] = ("first", "last", "linear", "time_decay", "position")
DATA_DRIVEN_MODELS: tuple[str, ...] = ("markov", "shapley")
MODEL_LABELS: Mapping[str, str] = {
    "first": "First touch", "last": "Last touch", "linear": "Linear", "time_decay": "Time decay",
    "position": "Position-based (40/20/40)", "markov": "Markov (removal effect)", "shapley": "Shapley",
}


# DESIGN.md's KPI table order: volume and access first, then care, then money.
KPI_ORDER: tuple[str, ...] = (
    "no_show_rate", "cancel_no_show_rate", "arrival_rate", "referral_conversion", "conversion_7day",
    "hours_to_first_contact", "business_days_to_first_visit", "visits_per_discharge", "poc_completion_rate",
    "early_dropout_rate", "units_per_visit", "net_revenue_per_visit", "days_in_ar", "net_collection_rate",
    "denial_rate", "therapist_utilization", "cost_per_new_patient", "attributed_roi",
)


class Reader(Protocol):
    scope: Scope

    def df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame: ...

    def has(self, table: str) -> bool: ...


@dataclass
class DbReader:
    """A Reader straight on the database (tests, benchmarks); the app wraps one with a cache."""

    db: AnalyticsDb
    scope: Scope

    def df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        frame = self.db.query(sql, dict(params or {}))
        return frame if self.scope.phi else deidentify(frame)

    def has(self, table: str) -> bool:
        return self.db.has_table(table)


@dataclass(frozen=True)
class Filters:
    """The shared filters: a date range and the clinics asked for (None = all the user may see)."""

    start: date
    end: date
    clinics: tuple[str, ...] | None = None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def previous(self) -> "Filters":
        """The period of the same length just before this one (for KPI deltas)."""
        return Filters(self.start - timedelta(days=self.days), self.start - timedelta(days=1), self.clinics)


def clinic_params(r: Reader, f: Filters) -> dict[str, Any]:
    """Bound parameters for the clinic filter: `$all_clinics` (bool) and `$clinics` (list)."""
    eff = r.scope.effective_clinics(f.clinics)
    return {"all_clinics": eff is None, "clinics": list(eff or [])}


CLINIC_FILTER = "($all_clinics or list_contains($clinics, clinic_id))"


def range_params(f: Filters) -> dict[str, Any]:
    return {"start": f.start, "end": f.end}


def _identity_select(r: Reader, left: str, alias: str = "p") -> str:
    """Columns that identify the patient: name and phone for PHI roles, the pseudonymous key otherwise."""
    if r.scope.phi:
        return (f"{alias}.first_name || ' ' || {alias}.last_name as patient_name, {alias}.phone as phone, "
                f"{left}.patient_key as patient_key")
    return f"{left}.patient_key as patient_key"


def _patients_join(r: Reader, left: str, alias: str = "p") -> str:
    """Join dim_patients only for PHI roles: de-identified roles' queries never touch the table."""
    if r.scope.phi:
        return f"left join marts.dim_patients {alias} on {alias}.patient_id = {left}.patient_id"
    return ""


# ------------------------------------------------------------------------------------------ common


def build_info(r: Reader) -> dict[str, Any]:
    if not r.has("marts.build_info"):
        return {}
    df = r.df("select * from marts.build_info limit 1")
    return {} if df.empty else df.iloc[0].to_dict()


def clinics(r: Reader) -> pd.DataFrame:
    """Clinics the user may see (id and name), for the shared filter."""
    p = clinic_params(r, Filters(date.min, date.max))
    return r.df(f"select clinic_id, coalesce(clinic_name, clinic_id) as clinic_name from marts.dim_clinics "
                f"where {CLINIC_FILTER} order by clinic_id", p)


def data_date_range(r: Reader) -> tuple[date | None, date | None]:
    """First referral and the as_of day: the bounds of the date filter."""
    df = r.df("select min(received_at)::date as lo, (select max(as_of)::date from marts.build_info) as hi "
              "from marts.referral_funnel")
    if df.empty:
        return None, None
    lo, hi = df.iloc[0]["lo"], df.iloc[0]["hi"]
    return (None if pd.isna(lo) else pd.Timestamp(lo).date(), None if pd.isna(hi) else pd.Timestamp(hi).date())


# ------------------------------------------------------------------------------------------ KPIs

_PRACTICE_OR_CLINICS = "case when $all_clinics then clinic_id = 'ALL' else list_contains($clinics, clinic_id) end"
_EACH_CLINIC = "clinic_id <> 'ALL' and " + CLINIC_FILTER


def _kpi_base(clinic_rows: str = _PRACTICE_OR_CLINICS) -> str:
    """CTE `rows`: each KPI at its finest grain, for the practice ('ALL') or the chosen clinics' own rows."""
    return f"""
with grains as (
    select kpi, min(case grain when 'day' then 1 when 'week' then 2 else 3 end) as g
    from marts.practice_kpis group by kpi
),
rows as (
    select k.*
    from marts.practice_kpis k join grains using (kpi)
    where case grain when 'day' then 1 when 'week' then 2 else 3 end = grains.g
      and {clinic_rows}
)
"""

_KPI_VALUE = """case when d.unit = 'count' then sum(coalesce(r.numerator, r.value))
                     when sum(r.denominator) > 0 then sum(r.numerator) / sum(r.denominator)
                     else avg(r.value) end"""


def kpi_summary(r: Reader, f: Filters) -> pd.DataFrame:
    """One row per KPI: value in the period, value in the previous period, definition and healthy band."""
    prev = f.previous
    params = {**clinic_params(r, f), "start": f.start, "end": f.end, "prev_start": prev.start, "prev_end": prev.end}
    sql = _kpi_base() + f"""
    , cur as (
        select r.kpi, {_KPI_VALUE} as value, sum(r.denominator) as denominator, sum(r.cohort) as cohort,
               sum(r.pending) as pending
        from rows r join marts.kpi_definitions d using (kpi)
        where r.period_start between $start and $end group by r.kpi, d.unit
    ), prev as (
        select r.kpi, {_KPI_VALUE} as value, sum(r.cohort) as cohort, sum(r.pending) as pending
        from rows r join marts.kpi_definitions d using (kpi)
        where r.period_start between $prev_start and $prev_end group by r.kpi, d.unit
    )
    select d.kpi, d.label, d.unit, d.better, d.healthy_low, d.healthy_high, d.definition, d.maturity,
           cur.value, prev.value as previous, cur.denominator, cur.cohort, cur.pending,
           prev.cohort as previous_cohort, prev.pending as previous_pending,
           (select max(maturity_resolved_share) from marts.build_info) as maturity_bar
    from marts.kpi_definitions d
    left join cur using (kpi) left join prev using (kpi)
    """
    df = with_maturity(r.df(sql, params))
    rank = {k: i for i, k in enumerate(KPI_ORDER)}
    return df.sort_values("kpi", key=lambda s: s.map(lambda k: rank.get(k, len(rank)))).reset_index(drop=True)


def with_maturity(df: pd.DataFrame) -> pd.DataFrame:
    """resolved_share and is_maturing from cohort/pending sums: one rule for tiles, trends and clinics.

    A cohort KPI (denial rate, early dropout, conversions...) is 'maturing' while fewer than the build's
    maturity bar (95%) of its cohort has an outcome; flow KPIs (no cohort) never are.
    """
    cohort = pd.to_numeric(df.get("cohort"), errors="coerce") if "cohort" in df else pd.Series(float("nan"), df.index)
    pending = pd.to_numeric(df.get("pending"), errors="coerce") if "pending" in df else cohort * 0
    share = (1 - pending / cohort.where(cohort > 0)).astype(float)
    bar = pd.to_numeric(df["maturity_bar"], errors="coerce") if "maturity_bar" in df else pd.Series(0.95, df.index)
    df = df.assign(resolved_share=share)
    df["is_maturing"] = (share < bar.fillna(0.95)).fillna(False).astype(bool)
    if "previous_cohort" in df:
        prev_share = 1 - pd.to_numeric(df["previous_pending"], errors="coerce") / pd.to_numeric(
            df["previous_cohort"], errors="coerce").where(lambda c: c > 0)
        df["previous_is_maturing"] = (prev_share < bar.fillna(0.95)).fillna(False).astype(bool)
    return df


def kpi_trend(r: Reader, f: Filters, kpi: str, months: int = 24) -> pd.DataFrame:
    """Monthly values of one KPI up to the end of the range (whole practice or the selected clinics), with
    each month's maturity (young cohorts are greyed out by the chart)."""
    params = {**clinic_params(r, f), "kpi": kpi, "end": f.end, "from": f.end - timedelta(days=31 * months)}
    sql = f"""
    select r.period_start as month, {_KPI_VALUE} as value, sum(r.cohort) as cohort, sum(r.pending) as pending,
           (select max(maturity_resolved_share) from marts.build_info) as maturity_bar
    from marts.practice_kpis r join marts.kpi_definitions d using (kpi)
    where r.kpi = $kpi and r.grain = 'month' and r.period_start between $from and $end
      and case when $all_clinics then r.clinic_id = 'ALL' else list_contains($clinics, r.clinic_id) end
    group by r.period_start, d.unit order by 1
    """
    return with_maturity(r.df(sql, params))


def kpi_by_clinic(r: Reader, f: Filters, kpi: str) -> pd.DataFrame:
    """One KPI per clinic over the period (for the clinic comparison)."""
    params = {**clinic_params(r, f), **range_params(f), "kpi": kpi}
    sql = _kpi_base(_EACH_CLINIC) + f"""
    select r.clinic_id, coalesce(c.clinic_name, r.clinic_id) as clinic_name, {_KPI_VALUE} as value,
           sum(r.cohort) as cohort, sum(r.pending) as pending,
           (select max(maturity_resolved_share) from marts.build_info) as maturity_bar
    from rows r join marts.kpi_definitions d using (kpi) left join marts.dim_clinics c using (clinic_id)
    where r.kpi = $kpi and r.period_start between $start and $end
    group by r.clinic_id, c.clinic_name, d.unit order by value desc nulls last
    """
    return with_maturity(r.df(sql, params))


# ------------------------------------------------------------------------------------------ funnel


def _funnel_where(f: Filters) -> str:
    return f"received_at::date between $start and $end and {CLINIC_FILTER}"


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
           count(*) filter (where exit_stage is null and discharged_at is null and not converted_webpt)
             as open_referrals,
           (select max(maturity_resolved_share) from marts.build_info) as maturity_bar
    from marts.referral_funnel where {_funnel_where(f)}
    """
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})


def funnel_stages(r: Reader, f: Filters, breakdown: str | None = None) -> pd.DataFrame:
    """Referrals reaching each stage (long form: [group], stage, stage_order, reached)."""
    group = FUNNEL_BREAKDOWNS.get(breakdown or "", None)
    gsel = f"coalesce(cast({group} as varchar), '(unknown)') as grp," if group else "'All referrals' as grp,"
    counts = ", ".join(
        f"count(*) as received" if s == "received" else f"count({s}_at) as {s}" for s in STAGES)
    sql = f"""
    with c as (
        select {gsel} {counts} from marts.referral_funnel where {_funnel_where(f)} group by 1
    )
    unpivot c on {', '.join(STAGES)} into name stage value reached
    """
    df = r.df(sql, {**clinic_params(r, f), **range_params(f)})
    df["stage_order"] = df["stage"].map({s: i for i, s in enumerate(STAGES)})
    df["stage_label"] = df["stage"].map(STAGE_LABELS)
    return df.sort_values(["grp", "stage_order"]).reset_index(drop=True)


def funnel_exits(r: Reader, f: Filters) -> pd.DataFrame:
    """Where referrals left the funnel and why."""
    sql = f"""
    select exit_stage, coalesce(exit_reason, '(not recorded)') as exit_reason, count(*) as referrals
    from marts.referral_funnel where exit_stage is not null and {_funnel_where(f)}
    group by all order by referrals desc
    """
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})


def stage_durations(r: Reader, f: Filters) -> pd.DataFrame:
    """Median and 90th-percentile days spent between consecutive stages."""
    parts = []
    for a, b in zip(STAGES, STAGES[1:]):
        parts.append(f"""select '{STAGE_LABELS[a]} → {STAGE_LABELS[b]}' as step, {STAGES.index(a)} as step_order,
            median(date_diff('minute', {a}_at, {b}_at) / 1440.0) as median_days,
            quantile_cont(date_diff('minute', {a}_at, {b}_at) / 1440.0, 0.9) as p90_days,
            count(*) filter (where {b}_at is not null) as referrals
            from f where {b}_at >= {a}_at""")
    sql = (f"with f as (select * from marts.referral_funnel where {_funnel_where(f)}) "
           + " union all ".join(parts) + " order by step_order")
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})


def funnel_drilldown(r: Reader, f: Filters, stage: str, breakdown: str | None = None,
                     group_value: str | None = None, limit: int = 500) -> pd.DataFrame:
    """The referrals behind a number: those that reached `stage` (and stopped there, if asked)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    group = FUNNEL_BREAKDOWNS.get(breakdown or "")
    stage_col = "received_at" if stage == "received" else f"{stage}_at"
    group_filter = f"and coalesce(cast(f.{group} as varchar), '(unknown)') = $group_value" if group and group_value else ""
    sql = f"""
    select f.referral_id, f.received_at, f.clinic_id, {_identity_select(r, 'f')},
           f.source_type, f.channel, f.payer_class, f.current_stage, f.exit_stage, f.exit_reason,
           f.hours_to_contact, f.business_days_to_eval, f.next_step_owner
    from marts.referral_funnel f {_patients_join(r, 'f')}
    where f.{stage_col} is not null and f.received_at::date between $start and $end
      and ($all_clinics or list_contains($clinics, f.clinic_id)) {group_filter}
    order by f.received_at desc limit $limit
    """
    params = {**clinic_params(r, f), **range_params(f), "limit": int(limit)}
    if group_filter:
        params["group_value"] = group_value
    return r.df(sql, params)


# ------------------------------------------------------------------------------------------ sources


def source_types(r: Reader) -> list[str]:
    df = r.df("select distinct source_type from marts.referral_source_performance order by 1")
    return [s for s in df["source_type"].tolist() if s is not None]


def open_referrals_by_source_type(r: Reader, source_type: str | None = None) -> dict[str, float]:
    """Referrals (all history) and how many are still open: the scorecard's maturity in one line."""
    sql = """
    select count(*) as referrals,
           count(*) filter (where exit_stage is null and discharged_at is null and not converted_webpt) as open
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
    """Referrals from each source type (or channel) to their outcome, for the Sankey."""
    col = {"source_type": "source_type", "channel": "channel"}[by]
    sql = f"""
    select coalesce(cast({col} as varchar), '(unknown)') as source,
           case when exit_stage is not null then 'Exited: ' || exit_stage
                when discharged_at is not null then 'Discharged'
                when active_at is not null then 'In care'
                when evaluated_at is not null then 'Evaluated'
                else 'Not yet evaluated' end as outcome,
           count(*) as referrals
    from marts.referral_funnel where {_funnel_where(f)}
    group by all order by referrals desc
    """
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})


# ------------------------------------------------------------------------------------------ attribution


def attribution_by_channel(r: Reader, f: Filters) -> pd.DataFrame:
    """Spend, attributed conversions and revenue per model and channel over the months in range."""
    sql = """
    select model, channel, bool_or(is_marketing) as is_marketing, sum(spend_usd) as spend_usd,
           sum(attributed_conversions) as attributed_conversions, sum(attributed_revenue_usd) as attributed_revenue_usd
    from marts.attribution_roi
    where month between date_trunc('month', $start::date) and $end
    group by all
    """
    df = r.df(sql, range_params(f))
    if r.has("ml.attribution_credit"):
        df = pd.concat([df, _data_driven_for_period(r, df)], ignore_index=True)
    df["is_marketing"] = df["is_marketing"].fillna(False).astype(bool)
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
    """
    ml = r.df("select model, channel, attributed_conversions, attributed_revenue_usd from ml.attribution_credit")
    if heuristic.empty or ml.empty:
        return ml.iloc[0:0].assign(spend_usd=pd.Series(dtype=float))
    one_model = heuristic[heuristic["model"] == heuristic["model"].iloc[0]]
    for col in ("attributed_conversions", "attributed_revenue_usd"):
        share = ml[col] / ml.groupby("model")[col].transform("sum").where(lambda t: t > 0)
        ml[col] = share.fillna(0.0) * float(one_model[col].sum())
    spend = heuristic.groupby("channel", as_index=False).agg(spend_usd=("spend_usd", "max"),
                                                              is_marketing=("is_marketing", "max"))
    return ml.merge(spend, on="channel", how="left")


def marketing_totals(by_channel: pd.DataFrame, model: str) -> dict[str, float | None]:
    """Marketing spend, revenue credited to bought channels, and ROI for one model.

    One definition everywhere (the Overview's attributed_roi is this with the linear model): only channels
    that carry spend enter, so physician referrals and direct access never inflate a marketing return.
    ROI is a fraction (0.5 = 50%), shown as a percentage.
    """
    paid = by_channel[(by_channel["model"] == model) & by_channel["is_marketing"]]
    spend = float(paid["spend_usd"].fillna(0).sum())
    revenue = float(paid["attributed_revenue_usd"].fillna(0).sum())
    return {"spend_usd": spend, "attributed_revenue_usd": revenue,
            "attributed_conversions": float(paid["attributed_conversions"].fillna(0).sum()),
            "roi": (revenue - spend) / spend if spend > 0 else None}


def marketing_new_patients(r: Reader, f: Filters) -> dict[str, float | None]:
    """Cost per new patient exactly as the Overview KPI: spend / marketing-sourced referrals evaluated, months in range."""
    sql = """
    select sum(numerator) as spend_usd, sum(denominator) as new_patients
    from marts.practice_kpis
    where kpi = 'cost_per_new_patient' and grain = 'month' and clinic_id = 'ALL'
      and period_start between date_trunc('month', $start::date) and $end
    """
    row = r.df(sql, range_params(f)).iloc[0]
    spend = None if pd.isna(row["spend_usd"]) else float(row["spend_usd"])
    patients = None if pd.isna(row["new_patients"]) else float(row["new_patients"])
    return {"new_patients": patients,
            "cost_per_new_patient": spend / patients if spend is not None and patients else None}


def available_models(r: Reader) -> list[str]:
    models = r.df("select distinct model from marts.attribution_roi")["model"].tolist()
    if r.has("ml.attribution_credit"):
        models += r.df("select distinct model from ml.attribution_credit")["model"].tolist()
    order = list(HEURISTIC_MODELS) + list(DATA_DRIVEN_MODELS)
    return sorted(set(models), key=lambda m: order.index(m) if m in order else 99)


def attribution_monthly(r: Reader, f: Filters, model: str) -> pd.DataFrame:
    """ROI and cost per new patient by channel and month for one heuristic model."""
    sql = """
    select month, channel, spend_usd, attributed_conversions, attributed_revenue_usd, roi, cost_per_new_patient
    from marts.attribution_roi
    where model = $model and month between date_trunc('month', $start::date) and $end
    order by month, channel
    """
    return r.df(sql, {**range_params(f), "model": model})


def path_lengths(r: Reader) -> pd.DataFrame:
    sql = """
    select path_length, sum(conversions) as conversions, sum(non_conversions) as non_conversions,
           sum(revenue_usd) as revenue_usd,
           sum(conversions) / nullif(sum(conversions) + sum(non_conversions), 0) as conversion_rate
    from marts.attribution_paths group by 1 order by 1
    """
    return r.df(sql)


def top_paths(r: Reader, limit: int = 25) -> pd.DataFrame:
    return r.df("select path, path_length, conversions, non_conversions, revenue_usd from marts.attribution_paths "
                "order by conversions desc, revenue_usd desc limit $limit", {"limit": int(limit)})


# ------------------------------------------------------------------------------------------ leakage


def leakage(r: Reader, f: Filters) -> pd.DataFrame:
    """Dollars at stake by category and month in range (selected clinics); app/lib/leakage.py makes the range."""
    sql = f"""
    select category, month, sum(events) as events, sum(units_at_stake) as units_at_stake,
           sum(dollars_at_stake) as dollars_at_stake, any_value(assumption) as assumption
    from marts.revenue_leakage
    where month between date_trunc('month', $start::date) and $end and {CLINIC_FILTER}
    group by all order by month, category
    """
    return r.df(sql, {**clinic_params(r, f), **range_params(f)})


# ------------------------------------------------------------------------------------------ work queue


def queue_candidates(r: Reader, f: Filters, as_of: datetime | None, high_risk_days: int = 7,
                     scores_servable: bool = True) -> pd.DataFrame:
    """Open tasks from the build plus upcoming high no-show-risk appointments (rule confirm_high_risk).

    `scores_servable=False` (the deployed no-show model lost to its baseline: model_cards.no_show_servable)
    leaves the confirm_high_risk tasks out.
    """
    params = {**clinic_params(r, f)}
    sql = f"""
    select w.task_id, w.rule, w.clinic_id, {_identity_select(r, 'w')}, w.referral_id, w.episode_id, w.appointment_id,
           w.reason, w.priority, w.due_at, w.created_at
    from marts.work_queue_candidates w {_patients_join(r, 'w')}
    where ($all_clinics or list_contains($clinics, w.clinic_id))
    """
    if scores_servable and r.has("ml.no_show_scores") and as_of is not None:
        sql += f"""
    union all by name
    select 'confirm_high_risk:' || s.appointment_id as task_id, 'confirm_high_risk' as rule, s.clinic_id, {_identity_select(r, 'a')},
           a.referral_id, a.episode_id, s.appointment_id,
           'High no-show risk (' || cast(round(s.probability * 100) as integer) || '%) for the visit on '
             || strftime(s.scheduled_start, '%a %b %-d %H:%M')
             || coalesce(': ' || s.reason_1, '') || coalesce('; ' || s.reason_2, '') as reason,
           2 as priority, s.scheduled_start - interval 24 hour as due_at, s.scored_at as created_at
    from ml.no_show_scores s
    join marts.appointments a using (appointment_id)
    {_patients_join(r, 'a')}
    where s.risk_band = 'high' and s.scheduled_start >= $as_of
      and s.scheduled_start < $as_of + to_days($days)
      and ($all_clinics or list_contains($clinics, s.clinic_id))
      and a.status = 'scheduled'
      and 'confirm_high_risk:' || s.appointment_id not in (select task_id from marts.work_queue_candidates)
        """
        params.update({"as_of": as_of, "days": int(high_risk_days)})
    df = r.df(sql, params)
    return df.sort_values(["priority", "due_at"]).reset_index(drop=True)


# ------------------------------------------------------------------------------------------ no-show risk


def upcoming_risk(r: Reader, f: Filters, as_of: datetime, days: int = 14) -> pd.DataFrame:
    """Scored future appointments in the next `days` days, riskiest first."""
    sql = f"""
    select s.appointment_id, s.scheduled_start, s.clinic_id, {_identity_select(r, 'a')},
           t.therapist_name, a.visit_type, a.visit_number, s.probability, s.risk_band, s.reason_1, s.reason_2
    from ml.no_show_scores s
    join marts.appointments a using (appointment_id)
    left join marts.dim_therapists t on t.therapist_id = a.therapist_id
    {_patients_join(r, 'a')}
    where s.scheduled_start >= $as_of and s.scheduled_start < $as_of + to_days($days)
      and ($all_clinics or list_contains($clinics, s.clinic_id))
    order by s.probability desc
    """
    return r.df(sql, {**clinic_params(r, f), "as_of": as_of, "days": int(days)})


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


# ------------------------------------------------------------------------------------------ forecast


def forecast_series(r: Reader, f: Filters) -> list[str]:
    """Series the user may see: ALL only for practice-wide scopes, plus their clinics."""
    df = r.df(f"select distinct series from ml.demand_forecast where series = 'ALL' or "
              f"list_contains($clinics, series) or $all_clinics order by 1",
              clinic_params(r, Filters(date.min, date.max)))
    series = df["series"].tolist()
    if r.scope.clinics is not None:
        series = [s for s in series if s != "ALL"]
    return series


def forecast(r: Reader, series: str, metric: str) -> pd.DataFrame:
    allowed = r.scope.effective_clinics(None)
    if allowed is not None and series not in allowed:
        return pd.DataFrame(columns=["week_start", "actual", "yhat", "yhat_lower", "yhat_upper"])
    return r.df("select week_start, actual, yhat, yhat_lower, yhat_upper from ml.demand_forecast "
                "where series = $series and metric = $metric order by week_start", {"series": series, "metric": metric})


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


# ------------------------------------------------------------------------------------------ data health


def loads(r: Reader) -> pd.DataFrame:
    sql = """
    select source, load_id, file, loaded_at, any_value(load_status) as status, any_value(rows_read) as rows_read,
           any_value(rows_landed) as rows_landed, any_value(rows_quarantined) as rows_quarantined,
           any_value(rows_duplicate) as rows_duplicate, any_value(message) as message
    from marts.data_quality group by source, load_id, file, loaded_at order by loaded_at desc, load_id desc
    """
    return r.df(sql)


def quarantine_by_rule(r: Reader) -> pd.DataFrame:
    return r.df("select source, rule, sum(rows) as rows from marts.data_quality where rule <> '(none)' and rows > 0 "
                "group by all order by rows desc")


def freshness(r: Reader) -> pd.DataFrame:
    sql = """
    select source, max(source_last_loaded_at) as last_loaded_at, max(loaded_at) as last_attempt_at,
           count(distinct load_id) as loads
    from marts.data_quality group by 1 order by last_loaded_at nulls first
    """
    return r.df(sql)


def builds(r: Reader, limit: int = 20) -> pd.DataFrame:
    if not r.has("meta.builds"):
        return pd.DataFrame()
    return r.df("select * from meta.builds order by started_at desc limit $limit", {"limit": int(limit)})


QueryFn = Callable[..., pd.DataFrame]
