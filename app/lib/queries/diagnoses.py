"""Referrals by diagnosis: referrals, evaluations and conversions by ICD-10-CM category and chapter
(marts.referral_diagnoses), and the referrals behind a category.

Diagnosis categories are not in the shared label table (app/lib/labels.py), so the categories PT practices see
most are labelled with the plain mapping below (ICD-10-CM category titles, shortened); any other category
shows its chapter. Stages and sources of the rows behind use the shared table."""

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

CATEGORY_LABELS: dict[str, str] = {
    "M54": "Back and neck pain (dorsalgia)",
    "M51": "Lumbar / thoracic disc disorders",
    "M50": "Cervical disc disorders",
    "M48": "Spinal stenosis and other spondylopathies",
    "M75": "Shoulder lesions (rotator cuff, frozen shoulder)",
    "M25": "Joint pain and stiffness",
    "M19": "Osteoarthritis, other joints",
    "M16": "Hip osteoarthritis",
    "M17": "Knee osteoarthritis",
    "M22": "Patella disorders",
    "M62": "Muscle disorders (weakness)",
    "M70": "Soft tissue disorders from overuse (bursitis)",
    "M72": "Fibroblastic disorders (plantar fasciitis)",
    "M76": "Enthesopathies of the lower limb (tendinitis)",
    "M77": "Epicondylitis and other enthesopathies",
    "M79": "Soft tissue pain",
    "S13": "Neck sprain",
    "S52": "Forearm fracture",
    "S83": "Knee sprain and meniscus tear",
    "S93": "Ankle and foot sprain",
    "G56": "Carpal tunnel and upper-limb nerve disorders",
    "G20": "Parkinson's disease",
    "I69": "After-effects of stroke",
    "R26": "Gait and mobility problems",
    "Z96": "Joint replacement (after surgery)",
    "none": "No diagnosis on file",
}


def label(category: str, chapter: str) -> str:
    """The category's words with its code (M54 · Back and neck pain), else the chapter's."""
    if category == "none":
        return CATEGORY_LABELS["none"]
    return f"{category} · {CATEGORY_LABELS.get(category, chapter)}"


def by_category(r: Reader, f: Filters) -> pd.DataFrame:
    """One row per ICD-10 category over the months in range, most referred first, with conversion rates."""
    sql = f"""
    select icd10_category, any_value(icd10_chapter) as icd10_chapter, sum(referrals) as referrals,
           sum(coded_on_referral) as coded_on_referral, sum(evaluated) as evaluated, sum(converted) as converted,
           sum(still_open) as still_open
    from marts.referral_diagnoses
    where month between date_trunc('month', $start::date) and $end and {CLINIC_FILTER}
    group by icd10_category order by referrals desc, icd10_category
    """
    df = r.df(sql, {**clinic_params(r, f), **range_params(f)})
    return with_rates(df)


def with_rates(df: pd.DataFrame) -> pd.DataFrame:
    """Conversion = converted / referrals, evaluated rate = evaluated / referrals, share of all referrals."""
    out = df.copy()
    refs = out["referrals"].astype(float)
    out["conversion_rate"] = (out["converted"] / refs.where(refs > 0)).astype(float)
    out["evaluated_rate"] = (out["evaluated"] / refs.where(refs > 0)).astype(float)
    total = float(refs.sum())
    out["share"] = refs / total if total else 0.0
    out["diagnosis"] = [label(c, ch) for c, ch in zip(out["icd10_category"], out["icd10_chapter"], strict=True)]
    return out


def by_chapter(df: pd.DataFrame) -> pd.DataFrame:
    """by_category rolled up to ICD-10 chapters (summed counts, rates recomputed)."""
    cols = ["referrals", "coded_on_referral", "evaluated", "converted", "still_open"]
    g = df.groupby("icd10_chapter", as_index=False)[cols].sum().sort_values("referrals", ascending=False)
    out = g.assign(icd10_category=g["icd10_chapter"])
    out = with_rates(out)
    return out.assign(diagnosis=out["icd10_chapter"]).reset_index(drop=True)


def category_referrals(r: Reader, f: Filters, diagnosis: str) -> pd.DataFrame:
    """The referrals behind one category row (its code is before ' · '; 'No diagnosis on file' = none)."""
    category = "none" if diagnosis == CATEGORY_LABELS["none"] else diagnosis.split(" · ")[0]
    sql = f"""
    select f.referral_id, f.received_at, coalesce(f.icd10_code, e.icd10_primary) as diagnosis_code,
           f.source_type, f.current_stage, f.exit_stage, f.evaluated_at, f.converted_webpt,
           {identity_select(r, "f")}
    from marts.referral_funnel f left join marts.episodes e using (episode_id) {patients_join(r, "f")}
    where f.received_at::date between date_trunc('month', $start::date) and last_day($end::date)
      and f.received_at <= (select max(as_of) from marts.build_info)
      and coalesce(upper(left(coalesce(f.icd10_code, e.icd10_primary), 3)), 'none') = $category
      and {CLINIC_FILTER.replace("clinic_id", "f.clinic_id")}
    order by f.received_at
    """
    df = r.df(sql, {**clinic_params(r, f), **range_params(f), "category": category})
    df = labels.relabel_frame(df, {"source_type": "source_type", "current_stage": ("exit_stage", "funnel_stage")})
    return labels.relabel_frame(df, {"exit_stage": "exit_stage"}, missing="–")
