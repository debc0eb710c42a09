"""Outbound: who a message goes to (work-queue tasks, tomorrow's high-risk appointments) and the monthly
referrer report's figures. Contact details are PHI: these questions need a PHI role (the pages check)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd

from app.lib.queries.base import Filters, Reader, clinic_params

TASK_COLUMNS = "task_id, patient_id, clinic_id, appointment_id, referral_id, created_at"
HIGH_RISK_RULE = "confirm_high_risk"  # ml/warehouse.py: task_id = rule || ':' || appointment_id
EVERY_CLINIC = Filters(date.min, date.max)  # no clinic asked for: every clinic of the user's scope


def _enrich(r: Reader, targets_sql: str, params: dict[str, Any]) -> pd.DataFrame:
    """Recipient rows (task and its created_at, patient contact, clinic, upcoming appointment, therapist) for a
    targets query. created_at is the task's occurrence (the build's start of its condition): a message's
    write-back names it, as the Work queue's actions do (actions.occurrence_key)."""
    sql = f"""
    with targets as ({targets_sql})
    select t.task_id, t.created_at, t.patient_id, p.first_name, p.last_name, p.phone, p.email,
           coalesce(c.clinic_name, t.clinic_id) as clinic_name, c.timezone as clinic_timezone,
           t.referral_id, t.appointment_id,
           case when a.is_future then a.scheduled_start end as appointment_time, th.therapist_name
    from targets t
    left join marts.dim_patients p on p.patient_id = t.patient_id
    left join marts.dim_clinics c on c.clinic_id = t.clinic_id
    -- only the targets' appointments: most tasks have none, and a join on the whole table scans all of it
    left join (
        select appointment_id, therapist_id, is_future, scheduled_start from marts.appointments
        where appointment_id in (select appointment_id from targets)
    ) a on a.appointment_id = t.appointment_id
    left join marts.dim_therapists th on th.therapist_id = a.therapist_id
    where ($all_clinics or list_contains($clinics, t.clinic_id))
    order by appointment_time nulls last, t.task_id
    """
    return r.df(sql, params)


def task_recipients(r: Reader, f: Filters, task_ids: list[str]) -> pd.DataFrame:
    """Recipients of work-queue tasks (the build's rule tasks and the no-show model's confirm tasks)."""
    targets = f"select {TASK_COLUMNS} from marts.work_queue_candidates where list_contains($ids, task_id)"
    if r.has("ml.work_queue_tasks"):
        targets += (
            f" union all by name select {TASK_COLUMNS} from ml.work_queue_tasks where list_contains($ids, task_id)"
        )
    return _enrich(r, targets, {**clinic_params(r, f), "ids": list(task_ids)})


def high_risk_recipients(r: Reader, f: Filters, day: date) -> pd.DataFrame:
    """Tomorrow's (`day`'s) high no-show-risk appointments: the bulk reminder list, one row per appointment."""
    targets = f"""
    select '{HIGH_RISK_RULE}:' || s.appointment_id as task_id, a.patient_id, s.clinic_id, s.appointment_id,
           null::varchar as referral_id, s.scored_at as created_at
    from ml.no_show_scores s join marts.appointments a using (appointment_id)
    where s.risk_band = 'high' and s.scheduled_start::date = $day
    """
    return _enrich(r, targets, {**clinic_params(r, f), "day": day})


def patients_in_scope(r: Reader, patient_ids: list[str]) -> set[str] | None:
    """Which of `patient_ids` the reader's clinic scope covers: seen at one of its clinics (an appointment, an
    episode or a referral there). None when the scope is every clinic (nothing to refuse)."""
    clinics = r.scope.clinics
    if clinics is None:
        return None
    if not patient_ids:
        return set()
    df = r.df(
        """
        select distinct patient_id::varchar as patient_id from (
            select patient_id, clinic_id from marts.appointments
            union all select patient_id, clinic_id from marts.episodes
            union all select patient_id, clinic_id from marts.referral_funnel
        )
        where list_contains($ids, patient_id::varchar) and list_contains($clinics, clinic_id)
        """,
        {"ids": [str(p) for p in patient_ids], "clinics": list(clinics)},
    )
    return set(df["patient_id"].astype(str))


def next_clinic_day(r: Reader, f: Filters, after: date) -> date | None:
    """The first day after `after` with scored appointments ("tomorrow", or Monday when asked on a Friday)."""
    df = r.df(
        "select min(scheduled_start::date) as day from ml.no_show_scores "
        "where scheduled_start::date > $after and ($all_clinics or list_contains($clinics, clinic_id))",
        {**clinic_params(r, f), "after": after},
    )
    day = df.iloc[0]["day"] if len(df) else None
    return None if day is None or pd.isna(day) else pd.Timestamp(day).date()


def referring_physicians(r: Reader, f: Filters | None = None) -> pd.DataFrame:
    """Referring physicians with at least one referral to the clinics in view (the user's scope and the clinic
    filter; `f` None = every clinic the user may see), most referrals first, for the report picker. The counts are
    those clinics' referrals only."""
    sql = """
    select d.physician_id, trim(d.first_name || ' ' || d.last_name || coalesce(', ' || d.credential, '')) as name,
           d.practice_name, count(*) as referrals, max(f.received_at)::date as last_referral
    from marts.referral_funnel f join marts.dim_referring_physicians d on d.physician_id = f.referring_physician_id
    where ($all_clinics or list_contains($clinics, f.clinic_id))
    group by all order by referrals desc, name
    """
    return r.df(sql, clinic_params(r, f or EVERY_CLINIC))


def referrer_report(r: Reader, f: Filters, physician_id: str, month: date) -> dict[str, Any]:
    """One referring physician's month: each referral received in it, and where it stands as of the build.

    Rows: one per referral (patient, received, evaluated, visits, discharge, outcome measure and change).
    Totals are computed from the same rows, so the PDF's figures are the marts' figures."""
    start = month.replace(day=1)
    end = (pd.Timestamp(start) + pd.offsets.MonthBegin(1)).date()
    # The physician's name is not a patient's: it is selected under aliases the de-identification filter keeps
    # (first_name/last_name are PHI column names), so marketing's report names the physician, not the NPI.
    who = r.df(
        "select physician_id, physician_name, last_name as physician_family_name, credential, specialty, "
        "practice_name, state from marts.dim_referring_physicians where physician_id = $id",
        {"id": physician_id},
    )
    identity = "p.first_name || ' ' || p.last_name as patient" if r.scope.phi else "f.patient_key as patient"
    join = "left join marts.dim_patients p on p.patient_id = f.patient_id" if r.scope.phi else ""
    rows = r.df(
        f"""
        select f.referral_id, {identity}, f.received_at::date as received, f.evaluated_at::date as evaluated,
               coalesce(e.attended_visits, 0) as visits, coalesce(e.discharge_date, f.discharged_at::date) as discharged,
               e.status as episode_status, f.current_stage, e.outcome_measure, e.outcome_score_eval,
               e.outcome_score_discharge, e.outcome_change, e.met_mcid
        from marts.referral_funnel f
        left join marts.episodes e on e.episode_id = f.episode_id
        {join}
        where f.referring_physician_id = $id and f.received_at >= $start and f.received_at < $end
          and ($all_clinics or list_contains($clinics, f.clinic_id))
        order by f.received_at, f.referral_id
        """,
        {**clinic_params(r, f), "id": physician_id, "start": start, "end": end},
    )
    with_outcome = rows["outcome_change"].notna()
    totals = {
        "referrals": len(rows),
        "seen": int(rows["evaluated"].notna().sum()),
        "visits": int(rows["visits"].sum()),
        "discharged": int(rows["discharged"].notna().sum()),
        "with_outcome": int(with_outcome.sum()),
        "met_mcid": int(rows.loc[with_outcome, "met_mcid"].fillna(False).astype(bool).sum()),
    }
    return {
        "physician": who.iloc[0].to_dict() if len(who) else {"physician_id": physician_id},
        "month": start,
        "rows": rows,
        "totals": totals,
    }


def practice_label(r: Reader, f: Filters | None = None) -> str:
    """How the report names the practice: the name of the clinic in view, or the clinics' names (a few), from
    dim_clinics; only the clinics the user may see and asked for (`f` None = every clinic the user may see)."""
    names = r.df(
        "select coalesce(clinic_name, clinic_id) as name from marts.dim_clinics "
        "where ($all_clinics or list_contains($clinics, clinic_id)) order by clinic_id",
        clinic_params(r, f or EVERY_CLINIC),
    )["name"]
    names = [str(n) for n in names if n]
    if not names:
        return "our practice"
    return (
        names[0]
        if len(names) == 1
        else (
            ", ".join(names[:-1]) + " and " + names[-1]
            if len(names) <= 3
            else f"{names[0]} and {len(names) - 1} other clinics"
        )
    )
