"""Contract -> SQL. Every rule of a contract becomes one branch of a single CASE expression.

Validation runs in DuckDB over whole columns (never a Python loop per row): the staged file is
all-VARCHAR, and for each row the CASE returns the number of the FIRST broken check, or NULL when the row
is valid. Checks are ordered by rule (required, type, accepted, pattern, min/max), then by the column order
of the contract, so a row reports the most basic problem first.

A column's code list (`codes: carc`, ingestion/codes/<name>.csv) is NOT a quarantine rule: a real file carries
codes newer than our list (a payer's new CARC, a new CPT code), and dropping the row would lose money from every
figure. The row lands; dbt flags it against the same CSV (a seed) in marts.data_quality_warnings, which Data
health counts as a warning.

Identifiers come only from contracts (checked to be lower_snake_case when loaded) and are quoted anyway;
literal values (accepted lists, patterns, bounds) also come only from contracts and go through `lit`.
Nothing from a source file is ever formatted into SQL, and no value is ever written into a quarantine
detail (details reach the data-quality pages and the de-identified file; the row itself is in `record`).

Values are trimmed of surrounding whitespace (spaces, tabs, line breaks, no-break spaces) when staged, per
the contract's `trim` (default on), so ` T1 ` is the key `T1` and a tab-only field is empty (= missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ptpulse.core.contracts import TYPE_FORMATS, Column, Contract, DaysFromToday
from ptpulse.core.sql import quote_ident

# strptime formats accepted for timestamps: the contract format, and the ISO 'T' variant which is just as
# unambiguous. Zone offsets and fractional seconds are refused (times are local clinic time, to the second).
TIMESTAMP_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")
# strptime's %Y also reads '25' as the year 0025: an Excel m/d/yy re-save would land a date 2000 years early
# (and, as the older event, never become current). Dates and timestamps must start with a 4-digit year.
FOUR_DIGIT_YEAR = r"^[0-9]{4}-"
# Whitespace trimmed from both ends of a value (DuckDB's one-argument trim() removes spaces only).
TRIM_CHARS = " \t\n\r\x0b\x0c\u00a0\ufeff"
# Money and counts: plain decimals only. TRY_CAST alone also reads '1_250' and '1e3' (and rounds '1.5' to 2).
DECIMAL_TEXT = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)"
INTEGER_TEXT = r"[+-]?[0-9]+"
# Decimal columns land as DECIMAL(18,2); a value with a non-zero digit after the second decimal would be rounded
# (too_many_decimals), unless what rounding drops is binary floating-point noise (six or more 0s or 9s right after
# the second decimal: 410.20000000000005 from a JSON float is 410.20; the change is below a millionth of a cent).
DECIMAL_SCALE = 2
LOST_DECIMALS = r"\.[0-9]{2}0*[1-9]"
FLOAT_NOISE = r"\.[0-9]{2}(0{6}|9{6})"
# Staged column: true when the values are text written in a CSV (native or profiled), false for FHIR / X12 rows,
# whose amounts are numbers the mapping wrote out (loader._staging_sql); too_many_decimals applies to written text.
WRITTEN = "_written"

RULE_ORDER = ("row", "required", "type", "accepted", "zone", "pattern", "range")


def lit(value: Any) -> str:
    """A SQL literal for a value taken from a contract (never for data from a source file)."""
    if value is None:
        return "NULL"
    if isinstance(value, DaysFromToday):
        return f"(current_date + INTERVAL {int(value.days)} DAY)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def trimmed_expr(col: Column, source: str | None = None) -> str:
    """SQL for the staged text of `col`: the file's text, trimmed when the contract says so (the default).

    trim() with a character set is ~3x slower than a look at the first and last character, so it only runs
    for values that start or end with whitespace."""
    x = source or quote_ident(col.name)
    if not col.trim:
        return x
    edges = ", ".join(str(ord(c)) for c in TRIM_CHARS if ord(c) > 32)
    return (
        f"CASE WHEN ord({x}) <= 32 OR ord(right({x}, 1)) <= 32 OR ord({x}) IN ({edges}) "
        f"OR ord(right({x}, 1)) IN ({edges}) THEN trim({x}, {lit(TRIM_CHARS)}) ELSE {x} END"
    )


def value_expr(col: Column) -> str:
    """The column's text with empty string read as NULL (interfaces.md: empty string = null)."""
    return f"nullif({quote_ident(col.name)}, '')"


def typed_expr(col: Column) -> str:
    """The column's value cast to its contract type; NULL when the text is not a valid value of it.

    Strict where DuckDB's TRY_CAST is lenient: TRY_CAST rounds '1.5' to an integer 2, reads '1_250' and
    '1e3' as numbers, reads 'yes' as a boolean and drops a '+05' zone offset from a timestamp; each of those
    would land a wrong value.
    """
    v = value_expr(col)
    if col.type == "varchar":
        return v
    if col.type == "integer":
        return f"CASE WHEN regexp_full_match({v}, {lit(INTEGER_TEXT)}) THEN TRY_CAST({v} AS INTEGER) END"
    if col.type == "decimal":
        return f"CASE WHEN regexp_full_match({v}, {lit(DECIMAL_TEXT)}) THEN TRY_CAST({v} AS DECIMAL(18,2)) END"
    year_first = f"regexp_matches({v}, {lit(FOUR_DIGIT_YEAR)})"
    if col.type == "date":
        return f"CASE WHEN {year_first} THEN CAST(try_strptime({v}, '%Y-%m-%d') AS DATE) END"
    if col.type == "timestamp":
        formats = ", ".join(lit(f) for f in TIMESTAMP_FORMATS)
        return f"CASE WHEN {year_first} THEN try_strptime({v}, [{formats}]) END"
    if col.type == "boolean":
        return f"CASE lower(trim({v})) WHEN 'true' THEN true WHEN 'false' THEN false END"
    raise ValueError(f"unsupported type {col.type!r}")


TYPED_PREFIX = "__typed__"


def typed_ref(col: Column) -> str:
    """SQL for the typed value in the staged table: the text itself for varchar, else the column that the
    staging query computed once with `typed_expr` (checks and landing reuse it instead of casting again)."""
    if col.type == "varchar":
        return value_expr(col)
    return quote_ident(TYPED_PREFIX + col.name)


def typed_columns(contract: Contract) -> str:
    """SQL select list computing every non-varchar column's typed value, once per row."""
    return ", ".join(
        f"{typed_expr(c)} AS {quote_ident(TYPED_PREFIX + c.name)}" for c in contract.columns if c.type != "varchar"
    )


@dataclass(frozen=True)
class Check:
    """One rule on one column (or on the whole row: column None): the SQL condition that breaks it and the
    SQL detail text for quarantine."""

    rule: str
    column: str | None
    condition: str
    detail: str


def _detail(col: Column, text: str) -> str:
    """`<column>: the value <text>` as SQL. Never the value itself: details are shown to analysts."""
    return lit(f"{col.name}: the value {text}")


# Row-level checks on columns the staging query adds: `_breaks` (line breaks inside the row's fields of a record
# that a stray double quote joined with following lines: its line-broken values hold a row's worth of field
# separators; loader._csv_rows_sql) and `_nul` (a NUL byte in a field). A quoted value with a line break (a
# multi-line address or comment) is not one: it lands. Joined records are quarantined with their first line,
# never landed with the next rows inside a value.
ROW_CHECKS = (
    Check(
        "multiline_record",
        None,
        "_breaks > 0",
        lit(
            "the record spans several lines and its line-broken value is shaped like whole rows (a row's "
            "worth of field separators per line): a stray double quote joined the following lines into one "
            "value. Remove the "
            "quote (write a quote inside a value as two) in the source and re-send the file"
        ),
    ),
    Check(
        "nul_byte",
        None,
        "_nul",
        lit("a field contains a NUL byte (binary data): fix the row in the source and re-send the file"),
    ),
)


def _required(col: Column) -> list[Check]:
    if not col.required:
        return []
    cond = f"{value_expr(col)} IS NULL"  # staged values are trimmed, so whitespace-only is empty
    return [Check("required", col.name, cond, lit(f"{col.name}: a value is required but the field is empty"))]


def _type(col: Column) -> list[Check]:
    if col.type == "varchar":
        return []
    cond = f"{value_expr(col)} IS NOT NULL AND {typed_ref(col)} IS NULL"
    text = f"is not a valid {col.type}; write {TYPE_FORMATS[col.type]}"
    checks = [Check(f"invalid_{col.type}", col.name, cond, _detail(col, text))]
    if col.type == "decimal":  # DECIMAL(18,2) would round 1.005 to 1.01: never land a changed amount
        cond = (
            f"{WRITTEN} AND {typed_ref(col)} IS NOT NULL AND regexp_matches({value_expr(col)}, {lit(LOST_DECIMALS)}) "
            f"AND NOT regexp_matches({value_expr(col)}, {lit(FLOAT_NOISE)})"
        )
        text = (
            f"has more than {DECIMAL_SCALE} decimal places and would be rounded; write at most {DECIMAL_SCALE} "
            f"(trailing zeros are fine)"
        )
        checks.append(Check("too_many_decimals", col.name, cond, _detail(col, text)))
    return checks


def _accepted(col: Column) -> list[Check]:
    if col.accepted is None:
        return []
    values = ", ".join(lit(v) for v in col.accepted)
    cond = f"{value_expr(col)} IS NOT NULL AND {value_expr(col)} NOT IN ({values})"
    text = "is not an accepted value; use one of: " + ", ".join(col.accepted)
    return [Check("not_accepted", col.name, cond, _detail(col, text))]


def _zone(col: Column) -> list[Check]:
    """A clinic's zone converts every vendor time of that clinic: an unknown name ('Central Time') would fail
    each later load of the clinic's files, so the clinics row is quarantined instead."""
    if not col.iana_zone:
        return []
    cond = f"{value_expr(col)} IS NOT NULL AND {value_expr(col)} NOT IN (SELECT name FROM pg_timezone_names())"
    text = "is not an IANA time zone name; write one like America/Chicago (case as written there)"
    return [Check("unknown_time_zone", col.name, cond, _detail(col, text))]


def _pattern(col: Column) -> list[Check]:
    if col.pattern is None:
        return []
    cond = f"{value_expr(col)} IS NOT NULL AND NOT regexp_full_match({value_expr(col)}, {lit(col.pattern)})"
    return [Check("pattern_mismatch", col.name, cond, _detail(col, f"does not match the pattern {col.pattern}"))]


def _range(col: Column) -> list[Check]:
    checks = []
    typed = typed_ref(col)
    if col.min is not None:
        checks.append(
            Check("below_min", col.name, f"{typed} < {lit(col.min)}", _detail(col, f"is below the minimum {col.min}"))
        )
    if col.max is not None:
        checks.append(
            Check("above_max", col.name, f"{typed} > {lit(col.max)}", _detail(col, f"is above the maximum {col.max}"))
        )
    return checks


_RULE_BUILDERS = {
    "row": lambda col: [],
    "required": _required,
    "type": _type,
    "accepted": _accepted,
    "zone": _zone,
    "pattern": _pattern,
    "range": _range,
}


def checks_for(contract: Contract) -> list[Check]:
    """All checks of a contract, in the order in which the first broken one is reported."""
    return list(ROW_CHECKS) + [
        check for rule in RULE_ORDER for col in contract.columns for check in _RULE_BUILDERS[rule](col)
    ]


def violation_expr(checks: list[Check]) -> str:
    """SQL: the 1-based number of the first broken check of the row, NULL when every check passes."""
    if not checks:
        return "CAST(NULL AS SMALLINT)"
    branches = " ".join(f"WHEN {c.condition} THEN {i}" for i, c in enumerate(checks, start=1))
    return f"CAST(CASE {branches} END AS SMALLINT)"


def _by_check(checks: list[Check], value_sql: list[str]) -> str:
    branches = " ".join(f"WHEN {i} THEN {v}" for i, v in enumerate(value_sql, start=1))
    return f"CASE _violation {branches} END"


def rule_expr(checks: list[Check]) -> str:
    """SQL: the rule name of check number `_violation`."""
    return _by_check(checks, [lit(c.rule) for c in checks])


def column_expr(checks: list[Check]) -> str:
    """SQL: the column name of check number `_violation`."""
    return _by_check(checks, [lit(c.column) for c in checks])


def detail_expr(checks: list[Check]) -> str:
    """SQL: the detail text of check number `_violation` (computed only for quarantined rows)."""
    return _by_check(checks, [c.detail for c in checks])


#: How `_row_hash` is computed; raw tables record it with the columns hashed (`row_hash_rule`), and hashes of an
#: older rule or another column list are recomputed once from the landed values (ingestion/loader.py).
ROW_HASH_RULE = "row_hash: typed values v1"


def row_hash_rule(contract: Contract) -> str:
    """The rule and the columns it hashes, in order: a column added to the contract changes every hash (one more
    NULL argument), so the table's rows are rehashed with it instead of all landing again when re-sent."""
    return f"{ROW_HASH_RULE} over {', '.join(c.name for c in contract.columns)}"


def row_hash_expr(contract: Contract, landed: bool = False) -> str:
    """SQL: hash of every contract column's typed value, the content identity of a row.

    Typed, not the file's text: a re-saved export that writes 195 for 195.00, or another accepted timestamp
    spelling, holds the same row and must not land it again as a new version. `landed`: over a raw table's
    columns (already typed, in the same types), for recomputing the hashes of rows landed under an older rule."""
    values = (quote_ident(c.name) if landed else typed_ref(c) for c in contract.columns)
    return "hash(" + ", ".join(values) + ")"


def record_expr(contract: Contract) -> str:
    """SQL: JSON object of the original text values of the contract columns, for the quarantine."""
    pairs = ", ".join(f"{lit(c.name)}, {quote_ident(c.name)}" for c in contract.columns)
    return f"json_object({pairs})"


# --- uploads limited to some clinics (`ptpulse ingest --clinics`: the app's Upload page for a clinic manager) -------
#
# A user limited to some clinics may land only rows of those clinics. A row is outside the upload's scope when its
# clinic_id is not one of them, and also when it would change a record another clinic holds: a new version of a key
# or an event of an appointment (episode, referral, claim) landed at another clinic would otherwise move that record
# to the uploader's clinic and rewrite it (the appointment's latest event gives its clinic and status). A patient or
# therapist known to PT Pulse only outside the scope is not attached to it either: a made-up booking would otherwise
# show that patient's name and phone to the uploader. Checked on valid rows only, after every contract rule, so a
# broken row reports its own problem first. Sources without a clinic column are refused whole (ingestion/loader.py).

SCOPE_RULE = "outside_upload_scope"
CLINIC_COLUMN = "clinic_id"
# ids of records kept at one clinic: any landed row naming one at a clinic outside the scope makes the row outside it
HELD_COLUMNS = ("appointment_id", "episode_id", "referral_id", "claim_id")
# identifiers unique to one record of their own source: a clinic's or therapist's NPI given to another clinic's record
# would make the X12 / FHIR crosswalk drop it for both (an NPI shared by several records maps to none)
OWN_UNIQUE_COLUMNS = ("npi",)
# people seen at several clinics: outside the scope when known to PT Pulse, but never at one of the scope's clinics
SHARED_COLUMNS = ("patient_id", "therapist_id")
SCOPE_FIX = "an administrator (a user not limited to clinics) can load the row"


def in_clinics(expr: str, clinics: tuple[str, ...]) -> str:
    """SQL: true when `expr` is one of `clinics` (false for NULL, and for an empty scope). The clinics come from the
    uploader's scope (roles.yml), never from a file, and go through `lit`."""
    if not clinics:
        return "false"
    return f"coalesce({expr} IN ({', '.join(lit(c) for c in clinics)}), false)"


def scope_columns(contract: Contract) -> tuple[list[str], list[str]]:
    """(held, shared) columns of a contract that a limited upload checks beyond clinic_id, in contract order.

    held: the source's own key (unless it holds clinic_id: clinics, marketing_spend), its NPI, and the ids of records
    kept at one clinic (HELD_COLUMNS); shared: patient and therapist ids that are not the source's key."""
    key = [k for k in contract.natural_key]
    own_key = key if len(key) == 1 and CLINIC_COLUMN not in key else []
    held = [c for c in contract.column_names if c in own_key or c in HELD_COLUMNS or c in OWN_UNIQUE_COLUMNS]
    shared = [c for c in contract.column_names if c in SHARED_COLUMNS and c not in held]
    return held, shared


def scope_checks(
    contract: Contract, clinics: tuple[str, ...], held: dict[str, str], shared: dict[str, tuple[str, str]]
) -> list[Check]:
    """The checks of an upload limited to `clinics`, in the order the first broken one is reported: clinic_id, then
    the held ids, then the shared ones. `held[column]`: SQL selecting the ids of that column held at a clinic outside
    the scope; `shared[column]`: (SQL selecting the ids known to PT Pulse outside the scope, SQL selecting those seen
    at one of its clinics). A column missing from them has nothing landed to compare with (no check). Details name
    the column and the fix, never a value (nor the scope's clinics)."""
    checks = [
        Check(
            SCOPE_RULE,
            CLINIC_COLUMN,
            f"NOT {in_clinics(typed_ref(contract.column(CLINIC_COLUMN)), clinics)}",
            lit(f"{CLINIC_COLUMN}: the row's clinic is not one of the clinics this upload was limited to; {SCOPE_FIX}"),
        )
    ]
    held_columns, shared_columns = scope_columns(contract)
    for name in held_columns:
        if name in held:
            checks.append(
                Check(
                    SCOPE_RULE,
                    name,
                    f"coalesce({typed_ref(contract.column(name))} IN ({held[name]}), false)",
                    lit(
                        f"{name}: the value names a record kept at a clinic outside the clinics this upload was "
                        f"limited to; {SCOPE_FIX}"
                    ),
                )
            )
    for name in shared_columns:
        if name in shared:
            known, inside = shared[name]
            value = typed_ref(contract.column(name))
            checks.append(
                Check(
                    SCOPE_RULE,
                    name,
                    f"coalesce({value} IN ({known}), false) AND NOT coalesce({value} IN ({inside}), false)",
                    lit(f"{name}: known to PT Pulse only outside the clinics this upload was limited to; {SCOPE_FIX}"),
                )
            )
    return checks
