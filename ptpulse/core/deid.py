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
member ids, emails, phones, full names, street addresses; `identifier_problems`). On an incremental night both
take the served twin as `base`: the write replaces only rows that changed, the value scan reads only rows the
base does not hold plus every value against identifiers loaded since the base was verified. For the incremental
marts the build also hands over their SCOPES (`scopes`: the keys dbt deleted and re-inserted tonight): those tables
are patched by key, and only their rows in scope are scanned, with no comparison of the whole table. Raw's
identifiers are cached between builds (`identifiers`, `_identifier_table`): a night reads only raw's new loads.
The app's privacy filter (app/lib/privacy.py) and SQL page (app/lib/sql_guard.py) import from here; this
module imports neither Streamlit nor pandas. (Named `deid`, not `privacy`: app/lib/privacy.py is the app's
per-role filter built on this rule.)
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import duckdb

from ptpulse.core.contracts import phi_columns
from ptpulse.core.sql import RAW_LOAD_IDENTITY, quote_ident, quote_literal

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
SCOPE_ALIAS = "ptpulse_scope"  # the file of the incremental marts' scopes (ptpulse/build/incremental.py)
IDENT_ALIAS = "ptpulse_ident"  # the cache of raw's identifiers (`_identifier_table`)


def write_deidentified(
    source: Path,
    target: Path,
    threads: int | None = None,
    config: Mapping[str, str | bool] | None = None,
    base: Path | None = None,
    scopes: Path | None = None,
) -> dict:
    """Write `target` (a new DuckDB file) holding de-identified copies of `source`'s kept tables.

    `source` is attached READ_ONLY; every kept table (or view, materialised) is created as a table with
    only its kept columns. `target` must not exist. With `base` (the served, verified twin) the night costs
    what changed: `target` starts as a copy of `base`, and a table whose kept columns and types are the same
    gets only its changed rows replaced (`_apply_delta`); any other table is written whole, and tables gone
    from `source` are dropped. The content equals a full write (row order aside).
    `scopes` (with `base`): a DuckDB file whose table `<schema>.<table>` lists, by its columns, the keys of the
    source table that were deleted and written again since `base` was written; every other row is as `base`
    holds it (dbt's incremental marts: their scope). Such a table is patched by key (`_apply_scope`) instead of
    comparing every row; if its row count then differs from the source (a row outside the scope changed), it
    falls back to the comparison.
    Returns {"tables", "seconds", "mode": "full" | "delta", "rewritten": [...], "updated": {table: rows},
    "unchanged": [...], "dropped": [...], "scoped": [...]} (tables as "schema.table"; rows: deleted plus
    inserted; scoped: the tables patched by key, whose rows outside the scope are base's).
    """
    t0 = time.perf_counter()
    target = Path(target)
    if target.exists():
        raise FileExistsError(target)
    delta = base is not None and Path(base).exists() and not Path(str(base) + ".wal").exists()
    if delta:
        shutil.copyfile(base, target)  # the served twin is only read: a crash leaves it served
    con = duckdb.connect(str(target), config=dict(config or {}))  # the build passes its memory budget
    report: dict = {
        "mode": "delta" if delta else "full",
        "rewritten": [],
        "updated": {},
        "unchanged": [],
        "dropped": [],
        "scoped": [],
    }
    try:
        if threads:
            con.execute(f"set threads = {int(threads)}")
        con.execute(f"ATTACH {quote_literal(Path(source))} AS {SOURCE_ALIAS} (READ_ONLY)")
        target_db = con.execute("select current_database()").fetchone()[0]
        have = _table_columns(con, target_db) if delta else {}
        by_key = _scopes(con, scopes) if delta else {}
        written = 0
        for (schema, table), columns in _table_columns(con, SOURCE_ALIAS).items():
            if not kept_table(schema, table):
                continue
            kept = set(kept_columns([c for c, _ in columns]))
            keep = [(c, t) for c, t in columns if c in kept]
            if not keep:
                continue
            name = f"{schema}.{table}"
            dest = f"{quote_ident(target_db)}.{quote_ident(schema)}.{quote_ident(table)}"
            src = f"{SOURCE_ALIAS}.{quote_ident(schema)}.{quote_ident(table)}"
            cols = ", ".join(quote_ident(c) for c, _ in keep)
            written += 1
            if have.pop((schema, table), None) == keep:
                scope, keys = by_key.get((schema, table), (None, []))
                if keys and set(keys) <= kept and (changed := _apply_scope(con, src, dest, keep, scope, keys)) >= 0:
                    report["scoped"].append(name)
                else:
                    changed = _apply_delta(con, src, dest, cols)
                if changed:
                    report["updated"][name] = changed
                else:
                    report["unchanged"].append(name)
                continue
            con.execute(f"create schema if not exists {quote_ident(target_db)}.{quote_ident(schema)}")
            con.execute(f"drop table if exists {dest}")
            con.execute(f"create table {dest} as select {cols} from {src}")
            report["rewritten"].append(name)
        for schema, table in have:  # in the served twin, no longer in the source (or no longer kept)
            con.execute(f"drop table {quote_ident(target_db)}.{quote_ident(schema)}.{quote_ident(table)}")
            report["dropped"].append(f"{schema}.{table}")
        if delta:  # a full write creates a schema only for a table it writes: so does a delta
            for (schema,) in con.execute(
                "select schema_name from duckdb_schemas() where database_name = ? and not internal "
                "and schema_name not in (select schema_name from duckdb_tables() where database_name = ?)",
                [target_db, target_db],
            ).fetchall():
                con.execute(f"drop schema {quote_ident(target_db)}.{quote_ident(schema)}")
        con.execute(f"detach {SOURCE_ALIAS}")
        if by_key:
            con.execute(f"detach {SCOPE_ALIAS}")
        con.execute("checkpoint")
    finally:
        con.close()
    return {"tables": written, "seconds": time.perf_counter() - t0, **report}


def _table_columns(con: duckdb.DuckDBPyConnection, catalog: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """{(schema, table): [(column, data type), ...] in column order} of every table and view of `catalog`."""
    rows = con.execute(
        "select table_schema, table_name, list(column_name order by ordinal_position), "
        "list(data_type order by ordinal_position) from information_schema.columns "
        "where table_catalog = ? group by all order by 1, 2",
        [catalog],
    ).fetchall()
    return {(s, t): list(zip(names, types, strict=True)) for s, t, names, types in rows}


def _apply_delta(con: duckdb.DuckDBPyConnection, src: str, dest: str, cols: str) -> int:
    """Make `dest` hold the same multiset of rows as `select cols from src`, touching only rows that differ:
    rows are keyed by DuckDB's 64-bit hash of all columns, and every hash whose count differs between the two
    sides is deleted from `dest` and inserted again from `src` (all its copies). Set-based, one scan of each
    side. Returns the rows deleted plus the rows inserted (0: the table was left as it was)."""
    con.execute(
        f"create or replace temp table _ptp_changed as select h from "
        f"(select hash({cols}) as h, count(*) as n from {dest} group by all) as o "
        f"full join (select hash({cols}) as h, count(*) as n from {src} group by all) as s using (h) "
        f"where o.n is distinct from s.n"
    )
    deleted = inserted = 0
    if con.execute("select count(*) from _ptp_changed").fetchone()[0]:
        deleted = con.execute(f"delete from {dest} where hash({cols}) in (select h from _ptp_changed)").fetchone()[0]
        inserted = con.execute(
            f"insert into {dest} select {cols} from {src} where hash({cols}) in (select h from _ptp_changed)"
        ).fetchone()[0]
    con.execute("drop table _ptp_changed")
    return int(deleted) + int(inserted)


def _scopes(con: duckdb.DuckDBPyConnection, scopes: Path | None) -> dict[tuple[str, str], tuple[str, list[str]]]:
    """Attach the scopes file as SCOPE_ALIAS; {(schema, table): (its scope relation, key columns)}. Empty without
    the file."""
    if scopes is None or not Path(scopes).exists():
        return {}
    con.execute(f"ATTACH {quote_literal(Path(scopes))} AS {SCOPE_ALIAS} (READ_ONLY)")
    return {
        (s, t): (f"{SCOPE_ALIAS}.{quote_ident(s)}.{quote_ident(t)}", [c for c, _ in cols])
        for (s, t), cols in _table_columns(con, SCOPE_ALIAS).items()
    }


def _key_match(keys: list[str], row: str = "r", scope: str = "s") -> str:
    return " and ".join(f"{row}.{quote_ident(k)} = {scope}.{quote_ident(k)}" for k in keys)


def _apply_scope(
    con: duckdb.DuckDBPyConnection, src: str, dest: str, keep: list[tuple[str, str]], scope: str, keys: list[str]
) -> int:
    """Patch `dest` (a copy of the base) by key: delete its rows whose key is in `scope`, insert `src`'s rows whose
    key is. Exact when every other source row is as the base holds it, which the row count confirms for what it
    can see (a row added outside the scope). Returns rows deleted plus inserted; -1 when the counts differ after
    the patch (rolled back: the caller compares the whole table instead)."""
    cols = ", ".join(f"r.{quote_ident(c)}" for c, _ in keep)
    con.execute("begin transaction")
    deleted = con.execute(f"delete from {dest} as r using {scope} as s where {_key_match(keys)}").fetchone()[0]
    inserted = con.execute(
        f"insert into {dest} select {cols} from {src} as r semi join {scope} as s on {_key_match(keys)}"
    ).fetchone()[0]
    if con.execute(f"select (select count(*) from {dest}) = (select count(*) from {src})").fetchone()[0]:
        con.execute("commit")
        return int(deleted) + int(inserted)
    con.execute("rollback")
    return -1


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
# ids, member ids and emails, digit runs for phones, word n-grams for full names and street addresses, a
# surname beside that patient's birth date; and, whoever it names, any date written as a date of birth.

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
# Dates as people write them: 1939-07-06, 07/06/1939, 7.6.39, July 6, 1939, 6 Jul 1939 (numbers: month / day or
# day / month, both read; a two-digit year as 19yy and 20yy). MON_DAY's groups are month, day, year; DAY_MON's day,
# month, year.
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
MONTH = rf"(?:{'|'.join(MONTHS)})[a-z]*\.?"
NUM_DATE = r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})"
MON_DAY = rf"({MONTH})\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})"
DAY_MON = rf"(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({MONTH}),?\s+(\d{{4}})"
DATE = rf"\b(?:{NUM_DATE}|{MON_DAY}|{DAY_MON})\b"
# A date written as a date of birth ("DOB 07/06/1939", "born July 6, 1939", "1939-07-06 (d.o.b.)"): refused in a
# twin value whether or not it is a patient's, since only a person's text says it. Bare dates are not: the work
# queue's reasons quote visit and referral dates ("Missed the initial evaluation on 2026-10-26"), and a child born
# that day (pediatric therapy) would stop the build; a bare date counts beside its patient's surname (above).
DOB_WORD = r"\b(?:dob|d\.\s?o\.\s?b\.?|date\s+of\s+birth|birth\s?date|birthday|born(?:\s+on)?)"
MIN_SURNAME_WORD = 2  # Li, Ng, Wu
DOB_NEAR = rf"(?i)(?:{DOB_WORD}[\s:;,=#(-]{{0,5}}{DATE}|{DATE}[\s,]{{0,3}}\(?{DOB_WORD})"


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


def _identifier_sql(raw: str, tables: dict[str, set[str]], after_load: int | None = None) -> str:
    """SELECT kind, token, first_load over every identifier of the raw source (normalised like the value side).
    first_load is the lowest raw `_load_id` the token came from (NULL when a row has none): the tokens of loads
    after the one a served twin was verified against are the only ones its values were not checked for.
    `after_load`: only rows of loads after it (and rows without a load id), for the cache (`_identifier_table`).
    Professionals' names are not removed here: that happens when the table is read (`_professionals_sql`)."""
    q = quote_ident(raw)

    def load(t: str) -> str:
        return "_load_id" if "_load_id" in tables.get(t, set()) else "null::bigint"

    def rows(t: str) -> str:
        """raw.<t>, limited to the loads after `after_load` when it has load ids."""
        rel = f"{q}.raw.{quote_ident(t)}"
        if after_load is None or "_load_id" not in tables.get(t, set()):
            return rel
        return f"(select * from {rel} where _load_id > {int(after_load)} or _load_id is null)"

    def first(col: str) -> str:
        return f"case when bool_or({col} is null) then null else min({col}) end as first_load"

    parts = []
    ids = [
        f"select 'patient id' as kind, cast(patient_id as varchar) as v, {load(t)} as l from {rows(t)}"
        for t, cols in sorted(tables.items())
        if "patient_id" in cols
    ]
    pat = tables.get("patients", set())
    if "member_id" in pat:
        ids.append(f"select 'member id', cast(member_id as varchar), {load('patients')} from {rows('patients')}")
    if "email" in pat:
        ids.append(f"select 'email', cast(email as varchar), {load('patients')} from {rows('patients')}")
    if ids:  # distinct values first (a patient id recurs on every event row), then normalise those
        distinct = (
            f"select kind, v, bool_or(l is null) as no_load, min(l) as l from ({' union all '.join(ids)}) "
            "as u(kind, v, l) where v is not null group by kind, v"
        )
        parts.append(
            f"select kind, trim(lower(trim(v)), '{ID_TOKEN_TRIM}') as token, "
            "case when bool_or(no_load) then null else min(l) end as first_load "
            f"from ({distinct}) where length(trim(v)) >= {MIN_ID_LEN} "
            f"and (not regexp_full_match(trim(v), '[0-9]+') or length(trim(v)) >= {MIN_NUMERIC_ID}) group by all"
        )
    if "phone" in pat:
        parts.append(
            f"select 'phone' as kind, regexp_replace(regexp_replace(cast(phone as varchar), '\\D', '', 'g'), "
            f"'^1(\\d{{10}})$', '\\1') as token, {first('_l')} "
            f"from (select *, {load('patients')} as _l from {rows('patients')}) where length(regexp_replace("
            f"cast(phone as varchar), '\\D', '', 'g')) >= 7 group by all"
        )
    if {"last_name", "birth_date"} <= pat:  # each word of a surname with that patient's birth date, as ISO
        parts.append(
            f"select 'surname and birth date' as kind, w || '|' || d as token, {first('_l')} "
            f"from (select unnest(regexp_extract_all(lower(cast(last_name as varchar)), '{WORD}')) as w, "
            f"strftime(try_cast(birth_date as date), '%Y-%m-%d') as d, {load('patients')} as _l "
            f"from {rows('patients')}) where d is not null and length(w) >= {MIN_SURNAME_WORD} group by all"
        )
    grams = []
    if {"first_name", "last_name"} <= pat:
        lp = load("patients")
        grams += [
            f"select 'name', cast(first_name as varchar) || ' ' || cast(last_name as varchar), {lp} "
            f"from {rows('patients')}",
            f"select 'name', cast(last_name as varchar) || ' ' || cast(first_name as varchar), {lp} "
            f"from {rows('patients')}",
        ]
    if "address_line" in pat:
        grams.append(f"select 'address', cast(address_line as varchar), {load('patients')} from {rows('patients')}")
    if grams:
        parts.append(
            f"select kind, token, {first('l')} from (select kind, "
            f"array_to_string(regexp_extract_all(lower(v), '{WORD}'), ' ') "
            f"as token, l from ({' union all '.join(grams)}) as g(kind, v, l) where v is not null) "
            f"where length(token) >= 5 and token like '% %' group by all"
        )
    return (
        " union all ".join(parts)
        or "select null::varchar as kind, null::varchar as token, null::bigint as first_load where false"
    )


def _professionals_sql(raw: str, tables: dict[str, set[str]]) -> str | None:
    """SELECT of the full names of therapists and referring physicians, as name tokens. Professionals are shown
    by name on purpose: a patient sharing a clinician's full name is not a leak, so those tokens are not checked.
    Applied when the identifier table is read, not cached: a clinician hired tonight is known tonight."""
    q = quote_ident(raw)
    pros = [
        f"select cast(first_name as varchar) || ' ' || cast(last_name as varchar) from {q}.raw.{quote_ident(t)}"
        for t in ("therapists", "referring_physicians")
        if {"first_name", "last_name"} <= tables.get(t, set())
    ]
    if not pros:
        return None
    return (
        f"select array_to_string(regexp_extract_all(lower(n), '{WORD}'), ' ') "
        f"from ({' union all '.join(pros)}) as p(n) where n is not null"
    )


# Provider ids as the twin shows them on purpose: referring physicians' ids and NPIs, therapists' and clinics' NPIs
# (10 digits, like a phone). With millions of patients some NPIs equal a patient's phone by chance (5 of them at
# 900 clinics, which stopped the build), so a phone that equals a provider id is not checked (documented limit: a
# patient whose phone is also an NPI).
PROVIDER_IDS = (
    ("referring_physicians", "physician_id"),
    ("referring_physicians", "npi"),
    ("therapists", "npi"),
    ("clinics", "npi"),
)


def _provider_ids_sql(raw: str, tables: dict[str, set[str]]) -> str | None:
    """SELECT of the provider ids (PROVIDER_IDS) as digit tokens; None when raw has none. Applied when the
    identifier table is read, not cached, like the professionals' names."""
    q = quote_ident(raw)
    ids = [
        f"select regexp_replace(cast({quote_ident(c)} as varchar), '\\D', '', 'g') from {q}.raw.{quote_ident(t)}"
        for t, c in PROVIDER_IDS
        if c in tables.get(t, set())
    ]
    if not ids:
        return None
    return f"select d from ({' union all '.join(ids)}) as p(d) where length(d) >= 7"


def _last_load(con: duckdb.DuckDBPyConnection, raw: str, tables: dict[str, set[str]]) -> tuple | None:
    """(load_id, sha256, started_at) of the raw database's last load; None without a load table or a load."""
    if not {"load_id", "sha256", "started_at"} <= tables.get("_loads", set()):
        return None
    return con.execute(
        f"select {RAW_LOAD_IDENTITY} from {quote_ident(raw)}.raw._loads order by load_id desc limit 1"
    ).fetchone()


def _cache_state(con: duckdb.DuckDBPyConnection) -> tuple | None:
    """(rule, load_id, sha256, started_at) the attached identifier cache was written under; None for a new file."""
    has = con.execute(
        "select count(*) from duckdb_tables() where database_name = ? and table_name = 'identifier_state'",
        [IDENT_ALIAS],
    ).fetchone()[0]
    return con.execute(f"select * from {IDENT_ALIAS}.main.identifier_state").fetchone() if has else None


def _load_in_raw(con: duckdb.DuckDBPyConnection, raw: str, load: tuple) -> bool:
    """Whether raw still holds this load (same id, file hash and start): the same raw file, not a restored one."""
    sql = (
        f"select count(*) from {quote_ident(raw)}.raw._loads where load_id = ? and sha256 is not distinct from ? "
        "and cast(started_at as varchar) is not distinct from ?"
    )
    return con.execute(sql, list(load)).fetchone()[0] == 1


def _attach_cache(con: duckdb.DuckDBPyConnection, cache: Path, fresh: bool = False) -> None:
    """Attach the identifier cache as IDENT_ALIAS; `fresh`: delete the file (and any WAL) first."""
    con.execute(f"detach database if exists {IDENT_ALIAS}")
    if fresh:
        for part in (cache, Path(str(cache) + ".wal")):
            part.unlink(missing_ok=True)
    con.execute(f"ATTACH {quote_literal(cache)} AS {IDENT_ALIAS}")


def _extend_cache(con: duckdb.DuckDBPyConnection, raw: str, tables: dict[str, set[str]], after: int) -> int:
    """Add to the cache the identifiers of raw rows in loads after `after`; returns the tokens added."""
    cached = f"{IDENT_ALIAS}.main.identifiers"
    con.execute(f"create or replace temp table _ptp_ident_added as {_identifier_sql(raw, tables, after_load=after)}")
    added = con.execute(
        f"insert into {cached} select * from _ptp_ident_added as a where not exists "
        f"(select 1 from {cached} as c where c.kind = a.kind and c.token = a.token)"
    ).fetchone()[0]
    # rows without a load id are re-read every time (first_load NULL: always checked as new)
    con.execute(
        f"update {cached} as c set first_load = null from _ptp_ident_added as a "
        "where a.first_load is null and c.kind = a.kind and c.token = a.token and c.first_load is not null"
    )
    con.execute("drop table _ptp_ident_added")
    return added


def _refresh_cache(
    con: duckdb.DuckDBPyConnection, raw: str, tables: dict[str, set[str]], last: tuple, stats: dict
) -> None:
    """Bring the attached cache to raw's `last` load: extended when it holds an earlier load of this raw file under
    this rule ("cached"), else rebuilt from all of raw ("rebuilt"); `stats` says which."""
    state = _cache_state(con)
    if state is not None and state[0] == rule_fingerprint() and _load_in_raw(con, raw, state[1:]):
        stats["identifiers_added"] = _extend_cache(con, raw, tables, state[1])
        stats["identifiers"] = "cached"
    else:
        con.execute(f"create or replace table {IDENT_ALIAS}.main.identifiers as {_identifier_sql(raw, tables)}")
        stats["identifiers"] = "rebuilt"
    con.execute(
        f"create or replace table {IDENT_ALIAS}.main.identifier_state as "
        "select ?::varchar as rule, ?::bigint as load_id, ?::varchar as sha256, ?::varchar as started_at",
        [rule_fingerprint(), *last],
    )
    con.execute(f"checkpoint {IDENT_ALIAS}")  # the next build copies the file alone, never a .wal


def _identifier_table(
    con: duckdb.DuckDBPyConnection, raw: str, tables: dict[str, set[str]], cache: Path | None, stats: dict
) -> None:
    """Create temp table `_ptp_ident` (kind, token, first_load): every identifier of raw's patients, minus the
    professionals' names.

    `cache`: a DuckDB file (the build copies the served build's into its own folder) holding the unfiltered
    identifiers up to the raw load it records. raw is append-only (a change is a new version, a deletion a
    tombstone: ingestion/profiles.py), so when that load is still in raw (same id, sha256 and start) and the rule
    is the same, only rows of later loads are tokenised and added: the table equals a full computation (a cached
    token's first load is at or before the recorded load, so no later row lowers it). Otherwise, or when the file
    is damaged, it is rebuilt. The file holds patient identifiers: it lives beside the analytics file (PHI) and
    never in the twin."""
    last = _last_load(con, raw, tables)
    if cache is None or last is None:
        con.execute(f"create or replace temp table _ptp_ident_all as {_identifier_sql(raw, tables)}")
        source, stats["identifiers"] = "_ptp_ident_all", "full"
    else:
        cache, source = Path(cache), f"{IDENT_ALIAS}.main.identifiers"
        try:
            _attach_cache(con, cache)
            _refresh_cache(con, raw, tables, last, stats)
        except duckdb.Error:  # a damaged copy is only a cache: start it again
            _attach_cache(con, cache, fresh=True)
            _refresh_cache(con, raw, tables, last, stats)
    shown = []  # identifiers the twin shows on purpose as someone else's: professionals' names, provider ids
    if pros := _professionals_sql(raw, tables):
        shown.append(f"(kind in ('name', 'address') and token in ({pros}))")
    if providers := _provider_ids_sql(raw, tables):
        shown.append(f"(kind = 'phone' and token in ({providers}))")
    keep = f" where not ({' or '.join(shown)})" if shown else ""
    con.execute(f"create or replace temp table _ptp_ident as select * from {source}{keep}")
    con.execute(f"detach database if exists {IDENT_ALIAS}")
    con.execute("drop table if exists _ptp_ident_all")


TEXT_TYPES = ("VARCHAR", "JSON")
_TEXT_COLUMNS = (
    "select table_schema, table_name, column_name, data_type from information_schema.columns where table_catalog = ? "
    "and (data_type in ('VARCHAR', 'JSON') or data_type like '%[]' or data_type like 'STRUCT%' "
    "or data_type like 'MAP%') order by 1, 2, ordinal_position"
)


def _values_sql(rel: str, loc_prefix: str, columns: list[str]) -> str:
    """SELECT DISTINCT loc, v over the text columns of relation `rel` (loc = '<schema>.<table>.<column>')."""
    return " union all ".join(
        f"select distinct '{(loc_prefix + col).replace(chr(39), chr(39) * 2)}' as loc, "
        f"cast({quote_ident(col)} as varchar) as v from {rel} where {quote_ident(col)} is not null"
        for col in columns
    )


def _dates_sql(vals: str) -> str:
    """SELECT loc, v, y, mo, d: every date written in a value of table `vals` (DATE), as text parts of each reading
    (a numeric day and month both ways, a two-digit year in both centuries); invalid readings match nothing."""
    dated = f"select loc, v from {vals} where regexp_matches(v, '(?i){DATE}')"
    num = (
        f"select loc, v, string_split_regex(m, '[-/.]') as p from (select loc, v, "
        f"unnest(regexp_extract_all(v, '\\b(?:{NUM_DATE})\\b')) as m from ({dated}))"
    )
    months = "[" + ", ".join(f"'{m}'" for m in MONTHS) + "]"

    def named(pattern: str, groups: str) -> str:  # month-name dates: the groups by name, the month as its number
        return (
            f"select loc, v, s.year as y, cast(list_position({months}, left(lower(s.mon), 3)) as varchar) as mo, "
            f"s.day as d from (select loc, v, regexp_extract(m, '(?i){pattern}', {groups}) as s from (select loc, v, "
            f"unnest(regexp_extract_all(v, '(?i)\\b{pattern}\\b')) as m from ({dated})))"
        )

    return " union all ".join(
        [
            f"select loc, v, p[1] as y, p[2] as mo, p[3] as d from ({num}) where length(p[1]) = 4",
            "select loc, v, y, md[1] as mo, md[2] as d from (select loc, v, y, unnest([[p[1], p[2]], [p[2], p[1]]]) "
            "as md from (select loc, v, p, unnest(case when length(p[3]) = 4 then [p[3]] "
            f"else ['19' || p[3], '20' || p[3]] end) as y from ({num}) where length(p[1]) <= 2))",
            named(MON_DAY, "['mon', 'day', 'year']"),
            named(DAY_MON, "['day', 'mon', 'year']"),
        ]
    )


def _hits_sql(con: duckdb.DuckDBPyConnection, vals: str, ident: str, patterns: bool = True) -> list[str]:
    """Queries yielding (loc, kind, v) for each value of table `vals` holding an identifier of table `ident`;
    a query whose kinds `ident` lacks is left out (it would tokenise every value for nothing). `patterns`: also
    the values that hold a date written as a date of birth (DOB_NEAR: no identifier needed)."""
    kinds = {k for (k,) in con.execute(f"select distinct kind from {ident}").fetchall()}
    queries = []
    if patterns:
        queries.append(
            f"select distinct loc, 'date of birth' as kind, v from {vals} where regexp_matches(v, '{DOB_NEAR}')"
        )
    if "surname and birth date" in kinds:  # a word of the value and a date of it, as the identifier's token
        queries.append(f"""select distinct loc, i.kind, v
            from (select loc, v, unnest(regexp_extract_all(lower(v), '{WORD}')) || '|' || y || '-' || lpad(mo, 2, '0')
                         || '-' || lpad(d, 2, '0') as tok
                  from ({_dates_sql(vals)})) as t
            join {ident} as i on i.kind = 'surname and birth date' and i.token = t.tok""")
    if kinds & {"patient id", "member id", "email"}:  # ids, member ids, emails: whole tokens
        queries.append(f"""select distinct loc, i.kind, v
            from (select loc, v,
                         trim(unnest(regexp_split_to_array(lower(v), '{ID_TOKEN_SPLIT}')), '{ID_TOKEN_TRIM}') as tok
                  from {vals}) as t
            join {ident} as i on i.token = t.tok and i.kind in ('patient id', 'member id', 'email')""")
    if "phone" in kinds:  # phones: digit runs with separators, normalised to digits
        queries.append(f"""select distinct loc, 'phone' as kind, v
            from (select loc, v,
                         regexp_replace(regexp_replace(unnest(regexp_extract_all(
                             regexp_replace(v, '{LONG_TOKEN}', ' ', 'g'), '{PHONE}')), '\\D', '', 'g'),
                                                '^1(\\d{{10}})$', '\\1') as digits
                  from {vals} where regexp_matches(v, '{SEVEN_DIGITS}')) as t
            join {ident} as i on i.kind = 'phone' and i.token = t.digits""")
    sizes = [
        r[0]
        for r in con.execute(
            f"select distinct length(token) - length(replace(token, ' ', '')) + 1 from {ident} "
            "where kind in ('name', 'address')"
        ).fetchall()
    ]
    if sizes:  # full names and street addresses: word n-grams
        queries.append(f"""
            select distinct loc, i.kind, v
            from (select loc, v, array_to_string(w[pos:pos + n - 1], ' ') as gram
                  from (select loc, v, w, n, unnest(range(1, len(w) - n + 2)) as pos
                        from (select loc, v, regexp_extract_all(lower(v), '{WORD}') as w from {vals}
                              where regexp_matches(v, '[A-Za-z0-9][^A-Za-z0-9]+[A-Za-z0-9]')) as x,
                             (select unnest({sorted(int(n) for n in sizes)}) as n) as ns
                        where len(w) >= n)) as t
            join {ident} as i on i.kind in ('name', 'address') and i.token = t.gram""")
    return queries


def identifier_problems(
    con: duckdb.DuckDBPyConnection,
    catalog: str,
    raw: str,
    base: str | None = None,
    since_load_id: int | None = None,
    stats: dict | None = None,
    scoped: Mapping[tuple[str, str], tuple[str, list[str]]] | None = None,
    identifiers: Path | None = None,
) -> list[str]:
    """Text columns of `catalog` holding a value that contains an identifier of a patient of the raw
    database attached as `raw`: "<table>.<column>: N values contain a patient <kind>" (never the value).

    With `base` (an attached twin that passed this check against raw up to load `since_load_id`), the scan is
    the night's: rows of `catalog` not in `base`'s same table (EXCEPT over the text columns: exact, no hash)
    against every identifier, and, only if raw holds identifiers first loaded after `since_load_id`, every value
    against those. Both together cover every value against every identifier, as a full scan does. `scoped`:
    {(schema, table): (scope relation, key columns)} for tables written by key (`write_deidentified` "scoped"):
    their rows outside the scope are base's, so only rows in the scope are read, with no EXCEPT. `stats` (a
    dict) receives what was scanned. `identifiers`: the cache file of raw's identifiers (`_identifier_table`)."""
    stats = stats if stats is not None else {}
    tables = _raw_tables(con, raw)
    if not tables:
        return []
    cols = con.execute(_TEXT_COLUMNS, [catalog]).fetchall()
    if not cols:
        return []
    c = quote_ident(catalog)
    _identifier_table(con, raw, tables, identifiers, stats)
    by_table: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for s, t, col, typ in cols:
        by_table.setdefault((s, t), []).append((col, typ))
    base_cols = {}
    if base is not None:
        for s, t, col, typ in con.execute(_TEXT_COLUMNS, [base]).fetchall():
            base_cols.setdefault((s, t), []).append((col, typ))
    con.execute("create or replace temp table _ptp_vals (loc varchar, v varchar)")
    for (s, t), text in by_table.items():
        rel = f"{c}.{quote_ident(s)}.{quote_ident(t)}"
        names = [col for col, _ in text]
        if base is not None and base_cols.get((s, t)) == text:  # only rows the verified twin does not hold
            listed = ", ".join(quote_ident(n) for n in names)
            if (s, t) in (scoped or {}):  # patched by key: the rows in the scope hold everything new
                scope, keys = scoped[(s, t)]
                rows = f"select {', '.join(f'r.{quote_ident(n)}' for n in names)} from {rel} as r "
                rows += f"semi join {scope} as s on {_key_match(keys)}"
            else:
                rows = f"select {listed} from {rel} except "
                rows += f"select {listed} from {quote_ident(base)}.{quote_ident(s)}.{quote_ident(t)}"
            con.execute(f"create or replace temp table _ptp_rows as {rows}")  # each column's select reads it
            rel = "_ptp_rows"
        con.execute(f"insert into _ptp_vals {_values_sql(rel, f'{s}.{t}.', names)}")
    stats["values_scanned"] = con.execute("select count(*) from _ptp_vals").fetchone()[0]
    passes = [("_ptp_vals", "_ptp_ident")]
    if base is not None:
        con.execute(
            "create or replace temp table _ptp_ident_new as select * from _ptp_ident "
            "where first_load is null or first_load > ?",
            [since_load_id if since_load_id is not None else -1],
        )
        stats["new_identifiers"] = con.execute("select count(*) from _ptp_ident_new").fetchone()[0]
        if stats["new_identifiers"]:  # the verified values were not checked for these: all values, these tokens
            con.execute(
                "create or replace temp table _ptp_vals_all as "
                + " union all ".join(
                    _values_sql(f"{c}.{quote_ident(s)}.{quote_ident(t)}", f"{s}.{t}.", [col for col, _ in text])
                    for (s, t), text in by_table.items()
                )
            )
            stats["values_rescanned"] = con.execute("select count(*) from _ptp_vals_all").fetchone()[0]
            passes.append(("_ptp_vals_all", "_ptp_ident_new"))
    # the date-of-birth pattern needs no identifier: the first pass reads every value it must
    queries = [q for n, (vals, ident) in enumerate(passes) for q in _hits_sql(con, vals, ident, patterns=n == 0)]
    hits = (
        con.execute(
            f"select loc, kind, count(distinct v) from ({' union '.join(queries)}) group by all order by all"
        ).fetchall()
        if queries
        else []
    )
    for table in ("_ptp_rows", "_ptp_vals", "_ptp_vals_all", "_ptp_ident", "_ptp_ident_new"):
        con.execute(f"drop table if exists {table}")
    return [f"{loc}: {n} value(s) contain a patient {kind}" for loc, kind, n in hits]


def rule_fingerprint() -> str:
    """sha256 of this rule (this module's source and the PHI columns the contracts flag): a twin verified under
    another rule is never the base of a night's delta check (`verify_deidentified(base=...)`)."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update("\0".join(sorted(PHI_COLUMNS)).encode())
    return h.hexdigest()


def verify_deidentified(
    path: Path,
    raw_db: Path | None = None,
    base: Path | None = None,
    since_load_id: int | None = None,
    scopes: Path | None = None,
    scoped: Iterable[str] = (),
    identifiers: Path | None = None,
    config: Mapping[str, str | bool] | None = None,
) -> dict:
    """Raise if the file at `path` holds a PHI column, an excluded table or a view, or (given the raw
    database) a text value containing an identifier of one of its patients. The build refuses the swap.

    `base`: a twin that passed this check (same `rule_fingerprint()`) against raw up to load `since_load_id`,
    e.g. the served one; then the value scan covers only what `path` holds beyond it plus every value against
    identifiers loaded since (`identifier_problems`); `scoped` ("schema.table" names `write_deidentified` patched
    by key from the file `scopes`): of those, only the rows in the scope. The name checks always read the whole
    file. `identifiers`: a DuckDB file caching raw's identifiers between builds (`_identifier_table`), updated in
    place. `config`: the connection's `memory_limit` and spill folder (the build passes its budget: without one
    DuckDB takes 80% of the machine, and a 900-clinic full scan held 20 GB).
    Returns what was scanned: {"mode": "full" | "delta", "values_scanned", ...}."""
    stats: dict = {"mode": "full"}
    con = duckdb.connect(config=dict(config or {}))
    try:
        con.execute(f"ATTACH {quote_literal(Path(path))} AS ptpulse_deid (READ_ONLY)")
        problems = deid_problems(con, "ptpulse_deid")
        if raw_db is not None and Path(raw_db).exists():
            con.execute(f"ATTACH {quote_literal(Path(raw_db))} AS ptpulse_raw (READ_ONLY)")
            against, by_key = None, {}
            if base is not None and since_load_id is not None and Path(base).exists():
                con.execute(f"ATTACH {quote_literal(Path(base))} AS ptpulse_base (READ_ONLY)")
                against, stats["mode"] = "ptpulse_base", "delta"
                patched = {tuple(name.split(".", 1)) for name in scoped}
                by_key = {t: v for t, v in (_scopes(con, scopes) if patched else {}).items() if t in patched}
            problems += identifier_problems(
                con,
                "ptpulse_deid",
                "ptpulse_raw",
                against,
                since_load_id,
                stats,
                scoped=by_key,
                identifiers=identifiers,
            )
    finally:
        con.close()
    if problems:
        raise RuntimeError(
            f"{path} is not de-identified (fix the model or rule that writes these values): " + "; ".join(problems[:10])
        )
    return stats
