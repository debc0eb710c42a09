"""Work queue: the open tasks of the build plus the upcoming high no-show-risk appointments to confirm.

The Work queue page asks two questions, so that neither reads more than it needs at a chain's size (~170k open
tasks at 900 clinics):

- `queue_index`: every task the user may work (their clinics and the role's queues, both filtered in SQL) with
  only what ranks, counts and filters them: no patient join, no details;
- `task_details`: the patient and the details of the tasks the page lists (a few hundred), by task id.

`queue_candidates` (every column of every task in one) serves the other callers.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from app.lib.queries.base import Filters, Reader, clinic_params, identity_select, patients_join
from app.lib.work_queue import RULES, role_rules

HIGH_RISK_RULE = "confirm_high_risk"  # the rule of ml.work_queue_tasks
# What ranks, counts and filters a task (work_queue.assemble); the rest is task_details'.
INDEX_COLUMNS = "w.task_id, w.rule, w.clinic_id, w.referral_id, w.priority, w.due_at, w.created_at"
IN_SCOPE = "($all_clinics or list_contains($clinics, w.clinic_id))"
# work_queue.for_role in SQL: the rules the role works, and a rule missing from the seed for overseeing roles
IN_ROLE = "(list_contains($rules, w.rule) or ($unlisted and not coalesce(list_contains($known, w.rule), false)))"


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


def _task_tables(r: Reader, scores_servable: bool) -> list[str]:
    """The build's rule tasks, and the models' (ml.work_queue_tasks) while servable and written (as above)."""
    tables = ["marts.work_queue_candidates"]
    if scores_servable and r.has("ml.work_queue_tasks"):
        tables.append("ml.work_queue_tasks")
    return tables


def queue_index(r: Reader, f: Filters, role: str, scores_servable: bool = True) -> pd.DataFrame:
    """The tasks of the role's queues (work_queue.role_rules, the rule of work_queue.for_role) in the user's
    clinics: INDEX_COLUMNS only, in rank order before lead scores and live actions (priority, then due time, then
    task id, so that tied tasks rank the same on every run, as marts.work_queue_candidates.queue_rank has them).

    The same tasks as `queue_candidates` cut by `for_role`, without the patient join and the details: the page
    ranks and counts the whole queue from this and asks `task_details` for the rows it lists.
    """
    rules, unlisted = role_rules(role)
    sql = "\n    union all by name\n    ".join(
        f"select {INDEX_COLUMNS} from {table} w where {IN_SCOPE} and {IN_ROLE}"
        for table in _task_tables(r, scores_servable)
    )
    params = {**clinic_params(r, f), "rules": rules, "unlisted": unlisted, "known": sorted(RULES)}
    return r.df(f"{sql}\n    order by priority nulls last, due_at nulls last, task_id", params)


def queued_appointments(r: Reader, f: Filters, rule: str, scores_servable: bool = True) -> set[str]:
    """Appointment ids of the open tasks of `rule` in the user's clinics (the No-show page's "In work queue"): one
    column, not the whole queue with its patients (167 k tasks at 900 clinics: 6.7 s cold)."""
    sql = "\n    union all\n    ".join(
        f"select w.appointment_id from {table} w where w.rule = $rule and w.appointment_id is not null and {IN_SCOPE}"
        for table in _task_tables(r, scores_servable)
    )
    return set(r.df(sql, {**clinic_params(r, f), "rule": rule})["appointment_id"].astype(str))


def task_details(r: Reader, f: Filters, task_ids: Iterable[str], scores_servable: bool = True) -> pd.DataFrame:
    """Patient (identity_select: name and phone for PHI roles, the pseudonymous key otherwise) and details of
    the tasks `task_ids` (the ones the page lists), one row per task, in no particular order. Tasks outside the
    user's clinics are not returned, whatever ids are asked for."""
    ids = sorted(set(task_ids))  # sorted: the same rows asked in another order are one cache entry
    cols = f"w.task_id, {identity_select(r, 'w')}, w.episode_id, w.appointment_id, w.reason"
    sql = "\n    union all by name\n    ".join(
        f"select {cols} from {table} w {patients_join(r, 'w')} where list_contains($ids, w.task_id) and {IN_SCOPE}"
        for table in _task_tables(r, scores_servable)
    )
    return r.df(sql, {**clinic_params(r, f), "ids": ids})
