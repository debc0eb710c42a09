"""Landing a night by hand in a copy of raw.duckdb, for the tests of incremental builds (dbt models, twin)."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from ptpulse.build.orchestrate import BuildResult, build
from ptpulse.core.config import DBT_PROJECT_DIR, Settings, get_settings
from ptpulse.core.contracts import load_contracts
from ptpulse.core.sql import quote_ident
from tests.built import file_of

# the event sources staged incrementally, with their contract's event time (what a night's cut is by)
INCREMENTAL_SOURCES = ("scheduling_events", "documentation_events", "charges", "claims", "remittances")
FACTS = {source: load_contracts()[source].event_time for source in INCREMENTAL_SOURCES}


def project_snapshot(root: Path) -> Path:
    """A copy of the dbt project under `root` for a test's builds: an edit elsewhere in the tree during the run must
    not change the fingerprint (and make a night a full build)."""
    project = root / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    return project


def new_load(con: duckdb.DuckDBPyConnection, source: str, tag: str) -> int:
    """A raw._loads row for a new load of `source` (copied from its first load: same profile, so the same system)."""
    load_id = con.execute("select max(load_id) + 1 from raw.raw._loads").fetchone()[0]
    con.execute(
        "insert into raw.raw._loads select * replace (? as load_id, ? as file, ? as sha256, "
        "now()::timestamp as started_at) from raw.raw._loads where source = ? order by load_id limit 1",
        [load_id, f"{source}_{tag}.csv", f"sha-{source}-{tag}", source],
    )
    return load_id


def full_build_beside(source: Settings, home: Path, **build_options) -> tuple[Settings, BuildResult]:
    """A full build of `source`'s raw file and app actions in a home of its own, with the same pseudonym secret
    (so patient_key is equal): what a night's incremental build must equal."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source.raw_db, home / "raw.duckdb")
    shutil.copytree(source.home / "secrets", home / "secrets", dirs_exist_ok=True)
    for part in ("", "-wal"):  # the front desk's actions (app.sqlite, WAL mode), when the source has any
        if Path(f"{source.app_db}{part}").exists():
            shutil.copy2(f"{source.app_db}{part}", home / f"app.sqlite{part}")
    settings = get_settings(home).ensure()
    result = build(settings, full_refresh=True, **build_options)
    assert result.ok, result.message
    return settings, result


def unmatched_rows(
    con: duckdb.DuckDBPyConnection, x: str, y: str, schema: str, table: str, tolerant: bool = True
) -> int:
    """Rows of `schema.table` in attached db `x` with no equal row in `y` (multisets). Exact, or with `tolerant`
    doubles equal within 1e-9 relative: a sum of doubles depends on the order rows arrive in, which differs between
    two builds at the 1e-15 level; decimals, integers, text and dates stay exact."""
    q = f"{quote_ident(schema)}.{quote_ident(table)}"
    only_x, only_y = f"(from {x}.{q} except all from {y}.{q})", f"(from {y}.{q} except all from {x}.{q})"
    if not tolerant:
        return con.execute(f"select count(*) from {only_x}").fetchone()[0]
    cols = con.execute(
        "select column_name, data_type from duckdb_columns() where database_name = ? and schema_name = ? "
        "and table_name = ? order by column_index",
        [x, schema, table],
    ).fetchall()
    conds = []
    for c, typ in cols:
        a, b = f"p.{quote_ident(c)}", f"r.{quote_ident(c)}"
        same = f"{a} is not distinct from {b}"
        if typ in ("DOUBLE", "FLOAT"):
            same = f"({same} or abs({a} - {b}) <= 1e-9 * greatest(1, abs({a})))"
        conds.append(same)
    return con.execute(
        f"select count(*) from {only_x} as p where not exists (select 1 from {only_y} as r where {' and '.join(conds)})"
    ).fetchone()[0]


def assert_same_rows(a: Path, b: Path, schemas: tuple[str, ...] = ("staging", "intermediate", "marts")) -> None:
    """Every table of `schemas` in analytics file `a` holds the same rows in `b` (counts, then multisets both ways;
    marts.build_info, this build's id and time, left out): an incremental night against a full rebuild."""
    con = duckdb.connect()
    try:
        for schema in schemas:  # staging and intermediate are in each home's build state file (tests/built.py)
            con.execute("detach database if exists a")
            con.execute("detach database if exists b")
            con.execute(f"attach '{file_of(a, schema)}' as a (read_only)")
            con.execute(f"attach '{file_of(b, schema)}' as b (read_only)")
            tables = con.execute(
                "select table_name from duckdb_tables() where database_name = 'a' and schema_name = ? order by 1",
                [schema],
            ).fetchall()
            assert tables, schema
            for (t,) in tables:
                if t == "build_info":
                    continue
                q = f"{quote_ident(schema)}.{quote_ident(t)}"
                counts = con.execute(f"select (select count(*) from a.{q}), (select count(*) from b.{q})").fetchone()
                assert counts[0] == counts[1], (schema, t, counts)
                assert unmatched_rows(con, "a", "b", schema, t) == 0, (schema, t)
                assert unmatched_rows(con, "b", "a", schema, t) == 0, (schema, t)
    finally:
        con.close()
