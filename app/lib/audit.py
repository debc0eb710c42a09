"""The audit log: who did what, when. Actions write theirs in the same transaction (see actions.record);
this module records the rest (exports of identified data, refresh runs, refused access) and reads it back
for the Admin page."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from app.lib.actions import connect, utc_now_iso


def log(path: Path, actor: str, role: str, event: str, detail: Mapping[str, Any] | None = None) -> None:
    with connect(path) as con:
        con.execute(
            "insert into audit_log(actor, role, event, detail, at) values (?, ?, ?, ?, ?)",
            (actor, role, event, json.dumps(dict(detail or {}), sort_keys=True, default=str), utc_now_iso()),
        )


def recent(path: Path, limit: int = 200) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=["at", "actor", "role", "event", "detail"])
    with connect(path) as con:
        rows = con.execute(
            "select at, actor, role, event, detail from audit_log order by id desc limit ?", (int(limit),)
        ).fetchall()
    return pd.DataFrame(rows, columns=["at", "actor", "role", "event", "detail"])
