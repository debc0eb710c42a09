"""Reading a built home as dbt's models do: the served analytics file with its build state file beside it.

The staging and intermediate tables live in `build_state.duckdb` (ptpulse/build/incremental.py), never in the
served file; a test that checks an intermediate rule reads them through `open_built`, where `staging.*` and
`intermediate.*` resolve to the state file and everything else to the analytics file."""

from __future__ import annotations

from pathlib import Path

import duckdb

from ptpulse.build.incremental import STATE_CATALOG
from ptpulse.core.config import Settings
from ptpulse.core.sql import quote_literal

STATE_SCHEMAS = ("staging", "intermediate")


def state_file(analytics: Path) -> Path:
    """The build state file of the home whose analytics file (served symlink or a copy in a home) is `analytics`."""
    return Path(analytics).parent / Settings(home=Path(analytics).parent).state_db.name


def attach_state(con: duckdb.DuckDBPyConnection, analytics: Path) -> None:
    """Attach the home's state file read-only (when it exists) and put its schemas on the search path."""
    state = state_file(analytics)
    if not state.exists():
        return
    con.execute(f"attach {quote_literal(state)} as {STATE_CATALOG} (read_only)")
    path = ",".join(["main", *(f"{STATE_CATALOG}.{s}" for s in STATE_SCHEMAS if _has_schema(con, s))])
    con.execute(f"set search_path = {quote_literal(path)}")


def _has_schema(con: duckdb.DuckDBPyConnection, schema: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from duckdb_schemas() where database_name = ? and schema_name = ?", [STATE_CATALOG, schema]
        ).fetchone()[0]
    )


def open_built(home: Settings | Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a home's analytics file (a Settings, or the file's path) with its state attached."""
    analytics = home.analytics_db if isinstance(home, Settings) else Path(home)
    con = duckdb.connect(str(analytics), read_only=True)
    attach_state(con, analytics)
    return con


def file_of(analytics: Path, schema: str) -> Path:
    """The file that holds `schema` of the home whose analytics file is `analytics`: the state file for staging and
    intermediate, else the analytics file itself."""
    return state_file(analytics) if schema in STATE_SCHEMAS else Path(analytics)
