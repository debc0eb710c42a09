"""Work queue: the open tasks of the build plus the upcoming high no-show-risk appointments to confirm."""

from __future__ import annotations

import pandas as pd

from app.lib.queries.base import Filters, Reader, clinic_params, identity_select, patients_join

HIGH_RISK_RULE = "confirm_high_risk"  # the rule of ml.work_queue_tasks


def queue_candidates(r: Reader, f: Filters, scores_servable: bool = True) -> pd.DataFrame:
    """Open tasks: the build's rule tasks (marts.work_queue_candidates) plus the no-show model's confirm tasks
    (ml.work_queue_tasks, written by the ML step in the same shape): a plain union.

    `scores_servable=False` (the deployed no-show model lost to its baseline: model_cards.no_show_servable)
    leaves the model's tasks out.
    """
    cols = (
        f"w.task_id, w.rule, w.clinic_id, {identity_select(r, 'w')}, w.referral_id, w.episode_id, "
        "w.appointment_id, w.reason, w.priority, w.due_at, w.created_at"
    )
    sql = f"""
    select {cols}
    from marts.work_queue_candidates w {patients_join(r, "w")}
    where ($all_clinics or list_contains($clinics, w.clinic_id))
    """
    if scores_servable and r.has("ml.work_queue_tasks"):
        sql += f"""
    union all by name
    select {cols}
    from ml.work_queue_tasks w {patients_join(r, "w")}
    where ($all_clinics or list_contains($clinics, w.clinic_id))
    """
    df = r.df(sql, clinic_params(r, f))
    return df.sort_values(["priority", "due_at"]).reset_index(drop=True)
