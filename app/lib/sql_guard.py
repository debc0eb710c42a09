"""The analyst SQL page: what may run, and where it runs.

Two independent locks:
1. `check_statement` accepts exactly one statement that DuckDB's own parser types as SELECT and that
   starts with SELECT, WITH, DESCRIBE or SHOW. Anything else (INSERT, COPY, ATTACH, SET, PRAGMA, CALL,
   EXPORT, several statements) is refused before it reaches a database.
2. Queries never touch analytics.duckdb. They run in a *sandbox*: an in-memory DuckDB filled once per
   served build with de-identified copies of the marts and ML tables (dim_patients left out, every PHI
   column dropped), after which the source file is detached, external access (files, ATTACH, httpfs) is
   switched off and the configuration is locked. So even a statement that passed check 1 can only read
   de-identified rows, cannot reach a file, and cannot turn the locks back off.
Results are capped at a row limit and interrupted after a time limit.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from app.lib.privacy import PHI_COLUMNS

ALLOWED_FIRST_WORDS = ("select", "with", "describe", "show")
SANDBOX_SCHEMAS = ("marts", "ml")
# Tables left out of the sandbox entirely: they exist to hold identities.
EXCLUDED_TABLES = frozenset({"marts.dim_patients"})
# Free-text columns that may quote a patient (reasons and notes written by people or rules).
EXCLUDED_COLUMNS = frozenset({"note", "notes", "record"})
ROW_CAP = 5000
TIME_LIMIT_S = 10.0

_LEADING_COMMENTS = re.compile(r"^\s*(?:(?:--[^\n]*(?:\n|$))|(?:/\*.*?\*/)|\s)*", re.S)


class SqlRefused(ValueError):
    """A statement the SQL page will not run (the message says why and what is allowed)."""


def _first_word(sql: str) -> str:
    body = _LEADING_COMMENTS.sub("", sql, count=1)
    match = re.match(r"[A-Za-z]+", body)
    return match.group(0).lower() if match else ""


def check_statement(sql: str) -> str:
    """Return the statement if it is one read-only query; raise SqlRefused otherwise."""
    if not sql or not sql.strip():
        raise SqlRefused("Write a query first, e.g. SELECT * FROM marts.practice_kpis LIMIT 10.")
    if len(sql) > 20_000:
        raise SqlRefused("That query is longer than 20,000 characters; shorten it.")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlRefused(f"DuckDB could not parse the query: {exc}") from None
    if len(statements) != 1:
        raise SqlRefused(f"Run one statement at a time (found {len(statements)}).")
    word = _first_word(sql)
    if word not in ALLOWED_FIRST_WORDS:
        raise SqlRefused(f"Only SELECT, WITH, DESCRIBE and SHOW are allowed here (this starts with "
                         f"{word.upper() or 'nothing readable'}).")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise SqlRefused(f"Only read queries are allowed (DuckDB reads this as {statements[0].type.name}).")
    return sql.strip().rstrip(";").strip()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sandbox_columns(table: str, columns: list[str]) -> list[str]:
    """Columns of a source table that may be copied into the sandbox."""
    return [c for c in columns if c.lower() not in PHI_COLUMNS and c.lower() not in EXCLUDED_COLUMNS]


def build_sandbox(analytics_path: Path, memory_limit: str = "1GB", threads: int = 1) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding de-identified copies of the marts; no file access; locked config."""
    con = duckdb.connect(":memory:", config={"threads": threads, "memory_limit": memory_limit})
    literal = str(analytics_path).replace("'", "''")
    con.execute(f"ATTACH '{literal}' AS src (READ_ONLY)")
    rows = con.execute(
        "select table_schema, table_name, list(column_name order by ordinal_position) "
        "from information_schema.columns where table_catalog = 'src' and table_schema in ('marts', 'ml') "
        "group by all order by 1, 2").fetchall()
    for schema in SANDBOX_SCHEMAS:
        con.execute(f"create schema if not exists memory.{schema}")
    con.execute("use memory")
    for schema, table, columns in rows:
        if f"{schema}.{table}" in EXCLUDED_TABLES:
            continue
        keep = sandbox_columns(f"{schema}.{table}", list(columns))
        if not keep:
            continue
        cols = ", ".join(_quote(c) for c in keep)
        con.execute(f"create table memory.{_quote(schema)}.{_quote(table)} as "
                    f"select {cols} from src.{_quote(schema)}.{_quote(table)}")
    con.execute("detach src")
    con.execute("set enable_external_access = false")
    con.execute("set lock_configuration = true")
    return con


@dataclass
class SqlResult:
    frame: pd.DataFrame
    truncated: bool
    seconds: float


def run_readonly(sandbox: duckdb.DuckDBPyConnection, sql: str, row_cap: int = ROW_CAP,
                 time_limit_s: float = TIME_LIMIT_S) -> SqlResult:
    """Check and run one analyst query in the sandbox, capped in rows and time."""
    statement = check_statement(sql)
    cur = sandbox.cursor()
    timer = threading.Timer(time_limit_s, cur.interrupt)
    started = time.perf_counter()
    timer.start()
    try:
        frame = cur.sql(statement).limit(row_cap + 1).df()
    except duckdb.InterruptException:
        raise SqlRefused(f"The query ran longer than {time_limit_s:.0f} s and was stopped; "
                         "aggregate more or add a WHERE clause.") from None
    except duckdb.Error as exc:
        raise SqlRefused(f"DuckDB error: {exc}") from None
    finally:
        timer.cancel()
        cur.close()
    truncated = len(frame) > row_cap
    return SqlResult(frame.head(row_cap), truncated, time.perf_counter() - started)


def sandbox_catalog(sandbox: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Tables and columns available to analysts (the page shows it as a reference)."""
    cur = sandbox.cursor()
    try:
        return cur.execute(
            "select table_schema || '.' || table_name as table_name, "
            "string_agg(column_name, ', ' order by ordinal_position) as columns "
            "from information_schema.columns where table_schema in ('marts', 'ml') group by all order by 1").df()
    finally:
        cur.close()
