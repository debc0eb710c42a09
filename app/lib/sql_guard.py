"""The analyst SQL page: what may run, and where it runs.

Three independent locks:
1. `check_statement` accepts exactly one statement that DuckDB's own parser types as SELECT and that
   starts with SELECT, WITH, DESCRIBE or SHOW, and whose tokens outside string literals (DuckDB's own
   tokenizer) hold no write/admin keyword (so `with x as (delete ...) select ...`, which DuckDB types as
   SELECT, is refused too) and no call of a function or view that reveals server paths or settings or runs
   SQL given as a string (`duckdb_databases`, `duckdb_settings`, `current_setting`, `query`, ...). SHOW is
   allowed for TABLES, ALL TABLES, DATABASES, a query and a table: `SHOW <name>` shows the *setting* of that
   name when no table has it (`show allowed_paths` lists server paths), so a SHOW of a setting name is refused
   here like current_setting, and the worker runs `SHOW <name>` only if the name is a table or view it can
   see (`check_shown_tables`).
2. Queries never run in the Streamlit process and never touch analytics.duckdb. Each one runs in a fresh
   worker *process* (app/lib/sql_worker.py) that attaches the served de-identified twin
   `analytics_deid.duckdb` READ_ONLY (written and swapped by every build, see ptpulse/core/deid.py), checks
   it against the same rule, switches external access, extension autoloading and Python replacement scans
   off, and locks the configuration. So a statement that passed check 1 can only read de-identified rows,
   cannot reach a file, and cannot turn the locks back off.
3. The worker has its own DuckDB `memory_limit`, `threads`, `temp_directory` and `max_temp_directory_size`,
   an address-space cap (RLIMIT_AS: allocations DuckDB does not count, e.g. one 1.5 GB string, fail), and a
   watchdog in the app process kills it (SIGKILL) when it passes the wall-clock limit or its resident memory
   passes a hard cap. A bad query fails alone with a clear message; other sessions' workers are unaffected.
Results are capped at a row limit, a length per cell and a size limit measured on what the app will hold (the
worker renders lists, structs and other nested values as text, so what crosses to the app is flat and its
size is known); at most MAX_WORKERS queries run at once (the worker module runs them:
app/lib/sql_worker.py run_readonly).

Clinic scope: an analyst whose roles.yml entry names clinics reads only those clinics here too, as on every
other page. Their worker attaches the twin under another name, copies into an in-memory database named like
the twin (so queries read the same) each table with a `clinic_id` column filtered to their clinics, and the
tables without one that hold no figure of any clinic (`SCOPE_SHARED_TABLES`: reference lists and load/build
metadata), then DETACHes the twin before the configuration is locked: nothing the statement can name holds
another clinic's row. Practice-wide tables without `clinic_id` (attribution, referral-source performance,
demand forecast, ...) are not there for a scoped analyst. Only the tables the statement names are filled (the
rest are created empty, so the catalog reads the same), which keeps the copy to what the query reads.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from ptpulse.core.deid import DEID_SCHEMAS, deid_problems, kept_columns

if TYPE_CHECKING:  # pandas is not imported at run time: the worker process imports this module too
    import pandas as pd

ALLOWED_FIRST_WORDS = ("select", "with", "describe", "show")
SANDBOX_SCHEMAS = DEID_SCHEMAS
CATALOG = "analytics_deid"  # the attached twin; also its catalog name when an analyst opens the file directly
ROW_CAP = 5000
TIME_LIMIT_S = 10.0
MAX_WORKERS = 3  # queries running at once (all sessions); each may use up to Limits.rss_cap_mb
SCOPE_SOURCE = "ptpulse_unscoped_twin"  # the twin's catalog name in a scoped worker, detached before the query
# Tables without clinic_id that a clinic-scoped analyst may read whole: lists and the build's clock, no figure
# of any clinic (outcome_measures and work_queue_outcomes are seeds: the measures' MCID and scale, the outreach
# outcomes' labels; no clinic, patient or count in them). Every other table without clinic_id is practice-wide and is left out for them, including the
# practice-wide row counts of meta.builds, source_coverage and data_quality (their own count subtracted from
# those gave the other clinics' volume).
SCOPE_SHARED_TABLES = frozenset(
    {
        "marts.build_info",
        "marts.kpi_definitions",
        "marts.labels",
        "marts.outcome_measures",
        "marts.work_queue_outcomes",
        "marts.work_queue_rules",
        "marts.dim_payers",
        "marts.dim_referring_physicians",
    }
)

# Keywords that write, change settings, touch files or run other statements. DuckDB's tokenizer marks them
# as keywords wherever they appear outside string literals (a column named like one must be "quoted").
REFUSED_KEYWORDS = frozenset(
    {
        "insert",
        "update",
        "delete",
        "merge",
        "upsert",
        "truncate",
        "create",
        "drop",
        "alter",
        "copy",
        "attach",
        "detach",
        "pragma",
        "set",
        "reset",
        "call",
        "install",
        "load",
        "export",
        "import",
        "use",
        "vacuum",
        "checkpoint",
        "begin",
        "commit",
        "rollback",
        "abort",
        "transaction",
        "prepare",
        "execute",
        "deallocate",
        "grant",
        "revoke",
        "comment",
        "analyze",
        "explain",
        "summarize",
    }
)
# System table functions and views that are safe to read (names, types, no paths or settings).
ALLOWED_META = frozenset(
    {
        "duckdb_tables",
        "duckdb_columns",
        "duckdb_views",
        "duckdb_schemas",
        "duckdb_types",
        "duckdb_functions",
        "duckdb_keywords",
        "duckdb_constraints",
        "duckdb_indexes",
        "duckdb_sequences",
        "duckdb_dependencies",
        "pragma_table_info",
    }
)
# Every other duckdb_* / pragma_* function or view, and these names, are refused: they show file paths,
# settings (temp directory, home, extension directory), secrets or memory, run SQL given as a string, or
# reach files (blocked again in the worker by enable_external_access=false).
REFUSED_PREFIXES = ("duckdb_", "pragma_", "read_", "parquet_", "sqlite_", "json_execute", "python_")
REFUSED_NAMES = frozenset(
    {
        "current_setting",
        "getvariable",
        "query",
        "query_table",
        "database_list",
        "database_size",
        "show_databases",
        "pg_settings",
        "pg_database",
        "pg_tablespace",
        "which_secret",
        "glob",
        "sniff_csv",
        "copy_database",
        "import_database",
        "arrow_scan",
        "arrow_scan_dumb",
        "pandas_scan",
        "seq_scan",
        "create_external_resource",
        "register_external_resource",
        "register_external_resource_type",
        "deregister_external_resource",
        "destroy_external_resource",
        "add_grammar_extension",
        "remove_grammar_extension",
        "enable_logging",
        "disable_logging",
        "enable_profiling",
        "disable_profiling",
        "enable_profile",
        "disable_profile",
        "truncate_duckdb_logs",
        "force_checkpoint",
        "extension_versions",
        "current_query",
        "test_all_types",
        "test_vector_types",
    }
)

_LEADING_COMMENTS = re.compile(r"^\s*(?:(?:--[^\n]*(?:\n|$))|(?:/\*.*?\*/)|\s)*", re.S)


@dataclass(frozen=True)
class Limits:
    """What one analyst query may use. The DuckDB settings are soft (DuckDB stops the query); rss_cap_mb,
    address_space_mb and time_limit_s are hard (allocation fails / the worker is killed)."""

    memory_limit_mb: int = 512  # DuckDB memory_limit (buffer manager)
    threads: int = 1  # DuckDB threads (the app shares a small machine)
    temp_limit_mb: int = 1024  # DuckDB max_temp_directory_size (spill to the worker's own temp dir)
    time_limit_s: float = TIME_LIMIT_S  # wall clock from the start of the statement; then SIGKILL
    rss_cap_mb: int = 1024  # resident memory of the worker; above it the watchdog kills it
    address_space_mb: int = 2048  # RLIMIT_AS of the worker (DuckDB+pyarrow map ~1 GB when ready)
    result_mb: int = 64  # what the app holds of the (row-capped) result: frame, browser copy, CSV (the worker
    # estimates it: sql_worker._held_bytes)
    row_cap: int = ROW_CAP
    cell_chars: int = 2000  # a text cell (nested values rendered as text included) is cut after this many characters


class SqlRefused(ValueError):
    """A statement the SQL page will not run, or one that was stopped (the message says why and what to do)."""

    def __init__(self, message: str, peak_rss_mb: float | None = None) -> None:
        super().__init__(message)
        self.peak_rss_mb = peak_rss_mb  # the worker's peak resident memory, when a worker ran


class DeidMissing(FileNotFoundError):
    """No de-identified twin is served (no build yet, or the served build predates the twin).

    str() names the server path (for logs and the CLI); `user_message` is what a page shows an analyst: no
    server path ever reaches a de-identified role."""

    user_message = (
        "No de-identified copy of the data is served yet, and this page queries only that copy. Ask an "
        "administrator to build it (Admin → Refresh now, or `ptpulse build`): every build serves one."
    )

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"No de-identified database at {path}. Run `ptpulse refresh` (or `ptpulse build`): every build "
            "serves analytics_deid.duckdb beside analytics.duckdb, and this page queries only that file."
        )
        self.path = path


class NotDeidentified(RuntimeError):
    """The file given to the sandbox holds PHI or tables a de-identified reader may not see."""


class DeidUnreadable(RuntimeError):
    """The served twin exists but DuckDB cannot open it (damaged, truncated, unreadable). str() names the
    server path (for logs); `user_message` is what the page shows."""

    user_message = (
        "The de-identified copy of the data cannot be opened (the file is damaged or unreadable), so this page "
        "cannot run queries until the next refresh. Ask an administrator (Admin → Refresh now)."
    )


def _first_word(sql: str) -> str:
    body = _LEADING_COMMENTS.sub("", sql, count=1)
    match = re.match(r"[A-Za-z]+", body)
    return match.group(0).lower() if match else ""


def _words(sql: str) -> list[tuple[str, str]]:
    """(kind, normalised text) of every keyword and identifier token, from DuckDB's own tokenizer; string
    literals and comments are skipped, quoted identifiers are unquoted."""
    tokens = duckdb.tokenize(sql)
    words = []
    for i, (start, kind) in enumerate(tokens):
        if kind.name not in ("keyword", "identifier"):
            continue
        end = tokens[i + 1][0] if i + 1 < len(tokens) else len(sql)
        text = sql[start:end].strip()
        if text.startswith('"'):
            text = text[1:-1].replace('""', '"') if text.endswith('"') and len(text) > 1 else text[1:]
        else:
            text = re.match(r"[^\s(),.;]*", text).group(0)
        words.append((kind.name, text.lower()))
    return words


def _refused_name(name: str) -> bool:
    if name in ALLOWED_META:
        return False
    return name in REFUSED_NAMES or name.startswith(REFUSED_PREFIXES)


def _not_available(name: str) -> str:
    return (
        f"{name} is not available on this page: system functions and views that show server settings, paths or "
        "files, or run SQL from a string, are refused. Use information_schema, duckdb_tables() or "
        "duckdb_columns() to explore tables."
    )


# What may follow SHOW besides a table's name: SHOW TABLES [FROM ...], SHOW ALL [TABLES], SHOW DATABASES and
# SHOW <query> (describes the query's columns). Anything else is a name: DuckDB describes the table of that name
# if there is one and otherwise shows the *setting* of that name.
_SHOW_KEYWORDS = frozenset({"tables", "all", "databases", "select", "with", "from", "values", "table"})


@functools.cache
def _setting_names() -> frozenset[str]:
    """Every setting name duckdb_settings() lists (lower case), aliases included, and `variables` (SHOW
    VARIABLES). A few legacy names are not listed (e.g. extension_directory): check_shown_tables stops those."""
    con = duckdb.connect(":memory:")
    try:
        rows = con.execute("select name, aliases from duckdb_settings()").fetchall()
    finally:
        con.close()
    return frozenset({n.lower() for name, aliases in rows for n in [name, *(aliases or [])]} | {"variables"})


def _show_targets(sql: str) -> list[str]:
    """Lower-case unqualified names that `SHOW <name>` is given anywhere in `sql` (DuckDB's tokenizer,
    comments skipped; a quoted name or a string literal unquoted). A qualified name (schema.table) is always
    a table for DuckDB and is not listed, nor are TABLES, ALL TABLES, DATABASES and a query."""
    raw = duckdb.tokenize(sql)
    tokens = []
    for i, (start, kind) in enumerate(raw):
        end = raw[i + 1][0] if i + 1 < len(raw) else len(sql)
        if kind.name != "comment":
            tokens.append((kind.name, sql[start:end].strip()))
    names = []
    for i, (kind, text) in enumerate(tokens[:-1]):
        if kind != "keyword" or text.lower() != "show":
            continue
        kind, text = tokens[i + 1]
        qualified = i + 2 < len(tokens) and tokens[i + 2][0] == "operator" and tokens[i + 2][1].startswith(".")
        if kind == "operator" or qualified or (kind == "keyword" and text.lower() in _SHOW_KEYWORDS):
            continue
        if kind == "string_const" and len(text) > 1 and text[0] == text[-1] == "'":
            text = text[1:-1].replace("''", "'")
        elif kind == "identifier" and text.startswith('"'):
            text = text[1:-1].replace('""', '"') if text.endswith('"') and len(text) > 1 else text[1:]
        else:
            text = re.match(r"[^\s(),.;]*", text).group(0)
        names.append(text.lower())
    return names


def check_shown_tables(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Worker side, with the analyst's catalog at hand: every `SHOW <name>` in `sql` must name a table or view
    `con` can see, so no SHOW reads a setting, whatever its name (one check_statement's list lacks included).
    DESCRIBE never reads a setting; it resolves the name as SHOW does when a table has it."""
    for name in _show_targets(sql):
        try:
            con.execute(f'describe "{name.replace(chr(34), chr(34) * 2)}"')
            continue
        except duckdb.Error:
            pass
        try:  # run here by this code, never by the analyst: only to word the refusal
            con.execute("select current_setting(?)", [name])
        except duckdb.Error:
            raise SqlRefused(
                f"SHOW {name}: there is no table or view of that name here. SHOW TABLES lists the tables; "
                "DESCRIBE marts.<table> shows one's columns."
            ) from None
        raise SqlRefused(_not_available(name))


def check_statement(sql: str) -> str:
    """Return the statement if it is one read-only query; raise SqlRefused otherwise."""
    if not sql or not sql.strip():
        raise SqlRefused("Write a query first, e.g. SELECT * FROM marts.practice_kpis LIMIT 10.")
    if len(sql) > 20_000:
        raise SqlRefused("That query is longer than 20,000 characters; shorten it.")
    try:
        statements = duckdb.extract_statements(sql)
        words = _words(sql)
    except duckdb.Error as exc:
        raise SqlRefused(f"DuckDB could not parse the query: {exc}") from None
    if len(statements) != 1:
        raise SqlRefused(f"Run one statement at a time (found {len(statements)}).")
    word = _first_word(sql)
    if word not in ALLOWED_FIRST_WORDS:
        raise SqlRefused(
            f"Only SELECT, WITH, DESCRIBE and SHOW are allowed here (this starts with "
            f"{word.upper() or 'nothing readable'})."
        )
    if statements[0].type != duckdb.StatementType.SELECT:
        raise SqlRefused(f"Only read queries are allowed (DuckDB reads this as {statements[0].type.name}).")
    for kind, text in words:
        if kind == "keyword" and text in REFUSED_KEYWORDS:
            raise SqlRefused(
                f"Only read queries are allowed: {text.upper()} may not appear anywhere in the "
                f"statement (not inside a WITH either). A column of that name must be "
                f'"quoted".'
            )
        if _refused_name(text):
            raise SqlRefused(_not_available(text))
    for name in _show_targets(sql):  # SHOW <setting> reads it as current_setting does
        if name in _setting_names():
            raise SqlRefused(_not_available(name))
    return sql.strip().rstrip(";").strip()


def sandbox_columns(table: str, columns: list[str]) -> list[str]:
    """Columns of a source table that a de-identified reader may see (the shared rule, ptpulse/core/deid.py)."""
    return kept_columns(columns)


def attach_twin(con: duckdb.DuckDBPyConnection, deid_path: Path, alias: str = CATALOG) -> None:
    """ATTACH the twin READ_ONLY as `alias` and refuse it (NotDeidentified) if it breaks the rule."""
    con.execute(f"ATTACH '{str(deid_path).replace(chr(39), chr(39) * 2)}' AS {alias} (READ_ONLY)")
    problems = deid_problems(con, alias)
    if problems:
        raise NotDeidentified(
            f"{Path(deid_path).name} is not de-identified; the SQL page will not open it: " + "; ".join(problems[:5])
        )


def scope_exposes(table: str, columns: Sequence[str]) -> bool | None:
    """For a clinic-scoped analyst: True = filtered to their clinics, False = shown whole (no figure of any
    clinic), None = left out (practice-wide)."""
    if "clinic_id" in {c.lower() for c in columns}:
        return True
    return False if table.lower() in SCOPE_SHARED_TABLES else None


def _named_in(statement: str) -> set[str]:
    """Lower-case names the statement may read a table by: every identifier token (DuckDB's tokenizer) and
    DuckDB's own list of referenced tables. Over-inclusive on purpose; a table missed is only read empty."""
    names = {text for _, text in _words(statement)}
    try:
        names |= {n.lower() for n in duckdb.get_table_names(statement, qualified=False)}
    except (duckdb.Error, AttributeError):
        pass
    return names


def scope_twin(con: duckdb.DuckDBPyConnection, deid_path: Path, clinics: Sequence[str], statement: str) -> None:
    """Make CATALOG an in-memory copy of the twin as a clinic-scoped analyst may see it (module docstring):
    rows of `clinics` only, shared reference tables whole, practice-wide tables absent; the twin itself is
    attached only while copying and detached before this returns."""
    attach_twin(con, deid_path, alias=SCOPE_SOURCE)
    named = _named_in(statement)
    con.execute(f"ATTACH ':memory:' AS {CATALOG}")
    tables = con.execute(
        "select schema_name, table_name, list(column_name order by column_index) from duckdb_columns() "
        "where database_name = ? group by all order by 1, 2",
        [SCOPE_SOURCE],
    ).fetchall()
    wanted = [str(c) for c in clinics]
    for schema, table, columns in tables:
        scoped = scope_exposes(f"{schema}.{table}", columns)
        if scoped is None:
            continue
        src, dst = f'{SCOPE_SOURCE}."{schema}"."{table}"', f'{CATALOG}."{schema}"."{table}"'
        con.execute(f'create schema if not exists {CATALOG}."{schema}"')
        where = " where cast(clinic_id as varchar) in (select unnest($1::varchar[]))" if scoped else ""
        limit = "" if table.lower() in named else " limit 0"
        con.execute(f"create table {dst} as select * from {src}{where}{limit}", [wanted] if scoped else [])
    con.execute(f"DETACH {SCOPE_SOURCE}")
    problems = deid_problems(con, CATALOG)
    if problems:  # cannot happen (a copy of a verified twin); checked because this is what analysts read
        raise NotDeidentified("the clinic-scoped copy broke the de-identification rule: " + "; ".join(problems[:5]))


@dataclass
class Sandbox:
    """The served twin the page's workers query, verified once here and again in every worker; plus the
    table list shown as a reference. Holds no open connection: nothing analysts type runs in this process."""

    path: Path
    catalog: pd.DataFrame
    limits: Limits = field(default_factory=Limits)


def build_sandbox(deid_path: Path, limits: Limits | None = None) -> Sandbox:
    """Verify the served twin and list its tables.

    Raises DeidMissing when the twin does not exist, DeidUnreadable when DuckDB cannot open it (damaged) and
    NotDeidentified when the file breaks the rule (e.g. analytics.duckdb given by mistake): no worker ever
    attaches a file holding PHI for analysts to query.
    """
    deid_path = Path(deid_path)
    if not deid_path.exists():
        raise DeidMissing(deid_path)
    con = duckdb.connect(":memory:", config={"threads": 1, "memory_limit": "256MB"})
    try:
        attach_twin(con, deid_path)
        catalog = con.execute(
            "select table_schema || '.' || table_name as table_name, "
            "string_agg(column_name, ', ' order by ordinal_position) as columns "
            "from information_schema.columns where table_catalog = ? and table_schema in ('marts', 'ml') "
            "group by all order by 1",
            [CATALOG],
        ).df()
    except duckdb.Error as exc:  # e.g. IOException naming the path: kept for the log (__cause__), not the page
        raise DeidUnreadable(f"{deid_path} cannot be opened: {exc}") from exc
    finally:
        con.close()
    return Sandbox(deid_path, catalog, limits or Limits())


def sandbox_catalog(sandbox: Sandbox, clinics: Sequence[str] | None = None) -> pd.DataFrame:
    """Tables and columns available to analysts (the page shows it as a reference); for a clinic-scoped
    analyst (`clinics` not None) only the tables their worker exposes (`scope_exposes`)."""
    if clinics is None:
        return sandbox.catalog
    keep = [scope_exposes(t, c.split(", ")) is not None for t, c in sandbox.catalog[["table_name", "columns"]].values]
    return sandbox.catalog[keep].reset_index(drop=True)


@dataclass
class SqlResult:
    frame: pd.DataFrame
    truncated: bool
    seconds: float  # wall time of the whole call: worker start-up, query, transfer
    peak_rss_mb: float = 0.0  # the worker's peak resident memory
    cells_cut: bool = False  # some text cells were longer than Limits.cell_chars and were cut (marked)
