"""The de-identification rule, in one place: which columns are PHI, which tables and columns a de-identified
reader (marketing, analysts) never receives, and the de-identified twin of the analytics file.

- PHI columns: the ingestion contracts' `phi: true` columns (the one place sources are described) plus
  patient_id and the identifiers / display aliases our queries build (`ALWAYS_PHI`).
- Excluded tables: tables that exist to hold identities (`marts.dim_patients`).
- Excluded columns: free text that may quote a patient (notes, quarantined records).
- Kept schemas: `marts` and `ml` (what pages and analysts read), plus `meta.builds` (build log).
  `intermediate` and `app_state` are build plumbing and never leave the analytics file.

`write_deidentified(source, target)` writes `analytics_deid.duckdb` beside a new analytics file during the
build (ptpulse/build/); `verify_deidentified(path, raw_db)` is the check the build runs on it before serving:
column names and tables, and every text VALUE scanned for the identifiers of raw.duckdb's patients (ids,
member ids, emails, phones, full names, street addresses; `identifier_problems`).
The app's privacy filter (app/lib/privacy.py) and SQL page (app/lib/sql_guard.py) import from here; this
module imports neither Streamlit nor pandas. (Named `deid`, not `privacy`: app/lib/privacy.py is the app's
per-role filter built on this rule.)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import duckdb

from ptpulse.core.contracts import phi_columns
from ptpulse.core.sql import quote_ident, quote_literal

# Columns that identify a patient even if no contract flags them (ids, and names our queries build).
ALWAYS_PHI = frozenset(
    {
        "patient_id",
        "patient_name",
        "first_name",
        "last_name",
        "birth_date",
        "date_of_birth",
        "dob",
        "phone",
        "email",
        "address",
        "address_line",
        "street",
        "city",
        "zip",
        "postal_code",
        "member_id",
        "mrn",
        "ssn",
    }
)

# Schemas copied (table by table, column by column) into the de-identified twin.
DEID_SCHEMAS = ("marts", "ml")
# Tables outside those schemas that are copied whole (they hold no patient data).
DEID_EXTRA_TABLES = ("meta.builds",)
# Tables left out entirely: they exist to hold identities.
EXCLUDED_TABLES = frozenset({"marts.dim_patients"})
# Free-text columns that may quote a patient (reasons and notes written by people or rules), and source file
# paths: exporters name per-patient files after the patient (Synthea: `<Given>_<Family>_<uuid>.json`).
EXCLUDED_COLUMNS = frozenset({"note", "notes", "record", "file"})


PHI_COLUMNS: frozenset[str] = ALWAYS_PHI | phi_columns()


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


SOURCE_ALIAS = "ptpulse_src"


def write_deidentified(
    source: Path, target: Path, threads: int | None = None, config: Mapping[str, str | bool] | None = None
) -> dict:
    """Write `target` (a new DuckDB file) holding de-identified copies of `source`'s kept tables.

    `source` is attached READ_ONLY; every kept table (or view, materialised) is created as a table with
    only its kept columns. Returns {"tables": n, "seconds": s}. `target` must not exist.
    """
    t0 = time.perf_counter()
    target = Path(target)
    if target.exists():
        raise FileExistsError(target)
    con = duckdb.connect(str(target), config=dict(config or {}))  # the build passes its memory budget
    try:
        if threads:
            con.execute(f"set threads = {int(threads)}")
        con.execute(f"ATTACH {quote_literal(Path(source))} AS {SOURCE_ALIAS} (READ_ONLY)")
        rows = con.execute(
            "select table_schema, table_name, list(column_name order by ordinal_position) "
            "from information_schema.columns where table_catalog = ? group by all order by 1, 2",
            [SOURCE_ALIAS],
        ).fetchall()
        target_db = con.execute("select current_database()").fetchone()[0]
        written = 0
        for schema, table, columns in rows:
            if not kept_table(schema, table):
                continue
            keep = kept_columns(list(columns))
            if not keep:
                continue
            con.execute(f"create schema if not exists {quote_ident(target_db)}.{quote_ident(schema)}")
            cols = ", ".join(quote_ident(c) for c in keep)
            con.execute(
                f"create table {quote_ident(target_db)}.{quote_ident(schema)}.{quote_ident(table)} as "
                f"select {cols} from {SOURCE_ALIAS}.{quote_ident(schema)}.{quote_ident(table)}"
            )
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
        "where table_catalog = ? order by 1, 2",
        [catalog],
    ).fetchall()
    tables = sorted({(s, t) for s, t, _ in cols})
    for schema, table in tables:
        if not kept_table(schema, table):
            problems.append(f"table {schema}.{table} is not allowed in a de-identified file")
    for schema, table, column in cols:
        if is_phi(column) or column.lower() in EXCLUDED_COLUMNS:
            problems.append(f"column {schema}.{table}.{column} is PHI or free text")
    views = con.execute(
        "select schema_name, view_name from duckdb_views() where not internal and database_name = ?", [catalog]
    ).fetchall()
    problems += [f"view {s}.{v}: a de-identified file holds tables only" for s, v in views]
    return problems


# ------------------------------------------------------------------------------------ value scan
# Column names cannot see an identifier inside a value (a task id 'rule:<patient_id>:2026', a refusal message
# quoting a row), so the twin's text VALUES are scanned for the identifiers of the raw patients: tokens for
# ids, member ids and emails, digit runs for phones, word n-grams for full names and street addresses.

# Ids shorter than this, or all-digit ids shorter than MIN_NUMERIC_ID, are not matched as tokens: "12" or
# "2025" occur in any text, and numeric ids of other entities collide with them (documented limit).
MIN_ID_LEN = 3
MIN_NUMERIC_ID = 8
ID_TOKEN_SPLIT = r"[^a-z0-9@._+-]+"  # separators between id / email tokens (':' splits task ids)
ID_TOKEN_TRIM = "._+-"
WORD = r"[a-z0-9]+"  # words of names and addresses
PHONE = r"\+?\d[\d().\s-]{5,}\d"
SEVEN_DIGITS = r"(\d\D*){7}"  # prefilter: a value with fewer digits cannot hold a phone
# Letters and digits run together 16 or more long (keyed pseudonyms, hashes, uuids) are blanked before phones are
# extracted: no phone has more than 15 digits (E.164), and a digit run inside a 16-hex pseudonym matched one of
# the patients' phones by chance in a 200-clinic build (documented limit: a phone glued to 16+ letters and digits)
LONG_TOKEN = r"[0-9A-Za-z]{16,}"


def _raw_tables(con, raw: str) -> dict[str, set[str]]:
    rows = con.execute(
        "select table_name, column_name from information_schema.columns "
        "where table_catalog = ? and table_schema = 'raw'",
        [raw],
    ).fetchall()
    out: dict[str, set[str]] = {}
    for t, c in rows:
        out.setdefault(t, set()).add(c.lower())
    return out


def _identifier_sql(raw: str, tables: dict[str, set[str]]) -> str:
    """SELECT kind, token over every identifier of the raw source (normalised like the value side)."""
    q = quote_ident(raw)
    parts = []
    ids = [
        f"select 'patient id' as kind, cast(patient_id as varchar) as v from {q}.raw.{quote_ident(t)}"
        for t, cols in sorted(tables.items())
        if "patient_id" in cols
    ]
    pat = tables.get("patients", set())
    if "member_id" in pat:
        ids.append(f"select 'member id', cast(member_id as varchar) from {q}.raw.patients")
    if "email" in pat:
        ids.append(f"select 'email', cast(email as varchar) from {q}.raw.patients")
    if ids:
        parts.append(
            f"select distinct kind, trim(lower(trim(v)), '{ID_TOKEN_TRIM}') as token from ({' union all '.join(ids)}) "
            f"where v is not null and length(trim(v)) >= {MIN_ID_LEN} "
            f"and (not regexp_full_match(trim(v), '[0-9]+') or length(trim(v)) >= {MIN_NUMERIC_ID})"
        )
    if "phone" in pat:
        parts.append(
            f"select distinct 'phone', regexp_replace(regexp_replace(cast(phone as varchar), '\\D', '', 'g'), "
            f"'^1(\\d{{10}})$', '\\1') from {q}.raw.patients where length(regexp_replace("
            f"cast(phone as varchar), '\\D', '', 'g')) >= 7"
        )
    grams = []
    if {"first_name", "last_name"} <= pat:
        grams += [
            f"select 'name', cast(first_name as varchar) || ' ' || cast(last_name as varchar) from {q}.raw.patients",
            f"select 'name', cast(last_name as varchar) || ' ' || cast(first_name as varchar) from {q}.raw.patients",
        ]
    if "address_line" in pat:
        grams.append(f"select 'address', cast(address_line as varchar) from {q}.raw.patients")
    if grams:
        # professionals are shown by name on purpose: a patient sharing a clinician's full name is not a leak
        pros = [
            f"select cast(first_name as varchar) || ' ' || cast(last_name as varchar) from {q}.raw.{quote_ident(t)}"
            for t in ("therapists", "referring_physicians")
            if {"first_name", "last_name"} <= tables.get(t, set())
        ]
        pro_filter = (
            (
                f" and token not in (select array_to_string(regexp_extract_all(lower(n), '{WORD}'), ' ') "
                f"from ({' union all '.join(pros)}) as p(n) where n is not null)"
            )
            if pros
            else ""
        )
        parts.append(
            f"select distinct kind, token from (select kind, "
            f"array_to_string(regexp_extract_all(lower(v), '{WORD}'), ' ') "
            f"as token from ({' union all '.join(grams)}) as g(kind, v) where v is not null) "
            f"where length(token) >= 5 and token like '% %'{pro_filter}"
        )
    return " union all ".join(parts) or "select null::varchar as kind, null::varchar as token where false"


TEXT_TYPES = ("VARCHAR", "JSON")


def identifier_problems(con: duckdb.DuckDBPyConnection, catalog: str, raw: str) -> list[str]:
    """Text columns of `catalog` holding a value that contains an identifier of a patient of the raw
    database attached as `raw`: "<table>.<column>: N values contain a patient <kind>" (never the value)."""
    tables = _raw_tables(con, raw)
    if not tables:
        return []
    cols = con.execute(
        "select table_schema, table_name, column_name from information_schema.columns where table_catalog = ? "
        "and (data_type in ('VARCHAR', 'JSON') or data_type like '%[]' or data_type like 'STRUCT%' "
        "or data_type like 'MAP%') order by 1, 2, 3",
        [catalog],
    ).fetchall()
    if not cols:
        return []
    c = quote_ident(catalog)
    con.execute(f"create or replace temp table _ptp_ident as {_identifier_sql(raw, tables)}")
    union = " union all ".join(
        f"select distinct '{s}.{t}.{col}' as loc, cast({quote_ident(col)} as varchar) as v "
        f"from {c}.{quote_ident(s)}.{quote_ident(t)} where {quote_ident(col)} is not null"
        for s, t, col in [(s.replace("'", "''"), t, col) for s, t, col in cols]
    )
    # loc literals are built from catalog names; quotes in them are doubled above
    con.execute(f"create or replace temp table _ptp_vals as {union}")
    sizes = [
        r[0]
        for r in con.execute(
            "select distinct length(token) - length(replace(token, ' ', '')) + 1 from _ptp_ident "
            "where kind in ('name', 'address')"
        ).fetchall()
    ]
    queries = [
        # ids, member ids, emails: whole tokens
        f"""select loc, i.kind, count(distinct v) as n
            from (select loc, v,
                         trim(unnest(regexp_split_to_array(lower(v), '{ID_TOKEN_SPLIT}')), '{ID_TOKEN_TRIM}') as tok
                  from _ptp_vals) as t
            join _ptp_ident as i on i.token = t.tok and i.kind in ('patient id', 'member id', 'email')
            group by all""",
        # phones: digit runs with separators, normalised to digits
        f"""select loc, 'phone' as kind, count(distinct v) as n
            from (select loc, v,
                         regexp_replace(regexp_replace(unnest(regexp_extract_all(
                             regexp_replace(v, '{LONG_TOKEN}', ' ', 'g'), '{PHONE}')), '\\D', '', 'g'),
                                                '^1(\\d{{10}})$', '\\1') as digits
                  from _ptp_vals where regexp_matches(v, '{SEVEN_DIGITS}')) as t
            join _ptp_ident as i on i.kind = 'phone' and i.token = t.digits
            group by all""",
    ]
    if sizes:
        queries.append(f"""
            select loc, i.kind, count(distinct v) as n
            from (select loc, v, array_to_string(w[pos:pos + n - 1], ' ') as gram
                  from (select loc, v, w, n, unnest(range(1, len(w) - n + 2)) as pos
                        from (select loc, v, regexp_extract_all(lower(v), '{WORD}') as w from _ptp_vals
                              where regexp_matches(v, '[A-Za-z0-9][^A-Za-z0-9]+[A-Za-z0-9]')) as x,
                             (select unnest({sorted(int(n) for n in sizes)}) as n) as ns
                        where len(w) >= n)) as t
            join _ptp_ident as i on i.kind in ('name', 'address') and i.token = t.gram
            group by all""")
    hits = []
    for q in queries:
        hits += con.execute(q).fetchall()
    con.execute("drop table if exists _ptp_vals")
    con.execute("drop table if exists _ptp_ident")
    return [f"{loc}: {n} value(s) contain a patient {kind}" for loc, kind, n in sorted(hits)]


def verify_deidentified(path: Path, raw_db: Path | None = None) -> None:
    """Raise if the file at `path` holds a PHI column, an excluded table or a view, or (given the raw
    database) a text value containing an identifier of one of its patients. The build refuses the swap."""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH {quote_literal(Path(path))} AS ptpulse_deid (READ_ONLY)")
        problems = deid_problems(con, "ptpulse_deid")
        if raw_db is not None and Path(raw_db).exists():
            con.execute(f"ATTACH {quote_literal(Path(raw_db))} AS ptpulse_raw (READ_ONLY)")
            problems += identifier_problems(con, "ptpulse_deid", "ptpulse_raw")
    finally:
        con.close()
    if problems:
        raise RuntimeError(
            f"{path} is not de-identified (fix the model or rule that writes these values): " + "; ".join(problems[:10])
        )
