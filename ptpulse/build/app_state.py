"""Step 2 of a build: app state (work-queue actions in app.sqlite) and the build id, written into the new
analytics file as `app_state.actions` / `app_state.build` so dbt reads them as sources."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import duckdb

ACTIONS_DDL = """
create table app_state.actions (
    action_id bigint, task_id varchar, action varchar, actor varchar, acted_at varchar, payload varchar
)"""

BUILD_CONTEXT_DDL = "create table app_state.build (build_id varchar)"


def copy_actions(app_db: Path, target: duckdb.DuckDBPyConnection, scratch: Path) -> int:
    """Write app.sqlite `actions` into `app_state.actions` of `target`; returns the row count.

    The app database is copied with SQLite's online backup API into `scratch` first (a reader that never
    blocks the app's writers; WAL content is included), and only the copy is read.
    """
    target.execute("create schema if not exists app_state")
    target.execute(ACTIONS_DDL)
    if not app_db.exists():
        return 0
    copy_path = scratch / "app_state_copy.sqlite"
    src = sqlite3.connect(f"file:{app_db}?mode=ro", uri=True, timeout=5)
    try:
        dst = sqlite3.connect(copy_path)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    con = sqlite3.connect(copy_path)
    try:
        has = con.execute("select 1 from sqlite_master where type = 'table' and name = 'actions'").fetchone()
        if not has:
            return 0
        cols = {r[1] for r in con.execute("pragma table_info(actions)")}
        wanted = ["action_id", "task_id", "action", "actor", "acted_at", "payload"]
        select = ", ".join(c if c in cols else "null" for c in wanted)
        rows = con.execute(f"select {select} from actions").fetchall()
    finally:
        con.close()
        copy_path.unlink(missing_ok=True)
    if rows:
        rows = [
            (
                r[0],
                r[1],
                r[2],
                r[3],
                None if r[4] is None else str(r[4]),
                None if r[5] is None else (r[5] if isinstance(r[5], str) else json.dumps(r[5])),
            )
            for r in rows
        ]
        target.executemany("insert into app_state.actions values (?, ?, ?, ?, ?, ?)", rows)
    return len(rows)


def write_build_context(target: duckdb.DuckDBPyConnection, build_id: str) -> None:
    """`app_state.build`: this build's id, for marts.build_info. Passed as data rather than as an env_var that
    dbt would see at parse time (a new value each build would make dbt re-parse a file every build)."""
    target.execute("create schema if not exists app_state")
    target.execute(BUILD_CONTEXT_DDL)
    target.execute("insert into app_state.build values (?)", [build_id])
