"""The owner's own targets per KPI (for the practice or one clinic), kept in app.sqlite beside the actions.

Why append-only: a target changes over time and who changed it matters ("who lowered the no-show goal?").
Every change is a new row with its actor and time, and is written to the audit log in the same
transaction; the target in force is the latest row per (kpi, clinic) — latest wins, a row with no target
clears it. Readers: the Overview tiles, and `current_goals()` for the weekly digest.

Schema (docs/interfaces.md section 4):
    kpi_goals(goal_id INTEGER PK, kpi, clinic_id ('ALL' = whole practice), target REAL (NULL = cleared),
              actor, role, set_at UTC ISO, note)

Targets are stored in the KPI's own unit, as practice_kpis stores values (pct 0.08 = 8%); the form converts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from app.lib.actions import connect, utc_now_iso

PRACTICE = "ALL"
# Who may set targets. Owners set them on the Overview; admins may too (the roles that own the practice's plan).
SETTERS: frozenset[str] = frozenset({"owner", "admin"})
COLUMNS = ("kpi", "clinic_id", "target", "set_by", "set_at")

SCHEMA = """
create table if not exists kpi_goals (
    goal_id   integer primary key autoincrement,
    kpi       text not null,
    clinic_id text not null default 'ALL',
    target    real,
    actor     text not null,
    role      text not null,
    set_at    text not null,
    note      text not null default ''
);
create index if not exists kpi_goals_key on kpi_goals(kpi, clinic_id, set_at, goal_id);
"""


class GoalError(ValueError):
    """A target that cannot be recorded as given (says what to fix)."""


def can_set(role: str) -> bool:
    return role in SETTERS


def to_stored(value: float, unit: str | None) -> float:
    """A target as typed on the form (percentages as 8 for 8%) -> the KPI's unit (0.08)."""
    return float(value) / 100 if unit == "pct" else float(value)


def to_form(value: float | None, unit: str | None) -> float | None:
    """A stored target as the form shows it (0.08 -> 8 for a percentage)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value) * 100 if unit == "pct" else float(value)


def set_goal(
    path: Path,
    kpi: str,
    target: float | None,
    actor: str,
    role: str,
    clinic_id: str = PRACTICE,
    note: str = "",
    known_kpis: Iterable[str] | None = None,
    clinics: Iterable[str] | None = None,
) -> int:
    """Append one target (None clears it) and its audit entry in one transaction; returns the goal_id.

    `clinics`: the setter's clinic scope (auth.User.clinics; None = every clinic). A user limited to some clinics
    sets targets for those clinics only: a whole-practice target sets the goal (and the arrows) of every clinic, so
    it is refused, as is another clinic's."""
    if not can_set(role):
        raise GoalError(f"the {role} role may not set targets; ask an owner.")
    if not kpi or (known_kpis is not None and kpi not in set(known_kpis)):
        raise GoalError("unknown KPI; pick one of the KPIs listed on the Overview.")
    if not clinic_id:
        raise GoalError("a target needs a clinic, or the whole practice.")
    if clinics is not None:
        allowed = {str(c) for c in clinics}
        if clinic_id == PRACTICE:
            raise GoalError(
                "your account is limited to some clinics, so you may set targets for those clinics only, not for "
                "the whole practice; ask an owner of the whole practice (or an administrator)."
            )
        if clinic_id not in allowed:
            raise GoalError(
                "your account is limited to some clinics, and this clinic is not one of them; pick one of your clinics."
            )
    if target is not None:
        try:
            target = float(target)
        except (TypeError, ValueError):
            raise GoalError("the target must be a number; type it in the KPI's unit (8 for 8%).") from None
        if not math.isfinite(target):
            raise GoalError("the target must be a finite number; type it in the KPI's unit (8 for 8%).")
    at = utc_now_iso()
    with connect(path) as con:
        con.executescript(SCHEMA)
        con.execute("begin immediate")
        try:
            cur = con.execute(
                "insert into kpi_goals(kpi, clinic_id, target, actor, role, set_at, note) values (?, ?, ?, ?, ?, ?, ?)",
                (kpi, clinic_id, target, actor, role, at, note or ""),
            )
            goal_id = int(cur.lastrowid)
            con.execute(
                "insert into audit_log(actor, role, event, detail, at) values (?, ?, ?, ?, ?)",
                (
                    actor,
                    role,
                    "goal.cleared" if target is None else "goal.set",
                    json.dumps(
                        {"goal_id": goal_id, "kpi": kpi, "clinic_id": clinic_id, "target": target}, sort_keys=True
                    ),
                    at,
                ),
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    return goal_id


def _visible(clinics: Iterable[str] | None) -> tuple[str, list[str]]:
    """SQL condition and parameters: the practice's targets and those of `clinics` (None = every clinic).

    A user limited to some clinics (a clinic manager) sees the practice-wide targets and their own clinics', never
    another clinic's targets or who set them."""
    if clinics is None:
        return "1 = 1", []
    wanted = [PRACTICE, *dict.fromkeys(str(c) for c in clinics)]
    return f"clinic_id in ({', '.join('?' for _ in wanted)})", wanted


def current_goals(path: Path, clinics: Iterable[str] | None = None) -> pd.DataFrame:
    """The targets in force: the latest row per (kpi, clinic_id), cleared ones left out; with `clinics` (the
    user's clinic scope) only the practice's and those clinics' targets.

    Columns: kpi, clinic_id, target, set_by, set_at. Read on every run (not cached), like the actions, so a
    target set in one session shows in every other at once. The weekly digest reads this too.
    """
    if not Path(path).exists():
        return pd.DataFrame(columns=list(COLUMNS))
    where, params = _visible(clinics)
    with connect(path) as con:
        con.executescript(SCHEMA)
        rows = con.execute(
            f"""
            select kpi, clinic_id, target, actor, set_at from (
                select *, row_number() over (partition by kpi, clinic_id order by set_at desc, goal_id desc) as rn
                from kpi_goals where {where}
            ) where rn = 1 and target is not null order by kpi, clinic_id
            """,
            params,
        ).fetchall()
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.assign(set_at=pd.to_datetime(df["set_at"], utc=True, format="ISO8601"))


def history(path: Path, limit: int = 200, clinics: Iterable[str] | None = None) -> pd.DataFrame:
    """Every change, newest first: kpi, clinic_id, target (empty = cleared), set_by, role, set_at; with `clinics`
    (the user's clinic scope) only the changes of the practice's and those clinics' targets."""
    cols = ["kpi", "clinic_id", "target", "set_by", "role", "set_at"]
    if not Path(path).exists():
        return pd.DataFrame(columns=cols)
    where, params = _visible(clinics)
    with connect(path) as con:
        con.executescript(SCHEMA)
        rows = con.execute(
            f"select kpi, clinic_id, target, actor, role, set_at from kpi_goals where {where} "
            "order by set_at desc, goal_id desc limit ?",
            (*params, int(limit)),
        ).fetchall()
    df = pd.DataFrame(rows, columns=cols)
    return df.assign(set_at=pd.to_datetime(df["set_at"], utc=True, format="ISO8601"))


def targets_for(goals: pd.DataFrame, clinics: list[str] | None) -> dict[str, float]:
    """kpi -> the target that applies to what the tiles show.

    One clinic in view: that clinic's own target where it has one, else the practice's. The practice or
    several clinics: the practice target (every KPI is a rate or an average, so a practice target reads
    the same for any set of clinics).
    """
    if goals.empty:
        return {}
    practice = goals[goals["clinic_id"] == PRACTICE].set_index("kpi")["target"].to_dict()
    if clinics is not None and len(clinics) == 1:
        own = goals[goals["clinic_id"] == clinics[0]].set_index("kpi")["target"].to_dict()
        return {**practice, **own}
    return practice
