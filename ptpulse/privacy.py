"""The de-identification rule, in one place: which columns are PHI, which tables and columns a de-identified
reader (marketing, analysts) never receives, and the de-identified twin of the analytics file.

- PHI columns: the ingestion contracts' `phi: true` columns (the one place sources are described) plus
  patient_id and the identifiers / display aliases our queries build (`ALWAYS_PHI`).
- Excluded tables: tables that exist to hold identities (`marts.dim_patients`).
- Excluded columns: free text that may quote a patient (notes, quarantined records).
- Kept schemas: `marts` and `ml` (what pages and analysts read), plus `meta.builds` (build log).
  `intermediate` and `app_state` are build plumbing and never leave the analytics file.

`write_deidentified(source, target)` writes `analytics_deid.duckdb` beside a new analytics file during the
build (ptpulse/build.py); `verify_deidentified(path)` is the check the build runs on it before serving.
The app's privacy filter (app/lib/privacy.py) and SQL page (app/lib/sql_guard.py) import from here; this
module imports neither Streamlit nor pandas.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

import duckdb
import yaml

from ptpulse.config import REPO_ROOT

CONTRACTS = REPO_ROOT / "ingestion" / "contracts"

# Columns that identify a patient even if no contract flags them (ids, and names our queries build).
ALWAYS_PHI = frozenset({
    "patient_id", "patient_name", "first_name", "last_name", "birth_date", "date_of_birth", "dob",
    "phone", "email", "address", "address_line", "street", "city", "zip", "postal_code", "member_id", "mrn", "ssn",
})

# Schemas copied (table by table, column by column) into the de-identified twin.
DEID_SCHEMAS = ("marts", "ml")
# Tables outside those schemas that are copied whole (they hold no patient data).
DEID_EXTRA_TABLES = ("meta.builds",)
# Tables left out entirely: they exist to hold identities.
EXCLUDED_TABLES = frozenset({"marts.dim_patients"})
# Free-text columns that may quote a patient (reasons and notes written by people or rules).
EXCLUDED_COLUMNS = frozenset({"note", "notes", "record"})


@lru_cache(maxsize=4)
def contract_phi_columns(folder: Path = CONTRACTS) -> frozenset[str]:
    cols: set[str] = set()
    for path in sorted(Path(folder).glob("*.yml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for name, col in (spec.get("columns") or {}).items():
            if isinstance(col, dict) and col.get("phi"):
                cols.add(str(name).lower())
    return frozenset(cols)


PHI_COLUMNS: frozenset[str] = ALWAYS_PHI | contract_phi_columns()


def is_phi(column: str) -> bool:
    return str(column).lower() in PHI_COLUMNS


def phi_columns_in(columns) -> list[str]:
    return [c for c in columns if is_phi(c)]


def kept_columns(columns) -> list[str]:
    """Columns a de-identified reader may see: no PHI, no free text."""
    return [c for c in columns if not is_phi(c) and str(c).lower() not in EXCLUDED_COLUMNS]


def kept_table(schema: str, table: str) -> bool:
    name = f"{schema}.{table}".lower()
    if name in EXCLUDED_TABLES:
        return False
    return schema.lower() in DEID_SCHEMAS or name in DEID_EXTRA_TABLES


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


SOURCE_ALIAS = "ptpulse_src"


def write_deidentified(source: Path, target: Path, threads: int | None = None) -> dict:
    """Write `target` (a new DuckDB file) holding de-identified copies of `source`'s kept tables.

    `source` is attached READ_ONLY; every kept table (or view, materialised) is created as a table with
    only its kept columns. Returns {"tables": n, "seconds": s}. `target` must not exist.
    """
    t0 = time.perf_counter()
    target = Path(target)
    if target.exists():
        raise FileExistsError(target)
    con = duckdb.connect(str(target))
    try:
        if threads:
            con.execute(f"set threads = {int(threads)}")
        con.execute(f"ATTACH {_literal(Path(source))} AS {SOURCE_ALIAS} (READ_ONLY)")
        rows = con.execute(
            "select table_schema, table_name, list(column_name order by ordinal_position) "
            "from information_schema.columns where table_catalog = ? group by all order by 1, 2",
            [SOURCE_ALIAS]).fetchall()
        target_db = con.execute("select current_database()").fetchone()[0]
        written = 0
        for schema, table, columns in rows:
            if not kept_table(schema, table):
                continue
            keep = kept_columns(list(columns))
            if not keep:
                continue
            con.execute(f"create schema if not exists {_quote(target_db)}.{_quote(schema)}")
            cols = ", ".join(_quote(c) for c in keep)
            con.execute(f"create table {_quote(target_db)}.{_quote(schema)}.{_quote(table)} as "
                        f"select {cols} from {SOURCE_ALIAS}.{_quote(schema)}.{_quote(table)}")
            written += 1
        con.execute(f"detach {SOURCE_ALIAS}")
        con.execute("checkpoint")
    finally:
        con.close()
    return {"tables": written, "seconds": time.perf_counter() - t0}


def deid_problems(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> list[str]:
    """What in `catalog` (default: the connection's current database) breaks the rule: an excluded or
    unexpected table, a PHI or free-text column, a view. Empty when the file is de-identified."""
    catalog = catalog or con.execute("select current_database()").fetchone()[0]
    problems = []
    cols = con.execute(
        "select table_schema, table_name, column_name from information_schema.columns "
        "where table_catalog = ? order by 1, 2", [catalog]).fetchall()
    tables = sorted({(s, t) for s, t, _ in cols})
    for schema, table in tables:
        if not kept_table(schema, table):
            problems.append(f"table {schema}.{table} is not allowed in a de-identified file")
    for schema, table, column in cols:
        if is_phi(column) or column.lower() in EXCLUDED_COLUMNS:
            problems.append(f"column {schema}.{table}.{column} is PHI or free text")
    views = con.execute("select schema_name, view_name from duckdb_views() where not internal "
                        "and database_name = ?", [catalog]).fetchall()
    problems += [f"view {s}.{v}: a de-identified file holds tables only" for s, v in views]
    return problems


def verify_deidentified(path: Path) -> None:
    """Raise if the file at `path` holds any PHI column, excluded table or view."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        problems = deid_problems(con)
    finally:
        con.close()
    if problems:
        raise RuntimeError(f"{path} is not de-identified: " + "; ".join(problems[:10]))
