"""The work queue as a table: build candidates + live action state -> ranked rows with SLA countdowns.

Pure (no Streamlit): the page renders what `assemble` returns, and the tests check it directly.

Lead scores (`ml.lead_scores`, when the build wrote them): referral tasks (REFERRAL_RULES) get "Likely to
convert: 72% · ≈$640 at stake" appended to their details, and within each priority the referral tasks are
re-ordered by value at stake (highest first) among the places they already held in the due-time order, so
other tasks keep their rank. Without the table (or a score for a task) nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
# The rows the page lists (and its CSV holds), from the top of the ranked view: a chain's queue holds ~170k tasks.
# Counts, the reason chart and the filters still cover the whole queue; Reason, Assignee and the clinic filter
# narrow the list. More than the 300 the action form offers.
LISTED_ROWS = 1000
STATUS_LABELS: Mapping[str, str] = {"open": "Open", "snoozed": "Snoozed", "done": "Done", "lost": "Lost"}


def role_rules(role: str) -> tuple[list[str], bool]:
    """What the role's queues (ROLE_QUEUES) let it see: (the seed's rules it works, whether it also sees a rule
    missing from the seed). `for_role` on a frame; the same test in SQL in queries.work_queue.queue_index."""
    queues = ROLE_QUEUES.get(role, frozenset())
    mine = sorted(k for k, r in RULES.items() if r.queue in queues)
    return mine, queues >= {"front_desk", "clinician"}


def for_role(candidates: pd.DataFrame, role: str) -> pd.DataFrame:
    """The candidates of the queues the role works (ROLE_QUEUES); a rule missing from the seed stays visible
    to overseeing roles only, so nothing silently drops for managers and owners."""
    mine, oversees = role_rules(role)
    keep = candidates["rule"].isin(mine) | (oversees & ~candidates["rule"].isin(RULES))
    return candidates[keep]


class Occurrences(Mapping[str, Any]):
    """task_id -> created_at of the queue's tasks (the build's occurrence, for actions.task_states), looked up in
    the frame when asked: the fold asks for the few tasks with actions, not for the ~170k of a chain's queue."""

    def __init__(self, tasks: pd.DataFrame) -> None:
        self._tasks = tasks
        self._at: pd.Series | None = None

    def _lookup(self) -> pd.Series:
        if self._at is None:  # built on the first lookup (a queue without actions never needs it)
            self._at = self._tasks.drop_duplicates("task_id", keep="last").set_index("task_id")["created_at"]
        return self._at

    def __getitem__(self, task_id: str) -> Any:
        return self._lookup()[task_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._lookup().index)

    def __len__(self) -> int:
        return len(self._lookup())

    def __bool__(self) -> bool:  # what the fold asks first (`occurrences or {}`): without building the lookup
        return not self._tasks.empty


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
    """p_convert and value_at_stake_usd of the referral tasks (NaN for the others), and their lead text in the
    details when the frame has them (`with_lead_text`)."""
    df["p_convert"] = np.nan
    df["value_at_stake_usd"] = np.nan
    if leads is None or leads.empty or "referral_id" not in df or "referral_id" not in leads:
        return df
    by_ref = leads.drop_duplicates("referral_id").set_index("referral_id")
    is_ref = df["rule"].isin(REFERRAL_RULES) & df["referral_id"].notna()
    ref_ids = df.loc[is_ref, "referral_id"]
    df.loc[is_ref, "p_convert"] = ref_ids.map(by_ref["p_convert"]).to_numpy(float)
    df.loc[is_ref, "value_at_stake_usd"] = ref_ids.map(by_ref["value_at_stake_usd"]).to_numpy(float)
    return with_lead_text(df)


def with_lead_text(df: pd.DataFrame) -> pd.DataFrame:
    """The scored referral tasks' details (`reason`) with 'Likely to convert: 72% · ≈$640 at stake' appended, from
    their p_convert and value_at_stake_usd (`assemble`). A frame without details is returned as it is: the Work
    queue ranks the whole queue without them and adds them to the rows it lists (queries.work_queue.task_details),
    then calls this."""
    if "reason" not in df or "p_convert" not in df or "value_at_stake_usd" not in df:
        return df
    scored = df["p_convert"].notna() & df["value_at_stake_usd"].notna()
    if not scored.any():
        return df
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


def _map_few(values: pd.Series, lookup: Any) -> pd.Series:
    """`values.map(lookup)` (a function or a mapping) computed once per distinct value: a chain's queue holds
    ~170k tasks but a few rules and clinics. A value the lookup lacks (or a missing value) maps to None."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    get = lookup if callable(lookup) else lookup.get
    mapped = np.array([get(u) for u in uniques] + [None], dtype=object)  # the last slot: a missing value (-1)
    return pd.Series(mapped[codes], index=values.index)  # dtype inferred, as Series.map does


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
    Candidates without `reason` (the Work queue's queue_index) are ranked alike; `with_lead_text` adds the lead
    text to the rows that get their details.

    Column-wise throughout (a chain's queue holds ~170k candidates): only the few tasks with actions are
    looked at one by one.
    """
    df = _attach_leads(candidates.copy(), leads).reset_index(drop=True)
    if clinic_nows and "clinic_id" in df:
        clocks = pd.to_datetime(_map_few(df["clinic_id"], clinic_nows))
    else:
        clocks = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]")
    row_now = clocks.fillna(pd.Timestamp(now))  # each task's clinic clock
    n = len(df)
    status = np.full(n, "open", dtype=object)
    outreach_count = np.zeros(n, dtype=int)
    in_queue = np.ones(n, dtype=bool)
    live = {c: np.full(n, None, dtype=object) for c in ("assignee", "last_outreach", "snoozed_until", "last_action_at")}
    # the few tasks with actions, row by row (a chain's queue holds ~170k candidates, its log a few thousand)
    acted_rows = np.flatnonzero(df["task_id"].isin(list(states)).to_numpy()) if states else np.array([], int)
    for i, task_id in zip(acted_rows, df["task_id"].iloc[acted_rows].tolist(), strict=True):
        st = states[task_id]
        status[i] = st.status or "open"
        outreach_count[i] = st.outreach_count or 0
        in_queue[i] = is_visible(st, row_now.iat[i].isoformat())
        for col, value in zip(live, (st.assignee, st.last_outreach, st.snoozed_until, st.last_at), strict=True):
            live[col][i] = value
    df["status"] = status
    df["outreach_count"] = outreach_count
    df["in_queue"] = in_queue
    for col, values in live.items():  # None where a task has no action (or its state has none)
        df[col] = pd.Series(values, index=df.index, dtype=object)
    df["rule_label"] = _map_few(df["rule"], rule_label)
    df["worked_by"] = _map_few(df["rule"], worked_by)
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
