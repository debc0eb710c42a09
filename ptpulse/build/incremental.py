"""Incremental or full: which kind of build this is, and the starting files of an incremental one.

The big event sources are staged by incremental dbt models (dbt_project/macros/incremental.sql) whose state is
their own table, and so are the big intermediates built from them. Those tables (dbt's `staging` and
`intermediate` schemas) live in the build state file, `Settings.state_db`, never served: the app reads only the
marts. Each build writes the state file IN PLACE (a night's copy of it would be three-quarters of a chain's disk and
of its copy time, docs/scale.md) and flags it (`meta.build_in_progress`, inside the file) before dbt writes it; the
flag goes only once the build is served and its state recorded in the file. So a crash or a failed build anywhere
between leaves the flag (a copy of the home carries it), and the next build is full: the served file is never
written either way, so the last good build stays served. Another process holding the state file open (DuckDB: one
writer or readers) makes the build full too, from a new file (`StateHeld`). An incremental build's new analytics
file starts with the served file's incremental marts and build state (KEPT_TABLES: a copy of the served file with
every other table dropped), and dbt rebuilds everything else. A full refresh starts from an empty file and an
empty state file. It is chosen when asked for (`--full-refresh`), when no served build recorded its state, when the state file
is missing, flagged or records another build than the served one, when the contracts, the dbt project, the vars or
the set of raw sources changed (a fingerprint of them, `meta.build_state`; a source's first file arriving after the
first build is one), when the pseudonym secret was rotated (the incremental marts hold patient_keys: `key_id` is in
the fingerprint), when raw.duckdb is not the one the served build read (its last load is gone or differs), and when
the last full refresh is older than FULL_REFRESH_DAYS (a safety net: nothing known is missed incrementally, but a
weekly rebuild bounds any drift at a week).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from ptpulse.build.finish import drop_build_only_views
from ptpulse.core.config import CONTRACTS_DIR
from ptpulse.core.sql import RAW_LOAD_IDENTITY, quote_ident, quote_literal

FULL_REFRESH_DAYS = float(os.environ.get("PTPULSE_FULL_REFRESH_DAYS", "7"))
STATE_DDL = """
create table meta.build_state (
    fingerprint varchar, full_refresh_at timestamp, raw_load_id bigint, raw_load_sha256 varchar,
    raw_load_started_at varchar
)"""
# the catalog the build's profile attaches the state file as (dbt_project.yml `+database`, profiles.yml `attach`)
STATE_CATALOG = "ptpulse_state"
# the state file's flag of a build writing it (open_state) that was not served yet (close_state drops it)
IN_PROGRESS = "build_in_progress"
# what an incremental build's new file copies of the served file: the build state, whose raw_load_id tells the
# incremental marts which loads are new (macros/incremental.sql), and the marts materialised incremental (their
# scopes: macros/incremental.sql "Incremental marts"; tests/dbt/test_incremental.py checks this list against the
# models); everything else is rebuilt by dbt. The staging and intermediate tables are in the state file.
KEPT_TABLES = (
    ("meta", "build_state"),
    *(("marts", m) for m in ("appointments", "charge_lines", "claims", "visits")),
)
# what the incremental intermediates hand to each other during one build (a model's `__scope` is read by the models
# after it; int_patient_crosswalk's `__prev` by int_visit_links): never part of a served file
HANDOFF_SUFFIXES = ("__scope", "__prev")
_PROJECT_PARTS = ("dbt_project.yml", "models", "macros", "seeds")


@dataclass
class BuildState:
    fingerprint: str
    full_refresh_at: datetime | None
    raw_load_id: int | None
    raw_load_sha256: str | None
    raw_load_started_at: str | None


@dataclass
class Plan:
    full: bool
    reason: str
    state: BuildState  # what this build records in meta.build_state when it succeeds


def fingerprint(project_dir: Path, dbt_vars: dict | None, key_id: str = "", raw_tables: str = "") -> str:
    """sha256 of everything that decides what a kept table holds: contracts, dbt models, macros, seeds,
    dbt_project.yml, the vars of this build, the pseudonym secret's public id (core/secrets.py `key_id`) and the
    raw tables that exist (a source missing from raw is staged from an untyped empty stand-in, macros/ptpulse.sql
    raw_source, whose table an incremental build cannot append the real rows to once the source arrives)."""
    h = hashlib.sha256()
    files = [(CONTRACTS_DIR, f) for f in sorted(CONTRACTS_DIR.glob("*.yml"))]
    for part in _PROJECT_PARTS:
        p = project_dir / part
        found = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p] if p.exists() else []
        files += [(project_dir, f) for f in found]
    for root, f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    h.update(json.dumps(dbt_vars or {}, sort_keys=True, default=str).encode())
    h.update(b"\0key:" + key_id.encode())
    h.update(b"\0raw:" + raw_tables.encode())
    return h.hexdigest()


def _loads_table(con: duckdb.DuckDBPyConnection) -> str:
    """raw._loads qualified by the file's catalog (a file named raw.duckdb makes a bare `raw.` ambiguous)."""
    return f"{quote_ident(con.execute('select current_database()').fetchone()[0])}.raw._loads"


def _one_row(path: Path, sql: str, params: list | None = None) -> tuple | None:
    """One row of `sql` over a DuckDB file opened read-only (`{loads}` names its raw._loads), or None when the
    file is missing or unreadable or lacks the table: the planner then builds in full, and dbt's own attach
    reports a bad raw.duckdb as a failed build, never as a crash of the planner."""
    if not path.exists():
        return None
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return None
    try:
        text = sql.format(loads=_loads_table(con)) if "{loads}" in sql else sql
        return con.execute(text, params or []).fetchone()
    except duckdb.Error:
        return None
    finally:
        con.close()


def _last_load(raw_db: Path) -> tuple[int | None, str | None, str | None]:
    """(load_id, sha256, started_at) of raw.duckdb's last load: identifies the raw file the build read."""
    row = _one_row(raw_db, f"select {RAW_LOAD_IDENTITY} from {{loads}} order by load_id desc limit 1")
    return (row[0], row[1], row[2]) if row else (None, None, None)


def _raw_tables(raw_db: Path) -> str:
    """The source tables raw.duckdb holds, sorted and comma-separated ('' when it has none or cannot be read)."""
    row = _one_row(
        raw_db,
        "select coalesce(string_agg(table_name, ',' order by table_name), '') from duckdb_tables() "
        "where database_name = current_database() and schema_name = 'raw' and not starts_with(table_name, '_')",
    )
    return row[0] if row else ""


def _load_matches(raw_db: Path, state: BuildState) -> bool:
    if state.raw_load_id is None:
        return False
    row = _one_row(raw_db, f"select {RAW_LOAD_IDENTITY} from {{loads}} where load_id = ?", [state.raw_load_id])
    return row is not None and (row[1], row[2]) == (state.raw_load_sha256, state.raw_load_started_at)


def read_state(analytics: Path) -> BuildState | None:
    """The build state the served file (or the state file) recorded; None when it has none (first build, an older
    version, or a state file whose build was never served)."""
    row = _one_row(analytics, "select * from meta.build_state")
    return BuildState(*row) if row else None


def _state_file_problem(state_db: Path | None, served: BuildState) -> str:
    """Why the state file cannot carry an incremental build ('' when it can): missing, flagged by a build that was
    never served (IN_PROGRESS), or recording another build than the served one."""
    if state_db is None:
        return ""
    flagged = _one_row(
        state_db,
        "select count(*) from duckdb_tables() where database_name = current_database() and schema_name = 'meta' "
        "and table_name = ?",
        [IN_PROGRESS],
    )
    if flagged and flagged[0]:
        return "the build state was left mid-build (a crash or a failed build since the served one)"
    kept = read_state(state_db)
    if kept is None:
        return "no build state file recorded the served build"
    if kept != served:
        return "the build state file records another build than the served one"
    return ""


def plan_build(
    analytics: Path,
    raw_db: Path,
    project_dir: Path,
    dbt_vars: dict | None,
    full_refresh: bool,
    now: datetime,
    key_id: str = "",
    state_db: Path | None = None,
) -> Plan:
    """Decide full or incremental (module docstring) and the state this build will record. `state_db`: the build
    state file (None: not checked, for callers that plan without a home)."""
    load_id, sha, started = _last_load(raw_db)
    fp = fingerprint(project_dir, dbt_vars, key_id, _raw_tables(raw_db))
    previous = read_state(analytics)
    reason = ""
    if full_refresh:
        reason = "full refresh requested"
    elif previous is None:
        reason = "no served build recorded an incremental state"
    elif problem := _state_file_problem(state_db, previous):
        reason = problem
    elif previous.fingerprint != fp:
        reason = (
            "contracts, dbt models, vars, the pseudonym secret or the sources in raw.duckdb changed since the "
            "served build"
        )
    elif not _load_matches(raw_db, previous):
        reason = "raw.duckdb is not the one the served build read"
    elif previous.full_refresh_at is None or now - previous.full_refresh_at > timedelta(days=FULL_REFRESH_DAYS):
        reason = f"last full refresh is older than {FULL_REFRESH_DAYS:g} days"
    full = bool(reason)
    state = BuildState(fp, now if full else previous.full_refresh_at, load_id, sha, started)
    return Plan(full=full, reason=reason or "only keys touched by new loads are re-merged", state=state)


def start_from_served(served: Path, new_path: Path) -> int:
    """Copy the served file to `new_path` and drop everything but KEPT_TABLES (the build state and the incremental
    marts); returns how many tables are kept. The served file itself is only read. A file copy and dropped tables,
    not a copy of the kept tables into a new file: DuckDB re-encodes every block it copies (44 s for the 1.3 GB of
    kept marts at 200 clinics, against 1.5 s to copy the whole 1.9 GB file)."""
    shutil.copy2(served, new_path)
    con = duckdb.connect(str(new_path))
    try:
        views = con.execute(
            "select schema_name, view_name from duckdb_views() where not internal "
            "and database_name = current_database()"
        ).fetchall()
        for schema, view in views:
            con.execute(f"drop view if exists {quote_ident(schema)}.{quote_ident(view)}")
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = current_database()"
        ).fetchall()
        kept = 0
        for schema, table in tables:
            if (schema, table) in KEPT_TABLES:
                kept += 1
            else:
                con.execute(f"drop table {quote_ident(schema)}.{quote_ident(table)}")
        con.execute("checkpoint")
    finally:
        con.close()
    return kept


class StateHeld(RuntimeError):
    """Another process holds the build state file open (DuckDB: one writer, or readers only)."""


def open_state(state_db: Path, full: bool, build_id: str) -> None:
    """Before dbt writes the state file: flag it (`meta.build_in_progress`, committed and checkpointed before any
    table changes, so a crash from here on, or a copy of the home taken meanwhile, makes the next build full); for
    a full build start it empty first (a full refresh replaces its tables anyway; a model removed from the project
    leaves nothing behind). Opening it read-write is also the check that nobody else holds it: StateHeld if so
    (the file is then unchanged)."""
    if full:
        for part in ("", ".wal"):
            Path(f"{state_db}{part}").unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(state_db))
    except duckdb.IOException as exc:
        holder = re.search(r"PID (\d+)", str(exc))
        raise StateHeld(
            f"{state_db.name} is held open by another process{f' (PID {holder.group(1)})' if holder else ''}: "
            "nothing may keep the build state open"
        ) from None
    try:
        con.execute("create schema if not exists meta")
        con.execute(
            f"create or replace table meta.{IN_PROGRESS} as select cast(? as varchar) as build_id, now() as started_at",
            [build_id],
        )
        con.execute("checkpoint")
    finally:
        con.close()


def close_state(state_db: Path, state: BuildState) -> None:
    """After the build is served: drop the staging views over raw (build-time plumbing) and the hand-off tables the
    state file's models left (HANDOFF_SUFFIXES), record the served build's state in it (the next plan_build compares
    the two) and drop the in-progress flag, in one transaction."""
    con = duckdb.connect(str(state_db))
    try:
        con.execute("begin")
        drop_build_only_views(con)
        record_state(con, state)
        con.execute(f"drop table if exists meta.{IN_PROGRESS}")
        con.execute("commit")
        con.execute("checkpoint")
    finally:
        con.close()


def export_mart_scopes(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    """Copy the incremental marts' scopes (`marts.<m>__scope`: the keys dbt deleted and inserted again tonight) to
    the DuckDB file `path` as `marts.<m>`, before `record_state` drops them: the de-identified twin patches those
    marts by key (core/deid.py `write_deidentified(scopes=...)`). Returns the marts copied; no file when none
    (a full build has no scopes)."""
    tables = {
        t
        for s, t in con.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = current_database()"
        ).fetchall()
        if s == "marts"
    }
    found = sorted(m for s, m in KEPT_TABLES if s == "marts" and m + "__scope" in tables)
    if not found:
        return []
    con.execute(f"attach {quote_literal(path)} as ptpulse_scopes")
    try:
        con.execute("create schema if not exists ptpulse_scopes.marts")
        for mart in found:
            scope = quote_ident(mart + "__scope")
            con.execute(
                f"create table ptpulse_scopes.marts.{quote_ident(mart)} as select distinct * from marts.{scope}"
            )
    finally:
        con.execute("detach ptpulse_scopes")
    return ["marts." + mart for mart in found]


def drop_handoffs(con: duckdb.DuckDBPyConnection) -> int:
    """Drop the tables the incremental intermediates handed to each other (HANDOFF_SUFFIXES): kept by dbt until
    the build ends, because a model's scope is read by every model after it. Returns how many were dropped."""
    tables = con.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = current_database()"
    ).fetchall()
    handoffs = [(s, t) for s, t in tables if t.endswith(HANDOFF_SUFFIXES)]
    for schema, table in handoffs:
        con.execute(f"drop table {quote_ident(schema)}.{quote_ident(table)}")
    return len(handoffs)


def record_state(con: duckdb.DuckDBPyConnection, state: BuildState) -> None:
    """`meta.build_state` of `con`'s file (one row): read by the next build's plan_build, in the new analytics file
    and in the state file. Also drops the file's hand-off tables (drop_handoffs): the state is recorded once dbt is
    done with them."""
    drop_handoffs(con)
    con.execute("create schema if not exists meta")
    con.execute("drop table if exists meta.build_state")
    con.execute(STATE_DDL)
    con.execute(
        "insert into meta.build_state values (?, ?, ?, ?, ?)",
        [state.fingerprint, state.full_refresh_at, state.raw_load_id, state.raw_load_sha256, state.raw_load_started_at],
    )
