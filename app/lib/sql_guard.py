"""The analyst SQL page: what may run, and where it runs.

Two independent locks:
1. `check_statement` accepts exactly one statement that DuckDB's own parser types as SELECT and that
   starts with SELECT, WITH, DESCRIBE or SHOW. Anything else (INSERT, COPY, ATTACH, SET, PRAGMA, CALL,
   EXPORT, several statements) is refused before it reaches a database.
2. Queries never touch analytics.duckdb. They run in a *sandbox*: an in-memory DuckDB that ATTACHes the
   served de-identified twin `analytics_deid.duckdb` READ_ONLY (written and swapped by every build, see
   ptpulse/privacy.py: marts and ml without dim_patients, PHI and free-text columns, plus meta.builds).
   The sandbox checks the attached file against the same rule, then switches external access (files,
   ATTACH, httpfs) off and locks the configuration. So even a statement that passed check 1 can only read
   de-identified rows, cannot reach a file (analytics.duckdb included), and cannot turn the locks back off.
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

from ptpulse.privacy import (  # noqa: F401 - EXCLUDED_* re-exported under their old names
    DEID_SCHEMAS,
    EXCLUDED_COLUMNS,
    EXCLUDED_TABLES,
    deid_problems,
    kept_columns,
)

ALLOWED_FIRST_WORDS = ("select", "with", "describe", "show")
SANDBOX_SCHEMAS = DEID_SCHEMAS
CATALOG = "analytics_deid"  # the attached twin; also its catalog name when an analyst opens the file directly
ROW_CAP = 5000
TIME_LIMIT_S = 10.0

_LEADING_COMMENTS = re.compile(r"^\s*(?:(?:--[^\n]*(?:\n|$))|(?:/\*.*?\*/)|\s)*", re.S)


class SqlRefused(ValueError):
    """A statement the SQL page will not run (the message says why and what is allowed)."""


class DeidMissing(FileNotFoundError):
    """No de-identified twin is served (no build yet, or the served build predates the twin)."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"No de-identified database at {path}. Run `ptpulse refresh` (or `ptpulse build`): every build "
            "serves analytics_deid.duckdb beside analytics.duckdb, and this page queries only that file.")
        self.path = path


class NotDeidentified(RuntimeError):
    """The file given to the sandbox holds PHI or tables a de-identified reader may not see."""


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


def sandbox_columns(table: str, columns: list[str]) -> list[str]:
    """Columns of a source table that a de-identified reader may see (the shared rule, ptpulse/privacy.py)."""
    return kept_columns(columns)


def build_sandbox(deid_path: Path, memory_limit: str = "1GB", threads: int = 1) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the served de-identified twin attached READ_ONLY; no file access; locked config.

    Raises DeidMissing when the twin does not exist and NotDeidentified when the file breaks the rule (e.g.
    analytics.duckdb given by mistake): the sandbox never attaches a file holding PHI for analysts to query.
    """
    deid_path = Path(deid_path)
    if not deid_path.exists():
        raise DeidMissing(deid_path)
    con = duckdb.connect(":memory:", config={"threads": threads, "memory_limit": memory_limit})
    try:
        con.execute(f"ATTACH '{str(deid_path).replace(chr(39), chr(39) * 2)}' AS {CATALOG} (READ_ONLY)")
        problems = deid_problems(con, CATALOG)
        if problems:
            raise NotDeidentified(f"{deid_path} is not de-identified; the SQL page will not open it: "
                                  + "; ".join(problems[:5]))
        con.execute(f"use {CATALOG}")
        con.execute("set enable_external_access = false")
        con.execute("set lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _cursor(sandbox: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A new cursor whose default catalog is the twin (USE is per connection; cursors do not inherit it)."""
    cur = sandbox.cursor()
    cur.execute(f"use {CATALOG}")
    return cur


@dataclass
class SqlResult:
    frame: pd.DataFrame
    truncated: bool
    seconds: float


def run_readonly(sandbox: duckdb.DuckDBPyConnection, sql: str, row_cap: int = ROW_CAP,
                 time_limit_s: float = TIME_LIMIT_S) -> SqlResult:
    """Check and run one analyst query in the sandbox, capped in rows and time."""
    statement = check_statement(sql)
    cur = _cursor(sandbox)
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
    cur = _cursor(sandbox)
    try:
        return cur.execute(
            "select table_schema || '.' || table_name as table_name, "
            "string_agg(column_name, ', ' order by ordinal_position) as columns "
            "from information_schema.columns where table_catalog = ? and table_schema in ('marts', 'ml') "
            "group by all order by 1", [CATALOG]).df()
    finally:
        cur.close()
