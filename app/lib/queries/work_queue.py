"""Work queue: the open tasks of the build plus the upcoming high no-show-risk appointments to confirm."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from app.lib.queries.base import Filters, Reader, clinic_params, identity_select, patients_join
from app.lib.queue_vocabulary import rules

HIGH_RISK_RULE = "confirm_high_risk"


def queue_candidates(
    r: Reader, f: Filters, as_of: datetime | None, high_risk_days: int = 7, scores_servable: bool = True
) -> pd.DataFrame:
    """Open tasks from the build plus upcoming high no-show-risk appointments (rule confirm_high_risk, its
    priority from the rules seed).

    `scores_servable=False` (the deployed no-show model lost to its baseline: model_cards.no_show_servable)
    leaves the confirm_high_risk tasks out.
    """
    params = {**clinic_params(r, f)}
    sql = f"""
    select w.task_id, w.rule, w.clinic_id, {identity_select(r, "w")}, w.referral_id, w.episode_id, w.appointment_id,
           w.reason, w.priority, w.due_at, w.created_at
    from marts.work_queue_candidates w {patients_join(r, "w")}
    where ($all_clinics or list_contains($clinics, w.clinic_id))
    """
    if scores_servable and r.has("ml.no_show_scores") and as_of is not None:
        sql += f"""
    union all by name
    select $rule || ':' || s.appointment_id as task_id, $rule as rule, s.clinic_id, {identity_select(r, "a")},
           a.referral_id, a.episode_id, s.appointment_id,
           'High no-show risk (' || cast(round(s.probability * 100) as integer) || '%) for the visit on '
             || strftime(s.scheduled_start, '%a %b %-d %H:%M')
             || coalesce(': ' || s.reason_1, '') || coalesce('; ' || s.reason_2, '') as reason,
           $priority as priority, s.scheduled_start - interval 24 hour as due_at, s.scored_at as created_at
    from ml.no_show_scores s
    join marts.appointments a using (appointment_id)
    {patients_join(r, "a")}
    where s.risk_band = 'high' and s.scheduled_start >= $as_of
      and s.scheduled_start < $as_of + to_days($days)
      and ($all_clinics or list_contains($clinics, s.clinic_id))
      and a.status = 'scheduled'
      and $rule || ':' || s.appointment_id not in (select task_id from marts.work_queue_candidates)
        """
        params.update(
            {
                "as_of": as_of,
                "days": int(high_risk_days),
                "rule": HIGH_RISK_RULE,
                "priority": rules()[HIGH_RISK_RULE].priority,
            }
        )
    df = r.df(sql, params)
    return df.sort_values(["priority", "due_at"]).reset_index(drop=True)
