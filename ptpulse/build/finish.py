"""Step 4 of a build, after dbt passed: carry the build log (`meta.builds`) forward, check that every view left can
be queried, and checkpoint the file closed.

Staging is build-time plumbing: dbt's staging models are views over `rawdb.raw.*` (or incremental tables), the
raw database attached only while dbt runs, and they live in the build state file (ptpulse/build/incremental.py),
never in the served one; `drop_build_only_views` drops the views from the state file once the build is served.
Everything readers use is a table (marts, ml, meta, app_state). Nothing broken is served: if any view of the new
file fails to bind as a reader opens it, the build fails and the served file stays as it was.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb

from ptpulse.build.dbt_runner import _short
from ptpulse.core.config import INSTALL_ROOT
from ptpulse.core.sql import quote_ident

BUILDS_DDL = """
create table if not exists meta.builds (
    build_id varchar, started_at timestamp, finished_at timestamp, status varchar, dbt_version varchar,
    git_rev varchar, row_counts json, tests json
)"""


def git_rev() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(INSTALL_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def mart_row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    tables = con.execute(
        "select table_name from information_schema.tables where table_schema = 'marts' "
        "and table_catalog = current_database() order by 1"
    ).fetchall()
    return {t: con.execute(f"select count(*) from marts.{quote_ident(t)}").fetchone()[0] for (t,) in tables}


def previous_history(served: Path) -> list[tuple]:
    if not served.exists():
        return []
    try:
        con = duckdb.connect(str(served), read_only=True)
    except duckdb.Error:
        return []
    try:
        has = con.execute(
            "select count(*) from information_schema.tables where table_schema = 'meta' and table_name = 'builds'"
        ).fetchone()[0]
        if not has:
            return []
        return con.execute(
            "select build_id, started_at, finished_at, status, dbt_version, git_rev, "
            "cast(row_counts as varchar), cast(tests as varchar) from meta.builds"
        ).fetchall()
    finally:
        con.close()


BUILD_ONLY_SCHEMAS = ("staging",)  # views over the raw database attached during the build only


def drop_build_only_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Drop the staging views (and their schema when it is left empty); returns the dropped names."""
    views = con.execute(
        "select schema_name, view_name from duckdb_views() where not internal and database_name = current_database() "
        "and list_contains(?, schema_name) order by 1, 2",
        [list(BUILD_ONLY_SCHEMAS)],
    ).fetchall()
    for schema, view in views:
        con.execute(f"drop view {quote_ident(schema)}.{quote_ident(view)}")
    for schema in BUILD_ONLY_SCHEMAS:
        left = con.execute(
            "select count(*) from duckdb_tables() where database_name = current_database() and schema_name = ?",
            [schema],
        ).fetchone()[0]
        if not left:
            con.execute(f"drop schema if exists {quote_ident(schema)}")
    return [f"{s}.{v}" for s, v in views]


def broken_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Views of the file that cannot be queried as a reader would open it (no raw database attached)."""
    views = con.execute(
        "select schema_name, view_name from duckdb_views() where not internal "
        "and database_name = current_database() order by 1, 2"
    ).fetchall()
    broken = []
    for schema, view in views:
        try:
            con.execute(f"select * from {quote_ident(schema)}.{quote_ident(view)} limit 0").fetchall()
        except duckdb.Error as exc:
            broken.append(f"{schema}.{view} ({_short(exc, 160)})")
    return broken


def checkpoint_close(path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("checkpoint")
    finally:
        con.close()
    wal = Path(str(path) + ".wal")
    if wal.exists():
        raise RuntimeError(f"{wal} remains after checkpoint: a connection to the new file is still open")
