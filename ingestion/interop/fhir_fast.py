"""Vectorised FHIR Bulk Data reader: a single-type NDJSON file of an `$export` folder mapped in DuckDB SQL.

Why: the per-resource reader (fhir.py) walks every resource in Python (~0.3 ms each, references resolved one by
one); a Bulk export of a multi-clinic practice holds millions of Appointments, Encounters, Claims and
ExplanationOfBenefits. This module maps those four types with the SAME rules as fhir.py (mapping tables:
ingestion/interop/README.md): DuckDB `read_json` parses the file once into typed columns (explicit structure,
no sniffing), and a few set-based queries resolve references by joins.

It takes a file only when every line has the plain shape the SQL covers: one resource type per file, the
elements fhir.py reads with the JSON types FHIR gives them (a type mismatch stops `read_json`), relative
`Type/id` references (no identifier-only, conditional, absolute or contained ones), the referenced resources
beside it plain too. Anything else returns False and fhir.py reads the file resource by resource, so refusals,
messages and every edge case stay its own. tests/roundtrip/test_fhir_roundtrip.py checks both paths land the
same rows.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from pathlib import Path

import duckdb

from ingestion.interop import FHIR_CODES, TableRows
from ingestion.interop import fhir as F
from ingestion.validation import TRIM_CHARS, lit

FAST_TYPES = ("Appointment", "Encounter", "Claim", "ExplanationOfBenefit", "Patient", "ServiceRequest")
# read by fhir.py only to be counted as not mapped (their content reaches rows through references)
COUNTED_TYPES = ("Coverage", "EpisodeOfCare", "PractitionerRole")
SIMPLE_REF = r"[A-Z][A-Za-z]+/[A-Za-z0-9.\-]{1,64}"
INSTANT = F.INSTANT.pattern
UTC = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"  # a UTC instant to the second: the form an export writes

REF = 'STRUCT(reference VARCHAR, identifier JSON, "type" VARCHAR)'
CODING = "STRUCT(system VARCHAR, code VARCHAR)"
CONCEPT = f"STRUCT(coding {CODING}[])"
MONEY = "STRUCT(value JSON)"
COMMON = {"resourceType": "VARCHAR", "id": "JSON", "contained": "JSON", "meta": "STRUCT(lastUpdated JSON)"}
# The elements fhir.py reads, typed as FHIR R4 types them; scalars stay JSON so their JSON type is checked.
SCHEMA = {
    "Appointment": COMMON
    | {
        "status": "JSON",
        "cancelationReason": CONCEPT,
        "appointmentType": CONCEPT,
        "supportingInformation": f"{REF}[]",
        "start": "JSON",
        "end": "JSON",
        "minutesDuration": "JSON",
        "created": "JSON",
        "basedOn": f"{REF}[]",
        "participant": f"STRUCT(actor {REF})[]",
    },
    "Encounter": COMMON
    | {
        "status": "JSON",
        "class": "STRUCT(code JSON)",
        "subject": REF,
        "episodeOfCare": f"{REF}[]",
        "basedOn": f"{REF}[]",
        "participant": f'STRUCT("type" {CONCEPT}[], individual {REF})[]',
        "appointment": f"{REF}[]",
        "period": 'STRUCT(start JSON, "end" JSON)',
        "length": "JSON",
        "location": f"STRUCT(location {REF})[]",
        "serviceProvider": REF,
    },
    "Claim": COMMON
    | {
        "status": "JSON",
        "use": "JSON",
        "identifier": "JSON",
        "patient": REF,
        "billablePeriod": "STRUCT(start JSON)",
        "created": "JSON",
        "insurer": REF,
        "provider": REF,
        "facility": REF,
        "careTeam": f"STRUCT(sequence JSON, provider {REF})[]",
        "item": f"STRUCT(id JSON, sequence JSON, careTeamSequence JSON[], productOrService {CONCEPT}, modifier {CONCEPT}[], "
        f"servicedDate JSON, servicedPeriod STRUCT(start JSON), quantity STRUCT(value JSON), net {MONEY}, "
        f"unitPrice {MONEY}, encounter {REF}[])[]",
        "total": MONEY,
    },
    "Patient": COMMON
    | {
        "status": "JSON",  # not an R4 Patient element: always NULL, read so the common checks apply
        "name": "STRUCT(use JSON, family JSON, given JSON[])[]",
        "telecom": "STRUCT(system JSON, value JSON)[]",
        "address": "STRUCT(use JSON, line JSON[], city JSON, state JSON, postalCode JSON)[]",
        "birthDate": "JSON",
        "gender": "JSON",
    },
    "ServiceRequest": COMMON
    | {
        "status": "JSON",
        "intent": "JSON",
        "subject": REF,
        "authoredOn": "JSON",
        "requester": REF,
        "locationReference": f"{REF}[]",
        "performer": "JSON",
        "insurance": f"{REF}[]",
        "reasonCode": f"{CONCEPT}[]",
        "reasonReference": "JSON",
    },
    "ExplanationOfBenefit": COMMON
    | {
        "status": "JSON",
        "use": "JSON",
        "identifier": "JSON",
        "created": "JSON",
        "insurer": REF,
        "facility": REF,
        "claim": REF,
        "outcome": "JSON",
        "adjudication": f"STRUCT(reason {CONCEPT})[]",
        "item": "JSON",
        "total": f"STRUCT(category {CONCEPT}, amount {MONEY})[]",
        "payment": f"STRUCT(date JSON, amount {MONEY}, identifier STRUCT(value JSON))",
    },
}


def _sql_list(values) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values)) + "]"


MACROS = rf"""
-- A JSON scalar read_json typed as JSON is its compact serialisation: a string starts with '"' and JSON null is
-- `null`, so a string / null is told by its first character (json_type parses the text again: ~2x the cost)
CREATE OR REPLACE TEMP MACRO js(x) AS CASE WHEN starts_with(x, '"') THEN x->>'$' END;
-- a resource without id has none (fhir.py: nothing to key an NDJSON line by; its rows are quarantined `required`)
CREATE OR REPLACE TEMP MACRO rid(x) AS CASE WHEN x IS NULL OR x = 'null' OR x = '""' THEN NULL
    WHEN starts_with(x, '"') THEN x->>'$' END;
CREATE OR REPLACE TEMP MACRO is_str(x) AS x IS NULL OR starts_with(x, '"') OR x = 'null';
CREATE OR REPLACE TEMP MACRO is_int(x) AS x IS NULL OR json_type(x) IN ('UBIGINT', 'BIGINT');
CREATE OR REPLACE TEMP MACRO jnum(x) AS CASE WHEN starts_with(x, '"') THEN x->>'$'
    WHEN json_type(x) IN ('UBIGINT', 'BIGINT', 'DOUBLE', 'HUGEINT') THEN CAST(x AS VARCHAR) END;
-- fhir.py `money`: a JSON number as a plain decimal, never in exponent form (DuckDB writes 1e-7 for 0.0000001)
CREATE OR REPLACE TEMP MACRO plain_dec(t) AS CASE WHEN t IS NULL OR NOT regexp_matches(t, '[eE]') THEN t
    ELSE plain_exp(CASE WHEN starts_with(t, '-') THEN '-' ELSE '' END,
                   replace(regexp_extract(t, '^[-+]?([0-9.]+)[eE]', 1), '.', ''),
                   CAST(regexp_extract(t, '[eE]([-+]?[0-9]+)$', 1) AS INTEGER)
                       - length(split_part(regexp_extract(t, '^[-+]?([0-9.]+)[eE]', 1), '.', 2))) END;
-- sign, the digits of the mantissa and the exponent of its last digit: digits then zeros, or a point -e from the end
CREATE OR REPLACE TEMP MACRO plain_exp(sign, digits, e) AS sign || CASE
    WHEN e >= 0 THEN coalesce(nullif(ltrim(digits || repeat('0', e), '0'), ''), '0')
    ELSE plain_point(lpad(digits, CAST(greatest(length(digits), 1 - e) AS INTEGER), '0'), CAST(-e AS INTEGER)) END;
CREATE OR REPLACE TEMP MACRO plain_point(padded, k) AS
    coalesce(nullif(ltrim(left(padded, length(padded) - k), '0'), ''), '0') || '.' || right(padded, k);
CREATE OR REPLACE TEMP MACRO money(m) AS CASE WHEN starts_with(m.value, '"') THEN m.value->>'$'
    ELSE plain_dec(jnum(m.value)) END;
CREATE OR REPLACE TEMP MACRO ref_ok(r) AS r IS NULL OR (r.identifier IS NULL AND r.reference IS NOT NULL
    AND regexp_full_match(r.reference, '{SIMPLE_REF}'));
CREATE OR REPLACE TEMP MACRO refs_ok(rs) AS rs IS NULL OR list_bool_and(list_transform(rs, lambda r: ref_ok(r))) IS NOT false;
CREATE OR REPLACE TEMP MACRO rtype(ref) AS split_part(ref, '/', 1);
CREATE OR REPLACE TEMP MACRO codes(concept) AS
    list_filter(coalesce(concept.coding, []), lambda c: c.code IS NOT NULL AND c.code <> '');
CREATE OR REPLACE TEMP MACRO first_code(concept) AS (codes(concept))[1].code;
CREATE OR REPLACE TEMP MACRO first_code_in(concept, systems) AS
    (list_filter(codes(concept), lambda c: list_contains(systems, c.system)))[1].code;
CREATE OR REPLACE TEMP MACRO shown_code(v) AS CASE WHEN v IS NULL THEN 'none'
    WHEN list_contains({_sql_list(FHIR_CODES)}, v) THEN v
    ELSE '(other)' END;
CREATE OR REPLACE TEMP MACRO whole(v) AS CASE WHEN v IS NULL THEN NULL
    WHEN TRY_CAST(v AS DECIMAL(38, 9)) = floor(TRY_CAST(v AS DECIMAL(38, 9)))
        THEN CAST(CAST(TRY_CAST(v AS DECIMAL(38, 9)) AS HUGEINT) AS VARCHAR) ELSE v END;
CREATE OR REPLACE TEMP MACRO fdate(v) AS CASE WHEN v IS NULL OR v = '' THEN NULL
    WHEN regexp_full_match(v, '\d{{4}}-\d{{2}}-\d{{2}}') THEN v
    WHEN regexp_full_match(v, '{INSTANT}') THEN regexp_extract(v, '{INSTANT}', 1) ELSE v END;
CREATE OR REPLACE TEMP MACRO wall(v) AS regexp_extract(v, '{INSTANT}', 1) || ' ' || regexp_extract(v, '{INSTANT}', 2)
    || coalesce(nullif(regexp_extract(v, '{INSTANT}', 3), ''), ':00');
-- the two forms an export writes (a UTC instant to the second, a date) first, each with one plain regex; anything
-- else through the general INSTANT pattern
CREATE OR REPLACE TEMP MACRO fts(v, zone) AS CASE
    WHEN v IS NULL OR v = '' THEN NULL
    WHEN regexp_full_match(v, '\d{{4}}-\d{{2}}-\d{{2}}T\d{{2}}:\d{{2}}:\d{{2}}Z') THEN CASE WHEN zone IS NULL
        THEN left(v, 10) || ' ' || substr(v, 12, 8)
        ELSE strftime(timezone(zone, CAST(left(v, 19) || '+00:00' AS TIMESTAMPTZ)), '%Y-%m-%d %H:%M:%S') END
    WHEN regexp_full_match(v, '\d{{4}}-\d{{2}}-\d{{2}}') THEN v || ' 00:00:00'
    WHEN NOT regexp_full_match(v, '{INSTANT}') THEN v
    WHEN regexp_extract(v, '{INSTANT}', 2) = '' THEN regexp_extract(v, '{INSTANT}', 1) || ' 00:00:00'
    WHEN regexp_extract(v, '{INSTANT}', 4) <> '' AND zone IS NOT NULL THEN strftime(timezone(zone,
        CAST(wall(v) || replace(regexp_extract(v, '{INSTANT}', 4), 'Z', '+00:00') AS TIMESTAMPTZ)),
        '%Y-%m-%d %H:%M:%S')
    ELSE wall(v) END;
-- fhir.py `_Ctx.day`: the local date of a date / dateTime (a dateTime converted as `fts` converts it)
CREATE OR REPLACE TEMP MACRO ldate(v, zone) AS CASE WHEN v IS NULL OR v = '' THEN NULL
    WHEN regexp_full_match(v, '{INSTANT}') THEN left(fts(v, zone), 10) ELSE v END;
CREATE OR REPLACE TEMP MACRO ftext(v) AS nullif(trim(v), '');
-- ftext for values that are mostly clean: trim() (spaces, like ftext) only where an edge is a space
CREATE OR REPLACE TEMP MACRO vtext(v) AS CASE WHEN starts_with(v, ' ') OR ends_with(v, ' ') THEN nullif(trim(v), '')
    ELSE nullif(v, '') END;
"""


def _id_macros() -> str:
    """fhir.py's `entity_id` / `derived_id` in SQL over a relative `Type/id` reference (ref_ok checked its shape)."""
    ns = F.id_namespace()
    if ns:
        prefix = "'" + ns.replace("'", "''") + ":' || "
        return (
            f"CREATE OR REPLACE TEMP MACRO fid(ref) AS CASE WHEN ref IS NULL THEN NULL ELSE {prefix}ref END;\n"
            f"CREATE OR REPLACE TEMP MACRO stem(ref) AS {prefix}ref;\n"
        )
    return (
        "CREATE OR REPLACE TEMP MACRO fid(ref) AS CASE WHEN ref IS NULL THEN NULL ELSE split_part(ref, '/', 2) END;\n"
        "CREATE OR REPLACE TEMP MACRO stem(ref) AS ref;\n"
    )


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list:
    """Execute and fetch (DuckDB 2 wants every result consumed before the next statement)."""
    return con.execute(sql, params or []).fetchall()


PLAIN_CHUNK = 1 << 24


def plain_lines(path: Path) -> int | None:
    """The number of lines of `path` when they split the same way for DuckDB as for fhir.py (`\\n` only, no BOM,
    no CR, no leading space) and the file is what fhir.py's `read_text` accepts (UTF-8, no NUL); None otherwise.
    A blank line is left to `_load`: DuckDB skips it, so its row count falls short of this one and the file goes
    to fhir.py. One pass over the bytes (memchr-speed tests per chunk), so the SQL path never holds the file as
    text: only fhir.py's fallback reads it whole."""
    found = _plain(path)
    return None if found is None else found[0]


def nul_free(path: Path) -> bool:
    """No value of the (plain) file can hold a NUL: no NUL byte and no `\\u0000` escape, so the loader's per-value
    NUL test is skipped for its rows."""
    found = _plain(path)
    return found is not None and not found[1]


def _plain(path: Path) -> tuple[int, bool] | None:
    """(lines, holds a `\\u0000` escape) of a plain file, else None; remembered per file state (size, mtime)."""
    return _scan(path)[0]


def space_only(path: Path) -> bool:
    """No value of the (plain) file can hold whitespace other than the space: ASCII only, no backslash (so no
    escape: `\\t`, `\\u00a0`...), no tab, vertical tab or form feed byte. Values mapped from such files are trimmed
    of spaces only (`_clean`), the other whitespace the contracts trim cannot be there."""
    return _scan(path)[2]


def digest(path: Path) -> str:
    """The file's sha256 (the loader's fingerprint), taken in the same pass over the bytes as `plain_lines`: a Bulk
    file of GBs is read once for both."""
    return _scan(path)[1]


def _scan(path: Path) -> tuple[tuple[int, bool] | None, str, bool]:
    """(`_plain`'s answer, sha256, `space_only`) of the file, remembered per file state (size, mtime)."""
    key = (str(path),) + _stamp(path)
    if key in _PLAIN:
        return _PLAIN[key]
    sha = hashlib.sha256()
    lines, last, tail, first, escaped, plain, spaces = 0, b"", b"", True, False, True, True
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as handle:
        while chunk := handle.read(PLAIN_CHUNK):
            sha.update(chunk)
            if not plain:  # hashed to the end; nothing more to check
                continue
            if first and chunk.startswith((b"\n", codecs.BOM_UTF8, b" ")):
                plain = False
                continue
            first = False
            if b"\r" in chunk or b"\x00" in chunk:
                plain = False
                continue
            spaces = spaces and not any(c in chunk for c in (b"\\", b"\t", b"\x0b", b"\x0c"))
            if not chunk.isascii():
                spaces = False
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    plain = False
                    continue
            escaped = escaped or b"\\u0000" in chunk or b"\\u0000" in tail + chunk[:5]
            lines += chunk.count(b"\n")
            last, tail = chunk[-1:], chunk[-5:]
    if plain:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            plain = False
    if first:  # empty: fhir.py refuses it
        plain = False
    found = (lines + (0 if last == b"\n" else 1), escaped) if plain else None
    return _remember(key, (found, sha.hexdigest(), plain and spaces))


_PLAIN: dict[tuple, tuple[tuple[int, bool] | None, str, bool]] = {}


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _remember(key: tuple, found: tuple) -> tuple:
    if len(_PLAIN) >= 32:  # a few files' answers: a file is asked again after its references were loaded
        _PLAIN.clear()
    _PLAIN[key] = found
    return found


def _load(con: duckdb.DuckDBPyConnection, path: Path, rtype: str, table: str, lines: int) -> bool:
    """Parse the file into `table` (line, typed columns); False when it is not a plain file of `rtype`."""
    _run(
        con,
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT row_number() OVER () AS line, * FROM read_json(?, "
        "format = 'newline_delimited', columns = ?, maximum_object_size = 1073741824)",
        [str(path), SCHEMA[rtype]],
    )
    count, types = _run(con, f"SELECT count(*), list(DISTINCT resourceType) FROM {table}")[0]
    return count == lines and types == [rtype]


def _odd_lines(con: duckdb.DuckDBPyConnection, rtype: str, table: str) -> list[int]:
    """The lines whose resource is not one the SQL maps exactly like fhir.py (fhir.py maps those one by one)."""
    checks = [
        "is_str(id)",  # a string or none (fhir.py: none has no record id); other JSON types are fhir.py's
        "contained IS NULL",
        "is_str(meta.lastUpdated)",
        "is_str(status)",
    ]
    refs = {
        "Appointment": ["supportingInformation", "basedOn", "list_transform(participant, lambda p: p.actor)"],
        "Encounter": [
            "[subject]",
            "episodeOfCare",
            "basedOn",
            "appointment",
            "list_transform(participant, lambda p: p.individual)",
            "list_transform(location, lambda p: p.location)",
            "[serviceProvider]",
        ],
        "Claim": [
            "[patient]",
            "[insurer]",
            "[provider]",
            "[facility]",
            "list_transform(careTeam, lambda t: t.provider)",
            "flatten(list_transform(item, lambda i: coalesce(i.encounter, [])))",
        ],
        "ExplanationOfBenefit": ["[insurer]", "[facility]", "[claim]"],
        "Patient": [],
        "ServiceRequest": ["[subject]", "[requester]", "locationReference", "insurance"],
    }[rtype]
    if refs:  # every reference of the resource in one list: one regex per resource, not one per reference
        checks += [
            "list_bool_and(list_transform(_refs, lambda r: r IS NULL OR (r.identifier IS NULL "
            "AND r.reference IS NOT NULL))) IS NOT false",
            # references joined by a space (no reference that passes holds one): each is SIMPLE_REF iff the joined
            # text is a space-separated run of them (the same test as `ref_ok`, per resource)
            "regexp_full_match(coalesce(array_to_string(list_filter(list_transform(_refs, lambda r: r.reference), "
            f"lambda x: x IS NOT NULL), ' '), ''), '({SIMPLE_REF}( {SIMPLE_REF})*)?')",
        ]
        table = f"(SELECT *, flatten([{', '.join(f'coalesce({r}, [])' for r in refs)}]) AS _refs FROM {table})"

    if rtype == "Appointment":
        checks += [
            'is_str(start) AND is_str("end") AND is_str(created)',
            "json_type(minutesDuration) IN ('UBIGINT', 'BIGINT')",
            "list_bool_and(list_transform(coalesce(participant, []), lambda p: p.actor IS NOT NULL)) IS NOT false",
        ]
    if rtype == "Encounter":
        checks += [
            "length IS NULL",
            'is_str(class.code) AND is_str(period.start) AND is_str(period."end")',
            # end - start in minutes needs both as whole-second instants with an offset (fhir.py `_minutes`)
            f"js(period.\"end\") IS NULL OR js(period.start) IS NULL OR (regexp_full_match(js(period.start), '{UTC}') "
            f"AND regexp_full_match(js(period.\"end\"), '{UTC}')) OR (regexp_full_match(js(period.start), '{INSTANT}') "
            f"AND regexp_extract(js(period.start), '{INSTANT}', 4) <> '' AND NOT contains(js(period.start), '.') "
            f"AND regexp_full_match(js(period.\"end\"), '{INSTANT}') AND NOT contains(js(period.\"end\"), '.') "
            f"AND regexp_extract(js(period.\"end\"), '{INSTANT}', 4) <> '')",
            "len(coalesce(location, [])) > 0 OR serviceProvider IS NULL",
            "list_bool_and(list_transform(coalesce(location, []), lambda p: p.location IS NOT NULL)) IS NOT false",
            "list_bool_and(list_transform(coalesce(location, []), lambda p: rtype(p.location.reference) = 'Location'))"
            " IS NOT false",
            "list_bool_and(list_transform(coalesce(participant, []), lambda p: p.individual IS NOT NULL)) IS NOT false",
        ]
    if rtype == "Claim":
        checks += [
            "is_str(use) AND is_str(created) AND is_str(billablePeriod.start)",
            # identifiers whose value is text or absent (fhir.py `_claim_number` writes other JSON values as Python)
            "json_type(identifier) IS DISTINCT FROM 'ARRAY' OR list_bool_and(list_transform("
            "json_extract(identifier, '$[*]'), lambda i: coalesce(json_type(i, '$.value'), 'VARCHAR') = 'VARCHAR'"
            " AND coalesce(json_type(i, '$.system'), 'VARCHAR') = 'VARCHAR')) IS NOT false",
            # no facility: the clinic is the provider Organization, if it is one (fhir.py `_claim`)
            "facility IS NULL OR rtype(facility.reference) = 'Location'",
            "total IS NULL OR total.value IS NOT NULL",
            "len(list_distinct(list_transform(coalesce(careTeam, []), lambda t: CAST(t.sequence AS VARCHAR)))) "
            "= len(coalesce(careTeam, []))",
            "list_bool_and(list_transform(coalesce(careTeam, []), lambda t: is_int(t.sequence) AND t.provider IS NOT NULL))"
            " IS NOT false",
            "list_bool_and(list_transform(coalesce(item, []), lambda i: json_type(i.sequence) IN ('UBIGINT', 'BIGINT')"
            " AND len(coalesce(i.careTeamSequence, [])) <= 1 AND (i.net IS NOT NULL OR i.unitPrice IS NULL)"
            " AND is_str(i.servicedDate) AND is_str(i.servicedPeriod.start) AND len(coalesce(i.encounter, [])) <= 1"
            " AND list_bool_and(list_transform(coalesce(i.careTeamSequence, []), lambda s: is_int(s))) IS NOT false"
            ")) IS NOT false",
        ]
    if rtype == "Patient":
        strings = [
            "list_transform(coalesce(name, []), lambda n: n.use)",
            "list_transform(coalesce(name, []), lambda n: n.family)",
            "flatten(list_transform(coalesce(name, []), lambda n: coalesce(n.given, [])))",
            "list_transform(coalesce(telecom, []), lambda t: t.system)",
            "list_transform(coalesce(telecom, []), lambda t: t.value)",
            "list_transform(coalesce(address, []), lambda a: a.use)",
            "flatten(list_transform(coalesce(address, []), lambda a: coalesce(a.line, [])))",
            "list_transform(coalesce(address, []), lambda a: a.city)",
            "list_transform(coalesce(address, []), lambda a: a.state)",
            "list_transform(coalesce(address, []), lambda a: a.postalCode)",
        ]
        checks += ["is_str(birthDate) AND is_str(gender)"]
        checks += [f"list_bool_and(list_transform({x}, lambda v: is_str(v))) IS NOT false" for x in strings]
        checks += ["list_bool_and(list_transform(coalesce(name, []), lambda n: n IS NOT NULL)) IS NOT false"]
    if rtype == "ServiceRequest":
        checks += [
            "is_str(intent) AND is_str(authoredOn)",
            "reasonReference IS NULL",  # a Condition's code: fhir.py `_icd10`
            "len(coalesce(locationReference, [])) > 0 OR performer IS NULL",  # a performer as clinic: fhir.py
            "len(coalesce(insurance, [])) <= 1",
            "len(coalesce(locationReference, [])) = 0 OR rtype(locationReference[1].reference) <> 'Organization'",
        ]
    if rtype == "ExplanationOfBenefit":
        checks += [
            "is_str(use) AND is_str(created) AND is_str(outcome) AND is_str(payment.date)",
            "item IS NULL",
            "rtype(claim.reference) = 'Claim'",
            "is_str(payment.identifier.value)",
        ]
    where = " AND ".join(f"coalesce(({c}), false)" for c in checks)
    return [line for (line,) in _run(con, f"SELECT line FROM {table} WHERE NOT ({where}) ORDER BY line")]


class _Refs:
    """The referenced resources of one export folder (state), as DuckDB tables loaded once per type when a
    file first needs them: `target` (key `Type/id`, npi, zone, EpisodeOfCare referral, Appointment visit type)
    and `enc_visit` (fhir.py `_visit` of each Encounter). The first resource of each key in file-name order wins,
    as in fhir.py's folder index. `ok` is False when a sibling is not plain enough to resolve the same way."""

    def __init__(self, folder: Path, con: duckdb.DuckDBPyConnection | None = None) -> None:
        # `con`: the loader's raw.duckdb connection, so the mapped rows are staged without leaving DuckDB; every
        # object made here is TEMP (macros too): nothing of it is written to raw.duckdb
        self.own = con is None
        self.con = duckdb.connect() if con is None else con
        if self.own:
            _run(self.con, "SET TimeZone = 'UTC'")  # the macros use explicit offsets; a private session anyway
        self.con.execute(MACROS + _id_macros()).fetchall()
        self.ok = True
        self.loaded: set[str] = set()
        self.files = [
            (rank, p)
            for rank, p in enumerate(sorted(folder.iterdir()))
            if not p.is_symlink()
            and p.is_file()
            and p.suffix.lower() == ".ndjson"  # whatever its name: `types_in` reads the types from its lines
        ]
        self.types_of: dict[Path, set[str]] = {}
        self.parsed: Path | None = None  # the Encounter file whose parse is in enc_src
        self.parsed_odd: list[int] = []  # its odd lines (`_odd_lines`), found once for both of its uses
        self.prefilled: set[Path] = set()  # Appointment files whose `target` rows came from their own mapping
        _run(
            self.con,
            "CREATE OR REPLACE TEMP TABLE target (rank INT, line BIGINT, key VARCHAR, type VARCHAR, npi VARCHAR, tz VARCHAR, "
            "referral_ref VARCHAR, visit_type VARCHAR, appt_start VARCHAR, appt_minutes VARCHAR, prac_ref VARCHAR, "
            "prac_odd BOOLEAN)",
        )
        _run(self.con, "CREATE OR REPLACE TEMP TABLE enc_odd (key VARCHAR)")

    def close(self) -> None:
        """Close a private connection; on the loader's, drop the temp tables made here (the loader keeps it)."""
        if self.own:
            self.con.close()
            return
        for view in WORK_VIEWS:
            self.con.execute(f"DROP VIEW IF EXISTS temp.{view}")
        for table in REFS_TABLES + WORK_TABLES:
            self.con.execute(f"DROP TABLE IF EXISTS temp.{table}")

    def need(self, *types: str) -> bool:
        for rtype in types:
            if rtype not in self.loaded and self.ok:
                self.loaded.add(rtype)
                self._load(rtype)
        return self.ok

    def _holding(self, rtype: str) -> list[tuple[int, Path]]:
        found = []
        for rank, path in self.files:
            if path not in self.types_of:
                self.types_of[path] = F.types_in(path)
            if rtype in self.types_of[path]:
                found.append((rank, path))
        return found

    def prefill_appointments(self, path: Path) -> None:
        """`target` rows of the Appointment file parsed in `src` (before its odd lines are set aside), taken from
        that parse: the Encounters' reference scan then skips the file instead of reading it a second time.
        The same values as `_load`'s JSON scan (an Appointment's npi, zone and referral are never read)."""
        if "Appointment" in self.loaded or not self.ok:
            return
        rank = next((r for r, p in self.files if p == path), None)
        if rank is None:
            return
        visit = f"""coalesce(
            ftext(list_filter(coalesce(appointmentType.coding, []),
                lambda c: c.system = '{F.PTPULSE_VISIT_TYPE}' AND ftext(c.code) IS NOT NULL)[1].code),
            CASE ftext(list_filter(coalesce(appointmentType.coding, []), lambda c: ftext(c.code) IS NOT NULL)[1].code)
                WHEN 'FOLLOWUP' THEN 'follow_up' END)"""
        _run(
            self.con,
            f"""
            INSERT INTO target
            SELECT {rank}, line, 'Appointment/' || (id->>'$'), 'Appointment', NULL, NULL, NULL, {visit}, js(start),
                   minutesDuration->>'$', NULL, NULL
            FROM src WHERE starts_with(id, '"') AND id <> '""'""",
        )
        self.prefilled.add(path)

    def _load(self, rtype: str) -> None:
        npi, tz = F.NPI_SYSTEM, F.TIMEZONE_EXTENSION
        if rtype == "Coverage":
            self._coverage()
            return
        for rank, path in self._holding(rtype):
            if rtype == "Appointment" and path in self.prefilled:
                continue
            if rtype == "Encounter":
                lines = plain_lines(path)
                if lines is None or not _load(self.con, path, "Encounter", "enc_src", lines):
                    self.ok = False
                    return
                self.parsed = path  # enc_src holds this file's parse: its own mapping reuses it (read_bulk)
                odd = self.parsed_odd = _odd_lines(self.con, "Encounter", "enc_src")
                if odd:  # a Claim item naming one of these is mapped by fhir.py (its visit may differ)
                    _run(
                        self.con,
                        "INSERT INTO enc_odd SELECT 'Encounter/' || (id->>'$') FROM enc_src "
                        "WHERE list_contains(?::BIGINT[], line)",
                        [odd],
                    )
                _visit_sql(self.con, "enc_src", "enc_new")
                _run(self.con, "CREATE TEMP TABLE IF NOT EXISTS enc_visit AS SELECT * FROM enc_new LIMIT 0")
                _run(self.con, f"INSERT INTO enc_visit SELECT * REPLACE ({rank} AS rank) FROM enc_new")
                continue
            _run(
                self.con,
                f"""
                INSERT INTO target
                SELECT {rank}, line, j->>'$.resourceType' || '/' || (j->>'$.id'), j->>'$.resourceType',
                       CASE json_type(j, '$.identifier')
                           WHEN 'ARRAY' THEN list_filter(list_transform(json_extract(j, '$.identifier[*]'),
                               lambda i: CASE WHEN i->>'$.system' = '{npi}' AND ftext(i->>'$.value') IS NOT NULL
                                              THEN i->>'$.value' END), lambda v: v IS NOT NULL)[1]
                           WHEN 'OBJECT' THEN CASE WHEN j->>'$.identifier.system' = '{npi}'
                               AND ftext(j->>'$.identifier.value') IS NOT NULL THEN j->>'$.identifier.value' END
                       END,
                       list_filter(list_transform(coalesce(json_extract(j, '$.extension[*]'), []),
                           lambda e: CASE WHEN e->>'$.url' = '{tz}' AND json_type(e, '$.valueCode') = 'VARCHAR'
                                          THEN e->>'$.valueCode' END), lambda v: v IS NOT NULL)[1],
                       json_extract_string(j, '$.referralRequest[0].reference'),
                       CASE WHEN j->>'$.resourceType' = 'Appointment' THEN coalesce(
                           list_filter(list_transform(coalesce(json_extract(j, '$.appointmentType.coding[*]'), []),
                               lambda c: CASE WHEN c->>'$.system' = '{F.PTPULSE_VISIT_TYPE}' THEN ftext(c->>'$.code')
                                         END), lambda v: v IS NOT NULL)[1],
                           CASE list_filter(list_transform(coalesce(json_extract(j, '$.appointmentType.coding[*]'),
                                   []), lambda c: ftext(c->>'$.code')), lambda v: v IS NOT NULL)[1]
                               WHEN 'FOLLOWUP' THEN 'follow_up' END) END,
                       CASE WHEN json_type(j, '$.start') = 'VARCHAR' THEN j->>'$.start' END,
                       json_extract_string(j, '$.minutesDuration'),
                       -- a PractitionerRole stands for its practitioner (fhir.py `_Ctx.person`): a relative reference
                       -- here; any other form of it (identifier, absolute, conditional) is fhir.py's (prac_odd)
                       CASE WHEN j->>'$.resourceType' = 'PractitionerRole'
                                 AND json_type(j, '$.practitioner') = 'OBJECT'
                                 AND regexp_full_match(j->>'$.practitioner.reference', '{SIMPLE_REF}')
                            THEN j->>'$.practitioner.reference' END,
                       j->>'$.resourceType' = 'PractitionerRole' AND json_type(j, '$.practitioner') = 'OBJECT'
                           AND (json_exists(j, '$.practitioner.identifier')
                                OR (json_exists(j, '$.practitioner.reference')
                                    AND NOT coalesce(json_type(j, '$.practitioner.reference') = 'VARCHAR'
                                        AND regexp_full_match(j->>'$.practitioner.reference', '{SIMPLE_REF}'), false)))
                FROM (SELECT row_number() OVER () AS line, json AS j
                      FROM read_json_objects(?, format = 'newline_delimited', ignore_errors = true))
                WHERE json_valid(j) AND json_type(j) = 'OBJECT' AND j->>'$.resourceType' = ?
                  AND json_type(j, '$.id') = 'VARCHAR' AND j->>'$.id' <> ''
                  AND (j->>'$.resourceType' <> 'EpisodeOfCare' OR
                       regexp_full_match(coalesce(json_extract_string(j, '$.referralRequest[0].reference'), 'X/x'),
                                         '{SIMPLE_REF}'))
                """,
                [str(path), rtype],
            )
        if (
            rtype == "PractitionerRole"
            and _run(self.con, "SELECT count(*) FROM target WHERE type = 'PractitionerRole' AND prac_odd")[0][0]
        ):
            self.ok = False  # a role naming its practitioner otherwise than `Practitioner/<id>`: fhir.py resolves it
            return
        if rtype == "Appointment":  # fhir.py computes end - start without minutesDuration: not mapped here
            if _run(
                self.con,
                "SELECT count(*) FROM target WHERE type = 'Appointment' AND appt_start IS NOT NULL "
                "AND appt_minutes IS NULL",
            )[0][0]:
                self.ok = False
                return
        if rtype != "Encounter":
            # the first resource of a key wins; keys start with their type, so only this type's rows can repeat one
            # (earlier types were de-duplicated when loaded): the rest of `target` is neither sorted nor copied
            if _run(self.con, "SELECT count(*) - count(DISTINCT key) FROM target WHERE type = ?", [rtype])[0][0]:
                _run(
                    self.con,
                    "DELETE FROM target WHERE type = ? AND rowid IN (SELECT rowid FROM target WHERE type = ? "
                    "QUALIFY row_number() OVER (PARTITION BY key ORDER BY rank, line) > 1)",
                    [rtype, rtype],
                )
        else:
            _run(
                self.con,
                "CREATE TEMP TABLE IF NOT EXISTS enc_visit AS SELECT NULL::INT AS rank, NULL::BIGINT AS line, "
                "NULL::VARCHAR AS key, NULL::VARCHAR AS appointment_id, NULL::VARCHAR AS episode_id, "
                "NULL::VARCHAR AS referral_id, NULL::VARCHAR AS patient_id, NULL::VARCHAR AS clinic_id, "
                "NULL::VARCHAR AS therapist_id, NULL::VARCHAR AS zone, NULL::VARCHAR AS appointment_ref LIMIT 0",
            )
            _run(
                self.con,
                "CREATE OR REPLACE TEMP TABLE enc_visit AS SELECT * FROM enc_visit "
                "QUALIFY row_number() OVER (PARTITION BY key ORDER BY rank, line) = 1",
            )


def _coverage(self) -> None:
    """`cov`: the export's Coverages (fhir.py `_coverage_of` / the ServiceRequest's insurance): plain ones only."""
    _run(
        self.con,
        "CREATE OR REPLACE TEMP TABLE cov (rank INT, line BIGINT, key VARCHAR, beneficiary VARCHAR, status VARCHAR, "
        "ord DOUBLE, payor VARCHAR, member_id VARCHAR)",
    )
    columns = {
        "resourceType": "VARCHAR",
        "id": "JSON",
        "status": "JSON",
        "beneficiary": REF,
        "payor": f"{REF}[]",
        "subscriberId": "JSON",
        "order": "JSON",
    }
    for rank, path in self._holding("Coverage"):
        _run(
            self.con,
            "CREATE OR REPLACE TEMP TABLE cov_src AS SELECT row_number() OVER () AS line, * FROM read_json(?, "
            "format = 'newline_delimited', columns = ?, maximum_object_size = 1073741824)",
            [str(path), columns],
        )
        plain = (
            "resourceType = 'Coverage' AND json_type(id) = 'VARCHAR' AND is_str(status) AND is_str(subscriberId) "
            'AND ref_ok(beneficiary) AND refs_ok(payor) AND is_int("order")'
        )
        if _run(self.con, f"SELECT count(*) FROM cov_src WHERE NOT coalesce({plain}, false)")[0][0]:
            self.ok = False
            return
        _run(
            self.con,
            f"INSERT INTO cov SELECT {rank}, line, 'Coverage/' || (id->>'$'), beneficiary.reference, "
            "coalesce(js(status), 'active'), coalesce(nullif(CAST(jnum(\"order\") AS DOUBLE), 0), 99), "
            "payor[1].reference, ftext(js(subscriberId)) FROM cov_src",
        )


_Refs._coverage = _coverage  # noqa: SLF001 - kept beside the other loaders' SQL


def _therapist(ref: str, target: str) -> str:
    """fhir.py `_Ctx.person`: a PractitionerRole the export holds stands for its practitioner (that reference's id);
    a Practitioner the export holds keeps its resource id (the practice's therapist id); else the NPI when known
    (`ref_id(prefer_npi=True)`)."""
    return (
        f"CASE WHEN {target}.type = 'PractitionerRole' AND {target}.prac_ref IS NOT NULL THEN fid({target}.prac_ref) "
        f"WHEN {target}.type = 'Practitioner' THEN fid({ref}) "
        f"ELSE coalesce('npi:' || {target}.npi, fid({ref})) END"
    )


def _visit_sql(con: duckdb.DuckDBPyConnection, source: str, out: str) -> None:
    """fhir.py `_visit` for each Encounter of `source`: appointment, episode, referral, patient, clinic,
    therapist (PPRF / ATND participant first, `npi:` when known) and the clinic's zone. Needs `target`
    loaded with Location, Practitioner, PractitionerRole and EpisodeOfCare."""
    _run(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE {out} AS
        WITH e AS (
            SELECT line, 'Encounter/' || rid(id) AS key,
                   appointment[1].reference AS appointment_ref,
                   episodeOfCare[1].reference AS episode_ref,
                   list_filter(basedOn, lambda r: rtype(r.reference) = 'ServiceRequest')[1].reference AS based_on,
                   location[1].location.reference AS location_ref,
                   subject.reference AS subject_ref,
                   coalesce(list_filter(participant, lambda p: list_has_any(
                       flatten(list_transform(coalesce(p."type", []), lambda t: list_transform(codes(t),
                           lambda c: c.code))), ['PPRF', 'ATND']))[1], participant[1]).individual.reference
                       AS actor_ref
            FROM {source})
        SELECT NULL::INT AS rank, e.line, e.key,
               coalesce(fid(appointment_ref), fid(e.key)) AS appointment_id,
               fid(episode_ref) AS episode_id,
               coalesce(fid(ep.referral_ref), fid(based_on)) AS referral_id,
               fid(subject_ref) AS patient_id,
               fid(location_ref) AS clinic_id,
               CASE WHEN actor_ref IS NOT NULL THEN {_therapist("actor_ref", "th")} END AS therapist_id,
               loc.tz AS zone,
               appointment_ref
        FROM e
        LEFT JOIN target ep ON ep.key = e.episode_ref
        LEFT JOIN target loc ON loc.key = e.location_ref
        LEFT JOIN target th ON th.key = e.actor_ref
        """,
    )


def _clinic_zone(tz: str, clinic: str, named: str) -> str:
    """fhir.py `_Ctx.clinic` + `time`: the zone the export states for the clinic (`tz`), else the one raw.clinics holds
    for its id (`raw_tz`, joined as `{clinic}`'s row), else, when the resource names a clinic, the practice default."""
    default = _MAPPING["default_zone"]
    fallback = f" ELSE CASE WHEN {named} THEN {lit(default)} END" if default else ""
    return f"CASE WHEN {tz} IS NOT NULL THEN {tz} WHEN {clinic}.tz IS NOT NULL THEN {clinic}.tz{fallback} END"


def _raw_zones(con: duckdb.DuckDBPyConnection, raw: duckdb.DuckDBPyConnection | None) -> None:
    """`raw_tz` (clinic_id, tz): the clinic zones raw.duckdb holds (fhir.py `raw_clinic_zones`, the same dict), read
    anew for every file (a clinic may have landed since); empty without the loader's connection."""
    zones = F.raw_clinic_zones(raw)
    _run(con, "CREATE OR REPLACE TEMP TABLE raw_tz (clinic_id VARCHAR, tz VARCHAR)")
    if zones:
        _run(
            con,
            "INSERT INTO raw_tz SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[])",
            [list(zones), list(zones.values())],
        )


_CACHE: dict[tuple, _Refs] = {}
# temp tables of a _Refs kept while its folder is read, and those one file's mapping makes (dropped after it)
REFS_TABLES = ("target", "enc_visit", "enc_odd", "enc_src", "enc_new", "cov", "cov_src")
WORK_TABLES = ("src", "enc_ids", "items", "clm_head", "eob_m", "raw_tz")
WORK_VIEWS = ("appt", "enc_keep")  # views over `src` (a copy of every resource would cost a scan and a write)


def _refs(folder: Path, con: duckdb.DuckDBPyConnection | None = None) -> _Refs:
    """The folder's reference tables, built once per state of the folder (names, sizes, mtimes) and connection
    (the loader's raw.duckdb connection, or a private one when None)."""
    key = (str(folder), F.id_namespace(), id(con)) + tuple(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()
    )
    cached = _CACHE.get(key)
    if cached is None or (con is not None and cached.con is not con):
        for old in _CACHE.values():
            try:
                old.close()
            except duckdb.Error:
                pass  # the loader already closed its connection (an earlier ingest call)
        _CACHE.clear()
        _CACHE[key] = _Refs(folder, con)
    return _CACHE[key]


NEEDS = {
    "Patient": ("Coverage",),
    "ServiceRequest": ("Location", "Practitioner", "PractitionerRole", "Coverage"),
    "Appointment": ("Location", "Practitioner", "PractitionerRole"),
    "Encounter": ("Location", "Practitioner", "PractitionerRole", "EpisodeOfCare", "Appointment"),
    "Claim": ("Location", "Organization", "Practitioner", "PractitionerRole", "EpisodeOfCare", "Encounter"),
    "ExplanationOfBenefit": ("Location",),
}


def _count_only(con: duckdb.DuckDBPyConnection, path: Path, lines: int, rtype: str, batch) -> list[int] | None:
    """A Coverage / EpisodeOfCare / PractitionerRole file: fhir.py maps nothing from it (it is read through
    references), so its resources are only counted, as fhir.py's message does, without parsing each in Python."""
    found = _run(
        con,
        "SELECT count(*), count(*) FILTER (WHERE json_valid(json) AND json_type(json) = 'OBJECT' "
        "AND json->>'$.resourceType' = ? AND json_type(json, '$.contained') IS NULL) "
        "FROM read_json_objects(?, format = 'newline_delimited', ignore_errors = true)",
        [rtype, str(path)],
    )[0]
    if found != (lines, lines):
        return None  # a line of another shape: fhir.py reads (or refuses) the file
    batch.ignored[f"FHIR {rtype}"] += lines
    return []


def read_bulk(path: Path, batch, con: duckdb.DuckDBPyConnection | None = None) -> list[int] | None:
    """Map `path` in SQL into `batch`. Returns the lines left to fhir.py's per-resource reader (resources of an
    unusual shape, e.g. an Encounter without period.start), or None (nothing added) when the whole file needs it.

    With `con` (the loader's raw.duckdb connection) the rows of each target source stay in a temp table of that
    connection (`TableRows`) and the loader stages them from there; without, they come back as polars frames."""
    with path.open("rb") as handle:
        head = re.search(rb'"resourceType"\s*:\s*"([A-Za-z]+)"', handle.read(4096))
    rtype = head.group(1).decode() if head else None
    if rtype not in FAST_TYPES + COUNTED_TYPES:
        return None
    lines = plain_lines(path)
    if lines is None:
        return None
    if rtype in COUNTED_TYPES:
        try:
            return _count_only(_refs(path.parent, con).con, path, lines, rtype, batch)
        except Exception:  # noqa: BLE001 - the per-resource reader decides
            return None
    tables: dict[str, str] = {}
    try:
        refs = _refs(path.parent, con)
        if not refs.need(*NEEDS[rtype]):
            return None
        con = refs.con
        if rtype == "Encounter" and refs.parsed == path:  # parsed once for the Claims' visits: not parsed again
            _run(con, "DROP TABLE IF EXISTS temp.src")
            _run(con, "ALTER TABLE enc_src RENAME TO src")
            _run(con, "DROP TABLE IF EXISTS temp.enc_ids")
            _run(con, "ALTER TABLE enc_new RENAME TO enc_ids")  # its visits too: `_encounters` joins them by line
            refs.parsed, odd = None, list(refs.parsed_odd)
        elif not _load(con, path, rtype, "src", lines):
            return None
        else:
            odd = None
        if rtype == "Appointment":
            refs.prefill_appointments(path)
        if odd is None:
            odd = _odd_lines(con, rtype, "src")
        if rtype == "Claim" and _run(con, "SELECT count(*) FROM enc_odd")[0][0]:
            odd += [
                line
                for (line,) in _run(
                    con,
                    "SELECT line FROM src WHERE list_has_any(list_transform(coalesce(item, []), "
                    "lambda i: i.encounter[1].reference), (SELECT coalesce(list(key), []) FROM enc_odd))",
                )
            ]
        if rtype == "Claim":  # every version of a Claim the file repeats: fhir.py maps the latest only
            odd += [
                line
                for (line,) in _run(
                    con,
                    "SELECT line FROM src WHERE rid(id) IN "
                    "(SELECT rid(id) FROM src WHERE rid(id) IS NOT NULL GROUP BY ALL HAVING count(*) > 1)",
                )
            ]
            # a withdrawn Claim (cancelled, entered-in-error) lands as its claim's voided version: fhir.py `_claim`
            odd += [
                line
                for (line,) in _run(
                    con,
                    f"SELECT line FROM src WHERE list_contains({VOIDED}, js(status)) "
                    "AND coalesce(js(use), 'claim') = 'claim'",
                )
            ]
        odd = sorted(set(odd))
        if len(odd) > lines // 2:
            return None  # mostly unusual: the per-resource reader does it all
        if odd:
            _run(con, "DELETE FROM src WHERE list_contains(?::BIGINT[], line)", [odd])
        _MAPPING["space_only"] = _space_only_folder(path.parent)
        _MAPPING["default_zone"] = F.default_zone()
        _raw_zones(con, None if refs.own else con)
        try:
            tables, ignored = MAPPERS[rtype](con, path)
        finally:
            _MAPPING["space_only"], _MAPPING["default_zone"] = False, None
            adjusted, _MAPPING["adjusted"] = _MAPPING["adjusted"], []
        # fhir.py counts a resource nothing identifies (no id; an NDJSON line has no fullUrl) in the load message
        unnamed = _run(con, "SELECT count(*) FROM src WHERE rid(id) IS NULL")[0][0]
    except Exception:  # noqa: BLE001 - anything the SQL did not expect: the per-resource reader decides
        for table in tables.values():
            _run(con, f"DROP TABLE IF EXISTS temp.{table}")
        return None
    finally:
        if con is not None:
            for view in WORK_VIEWS:
                con.execute(f"DROP VIEW IF EXISTS temp.{view}")
            for table in WORK_TABLES:
                con.execute(f"DROP TABLE IF EXISTS temp.{table}")
    for source, table in tables.items():
        rows = TableRows(
            con,
            table,
            _run(con, f"SELECT count(*) FROM {table}")[0][0],
            nul_free=nul_free(path),
            cleaned=cleaned(source),
        )
        if not len(rows):
            rows.drop()
        elif refs.own:  # a private connection: the rows leave it as a frame (read_interop without the loader)
            batch.add_frame(source, rows.frame(batch.contracts[source].column_names))
            rows.drop()
        else:
            batch.add_table(source, rows)
    for what, n in ignored:
        batch.ignored[what] += n
    for what, n in adjusted:
        batch.adjusted[what] += n
    if unnamed:
        batch.adjusted[f"FHIR {rtype} {F.NO_IDENTITY}"] += unnamed
    return odd


def _space_only_folder(folder: Path) -> bool:
    """Every JSON / NDJSON file of the folder (the mapped file and the siblings its references read) is `space_only`,
    and so is the id namespace (it prefixes ids): a mapped value can hold no whitespace but spaces."""
    ns = F.id_namespace()
    if ns is not None and not (ns.isascii() and ns.isprintable()):
        return False
    files = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in (".ndjson", ".json")]
    return all(not p.is_symlink() and p.is_file() and space_only(p) for p in files)


def _frame(con: duckdb.DuckDBPyConnection, sql: str, source: str, params: list | None = None) -> str:
    """The mapped rows of `source` as text in a temp table `_fhir_<source>`, with `_src_line` and `_ord` (emission
    order within a line): the loader stages them in that order. Each value is cleaned once here as Batch.add and
    the loader's staging would have left it (`_clean`), so the loader does not trim them again (TableRows.cleaned)."""
    from ptpulse.core.contracts import load_contracts

    columns = load_contracts()[source].columns
    text = ", ".join(f'CAST("{c.name}" AS VARCHAR) AS "{c.name}"' for c in columns)
    select = ", ".join(f'{_clean(c, _MAPPING["space_only"])} AS "{c.name}"' for c in columns)
    table = f"_fhir_{source}"
    _run(
        con,
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {select}, _src_line, _ord FROM ("
        f"SELECT {text}, line AS _src_line, ord AS _ord FROM ({sql}))",
        params,
    )
    return table


def cleaned(source: str) -> dict[str, str]:
    """`_clean` of every column of `source` (TableRows.cleaned: rows appended later get the same)."""
    from ptpulse.core.contracts import load_contracts

    return {c.name: _clean(c) for c in load_contracts()[source].columns}


# set by read_bulk while a file is mapped: every file of its folder is `space_only` (values can hold no whitespace
# but spaces), so `_frame` trims with the cheap space test
_MAPPING: dict = {"space_only": False, "default_zone": None, "adjusted": []}  # adjusted: (note, count) of the mapping


def _clean(col, space_only: bool = False) -> str:
    """SQL: the text of `col` as the per-value path leaves it staged: empty or all-space -> NULL (`vtext`), then
    trimmed of the contract's TRIM_CHARS (validation.trimmed_expr) when the contract trims the column. One edge
    test instead of two (the staging's is skipped for these rows), and a cheaper one: the last character is taken
    by position (`right(x, 1)` costs ~3x more)."""
    x = f'"{col.name}"'
    if not col.trim:
        return f"vtext({x})"
    if space_only:  # no other whitespace in any value: an edge that is not a space needs no trim
        return (
            f"CASE WHEN starts_with({x}, ' ') OR ends_with({x}, ' ') THEN CASE WHEN trim({x}) = '' THEN NULL "
            f"ELSE trim({x}, {lit(TRIM_CHARS)}) END ELSE nullif({x}, '') END"
        )
    edges = ", ".join(str(ord(ch)) for ch in TRIM_CHARS if ord(ch) > 32)
    last = f"ord(substring({x}, length({x})))"
    return (
        f"CASE WHEN {x} = '' THEN NULL WHEN ord({x}) <= 32 OR ord({x}) IN ({edges}) OR {last} <= 32 "
        f"OR {last} IN ({edges}) THEN CASE WHEN trim({x}) = '' THEN NULL ELSE trim({x}, {lit(TRIM_CHARS)}) END "
        f"ELSE {x} END"
    )


def _ignored(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[str, int]]:
    return _run(con, f"SELECT what, count(*) FROM ({sql}) GROUP BY what")


def _case(expr: str, mapping: dict[str, str]) -> str:
    return f"CASE {expr} " + " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in mapping.items()) + " END"


def _appointments(con: duckdb.DuckDBPyConnection, path: Path):
    _run(
        con,
        f"""
        CREATE OR REPLACE TEMP VIEW appt AS
        SELECT *, {_case("js(status)", F.APPOINTMENT_EVENT)} AS ev,
               list_transform(participant, lambda p: p.actor.reference) AS actors
        FROM src""",
    )
    ignored = _ignored(
        con, "SELECT 'FHIR Appointment (status ' || shown_code(js(status)) || ')' AS what FROM appt WHERE ev IS NULL"
    )
    code = "first_code(cancelationReason)"
    # every value of the resource computed once (the booking and the status event repeat them); `created` is the
    # booking whatever the status now (fhir.py `_appointment`): ord 0 = that booking, ord 1 = the current status
    sql = f"""
        WITH a AS (
            SELECT a.line, ev, stem('Appointment/' || rid(id)) AS stem,
                   fid('Appointment/' || rid(id)) AS appointment_id,
                   fid(list_filter(supportingInformation, lambda r: rtype(r.reference) = 'EpisodeOfCare')[1].reference)
                       AS episode_id,
                   fid(list_filter(basedOn, lambda r: rtype(r.reference) = 'ServiceRequest')[1].reference)
                       AS referral_id,
                   fid(list_filter(actors, lambda r: rtype(r) = 'Patient')[1]) AS patient_id,
                   fid(loc_ref) AS clinic_id,
                   CASE WHEN th_ref IS NOT NULL THEN {_therapist("th_ref", "th")} END AS therapist_id,
                   fts(js(created), zone) AS created_at, fts(js(meta.lastUpdated), zone) AS updated_at,
                   fts(js(start), zone) AS scheduled_start,
                   jnum(minutesDuration) AS duration_min,
                   coalesce(first_code_in(appointmentType, ['{F.PTPULSE_VISIT_TYPE}']),
                            CASE first_code(appointmentType) WHEN 'FOLLOWUP' THEN 'follow_up' END) AS visit_type,
                   CASE WHEN ev = 'cancelled' THEN coalesce(
                       first_code_in(cancelationReason, ['{F.PTPULSE_CANCEL_REASON}']),
                       CASE WHEN {code} IS NULL THEN NULL
                            ELSE coalesce({_case(code, F.CANCEL_REASON)},
                                          CASE WHEN starts_with({code}, 'prov') THEN 'clinic_cancelled' ELSE 'other' END)
                       END) END AS cancel_reason
            FROM (SELECT a.*, {_clinic_zone("loc.tz", "rz", "a.loc_ref IS NOT NULL")} AS zone
                  FROM (SELECT *, list_filter(actors, lambda r: rtype(r) = 'Location')[1] AS loc_ref,
                               coalesce(list_filter(actors, lambda r: rtype(r) = 'Practitioner')[1],
                                        list_filter(actors, lambda r: rtype(r) = 'PractitionerRole')[1]) AS th_ref
                        FROM appt WHERE ev IS NOT NULL) a
                  LEFT JOIN target loc ON loc.key = a.loc_ref
                  LEFT JOIN raw_tz rz ON rz.clinic_id = fid(a.loc_ref)) a
            LEFT JOIN target th ON th.key = a.th_ref),
        e AS (
            SELECT *, CASE WHEN ord = 0 THEN 'booked' ELSE ev END AS kind
            FROM (SELECT *, unnest(CASE WHEN ev = 'booked' THEN [0] WHEN created_at IS NOT NULL THEN [0, 1]
                                        ELSE [1] END) AS ord FROM a))
        SELECT line, ord, stem || '#' || kind AS event_id, appointment_id, episode_id, referral_id, patient_id,
               clinic_id, therapist_id, kind AS event_type,
               CASE WHEN ev = 'booked' THEN coalesce(created_at, updated_at)
                    WHEN kind = 'booked' THEN created_at ELSE updated_at END AS event_at,
               scheduled_start, duration_min, visit_type,
               CASE WHEN kind = 'cancelled' THEN cancel_reason END AS cancel_reason,
               NULL AS notice_hours, NULL AS recorded_by
        FROM e"""
    return {"scheduling_events": _frame(con, sql, "scheduling_events")}, ignored


def _encounters(con: duckdb.DuckDBPyConnection, path: Path):
    keep = "js(class.code) IN ('AMB', 'ambulatory') AND js(status) IN ('finished', 'arrived', 'in-progress')"
    ignored = _ignored(
        con,
        "SELECT 'FHIR Encounter (not an ambulatory visit, or status ' || shown_code(js(status)) || ')' AS what "
        f"FROM src WHERE NOT coalesce({keep}, false)",
    )
    _run(con, f"CREATE OR REPLACE TEMP VIEW enc_keep AS SELECT * FROM src WHERE {keep}")  # a view: no copy of src
    if not _run(con, "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = 'enc_ids'")[0][0]:
        _visit_sql(con, "enc_keep", "enc_ids")  # else read_bulk kept those of the references' parse (every line)
    start, end = "js(k.period.start)", 'js(k.period."end")'
    # two UTC instants to the second (what an export writes) subtract as plain timestamps: one regex each instead
    # of the general pattern's four extracts per instant
    minutes = (
        f"CASE WHEN regexp_full_match({start}, '{UTC}') AND regexp_full_match({end}, '{UTC}') "
        f"THEN CAST(floor(epoch(CAST(left({end}, 19) AS TIMESTAMP) - CAST(left({start}, 19) AS TIMESTAMP)) / 60) "
        f"AS BIGINT) "
        f"ELSE CAST(floor(epoch(CAST(wall({end}) || replace(regexp_extract({end}, '{INSTANT}', 4), 'Z', '+00:00') "
        f"AS TIMESTAMPTZ) - CAST(wall({start}) || replace(regexp_extract({start}, '{INSTANT}', 4), 'Z', '+00:00') "
        f"AS TIMESTAMPTZ)) / 60) AS BIGINT) END"
    )
    # each timestamp converted once per resource, then one row per event (an unnest, not a join on a condition)
    zone = _clinic_zone("i.zone", "rz", "i.clinic_id IS NOT NULL")
    sql = f"""
        WITH k AS (
            SELECT k.line, k.id, k.status, i.* EXCLUDE (line, zone), appt.appt_start, appt.appt_minutes,
                   appt.visit_type, {zone} AS zone,
                   fts({start}, {zone}) AS start_at, fts({end}, {zone}) AS end_at,
                   CASE WHEN {end} IS NOT NULL THEN CAST({minutes} AS VARCHAR) END AS minutes
            FROM enc_keep k
            JOIN enc_ids i ON i.line = k.line
            LEFT JOIN raw_tz rz ON rz.clinic_id = i.clinic_id
            LEFT JOIN target appt ON appt.key = i.appointment_ref AND appt.type = 'Appointment'),
        ev AS (
            SELECT *, CASE ord WHEN 0 THEN 'arrived' ELSE 'completed' END AS event_type
            FROM (SELECT *, unnest(CASE WHEN js(status) = 'finished' THEN [0, 1] ELSE [0] END) AS ord FROM k))
        SELECT line, ord,
               stem('Encounter/' || rid(id)) || '#' || event_type AS event_id,
               appointment_id, episode_id, referral_id, patient_id, clinic_id, therapist_id,
               event_type,
               CASE WHEN ord = 0 THEN start_at ELSE coalesce(end_at, start_at) END AS event_at,
               CASE WHEN appt_start IS NOT NULL THEN fts(appt_start, zone) ELSE start_at END AS scheduled_start,
               CASE WHEN appt_start IS NOT NULL THEN appt_minutes ELSE minutes END AS duration_min,
               visit_type, NULL AS cancel_reason, NULL AS notice_hours, NULL AS recorded_by
        FROM ev"""
    return {"scheduling_events": _frame(con, sql, "scheduling_events")}, ignored


SKIPPED = _sql_list(F.MONEY_SKIPPED_STATUS)  # fhir.py: draft / cancelled / entered-in-error carry no money
VOIDED = _sql_list(F.VOIDED_CLAIM_STATUS)  # fhir.py maps these Claims (their claim's voided version): left to it


def _claims(con: duckdb.DuckDBPyConnection, path: Path):
    skip = f"list_contains({SKIPPED}, js(status)) OR coalesce(js(use), 'claim') <> 'claim'"
    ignored = _ignored(
        con,
        "SELECT 'FHIR Claim (use ' || shown_code(js(use)) || ', status ' || shown_code(js(status)) || ')' AS what "
        f"FROM src WHERE {skip}",
    )
    cpt = _sql_list(F.CPT_SYSTEMS)
    _run(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE items AS
        -- unnest in the select list: a lateral unnest ... WITH ORDINALITY groups by the whole item list (slow)
        WITH i AS (
            SELECT c.line, c.careTeam, unnest(c.item) AS item, generate_subscripts(c.item, 1) AS n
            FROM src c WHERE NOT coalesce({skip}, false)),
        -- the item's values, not the item, before the join: a nested struct is costly to carry through a hash join
        m AS (
            SELECT i.line, i.n, i.item.encounter[1].reference AS enc_ref,
                   nullif(js(i.item.id), '') AS item_sid, jnum(i.item.sequence) AS item_seq,
                   first_code_in(i.item.productOrService, {cpt}) AS cpt_code,
                   nullif(array_to_string(list_filter(list_transform(coalesce(i.item.modifier, []),
                       lambda m: codes(m)[1].code), lambda x: x IS NOT NULL), '|'), '') AS modifiers,
                   whole(jnum(i.item.quantity.value)) AS units, money(i.item.net) AS net,
                   -- the member whose sequence is the item's: first where the list puts it (sequence k at k), else
                   -- searched (`_odd_lines` made sequences unique, so both find the same one)
                   CASE WHEN CAST(i.careTeam[TRY_CAST(CAST(i.item.careTeamSequence[1] AS VARCHAR) AS BIGINT)].sequence
                                  AS VARCHAR) = CAST(i.item.careTeamSequence[1] AS VARCHAR)
                        THEN i.careTeam[TRY_CAST(CAST(i.item.careTeamSequence[1] AS VARCHAR) AS BIGINT)]
                        ELSE list_filter(coalesce(i.careTeam, []), lambda t: CAST(t.sequence AS VARCHAR)
                            = CAST(i.item.careTeamSequence[1] AS VARCHAR))[1] END.provider.reference AS team_ref,
                   coalesce(js(i.item.servicedDate), js(i.item.servicedPeriod.start)) AS item_raw
            FROM i)
        SELECT m.line, m.n, v.appointment_id, v.episode_id, v.clinic_id, v.therapist_id,
               coalesce(v.zone, rz.tz) AS zone, v.clinic_id IS NOT NULL AS named,
               m.item_sid, m.item_seq, m.cpt_code, m.modifiers, m.units, m.net, m.team_ref, m.item_raw
        FROM m LEFT JOIN enc_visit v ON v.key = m.enc_ref
        LEFT JOIN raw_tz rz ON rz.clinic_id = v.clinic_id""",
    )
    # fhir.py `_claim`: the facility's zone, else the provider Organization's, else the items' encounters' (each the
    # export's, else raw.clinics'); else the practice default when any of them names a clinic
    named = "(h.facility IS NOT NULL OR rtype(h.provider.reference) = 'Organization' OR coalesce(h.item_named, false))"
    default = _MAPPING["default_zone"]
    zone = "coalesce(h.facility_tz, h.provider_tz, h.item_zone" + (
        f", CASE WHEN {named} THEN {lit(default)} END)" if default else ")"
    )
    clinic = (
        "coalesce('npi:' || h.facility_npi, fid(h.facility.reference), CASE WHEN h.facility IS NULL "
        "AND rtype(h.provider.reference) = 'Organization' THEN coalesce('npi:' || h.provider_npi, "
        "fid(h.provider.reference)) END)"
    )
    # the claim's zone, submission time, clinic and first item date (local, in that zone) once per claim (its charges
    # repeat them)
    _run(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE clm_head AS
        WITH h AS (SELECT h.*, {zone} AS zone FROM (
        SELECT c.line, c.id, c.identifier, c.patient, c.insurer, c.facility, c.provider, c.billablePeriod, c.created,
               c.total,
               CASE WHEN rtype(c.provider.reference) IN ('Practitioner', 'PractitionerRole') THEN c.provider.reference
                    ELSE c.careTeam[1].provider.reference END AS default_ref,
               fac.npi AS facility_npi, coalesce(fac.tz, rzf.tz) AS facility_tz, org.npi AS provider_npi,
               CASE WHEN c.facility IS NULL AND rtype(c.provider.reference) = 'Organization'
                    THEN coalesce(org.tz, rzp.tz) END AS provider_tz,
               agg.episodes, coalesce(agg.n_items, 0) AS n_items, agg.all_net, agg.net_sum,
               agg.item_zone, agg.item_named
        FROM src c
        LEFT JOIN target fac ON fac.key = c.facility.reference
        LEFT JOIN raw_tz rzf ON rzf.clinic_id = fid(c.facility.reference)
        LEFT JOIN target org ON c.facility IS NULL AND rtype(c.provider.reference) = 'Organization'
                            AND org.key = c.provider.reference
        LEFT JOIN raw_tz rzp ON c.facility IS NULL AND rtype(c.provider.reference) = 'Organization'
                            AND rzp.clinic_id = coalesce('npi:' || org.npi, fid(c.provider.reference))
        LEFT JOIN (SELECT line, list(DISTINCT coalesce(episode_id, '')) AS episodes, count(*) AS n_items,
                          bool_and(net IS NOT NULL) AS all_net,
                          sum(CAST(net AS DECIMAL(38, 10))) AS net_sum,
                          arg_min(zone, n) FILTER (WHERE zone IS NOT NULL) AS item_zone,
                          bool_or(named) AS item_named
                   FROM items GROUP BY line) agg ON agg.line = c.line
        WHERE NOT coalesce(list_contains({SKIPPED}, js(c.status)) OR coalesce(js(c.use), 'claim') <> 'claim', false)) h)
        SELECT h.*, fts(js(h.created), h.zone) AS submitted_at, {clinic} AS clinic_id, d.first_item_date
        FROM h LEFT JOIN (SELECT i.line, min(ldate(i.item_raw, h.zone)) AS first_item_date
                          FROM items i JOIN h ON h.line = i.line GROUP BY i.line) d ON d.line = h.line""",
    )
    claims = f"""
        SELECT h.line, 0 AS ord, fid('Claim/' || rid(h.id)) AS claim_id,
               CASE WHEN h.n_items > 0 AND len(h.episodes) = 1 THEN nullif(h.episodes[1], '') END AS episode_id,
               fid(h.patient.reference) AS patient_id, h.clinic_id,
               fid(h.insurer.reference) AS payer_id,
               coalesce(ldate(js(h.billablePeriod.start), h.zone), h.first_item_date) AS service_date,
               h.submitted_at,
               coalesce(money(h.total),
                        CASE WHEN h.n_items > 0 AND h.all_net THEN CAST(h.net_sum AS VARCHAR) END) AS billed_usd,
               {_claim_number("h.identifier")} AS claim_number, NULL AS status
        FROM clm_head h"""
    # fhir.py `_item_id`: the item's element id (the practice's charge id), else `Claim/<id>#item<sequence>`
    stem = "stem('Claim/' || rid(h.id))"
    element = "v.item_sid"
    item_id = (
        f"coalesce({stem} || '#' || {element}, {stem} || '#item' || v.item_seq)"
        if F.id_namespace()
        else f"coalesce({element}, {stem} || '#item' || v.item_seq)"
    )
    item_id = f"CASE WHEN rid(h.id) IS NOT NULL THEN {item_id} END"  # a Claim without id: its lines have none either
    charges = f"""
        SELECT h.line, v.n AS ord,
               {item_id} AS charge_id,
               fid('Claim/' || rid(h.id)) AS claim_id,
               v.appointment_id, v.episode_id,
               fid(h.patient.reference) AS patient_id,
               coalesce(h.clinic_id, v.clinic_id) AS clinic_id,
               CASE WHEN coalesce(v.team_ref, h.default_ref) IS NOT NULL
                    THEN {_therapist("coalesce(v.team_ref, h.default_ref)", "pr")}
                    ELSE v.therapist_id END AS therapist_id,
               coalesce(ldate(v.item_raw, h.zone), ldate(js(h.billablePeriod.start), h.zone), h.first_item_date)
                   AS service_date,
               v.cpt_code, v.modifiers, v.units, NULL AS minutes, v.net AS charge_usd,
               h.submitted_at AS posted_at
        FROM clm_head h
        JOIN items v ON v.line = h.line
        LEFT JOIN target pr ON pr.key = coalesce(v.team_ref, h.default_ref)"""
    tables = {"claims": _frame(con, claims, "claims"), "charges": _frame(con, charges, "charges")}
    # fhir.py `_item_ids`: an item without element id nor sequence has no charge id (NULL above); an item whose charge
    # id (as it lands: cleaned) an earlier item of its Claim already has gets none. Both are quarantined `required`
    # and counted in the load message with fhir.py's words. One window over the charges, no per-row Python.
    unsequenced = _run(
        con,
        "SELECT count(*) FROM items v JOIN clm_head h ON h.line = v.line "
        "WHERE rid(h.id) IS NOT NULL AND v.item_sid IS NULL AND v.item_seq IS NULL",
    )[0][0]
    repeated = _run(
        con,
        f"UPDATE {tables['charges']} SET charge_id = NULL WHERE rowid IN (SELECT rowid FROM {tables['charges']} "
        "WHERE charge_id IS NOT NULL QUALIFY row_number() OVER (PARTITION BY _src_line, charge_id ORDER BY _ord) > 1)",
    )[0][0]
    _MAPPING["adjusted"] += [
        (what, n) for what, n in ((F.ITEM_NO_SEQUENCE, unsequenced), (F.ITEM_REPEATED, repeated)) if n
    ]
    return tables, ignored


def _claim_number(identifier: str) -> str:
    """fhir.py `_claim_number` in SQL: the first identifier with a value, spelled as `identifier_id` spells it."""
    first = (
        f"CASE WHEN json_type({identifier}) = 'ARRAY' THEN list_filter(json_extract({identifier}, '$[*]'), "
        "lambda i: coalesce(i->>'$.value', '') <> '')[1] END"
    )
    ns = F.id_namespace()
    if not ns:
        return f"({first})->>'$.value'"
    prefix = "'" + ns.replace("'", "''") + ":'"
    return f"{prefix} || coalesce(({first})->>'$.system', '') || '|' || (({first})->>'$.value')"


def _eobs(con: duckdb.DuckDBPyConnection, path: Path):
    skip = f"list_contains({SKIPPED}, js(status)) OR coalesce(js(use), 'claim') <> 'claim'"
    ignored = _ignored(
        con,
        "SELECT 'FHIR ExplanationOfBenefit (use ' || shown_code(js(use)) || ', status ' || shown_code(js(status))"
        f" || ')' AS what FROM src WHERE {skip}",
    )

    def last(code: str) -> str:  # fhir.py's `totals` dict: the last total of a category wins
        return f"list_filter(tl, lambda t: t.k = '{code}')[-1].amount"

    def total(categories: list[str]) -> str:
        hits = f"list_filter(tl, lambda t: list_has_any(t.cats, {_sql_list(categories)}) AND t.amount IS NOT NULL)"
        return (
            f"CASE WHEN len({hits}) > 0 THEN "
            f"list_sum(list_transform({hits}, lambda t: CAST(t.amount AS DECIMAL(38, 10)))) END"
        )

    # every amount computed once per EOB (each is tested, then shown)
    _run(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE eob_m AS
        SELECT line, outcome, key, claim_id, payer_id, created, denial_carc, {last("submitted")} AS submitted,
               coalesce(money(payment.amount), {last("benefit")}) AS paid,
               coalesce(fts(js(payment.date), NULL), created) AS paid_at, js(payment.identifier.value) AS check_number,
               {total(sorted(F.PATIENT_RESPONSIBILITY))} AS share,
               {total(["submitted"])} - {total(sorted(F.ALLOWED))} AS contractual
        FROM (
            SELECT e.line, e.outcome, e.payment,
                   stem('ExplanationOfBenefit/' || rid(e.id)) AS key,
                   fid(e.claim.reference) AS claim_id, fid(e.insurer.reference) AS payer_id,
                   fts(js(e.created), {_clinic_zone("loc.tz", "rz", "e.facility IS NOT NULL")}) AS created,
                   list_transform(coalesce(e.total, []), lambda t: struct_pack(k := first_code(t.category),
                       cats := list_transform(codes(t.category), lambda c: c.code), amount := money(t.amount))) AS tl,
                   list_filter(list_transform(coalesce(e.adjudication, []),
                       lambda a: first_code_in(a.reason, ['{F.CARC_SYSTEM}'])), lambda x: x IS NOT NULL)[1]
                       AS denial_carc
            FROM src e LEFT JOIN target loc ON loc.key = e.facility.reference
            LEFT JOIN raw_tz rz ON rz.clinic_id = CASE WHEN rtype(e.facility.reference) = 'Organization'
                THEN coalesce('npi:' || loc.npi, fid(e.facility.reference)) ELSE fid(e.facility.reference) END
            WHERE NOT coalesce({skip}, false))""",
    )
    sql = """
        SELECT line, 0 AS ord, key || '#denial' AS remit_id, claim_id, payer_id, 'denial' AS event_type,
               created AS event_at, submitted AS amount_usd, NULL AS group_code, denial_carc AS carc_code,
               NULL AS check_number, NULL AS episode_id, NULL AS service_date
        FROM eob_m WHERE js(outcome) = 'error'
        UNION ALL
        SELECT line, 1, key || '#payer_payment', claim_id, payer_id, 'payer_payment', paid_at, paid, NULL, NULL,
               check_number, NULL, NULL
        FROM eob_m WHERE paid IS NOT NULL AND CAST(paid AS DECIMAL(38, 10)) <> 0
        UNION ALL
        SELECT line, 2, key || '#patient_responsibility', claim_id, payer_id, 'patient_responsibility', created,
               CAST(share AS VARCHAR), 'PR', NULL, NULL, NULL, NULL
        FROM eob_m WHERE coalesce(share, 0) <> 0
        UNION ALL
        SELECT line, 3, key || '#contractual_adjustment', claim_id, payer_id, 'contractual_adjustment', created,
               CAST(contractual AS VARCHAR), 'CO', NULL, NULL, NULL, NULL
        FROM eob_m WHERE contractual > 0"""
    return {"remittances": _frame(con, sql, "remittances")}, ignored


def _patients(con: duckdb.DuckDBPyConnection, path: Path):
    """fhir.py `_patient`: names (official, else first), first phone / email, home (else first) address, ZIP+4 -> 5,
    Coverage (beneficiary, active, lowest order, file order) -> payer and member id; created = updated = the
    resource's lastUpdated, else the export's transactionTime."""
    folder = F._folder(path)  # noqa: SLF001 - the same folder state fhir.py reads
    ceiling = folder.transaction_time if folder is not None else None
    gender = _case("js(gender)", F.GENDER)
    sql = rf"""
        WITH p AS (
            SELECT line, rid(id) AS rid,
                   coalesce(list_filter(name, lambda n: js(n.use) = 'official')[1], name[1]) AS nm,
                   list_filter(telecom, lambda t: js(t.system) = 'phone')[1].value AS phone,
                   list_filter(telecom, lambda t: js(t.system) = 'email')[1].value AS email,
                   coalesce(list_filter(address, lambda a: js(a.use) = 'home')[1], address[1]) AS addr,
                   birthDate, gender, meta
            FROM src),
        c AS (
            SELECT beneficiary, arg_min(struct_pack(payor := payor, member_id := member_id),
                                        struct_pack(o := ord, r := rank, l := line)) AS cv
            FROM cov WHERE status = 'active' GROUP BY beneficiary)
        SELECT p.line, 0 AS ord, fid('Patient/' || rid) AS patient_id,
               js(nm.given[1]) AS first_name, js(nm.family) AS last_name,
               fdate(js(birthDate)) AS birth_date, coalesce({gender}, js(gender)) AS sex,
               js(phone) AS phone, js(email) AS email,
               nullif(array_to_string(list_transform(coalesce(addr.line, []), lambda x: js(x)), ', '), '')
                   AS address_line,
               js(addr.city) AS city, js(addr.state) AS state,
               CASE WHEN regexp_full_match(js(addr.postalCode), '\d{{5}}(-?\d{{4}})?') THEN left(js(addr.postalCode), 5)
                    ELSE js(addr.postalCode) END AS zip,
               fid(c.cv.payor) AS primary_payer_id, c.cv.member_id AS member_id,
               coalesce(fts(js(meta.lastUpdated), NULL), ?) AS created_at,
               coalesce(fts(js(meta.lastUpdated), NULL), ?) AS updated_at
        FROM p LEFT JOIN c ON c.beneficiary = 'Patient/' || p.rid"""
    return {"patients": _frame(con, sql, "patients", [ceiling, ceiling])}, []


def _service_requests(con: duckdb.DuckDBPyConnection, path: Path):
    """fhir.py `_service_request`: one `received` intake event per request (plain shapes: see `_odd_lines`)."""
    skipped = (
        f"list_contains({_sql_list(F.SR_SKIPPED_STATUS)}, js(status)) "
        f"OR list_contains({_sql_list(F.SR_SKIPPED_INTENT)}, js(intent))"
    )
    ignored = _ignored(
        con,
        "SELECT 'FHIR ServiceRequest (status ' || shown_code(js(status)) || ', intent ' || shown_code(js(intent))"
        f" || ')' AS what FROM src WHERE coalesce({skipped}, false)",
    )
    icd = _sql_list(F.ICD10_SYSTEMS)
    sql = f"""
        SELECT s.line, 0 AS ord, stem('ServiceRequest/' || rid(s.id)) || '#received' AS event_id,
               fid('ServiceRequest/' || rid(s.id)) AS referral_id,
               CASE WHEN rtype(s.subject.reference) = 'Patient' THEN fid(s.subject.reference) END AS patient_id,
               fid(s.locationReference[1].reference) AS clinic_id,
               'received' AS event_type,
               fts(js(s.authoredOn), {_clinic_zone("loc.tz", "rz", "s.locationReference[1] IS NOT NULL")}) AS event_at,
               'referral' AS intake_kind,
               CASE rtype(s.requester.reference) WHEN 'Practitioner' THEN 'physician'
                    WHEN 'PractitionerRole' THEN 'physician' WHEN 'Patient' THEN 'direct_access'
                    WHEN 'RelatedPerson' THEN 'direct_access' END AS source_type,
               CASE WHEN rtype(s.requester.reference) IN ('Practitioner', 'PractitionerRole') THEN req.npi END
                   AS referring_physician_id,
               NULL AS channel,
               fid(cv.payor) AS payer_id,
               list_filter(list_transform(coalesce(s.reasonCode, []), lambda c: first_code_in(c, {icd})),
                   lambda x: x IS NOT NULL)[1] AS icd10_code,
               NULL AS outreach_method, NULL AS outreach_outcome, NULL AS reason, NULL AS recorded_by
        FROM src s
        LEFT JOIN target loc ON loc.key = s.locationReference[1].reference
        LEFT JOIN raw_tz rz ON rz.clinic_id = fid(s.locationReference[1].reference)
        LEFT JOIN target req ON req.key = s.requester.reference
        LEFT JOIN (SELECT key, payor FROM cov QUALIFY row_number() OVER (PARTITION BY key ORDER BY rank, line) = 1) cv
          ON cv.key = s.insurance[1].reference
        WHERE NOT coalesce({skipped}, false)"""
    return {"intake_events": _frame(con, sql, "intake_events")}, ignored


MAPPERS = {
    "Patient": _patients,
    "ServiceRequest": _service_requests,
    "Appointment": _appointments,
    "Encounter": _encounters,
    "Claim": _claims,
    "ExplanationOfBenefit": _eobs,
}
