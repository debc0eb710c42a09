"""The one writer of a work-queue action row and its audit entry (app.sqlite, interfaces.md section 4).

Both the app (app/lib/actions.record) and the outbound delivery core (ptpulse/core/outbound.py, which the
scheduler runs without the app) append actions; the SQL lives here once so the two can never drift.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from ptpulse.core.deid import EXCLUDED_COLUMNS


def append_action(
    con: sqlite3.Connection,
    task_id: str,
    action: str,
    actor: str,
    role: str,
    acted_at: str,
    payload: Mapping[str, Any],
) -> int:
    """Insert one action and its audit entry on `con`, inside the caller's transaction; returns the action_id."""
    action_id = int(
        con.execute(
            "insert into actions(task_id, action, actor, acted_at, payload) values (?, ?, ?, ?, ?)",
            (task_id, action, actor, acted_at, json.dumps(dict(payload), sort_keys=True, default=str)),
        ).lastrowid
    )
    con.execute(
        "insert into audit_log(actor, role, event, detail, at) values (?, ?, ?, ?, ?)",
        (
            actor,
            role,
            f"action.{action}",
            json.dumps({"task_id": task_id, "action_id": action_id, **audited(payload)}, sort_keys=True, default=str),
            acted_at,
        ),
    )
    return action_id


def audited(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as the audit log keeps it: free text a person typed (an outreach note may quote the patient's
    name or phone) stays only in the action itself; the audit entry says that there was one."""
    kept = {k: v for k, v in payload.items() if k.lower() not in EXCLUDED_COLUMNS}
    kept.update({f"{k}_given": bool(v) for k, v in payload.items() if k.lower() in EXCLUDED_COLUMNS})
    return kept
