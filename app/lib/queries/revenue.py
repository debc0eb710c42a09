"""A/R, payers and denials: A/R aging buckets at as_of (marts.ar_aging), payer mix of visits and collections
(marts.payer_mix) and denials by CARC group (marts.denial_reasons), each with the rows behind a picked row.

Labels come from the shared label table (app/lib/labels.py: payer_class, carc_group, ...); only the marts'
own placeholder 'unknown' gets words here. Drill-through functions take the codes of the picked summary row."""

from __future__ import annotations

from typing import Any

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

BUCKETS: tuple[str, ...] = ("0-30", "31-60", "61-90", "91-120", "120+")
BUCKET_LABELS: dict[str, str] = {b: f"{b} days" for b in BUCKETS}

# The marts' placeholder for "no payer / code not in the list", per label domain.
UNKNOWN: dict[str, str] = {"payer_class": "Payer not on file", "carc_group": "Reason code not in the CARC list"}


def plain(code: Any, domain: str) -> str:
    """A code in words: the shared label table, with the marts' 'unknown' placeholder spelled out."""
    if isinstance(code, str) and code == "unknown" and domain in UNKNOWN:
        return UNKNOWN[domain]
    return labels.label(domain, code)


def _months(f: Filters) -> str:
    """Mart months touching the range (the marts are monthly; the page says so)."""
    return "month between date_trunc('month', $start::date) and $end"


# ------------------------------------------------------------------------------------------------ A/R aging


def ar_aging(r: Reader, f: Filters) -> pd.DataFrame:
    """Open A/R at as_of by payer class x bucket (the date range does not apply: A/R is a snapshot)."""
    sql = f"""
    select payer_class, ar_age_bucket, any_value(bucket_order) as bucket_order, sum(open_claims) as open_claims,
           sum(insurance_balance_usd) as insurance_balance_usd, sum(patient_balance_usd) as patient_balance_usd,
           sum(open_balance_usd) as open_balance_usd
    from marts.ar_aging where {CLINIC_FILTER}
    group by all order by payer_class, bucket_order
    """
    df = r.df(sql, clinic_params(r, f))
    return df.assign(payer_class_label=df["payer_class"].map(lambda c: plain(c, "payer_class")))


def ar_by_payer(r: Reader, f: Filters) -> pd.DataFrame:
    """Open A/R per payer with one column per bucket (what a biller works from), largest balance first."""
    pivot = ", ".join(f"sum(a.open_balance_usd) filter (where a.ar_age_bucket = '{b}') as \"{b}\"" for b in BUCKETS)
    sql = f"""
    select coalesce(p.payer_name, a.payer_id) as payer, a.payer_class, {pivot},
           sum(a.open_balance_usd) as total_usd, sum(a.open_claims) as open_claims
    from marts.ar_aging a left join marts.dim_payers p using (payer_id)
    where {CLINIC_FILTER.replace("clinic_id", "a.clinic_id")}
    group by all order by total_usd desc
    """
    df = r.df(sql, clinic_params(r, f))
    df[list(BUCKETS)] = df[list(BUCKETS)].fillna(0.0)
    return df.assign(payer_class=df["payer_class"].map(lambda c: plain(c, "payer_class")))


def ar_claims(r: Reader, f: Filters, codes: list[str]) -> pd.DataFrame:
    """The open claims behind payer classes `codes` (identities for roles that may see them)."""
    sql = f"""
    select c.claim_id, c.service_date, c.ar_age_bucket as age_bucket, coalesce(py.payer_name, c.payer_id) as payer,
           c.billed_usd, c.insurance_balance_usd, c.patient_balance_usd,
           c.insurance_balance_usd + c.patient_balance_usd as open_balance_usd, c.is_denied,
           {identity_select(r, "c")}
    from marts.claims c left join marts.dim_payers py using (payer_id) {patients_join(r, "c")}
    where c.ar_age_bucket <> 'closed' and list_contains($codes, coalesce(c.payer_class, 'unknown'))
      and {CLINIC_FILTER.replace("clinic_id", "c.clinic_id")}
    order by c.service_date
    """
    df = r.df(sql, {**clinic_params(r, f), "codes": codes})
    return df.assign(age_bucket=df["age_bucket"].map(BUCKET_LABELS))


# ------------------------------------------------------------------------------------------------ payer mix


def payer_mix(r: Reader, f: Filters) -> pd.DataFrame:
    """Visits and collections by payer class over the months in range, with each one's share."""
    sql = f"""
    select payer_class, sum(visits) as visits, sum(collected_usd) as collected_usd
    from marts.payer_mix where {_months(f)} and {CLINIC_FILTER}
    group by all
    """
    return with_shares(r.df(sql, {**clinic_params(r, f), **range_params(f)}))


def with_shares(df: pd.DataFrame) -> pd.DataFrame:
    """Shares of visits and collections (fractions; 0 when the total is 0) and labels, largest first."""
    out = df.copy()
    for col, share in (("visits", "visit_share"), ("collected_usd", "collection_share")):
        total = float(out[col].sum()) if len(out) else 0.0
        out[share] = out[col].astype(float) / total if total else 0.0
    out["payer_class_label"] = out["payer_class"].map(lambda c: plain(c, "payer_class"))
    return out.sort_values("collected_usd", ascending=False).reset_index(drop=True)


def payer_class_visits(r: Reader, f: Filters, codes: list[str]) -> pd.DataFrame:
    """The attended visits behind payer classes `codes` (same months and clinics as the mix)."""
    sql = f"""
    select v.appointment_id, v.visit_date, v.visit_type, coalesce(t.therapist_name, v.therapist_id) as therapist,
           v.billable_units, v.charges_usd, v.net_collected_usd, {identity_select(r, "a")}
    from marts.visits v
    join marts.appointments a using (appointment_id)
    left join marts.episodes e on e.episode_id = v.episode_id
    left join marts.dim_therapists t on t.therapist_id = v.therapist_id
    {patients_join(r, "a")}
    where v.visit_date between date_trunc('month', $start::date) and last_day($end::date)
      and v.scheduled_start <= (select max(as_of) from marts.build_info)
      and list_contains($codes, coalesce(e.payer_class, 'unknown'))
      and {CLINIC_FILTER.replace("clinic_id", "v.clinic_id")}
    order by v.visit_date
    """
    return labels.relabel_frame(
        r.df(sql, {**clinic_params(r, f), **range_params(f), "codes": codes}), {"visit_type": "visit_type"}
    )


# ------------------------------------------------------------------------------------------------ denials


def denials_by_group(r: Reader, f: Filters) -> pd.DataFrame:
    """Denied claims and dollars by CARC group over the months in range, largest first."""
    sql = f"""
    select carc_group, sum(denied_claims) as denied_claims, sum(denied_usd) as denied_usd,
           sum(paid_after_denial_claims) as paid_after_denial_claims,
           sum(written_off_claims) as written_off_claims, coalesce(sum(written_off_usd), 0) as written_off_usd,
           string_agg(distinct denial_carc, ', ' order by denial_carc) as codes
    from marts.denial_reasons where {_months(f)} and {CLINIC_FILTER}
    group by all order by denied_usd desc
    """
    df = r.df(sql, {**clinic_params(r, f), **range_params(f)})
    return df.assign(carc_group_label=df["carc_group"].map(lambda c: plain(c, "carc_group")))


def denial_codes(r: Reader, f: Filters) -> pd.DataFrame:
    """Denials by reason code (with its meaning) over the months in range."""
    sql = f"""
    select denial_carc, any_value(carc_description) as reason, any_value(carc_group) as carc_group,
           sum(denied_claims) as denied_claims, sum(denied_usd) as denied_usd
    from marts.denial_reasons where {_months(f)} and {CLINIC_FILTER}
    group by all order by denied_claims desc
    """
    df = r.df(sql, {**clinic_params(r, f), **range_params(f)})
    return df.assign(carc_group=df["carc_group"].map(lambda c: plain(c, "carc_group")))


def denied_claims(r: Reader, f: Filters, groups: list[str]) -> pd.DataFrame:
    """The denied claims behind CARC groups `groups` (first denial in the months in range)."""
    sql = f"""
    select c.claim_id, c.service_date, c.denied_at::date as denied_on, c.denial_carc,
           coalesce(py.payer_name, c.payer_id) as payer, c.billed_usd, c.denied_usd, c.payer_paid_usd,
           c.write_off_usd, {identity_select(r, "c")}
    from marts.claims c left join marts.dim_payers py using (payer_id) {patients_join(r, "c")}
    where c.is_denied and c.denied_at::date between date_trunc('month', $start::date) and last_day($end::date)
      and coalesce(c.denial_carc, 'unknown') in (
          select denial_carc from marts.denial_reasons where list_contains($groups, carc_group))
      and {CLINIC_FILTER.replace("clinic_id", "c.clinic_id")}
    order by c.denied_at
    """
    return r.df(sql, {**clinic_params(r, f), **range_params(f), "groups": groups})
