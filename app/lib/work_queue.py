"""The work queue as a table: build candidates + live action state -> ranked rows with SLA countdowns.

Pure (no Streamlit): the page renders what `assemble` returns, and the tests check it directly.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Mapping

import pandas as pd

from app.lib.actions import TaskState, is_visible
from app.lib.formatting import countdown

RULE_LABELS: Mapping[str, str] = {
    "uncontacted_referral": "New referral not contacted",
    "contacted_unscheduled": "Contacted, not scheduled",
    "eval_no_show_rebook": "Evaluation no-show: rebook",
    "no_future_appointment": "Active patient, no next visit",
    "below_frequency": "Booked below plan frequency",
    "auth_expiring": "Authorization running out",
    "kx_threshold": "Medicare KX threshold near",
    "confirm_high_risk": "High no-show risk: confirm",
    "unsigned_note": "Unsigned note > 24 h",
}

VIEWS = ("Open", "Snoozed", "Done or lost", "All")


def rule_label(rule: str) -> str:
    return RULE_LABELS.get(rule, str(rule).replace("_", " ").capitalize())


def assemble(candidates: pd.DataFrame, states: Mapping[str, TaskState], now: datetime) -> pd.DataFrame:
    """Candidates with their live state, SLA text and visibility, ranked by priority then due time."""
    df = candidates.copy()
    get = lambda attr, default=None: [getattr(states.get(t), attr, default) if states.get(t) else default  # noqa: E731
                                      for t in df["task_id"]]
    df["status"] = [s if s else "open" for s in get("status", "open")]
    df["assignee"] = get("assignee")
    df["last_outreach"] = get("last_outreach")
    df["outreach_count"] = [c or 0 for c in get("outreach_count", 0)]
    df["snoozed_until"] = get("snoozed_until")
    df["last_action_at"] = get("last_at")
    df["rule_label"] = df["rule"].map(rule_label)
    now_iso = now.isoformat()
    df["in_queue"] = [is_visible(states.get(t), now_iso) for t in df["task_id"]]
    df.loc[(df["status"] == "snoozed") & df["in_queue"], "status"] = "open"
    sla = [countdown(d, now) for d in df["due_at"]]
    df["sla"] = [s[0] for s in sla]
    df["hours_left"] = [s[1] if math.isfinite(s[1]) else None for s in sla]
    df = df.sort_values(["priority", "due_at"], na_position="last").reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    return df


def select_view(df: pd.DataFrame, view: str, rules: list[str] | None = None, assignee: str | None = None,
                me: str | None = None) -> pd.DataFrame:
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
    elif assignee == "Me" and me:
        out = out[out["assignee"] == me]
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
