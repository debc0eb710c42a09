"""The work queue as a table: build candidates + live action state -> ranked rows with SLA countdowns.

Pure (no Streamlit): the page renders what `assemble` returns, and the tests check it directly.

Lead scores (`ml.lead_scores`, when the build wrote them): referral tasks (REFERRAL_RULES) get "Likely to
convert: 72% · ≈$640 at stake" appended to their details, and within each priority the referral tasks are
re-ordered by value at stake (highest first) among the places they already held in the due-time order, so
other tasks keep their rank. Without the table (or a score for a task) nothing changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from app.lib.actions import TaskState, is_visible
from app.lib.formatting import countdowns
from app.lib.queue_vocabulary import Rule, rules

# Rule names, labels, priorities and who works each rule: written once in dbt_project/seeds/work_queue_rules.csv
# (a dbt seed too), read by app/lib/queue_vocabulary.
RULES: Mapping[str, Rule] = rules()
RULE_LABELS: Mapping[str, str] = {k: r.label for k, r in RULES.items()}
# Tasks about a referral: the ones lead scores re-rank.
REFERRAL_RULES: tuple[str, ...] = tuple(k for k, r in RULES.items() if r.subject == "referral")
LEAD_TABLE = "ml.lead_scores"

VIEWS = ("Open", "Snoozed", "Done or lost", "All")

# Which queues (work_queue_rules.csv `queue`) each role works. The front desk does not see clinicians' tasks
# (unsigned notes): they cannot act on them. Managers and owners oversee every queue.
ROLE_QUEUES: Mapping[str, frozenset[str]] = {
    "front_desk": frozenset({"front_desk"}),
    "manager": frozenset({"front_desk", "clinician"}),
    "owner": frozenset({"front_desk", "clinician"}),
}
CLOSED = ("done", "lost")
STATUS_LABELS: Mapping[str, str] = {"open": "Open", "snoozed": "Snoozed", "done": "Done", "lost": "Lost"}


def for_role(candidates: pd.DataFrame, role: str) -> pd.DataFrame:
    """The candidates of the queues the role works (ROLE_QUEUES); a rule missing from the seed stays visible
    to overseeing roles only, so nothing silently drops for managers and owners."""
    queues = ROLE_QUEUES.get(role, frozenset())
    mine = {k for k, r in RULES.items() if r.queue in queues}
    oversees = queues >= {"front_desk", "clinician"}
    keep = candidates["rule"].isin(mine) | (oversees & ~candidates["rule"].isin(RULES))
    return candidates[keep]


def rule_label(rule: str) -> str:
    """The rule's label from the seed; a rule missing from it still reads as words (a test keeps none missing)."""
    return RULE_LABELS.get(rule, str(rule).replace("_", " ").capitalize())


def worked_by(rule: str) -> str | None:
    """'Front desk' or 'Clinician': who works this rule's tasks (None for a rule missing from the seed)."""
    r = RULES.get(rule)
    return r.worked_by if r else None


def lead_scores(reader: Any) -> pd.DataFrame | None:
    """referral_id, p_convert, value_at_stake_usd from ml.lead_scores; None when the table is absent."""
    try:
        if not reader.has(LEAD_TABLE):
            return None
        return reader.df(f"select referral_id, p_convert, value_at_stake_usd from {LEAD_TABLE}")
    except Exception:  # noqa: BLE001 - the queue must render without scores whatever went wrong reading them
        return None


def lead_text(p: Any, value: Any) -> str:
    """'Likely to convert: 72% · ≈$640 at stake'."""
    return f"Likely to convert: {float(p):.0%} · ≈${float(value):,.0f} at stake"


def _attach_leads(df: pd.DataFrame, leads: pd.DataFrame | None) -> pd.DataFrame:
    df["p_convert"] = np.nan
    df["value_at_stake_usd"] = np.nan
    if leads is None or leads.empty or "referral_id" not in df or "referral_id" not in leads:
        return df
    by_ref = leads.drop_duplicates("referral_id").set_index("referral_id")
    is_ref = df["rule"].isin(REFERRAL_RULES) & df["referral_id"].notna()
    ref_ids = df.loc[is_ref, "referral_id"]
    df.loc[is_ref, "p_convert"] = ref_ids.map(by_ref["p_convert"]).to_numpy(float)
    df.loc[is_ref, "value_at_stake_usd"] = ref_ids.map(by_ref["value_at_stake_usd"]).to_numpy(float)
    scored = df["p_convert"].notna() & df["value_at_stake_usd"].notna()
    df.loc[scored, "reason"] = [
        f"{r.rstrip()} {lead_text(p, v)}" if isinstance(r, str) and r else lead_text(p, v)
        for r, p, v in zip(
            df.loc[scored, "reason"], df.loc[scored, "p_convert"], df.loc[scored, "value_at_stake_usd"], strict=True
        )
    ]
    return df


def _rank_by_value(df: pd.DataFrame) -> pd.DataFrame:
    """Within each priority, put the scored referral tasks in value order into the slots they hold."""
    scored = df["value_at_stake_usd"].notna().to_numpy()
    if not scored.any():
        return df
    order = np.arange(len(df))
    for _, idx in df.groupby("priority", sort=False, dropna=False).indices.items():
        slots = idx[scored[idx]]
        if len(slots) > 1:
            by_value = (
                df.iloc[slots]
                .assign(_slot=slots)
                .sort_values(["value_at_stake_usd", "_slot"], ascending=[False, True], kind="stable")["_slot"]
                .to_numpy()
            )
            order[slots] = by_value
    return df.iloc[order].reset_index(drop=True)


def assemble(
    candidates: pd.DataFrame,
    states: Mapping[str, TaskState],
    now: datetime,
    leads: pd.DataFrame | None = None,
    clinic_nows: Mapping[str, datetime] | None = None,
) -> pd.DataFrame:
    """Candidates with their live state, SLA text and visibility, ranked by priority then due time.

    `leads` (from `lead_scores`): referral tasks within a priority are ranked by value at stake instead.
    `clinic_nows`: clinic_id -> "now" on that clinic's wall clock (actions.clinic_now), in which its tasks' due
    times and snooze ends are written; `now` for a task of any other clinic. The ranking uses no clock.
    """
    df = _attach_leads(candidates.copy(), leads).reset_index(drop=True)
    clocks = (
        df["clinic_id"].map(clinic_nows) if clinic_nows and "clinic_id" in df else pd.Series(pd.NaT, index=df.index)
    )
    row_now = pd.to_datetime(clocks).fillna(pd.Timestamp(now))  # each task's clinic clock
    now_of_task = dict(zip(df["task_id"], row_now, strict=True))
    # the few tasks with actions, as a frame looked up by task id (a chain's queue holds ~100k candidates)
    acted = [st for t in dict.fromkeys(df["task_id"]) if (st := states.get(t)) is not None]
    live = pd.DataFrame(
        {
            "status": [st.status or "open" for st in acted],
            "assignee": [st.assignee for st in acted],
            "last_outreach": [st.last_outreach for st in acted],
            "outreach_count": [st.outreach_count or 0 for st in acted],
            "snoozed_until": [st.snoozed_until for st in acted],
            "last_action_at": [st.last_at for st in acted],
            "in_queue": [is_visible(st, now_of_task[st.task_id].isoformat()) for st in acted],
        },
        index=pd.Index([st.task_id for st in acted], dtype=object),
    )
    found = df["task_id"].isin(live.index)
    for col, default in (("status", "open"), ("outreach_count", 0), ("in_queue", True)):
        df[col] = df["task_id"].map(live[col]).where(found, default)
    for col in ("assignee", "last_outreach", "snoozed_until", "last_action_at"):
        df[col] = df["task_id"].map(live[col]).where(found, None).astype(object)
    df["in_queue"] = df["in_queue"].astype(bool)
    df["outreach_count"] = df["outreach_count"].astype(int)
    df["rule_label"] = df["rule"].map(rule_label)
    df["worked_by"] = df["rule"].map(worked_by)
    df.loc[(df["status"] == "snoozed") & df["in_queue"], "status"] = "open"
    df["sla"], hours = countdowns(df["due_at"], row_now)
    df["hours_left"] = hours.to_numpy(float)  # NaN: no due time
    closed = df["status"].isin(CLOSED)  # a finished task has no clock running
    df.loc[closed, "sla"] = df.loc[closed, "status"].map(STATUS_LABELS)
    df.loc[closed, "hours_left"] = None
    df["status_label"] = df["status"].map(STATUS_LABELS).fillna(df["status"])
    df = df.sort_values(["priority", "due_at"], na_position="last", kind="stable").reset_index(drop=True)
    df = _rank_by_value(df)
    df.insert(0, "rank", range(1, len(df) + 1))
    return df


def select_view(
    df: pd.DataFrame, view: str, rules: list[str] | None = None, assignee: str | None = None, me: str | None = None
) -> pd.DataFrame:
    """Rows for the chosen view (Open/Snoozed/Done or lost/All), rules and assignee filter."""
    if view == "Open":
        out = df[df["in_queue"]]
    elif view == "Snoozed":
        out = df[(df["status"] == "snoozed")]
    elif view == "Done or lost":
        out = df[df["status"].isin(["done", "lost"])]
    else:
        out = df
    if rules:
        out = out[out["rule"].isin(rules)]
    if assignee == "Unassigned":
        out = out[out["assignee"].isna()]
    elif assignee == "Me" and me:  # an IdP may spell the signed-in email in another case than roles.yml did
        out = out[out["assignee"].str.strip().str.lower() == me.strip().lower()]
    elif assignee not in (None, "Anyone", "Unassigned", "Me"):
        out = out[out["assignee"] == assignee]
    return out


def counts(df: pd.DataFrame) -> dict[str, int]:
    open_rows = df[df["in_queue"]]
    hours = open_rows["hours_left"]
    return {
        "open": int(len(open_rows)),
        "overdue": int((hours < 0).sum()),
        "due_24h": int(((hours >= 0) & (hours <= 24)).sum()),
        "unassigned": int(open_rows["assignee"].isna().sum()),
        "closed": int(df["status"].isin(["done", "lost"]).sum()),
    }
