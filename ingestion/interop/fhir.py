"""FHIR R4 JSON reader: a resource, a Bundle (nested Bundles too) or an NDJSON bulk export -> contract rows.

Mapped: Patient (+Coverage) -> patients; ServiceRequest -> intake_events; Appointment, Encounter -> scheduling_events;
Location, Organization -> clinics / payers; Practitioner (+PractitionerRole) -> therapists / referring_physicians;
Procedure -> charges;
Claim -> claims + charges; ClaimResponse, ExplanationOfBenefit -> remittances. Every other resource type
is counted in the load message as not mapped. Mapping tables: ingestion/interop/README.md.

Ids a source carries ARE the practice's record ids (the lead's merge rule, docs/architecture.md), so FHIR rows merge
with the same records from the practice's CSVs or vendor exports: a reference `Patient/example` (relative, absolute,
or a Bundle `urn:uuid:` resolved to its resource) becomes `example`; an identifier-only reference its `value`. Ids we
derive (events, remittances, claim items without an element id) keep the type, `Appointment/<id>#booked`, so they
never collide with a record id. With `PTPULSE_FHIR_ID_NAMESPACE=<ns>` (only for a practice whose FHIR ids collide
with its other systems' ids) every id becomes `<ns>:<Type>/<id>` / `<ns>:<system>|<value>`. An Organization that
carries a US NPI becomes `npi:<NPI>` (the id an X12 file gives it), and so does a Practitioner named only by its
NPI (a conditional reference the export cannot resolve). A reference with only a display text carries no id.

Times: converted to the clinic's zone: its Location's (R4 timezone extension) in the file or export folder, else the
one raw.duckdb holds for that clinic (`Zones`, through the loader's connection), else the practice default zone
(PTPULSE_DEFAULT_TIMEZONE) for a resource naming a clinic; otherwise, as follows. The wall-clock time is kept as
written and the offset dropped (sources write local time with the local offset); a date without a time becomes
midnight; partial dates (`2013`, `2013-05`) are passed through and quarantined as invalid.

A resource without `id` is its Bundle entry's fullUrl (a transaction's POST entries); with neither it has no record
id (its rows are quarantined `required`), never a placeholder shared with others.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ingestion.files import FileRefused, display_name
from ingestion.interop import Batch, TableRows, read_text, shown_code, shown_type

FIX = "Export it again as FHIR R4 JSON (one resource or Bundle per .json file, one resource per line in .ndjson)."
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
CPT_SYSTEMS = {
    "http://www.ama-assn.org/go/cpt",
    "urn:oid:2.16.840.1.113883.6.12",
    "https://bluebutton.cms.gov/resources/codesystem/hcpcs",
    "urn:oid:2.16.840.1.113883.6.285",
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
}
ICD10_SYSTEMS = {"http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"}
REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
CONDITIONAL = re.compile(r"^([A-Z][A-Za-z]+)\?identifier=([^|]*)\|(.+)$")
TIMEZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"
INSTANT = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:T(\d{2}:\d{2})(:\d{2})?(?:\.\d+)?(Z|[+-]\d{2}:\d{2})?)?$")

GENDER = {"male": "M", "female": "F", "other": "X", "unknown": "U"}
APPOINTMENT_EVENT = {
    "booked": "booked",
    "arrived": "arrived",
    "checked-in": "arrived",
    "fulfilled": "completed",
    "cancelled": "cancelled",
    "noshow": "no_show",
}
# The practice's own code systems (a PT Pulse export, seed_data/formats/fhir_bulk.py): codes are contract values
PTPULSE_VISIT_TYPE = "https://ptpulse.example.org/fhir/CodeSystem/visit-type"
PTPULSE_CANCEL_REASON = "https://ptpulse.example.org/fhir/CodeSystem/cancel-reason"
CARC_SYSTEM = "https://x12.org/codes/claim-adjustment-reason-codes"
VISIT_TYPE = {"FOLLOWUP": "follow_up"}  # v2-0276; the other codes (ROUTINE, WALKIN, ...) name no PT visit type
CANCEL_REASON = {
    "pat-fb": "feeling_better",
    "pat-lt": "transportation",
    "oth-weath": "weather",
    "oth-fin": "financial",
    "maint": "clinic_cancelled",
    "oth-room": "clinic_cancelled",
}
SR_SKIPPED_STATUS = {"draft", "entered-in-error"}
# A Claim not (yet / any longer) sent, and a payer's ClaimResponse / ExplanationOfBenefit withdrawn (replaced by
# another): no money. Skipped, counted in the load message by status.
MONEY_SKIPPED_STATUS = {"draft", "cancelled", "entered-in-error"}
# A Claim sent and then withdrawn (cancelled, or entered in error): lands as the claim's voided version (claims
# status `voided`, no charges), so a cancellation in a later file than the Claim un-bills it (`_claim`). A draft was
# never sent: skipped.
VOIDED_CLAIM_STATUS = {"cancelled", "entered-in-error"}
SR_SKIPPED_INTENT = {"proposal", "plan", "option"}
PATIENT_RESPONSIBILITY = {"copay", "deductible", "coinsurance"}


def read(path: Path, batch: Batch, fast: Any = None, con: Any = None) -> None:
    """Map one FHIR file into `batch`. `fast(path, batch) -> list | None` may map a Bulk folder's NDJSON file in
    SQL (fhir_fast.read_bulk, passed in by read_interop); when it declines, every resource is mapped here. The
    SQL path reads the file itself (never as one Python string): the text is read only for what is left here.
    `con`: the loader's raw.duckdb connection, where raw.clinics gives the zone of a clinic the file names without
    stating it (`Zones`). Of a Claim the file holds several versions of, only the latest is mapped
    (`_latest_claim_versions`)."""
    token = _CLAIM_VERSIONS.set({})
    try:
        _read_file(path, batch, fast, con)
    finally:
        _CLAIM_VERSIONS.reset(token)


def _read_file(path: Path, batch: Batch, fast: Any, con: Any) -> None:
    folder = _folder(path) if path.suffix.lower() == ".ndjson" else None
    zones = Zones(con)
    if folder is not None and folder.transaction_time:
        batch.notes.append(f"FHIR Bulk export transactionTime {folder.transaction_time} UTC (from the export log)")
    if fast is not None and path.suffix.lower() == ".ndjson" and folder is not None and _fast_enabled():
        leftover = fast(path, batch)  # declines an export log (no resource type it maps) and any odd file
        if leftover is not None:
            if leftover:
                _read_lines(path, read_text(path, "FHIR JSON", FIX), batch, folder, set(leftover), zones)
            return
    text = read_text(path, "FHIR JSON", FIX)
    if _export_log_time(text) is not None:
        batch.notes.append("FHIR Bulk Data export log / manifest: read for its transactionTime, holds no resource")
        return
    if path.suffix.lower() == ".ndjson":
        # split on \n only: str.splitlines() also splits on characters JSON allows inside strings (U+2028...)
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                _mapped(
                    path,
                    f"line {number}",
                    _read_resource,
                    _parse(path, line, f"line {number}"),
                    number,
                    batch,
                    path,
                    folder,
                    zones,
                )
    else:
        _mapped(path, "the resource", _read_resource, _parse(path, text, None), 1, batch, path, None, zones)
    _latest_claim_versions(batch)


def _read_lines(path: Path, text: str, batch: Batch, folder: _Folder, lines: set[int], zones: Zones) -> None:
    """The NDJSON lines the SQL reader left (unusual shapes), mapped here resource by resource and merged into
    its frames in line order, so the file's rows are those the per-resource reader alone would give."""
    import polars as pl

    side = Batch(batch.contracts)
    for number, line in enumerate(text.split("\n"), start=1):
        if number in lines and line.strip():
            resource = _parse(path, line, f"line {number}")
            _mapped(path, f"line {number}", _read_resource, resource, number, side, path, folder, zones)
    _latest_claim_versions(side)  # fhir_fast leaves every version of a Claim the file repeats to this reader
    batch.ignored.update(side.ignored)
    batch.adjusted.update(side.adjusted)
    for source, rows in side.rows.items():
        columns = list(batch.contracts[source].column_names)
        frame = pl.DataFrame(
            {c: [row[c] for _, row in rows] for c in columns}, schema={c: pl.Utf8 for c in columns}
        ).with_columns(pl.Series("_src_line", [n for n, _ in rows], dtype=pl.Int64))
        mapped = batch.rows.get(source)
        if isinstance(mapped, TableRows):  # in the loader's connection: the rows join them there (sorted there)
            mapped.append(frame)
            continue
        if mapped is not None:
            frame = pl.concat([mapped.frame, frame]).sort("_src_line", maintain_order=True)
        batch.add_frame(source, frame)


def id_namespace() -> str | None:
    """`PTPULSE_FHIR_ID_NAMESPACE`: unset (default) = FHIR ids are the practice's ids and merge with its other
    systems; set only when two systems' ids collide (the same option as a source profile's `id_namespace`)."""
    import os

    return os.environ.get("PTPULSE_FHIR_ID_NAMESPACE") or None


def entity_id(rtype: str, rid: str) -> str:
    """The record id of resource `rtype/rid`: the resource id itself, unless a namespace is configured."""
    ns = id_namespace()
    return f"{ns}:{rtype}/{rid}" if ns else rid


def identifier_id(system: str, value: str) -> str:
    """The record id an identifier names (identifier-only references, an EOB's claim identifier)."""
    ns = id_namespace()
    return f"{ns}:{system}|{value}" if ns else value


def derived_id(rtype: str, rid: str) -> str:
    """Stem of the ids we derive from a resource (events, remittances): keeps the type, so an Appointment's
    `booked` and its Encounter's `arrived` never share an id, and no derived id equals a record id."""
    ns = id_namespace()
    return f"{ns}:{rtype}/{rid}" if ns else f"{rtype}/{rid}"


def url_id(url: str) -> str:
    """The record id a reference URL names when no resource id stands behind it: `Type/id` at its end (relative or
    absolute) gives that id; anything else (a Bundle `urn:uuid:`) is kept whole. It is also the id of a Bundle entry's
    resource that has no `id` (a transaction's POST entries are named by `fullUrl` only), so the references to that
    fullUrl and the resource meet on one id."""
    match = REFERENCE.search(url)
    if match:
        return entity_id(match.group(1), match.group(2))
    return identifier_id("", url) if id_namespace() else url


def _fast_enabled() -> bool:
    """The SQL mapping of Bulk files (fhir_fast.py) is on unless PTPULSE_FHIR_FAST=0 (tests compare both paths)."""
    import os

    return os.environ.get("PTPULSE_FHIR_FAST", "1") != "0"


# --- Bulk Data $export folders ------------------------------------------------------------------------------

LOG_KEYS = {"exportId", "eventId"}  # a Bulk export log line (bulk-data-client's log.ndjson)
REFERENCED_TYPES = (
    "Organization Location Practitioner PractitionerRole Coverage EpisodeOfCare Encounter Appointment Claim"
).split()


def _export_log_time(text: str) -> str | None:
    """The transactionTime of a Bulk export log (NDJSON of events) or manifest (JSON with `output`), else None.

    Returns "" for a log / manifest without one, so it is still recognised (and not refused)."""
    first = re.match(r"\s*([^\n]*)", text).group(1)  # the first line, without copying a multi-GB text whole
    try:
        head = json.loads(first)
    except (ValueError, RecursionError):
        head = None
    if head is None and '"resourceType"' in text[:4096]:
        return None  # a resource (maybe broken): the resource reader says what is wrong
    if head is not None and (not isinstance(head, dict) or "resourceType" in head):
        return None
    try:
        docs = [json.loads(text)]
    except ValueError:
        try:
            docs = [json.loads(line) for line in text.split("\n") if line.strip()]
        except (ValueError, RecursionError):
            return None
    except RecursionError:
        return None
    if not all(isinstance(d, dict) and "resourceType" not in d for d in docs):
        return None
    is_log = all(LOG_KEYS <= set(d) for d in docs)
    is_manifest = len(docs) == 1 and "transactionTime" in docs[0] and isinstance(docs[0].get("output"), list)
    if not (is_log or is_manifest):
        return None
    times = [d.get("transactionTime") for d in docs] + [
        (d.get("eventDetail") or {}).get("transactionTime") for d in docs if isinstance(d.get("eventDetail"), dict)
    ]
    found = [utc(t) for t in times if isinstance(t, str) and INSTANT.match(t)]
    return max((t for t in found if t), default="")


class _Folder:
    """What a Bulk export folder tells every NDJSON file in it: the export's transactionTime (log or manifest)
    and the referenced resources (Location, Practitioner, Encounter...) of the sibling files, so references
    across files resolve. Sibling lines that cannot be read are skipped here (their own load refuses them).

    The sibling files are parsed lazily, per resource type, the first time a reference to that type is resolved
    (a multi-GB export whose Encounters are mapped in SQL never parses them here); the first resource of each
    `Type/id` in file-name order wins, as if all were read up front."""

    def __init__(self, folder: Path) -> None:
        self.transaction_time: str | None = None
        self.index = _FolderIndex()
        for rank, sibling in enumerate(sorted(folder.iterdir())):
            if sibling.is_symlink() or not sibling.is_file() or sibling.suffix.lower() not in (".ndjson", ".json"):
                continue
            if not _resource_head(sibling):
                try:
                    text = sibling.read_text(encoding="utf-8-sig")
                except (OSError, UnicodeDecodeError):
                    continue
                when = _export_log_time(text)
                if when:
                    self.transaction_time = max(self.transaction_time or "", when)
                    continue
            if sibling.suffix.lower() != ".ndjson":
                continue
            # every NDJSON file, whatever its name: the types it holds are read from its lines (`types_in`), so a
            # Bulk export written as one mixed-type export.ndjson resolves its references like one file per type
            self.index.pending.append((rank, sibling))
            self.index.files.append((rank, sibling))


def _resource_head(path: Path) -> bool:
    """True when the file's first line (within its first MB) is a FHIR resource, so it is no export log
    (`_export_log_time` says None for it) and need not be read whole to find out."""
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 20)
    except OSError:
        return False
    text = head.decode("utf-8-sig", errors="replace").lstrip()
    if "\n" not in text:
        return False
    try:
        first = json.loads(text.split("\n", 1)[0])
    except (ValueError, RecursionError):
        return '"resourceType"' in text[:4096]
    return isinstance(first, dict) and "resourceType" in first


_FOLDERS: dict[tuple, _Folder] = {}


def _folder(path: Path) -> _Folder | None:
    """The export folder of an NDJSON file, read once per state of the folder (names, sizes, mtimes)."""
    folder = path.parent
    try:
        key = (str(folder),) + tuple(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()
        )
    except OSError:
        return None
    if key not in _FOLDERS:
        _FOLDERS.clear()
        _FOLDERS[key] = _Folder(folder)
    return _FOLDERS[key]


def _mapped(path: Path, where: str, fn: Any, *args: Any) -> None:
    """Run a mapper; a value of the wrong JSON type (`"name": "Alice"` where FHIR has a list, a Bundle entry
    that is a string...) refuses the file with its position, naming no value."""
    try:
        fn(*args)
    except RecursionError:
        raise FileRefused(f"{display_name(path)}: {where} is nested too deeply to be read. {FIX}") from None
    except (TypeError, AttributeError, ValueError, KeyError, IndexError, ArithmeticError) as exc:
        raise FileRefused(
            f"{display_name(path)}: {where} has a value of the wrong JSON type for FHIR R4 (e.g. a "
            f"text where an object or a list is expected; {type(exc).__name__}). Fix the export so it "
            f"validates against FHIR R4 and ingest it again."
        ) from None


def _parse(path: Path, text: str, where: str | None) -> dict:
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        at = where or f"line {exc.lineno}, column {exc.colno}"
        raise FileRefused(
            f"{display_name(path)} is not valid JSON ({at}: {exc.msg}); it may be truncated or not a JSON export. {FIX}"
        ) from None
    except RecursionError:
        at = f" ({where})" if where else ""
        raise FileRefused(
            f"{display_name(path)}: the JSON{at} is nested too deeply to be read (thousands of levels). {FIX}"
        ) from None
    except ValueError:  # e.g. an integer with more digits than Python converts
        at = f" ({where})" if where else ""
        raise FileRefused(f"{display_name(path)}: the JSON{at} holds a number that cannot be read. {FIX}") from None
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        at = f" ({where})" if where else ""
        raise FileRefused(f"{display_name(path)} is JSON but not a FHIR resource{at}: no resourceType. {FIX}")
    return data


class _Index:
    """Resources of one file (and their contained ones) by `Type/id`, by Bundle fullUrl and by identifier
    (`Type?identifier=system|value`, the conditional references Synthea and Bulk exports write); `parent` is
    the export folder's index, consulted when the file itself does not hold the target."""

    def __init__(self, parent: _Index | None = None, zones: Zones | None = None) -> None:
        self.by_key: dict[str, dict] = {}
        self.parent = parent
        self.typed: dict[str, list[dict]] = {}
        self.memo: dict[str, dict] = {}  # reverse maps built once per index (coverage by beneficiary...)
        self.zones = zones if zones is not None else Zones()

    def add(self, resource: dict, full_url: str | None) -> None:
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if rtype and rid:
            if f"{rtype}/{rid}" not in self.by_key:
                self.typed.setdefault(rtype, []).append(resource)
            self.by_key.setdefault(f"{rtype}/{rid}", resource)
        if full_url:
            self.by_key.setdefault(full_url, resource)
        idents = resource.get("identifier")
        for ident in idents if isinstance(idents, list) else [idents]:
            if isinstance(ident, dict) and ident.get("value") and rtype:
                self.by_key.setdefault(f"{rtype}?identifier={ident.get('system', '')}|{ident['value']}", resource)

    def get(self, key: str) -> dict | None:
        found = self.by_key.get(key)
        return found if found is not None or self.parent is None else self.parent.get(key)

    def resolve(self, ref: Any, owner: dict | None = None) -> dict | None:
        if not isinstance(ref, dict):
            return None
        text = ref.get("reference")
        if not isinstance(text, str):
            ident = ref.get("identifier")
            if isinstance(ident, dict) and ident.get("value") and ref.get("type"):
                return self.get(f"{ref['type']}?identifier={ident.get('system', '')}|{ident['value']}")
            return None
        if text.startswith("#") and owner is not None:
            return next((c for c in owner.get("contained", []) if c.get("id") == text[1:]), None)
        found = self.get(text)
        if found is not None:
            return found
        match = REFERENCE.search(text)
        return self.get(f"{match.group(1)}/{match.group(2)}") if match else None


class _FolderIndex(_Index):
    """The export folder's index (see `_Folder`): `get` / `typed` load the sibling files holding a type first."""

    def __init__(self) -> None:
        self.by_key: dict[str, dict] = {}
        self.rank: dict[str, int] = {}
        self.typed_all: dict[str, list[tuple[int, dict]]] = {}
        self.memo: dict[str, dict] = {}
        self.parent = None
        self.zones = Zones()
        self.pending: list[tuple[int, Path]] = []  # files not parsed yet
        self.files: list[tuple[int, Path]] = []  # every NDJSON file of the folder (the volume types' key lookups)
        self.types_of: dict[Path, set[str]] = {}
        self.loaded: set[str] = set()

    def ensure(self, rtype: str) -> None:
        """Parse every pending sibling that holds a `rtype` resource (a text scan decides, over-approximating)."""
        if rtype in self.loaded or rtype not in REFERENCED_TYPES:
            return
        self.loaded.add(rtype)
        for rank, sibling in list(self.pending):
            if sibling not in self.types_of:  # the types a file holds, found once per file
                self.types_of[sibling] = types_in(sibling)
            if rtype not in self.types_of[sibling]:
                continue
            self.pending.remove((rank, sibling))
            for line in _ndjson_lines(sibling):
                try:
                    resource = json.loads(line, parse_float=Decimal) if line.strip() else None
                except (ValueError, RecursionError):
                    continue
                if isinstance(resource, dict) and resource.get("resourceType") in REFERENCED_TYPES:
                    self.add(resource, rank)

    def add(self, resource: dict, rank: int) -> None:
        rtype, rid = resource.get("resourceType"), resource.get("id")
        keys = []
        if rtype and rid:
            keys.append(f"{rtype}/{rid}")
            self.typed_all.setdefault(rtype, []).append((rank, resource))
        idents = resource.get("identifier")
        for ident in idents if isinstance(idents, list) else [idents]:
            if isinstance(ident, dict) and ident.get("value") and rtype:
                keys.append(f"{rtype}?identifier={ident.get('system', '')}|{ident['value']}")
        for key in keys:
            if key not in self.by_key or rank < self.rank[key]:
                self.by_key[key], self.rank[key] = resource, rank

    HEAVY = ("Encounter", "Appointment", "Claim")  # the volume types: looked up by key, not parsed whole

    def get(self, key: str) -> dict | None:
        rtype = re.split(r"[/?]", key, maxsplit=1)[0]
        if rtype in self.HEAVY and rtype not in self.loaded and "/" in key and "?" not in key:
            return self._heavy_get(rtype, key)
        self.ensure(rtype)
        return self.by_key.get(key)

    def _heavy_get(self, rtype: str, key: str) -> dict | None:
        """One `Type/id` of a volume type, from a DuckDB table of the files holding that type (built once: key,
        file rank, line, JSON; the first of each key wins, as `ensure` would keep it)."""
        import duckdb

        if not hasattr(self, "heavy"):
            self.heavy = duckdb.connect()
            self.heavy_types: set[str] = set()
            self.heavy_found: dict[str, str | None] = {}
            self.heavy_lookups: dict[str, int] = {}
            self.heavy_all: set[str] = set()
        if rtype not in self.heavy_types:
            self.heavy_types.add(rtype)
            self.ensure_types_of()
            # every file holding the type, parsed for another type already or not (a mixed-type file is parsed when
            # its Locations are first needed): the first of each key in file order, as `ensure` keeps it
            files = [(rank, p) for rank, p in self.files if rtype in self.types_of.get(p, set())]
            self.heavy.execute(f"CREATE TABLE IF NOT EXISTS h_{rtype} (key VARCHAR, rank INT, line BIGINT, j VARCHAR)")
            for rank, sibling in files:
                self.heavy.execute(
                    f"INSERT INTO h_{rtype} SELECT json->>'$.resourceType' || '/' || (json->>'$.id'), ?, "
                    "row_number() OVER (), json::VARCHAR FROM read_json_objects(?, format = 'newline_delimited', "
                    "ignore_errors = true)",
                    [rank, str(sibling)],
                ).fetchall()
            self.heavy.execute(
                f"CREATE OR REPLACE TABLE h_{rtype} AS SELECT * FROM h_{rtype} WHERE json_valid(j) "
                f"AND j->>'$.resourceType' = '{rtype}' AND json_type(j, '$.id') = 'VARCHAR' "
                "QUALIFY row_number() OVER (PARTITION BY key ORDER BY rank, line) = 1"
            ).fetchall()
            # looked up by key through an index: the few resources the odd lines name, never the whole type in Python
            self.heavy.execute(f"CREATE INDEX h_{rtype}_key ON h_{rtype} (key)").fetchall()
        if key not in self.heavy_found and rtype not in self.heavy_all:
            self.heavy_lookups[rtype] = self.heavy_lookups.get(rtype, 0) + 1
            if self.heavy_lookups[rtype] > HEAVY_LOOKUPS:  # the whole file is read here: one fetch, not per key
                self.heavy_all.add(rtype)
                self.heavy_found.update(self.heavy.execute(f"SELECT key, j FROM h_{rtype}").fetchall())
            else:
                rows = self.heavy.execute(f"SELECT j FROM h_{rtype} WHERE key = ?", [key]).fetchall()
                self.heavy_found[key] = rows[0][0] if rows else None
        found = self.heavy_found.get(key)
        # parsed per lookup: only the resources referenced are parsed
        return json.loads(found, parse_float=Decimal) if found is not None else None

    def ensure_types_of(self) -> None:
        for _, sibling in self.files:
            if sibling not in self.types_of:
                self.types_of[sibling] = types_in(sibling)

    @property
    def typed(self) -> dict[str, list[dict]]:
        return _TypedView(self)


TYPE_IN_TEXT = re.compile(rb'"resourceType"\s*:\s*"([A-Za-z]+)"')


def types_in(path: Path) -> set[str]:
    """Resource types a file holds. A Bulk file named `<Type>.<n>.ndjson` whose first resource is that type holds
    only that type (Bulk Data spec: one type per file), so a multi-GB export is not read to learn its type; any
    other file (a mixed-type `export.ndjson`) is scanned whole, bytes only, chunk by chunk (over-approximates:
    nested resources too)."""
    try:
        with path.open("rb") as handle:
            head = TYPE_IN_TEXT.search(handle.read(4096))
            if head and path.name.startswith(head.group(1).decode() + "."):
                return {head.group(1).decode()}
            handle.seek(0)
            found: set[bytes] = set()
            tail = b""
            while chunk := handle.read(TYPES_CHUNK):
                found.update(TYPE_IN_TEXT.findall(tail + chunk))  # a name across the chunk boundary is found too
                tail = chunk[-TYPES_OVERLAP:]
        return {m.decode() for m in found}
    except OSError:
        return set()


TYPES_CHUNK = 1 << 24
TYPES_OVERLAP = 256


def _ndjson_lines(path: Path) -> Iterator[str]:
    """The lines of an NDJSON file one at a time (split on `\n` only, BOM dropped), never the whole file in memory;
    nothing when it cannot be read as UTF-8 (its own load refuses it)."""
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle):
                if number == 0 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError:
                    continue  # as a line that is not JSON: skipped here
    except OSError:
        return


HEAVY_LOOKUPS = 2000  # key lookups of one volume type before its keys are fetched at once (~1 ms per lookup)


class _TypedView:
    """`index.typed.get(rtype, [])` of the folder index: loads the type, lists its resources in file order,
    each `Type/id` once (the first)."""

    def __init__(self, index: _FolderIndex) -> None:
        self.index = index

    def get(self, rtype: str, default: list | None = None) -> list[dict]:
        self.index.ensure(rtype)
        found, seen = [], set()
        for _, res in sorted(self.index.typed_all.get(rtype, []), key=lambda pair: pair[0]):
            key = f"{rtype}/{res.get('id')}"
            if key not in seen:
                seen.add(key)
                found.append(res)
        return found if found else (default if default is not None else [])


def _read_resource(
    root: dict, line: int, batch: Batch, path: Path, folder: _Folder | None, zones: Zones | None = None
) -> None:
    found = list(_walk(root, None, batch))
    if not found:
        batch.ignore(f"FHIR {shown_type(root.get('resourceType'))} without resources (e.g. a batch of requests only)")
    index = _Index(folder.index if folder is not None else None, zones)
    for resource, full_url in found:
        index.add(resource, full_url)
    single = len(found) == 1
    ceiling = folder.transaction_time if folder is not None else _bundle_time(root, found, index)
    for position, (resource, full_url) in enumerate(found, start=1):
        rtype = resource.get("resourceType")
        mapper = MAPPERS.get(rtype)
        if mapper is None:
            batch.ignore(f"FHIR {shown_type(rtype)}")
            continue
        c = _Ctx(
            resource, index, batch, line if single or path.suffix.lower() == ".ndjson" else position, ceiling, full_url
        )
        if not resource.get("id") and c.full_url is None:
            batch.adjusted[f"FHIR {shown_type(rtype)} {NO_IDENTITY}"] += 1
        mapper(c)


#: the load-message note of a resource nothing identifies (fhir_fast counts its own with the same words)
NO_IDENTITY = "without id or fullUrl: no record id to land it under (its rows are quarantined `required`)"


def _bundle_time(root: dict, found: list[tuple[dict, str | None]], index: _Index) -> str | None:
    """When a Bundle file states its resources as known (UTC): the Bundle's meta.lastUpdated or timestamp, else
    the latest `recorded` of a Provenance in it that targets its Patient (Synthea writes one per patient file).
    Used like a Bulk export's transactionTime: the created/updated time of a Patient without meta.lastUpdated."""
    if root.get("resourceType") != "Bundle":
        return None
    stated = utc((root.get("meta") or {}).get("lastUpdated")) or utc(root.get("timestamp"))
    if stated:
        return stated
    patients = {id(r) for r, _ in found if r.get("resourceType") == "Patient"}
    times = [
        utc(r.get("recorded"))
        for r, _ in found
        if r.get("resourceType") == "Provenance"
        and any(id(index.resolve(t, r)) in patients for t in r.get("target") or [] if isinstance(t, dict))
    ]
    return max((t for t in times if t), default=None)


#: Bundle entries that hold no resource to map, counted in the load message (`_walk`): never passed over silently
ENTRY_NOT_OBJECT = "FHIR Bundle entry that is not a JSON object"
ENTRY_DELETE = "FHIR Bundle DELETE entry (request.method DELETE: PT Pulse lands no deletes from FHIR)"
ENTRY_NO_RESOURCE = "FHIR Bundle entry without a resource (a request or response only)"
ENTRY_RESOURCE_NOT_OBJECT = "FHIR Bundle entry whose resource is not a JSON object"
ENTRY_NO_TYPE = "FHIR Bundle entry whose resource has no resourceType"


def _walk(resource: dict, full_url: str | None, batch: Batch | None = None) -> Iterator[tuple[dict, str | None]]:
    """The resource, or every resource of a Bundle in document order (nested Bundles opened). An entry that holds no
    resource to map (not an object, no resource, a resource that is not an object or has no string resourceType) or
    a transaction's DELETE request is counted in `batch`'s load message and takes no position (`_line` numbers
    the resources found); an NDJSON line of those shapes refuses its file instead (`_parse`)."""
    if resource.get("resourceType") != "Bundle":
        yield resource, full_url
        return
    for entry in resource.get("entry") or []:
        inner = entry.get("resource") if isinstance(entry, dict) else None
        request = entry.get("request") if isinstance(entry, dict) else None
        if isinstance(request, dict) and request.get("method") == "DELETE":
            skipped = ENTRY_DELETE
        elif not isinstance(entry, dict):
            skipped = ENTRY_NOT_OBJECT
        elif inner is None:
            skipped = ENTRY_NO_RESOURCE
        elif not isinstance(inner, dict):
            skipped = ENTRY_RESOURCE_NOT_OBJECT
        elif not isinstance(inner.get("resourceType"), str):
            skipped = ENTRY_NO_TYPE
        else:
            yield from _walk(inner, entry.get("fullUrl"), batch)
            continue
        if batch is not None:
            batch.ignore(skipped)


class _Ctx:
    def __init__(
        self,
        resource: dict,
        index: _Index,
        batch: Batch,
        line: int,
        ceiling: str | None = None,
        full_url: str | None = None,
    ) -> None:
        self.r, self.index, self.batch, self.line = resource, index, batch, line
        self.ceiling = ceiling  # the Bulk export's transactionTime (UTC), if the file came with its log
        self.full_url = full_url if isinstance(full_url, str) and full_url.strip() else None  # its Bundle entry's
        self.zone: str | None = None  # the clinic's IANA zone, once the resource's clinic is known
        self.named_clinic = False  # the resource names a clinic (its zone, when unknown: the practice default)

    @property
    def key(self) -> str | None:
        """This resource's record id: its id, else (a Bundle entry without id) the entry's fullUrl as references to it
        name it (`url_id`); None when neither exists (its rows lack their id: quarantined `required`), never a
        placeholder several resources would share."""
        rid = self.r.get("id")
        if rid:
            return entity_id(str(self.r.get("resourceType")), str(rid))
        return url_id(self.full_url) if self.full_url else None

    @property
    def stem(self) -> str | None:
        """Stem of the ids derived from this resource (`Type/id`, or `Type/<fullUrl>`); None without either."""
        rtype, rid = str(self.r.get("resourceType")), self.r.get("id")
        if rid:
            return derived_id(rtype, str(rid))
        if self.full_url:
            match = REFERENCE.search(self.full_url)
            return derived_id(match.group(1), match.group(2)) if match else derived_id(rtype, self.full_url)
        return None

    def derived(self, suffix: str) -> str | None:
        """A derived id `<stem><suffix>` (`Appointment/a1#booked`); None when the resource has no identity."""
        stem = self.stem
        return f"{stem}{suffix}" if stem is not None else None

    def time(self, value: Any) -> str | None:
        """A FHIR instant in the clinic's zone when known (see `timestamp`); when the resource names a clinic whose
        zone is not known (its Location is not in the file / export folder, raw.clinics does not have it), in the
        practice's default zone (PTPULSE_DEFAULT_TIMEZONE) when one is set."""
        zone = self.zone or (self.index.zones.default if self.named_clinic else None)
        return timestamp(value, zone)

    def day(self, value: Any) -> str | None:
        """The local date of a FHIR date / dateTime: a dateTime with an offset is converted as `time` converts it (so
        a service date and the claim's created time agree on the day: Synthea writes both as UTC instants); a date,
        or a partial or unreadable value, as `date` gives it."""
        if isinstance(value, str) and INSTANT.match(value):
            return (self.time(value) or "")[:10] or None
        return date(value)

    def clinic(self, ref: Any) -> str | None:
        """The clinic id of a Location / Organization reference; sets the zone from its timezone extension, else
        from the zone raw.clinics holds for that clinic id (a Location loaded from another file or day)."""
        if not isinstance(ref, dict):
            return None
        target = self.index.resolve(ref, self.r)
        clinic = self.ref_id(ref, prefer_npi=self.ref_type(ref) == "Organization")
        if self.zone is None and (target is not None or clinic is not None):
            self.zone = (_zone(target) if target is not None else None) or self.index.zones.known(clinic)
        self.named_clinic = self.named_clinic or target is not None or clinic is not None
        return clinic

    def person(self, ref: Any) -> str | None:
        """The therapist / performer id of a Practitioner or PractitionerRole reference: a PractitionerRole found in
        the file or export folder stands for its `practitioner` (the person, as a Practitioner reference names
        them); otherwise `ref_id` with the NPI preferred, as before (a role not found keeps its own id / NPI)."""
        target = self.index.resolve(ref, self.r) if isinstance(ref, dict) else None
        if isinstance(target, dict) and target.get("resourceType") == "PractitionerRole":
            practitioner = target.get("practitioner")
            if isinstance(practitioner, dict):
                person = _Ctx(target, self.index, self.batch, self.line).ref_id(practitioner, prefer_npi=True)
                if person:
                    return person
        return self.ref_id(ref, prefer_npi=True)

    def ref_type(self, ref: Any) -> str | None:
        if not isinstance(ref, dict):
            return None
        target = self.index.resolve(ref, self.r)
        if target is not None:
            return target.get("resourceType")
        text = ref.get("reference") or ""
        match = REFERENCE.search(text) or CONDITIONAL.match(text)
        return match.group(1) if match else ref.get("type")

    def ref_id(self, ref: Any, prefer_npi: bool = False) -> str | None:
        """Record id of a reference; `npi:<NPI>` when asked and the target carries one (a Practitioner the export
        holds keeps its resource id: that is the practice's therapist id)."""
        if not isinstance(ref, dict):
            return None
        target = self.index.resolve(ref, self.r)
        text = ref.get("reference")
        conditional = CONDITIONAL.match(text) if isinstance(text, str) else None
        if target is not None and target.get("resourceType") == "Practitioner" and target.get("id"):
            prefer_npi = False
        if prefer_npi:
            number = _npi(ref.get("identifier")) or (_npi_of(target) if target else None)
            if number is None and conditional and conditional.group(2) == NPI_SYSTEM:
                number = conditional.group(3)
            if number:
                return f"npi:{number}"
        if isinstance(text, str) and text:
            if text.startswith("#"):
                return self.derived(text)
            match = REFERENCE.search(text)
            if match:
                return entity_id(match.group(1), match.group(2))
            if conditional:  # `Type?identifier=system|value`: the resource when the export holds it
                if target is not None and target.get("id"):
                    return entity_id(target["resourceType"], target["id"])
                return identifier_id(conditional.group(2), conditional.group(3))
            if target is not None and target.get("id"):  # urn:uuid: resolved through the Bundle
                return entity_id(target["resourceType"], target["id"])
            return url_id(text)  # a resource without id: its fullUrl is its id (`_Ctx.key`)
        if target is not None and target.get("id") and target.get("resourceType") == "Claim":
            # a payer's `{type: Claim, identifier}`: the practice's claim the export holds. Other types keep the
            # identifier's value, whatever else the file holds, so a patient named by MRN never splits in two.
            return entity_id(target["resourceType"], target["id"])
        ident = ref.get("identifier")
        if isinstance(ident, dict) and ident.get("value"):
            return identifier_id(ident.get("system", ""), ident["value"])
        return None


def _npi(identifier: Any) -> str | None:
    items = identifier if isinstance(identifier, list) else [identifier]
    for ident in items:
        if isinstance(ident, dict) and ident.get("system") == NPI_SYSTEM and ident.get("value"):
            return str(ident["value"])
    return None


def _npi_of(resource: dict) -> str | None:
    return _npi(resource.get("identifier"))


# --- values -----------------------------------------------------------------------------------------------


def timestamp(value: Any, zone: str | None = None) -> str | None:
    """FHIR date/dateTime/instant -> `YYYY-MM-DD HH:MM:SS` local time without offset.

    With an offset: converted to the clinic's IANA `zone` when known; else an offset other than zero keeps
    the wall clock as written (the source wrote local time) and `Z` / `+00:00` stays UTC (rule documented in
    ingestion/interop/README.md). A date becomes midnight; partial dates are passed through (quarantined)."""
    if not isinstance(value, str) or not value:
        return None
    match = INSTANT.match(value)
    if not match:
        return value  # partial date or garbage: passed through, quarantined as invalid_timestamp
    day, hm, sec, offset = match.group(1), match.group(2), match.group(3), match.group(4)
    if not hm:
        return f"{day} 00:00:00"
    if offset and zone:
        try:
            moment = datetime.fromisoformat(f"{day}T{hm}{sec or ':00'}{'+00:00' if offset == 'Z' else offset}")
            return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")
        except (ValueError, KeyError, ZoneInfoNotFoundError):
            pass  # an unknown zone name: the rule without a zone
    return f"{day} {hm}{sec or ':00'}"


def utc(value: Any) -> str | None:
    """A FHIR instant as UTC `YYYY-MM-DD HH:MM:SS` (the export's transactionTime)."""
    return timestamp(value, "UTC")


def _zone(resource: dict) -> str | None:
    """IANA zone of a Location (R4 `timezone` extension, valueCode), else None."""
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == TIMEZONE_EXTENSION and isinstance(ext.get("valueCode"), str):
            return ext["valueCode"]
    return None


def date(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    match = INSTANT.match(value)
    return match.group(1) if match else value


def money(value: Any) -> str | None:
    """A Money's value as a plain decimal text: a JSON number in exponent form (`1.5E2`, parsed as a Decimal) is
    written out (`150`), never `1.5E+2` (not a decimal the contracts read: it was quarantined invalid_decimal)."""
    if isinstance(value, dict) and value.get("value") is not None:
        return plain(value["value"])
    return None


def plain(number: Any) -> str:
    """A number as text: a Decimal without exponent (`format(d, 'f')`), anything else as `str` does."""
    return format(number, "f") if isinstance(number, Decimal) else str(number)


def codes(concept: Any) -> list[tuple[str | None, str]]:
    if not isinstance(concept, dict):
        return []
    return [(c.get("system"), str(c["code"])) for c in concept.get("coding") or [] if c.get("code")]


def first_code(concept: Any, systems: set | None = None) -> str | None:
    return next((code for system, code in codes(concept) if systems is None or system in systems), None)


def _procedure_code(concept: Any) -> str | None:
    """The CPT/HCPCS code, else the first code of any system (SNOMED in Synthea): it lands, and dbt flags a
    code outside ingestion/codes/cpt.csv as a warning (marts.data_quality_warnings), never a quarantine."""
    return first_code(concept, CPT_SYSTEMS) or first_code(concept)


def whole(value: Any) -> str | None:
    if value is None:
        return None
    number = Decimal(str(value))
    return str(int(number)) if number == number.to_integral_value() else str(value)


def _period_start(c: _Ctx, item: dict) -> str | None:
    return c.day(item.get("servicedDate") or (item.get("servicedPeriod") or {}).get("start"))


def _given_name(name: dict) -> str | None:
    """The first given name of a HumanName. `given` is a list of strings; a plain string (a common export slip) is
    one given name, never its first letter. Anything else (numbers, objects) gives no name, so a required first
    name is quarantined as missing rather than landed as the text of a JSON value."""
    given = name.get("given")
    if isinstance(given, str):
        return given
    if isinstance(given, list) and given and isinstance(given[0], str):
        return given[0]
    return None


def _family_name(name: dict) -> str | None:
    """A HumanName's family name. R4 writes a string; DSTU2 a list of family name parts, read as the parts joined
    by spaces (`["Luna"]` is Luna, never the text `['Luna']`). Anything else gives no name (see _given_name)."""
    family = name.get("family")
    if isinstance(family, str):
        return family
    if isinstance(family, list) and family and all(isinstance(part, str) for part in family):
        return " ".join(part.strip() for part in family if part.strip()) or None
    return None


# --- mappers ----------------------------------------------------------------------------------------------


def _patient(c: _Ctx) -> None:
    r = c.r
    names = r.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    telecom = r.get("telecom") or []
    phone = next((t.get("value") for t in telecom if t.get("system") == "phone"), None)
    email = next((t.get("value") for t in telecom if t.get("system") == "email"), None)
    addresses = r.get("address") or []
    address = next((a for a in addresses if a.get("use") == "home"), addresses[0] if addresses else {})
    zip_code = address.get("postalCode")
    if isinstance(zip_code, str) and re.fullmatch(r"\d{5}(-?\d{4})?", zip_code):
        zip_code = zip_code[:5]  # ZIP+4 -> ZIP
    updated = timestamp((r.get("meta") or {}).get("lastUpdated")) or c.ceiling
    coverage = _coverage_of(c)
    c.batch.add(
        "patients",
        c.line,
        patient_id=c.key,
        first_name=_given_name(name),
        last_name=_family_name(name),
        birth_date=date(r.get("birthDate")),
        sex=GENDER.get(r.get("gender"), r.get("gender")),
        phone=phone,
        email=email,
        address_line=", ".join(address.get("line") or []) or None,
        city=address.get("city"),
        state=address.get("state"),
        zip=zip_code,
        primary_payer_id=c.ref_id((coverage.get("payor") or [None])[0]) if coverage else None,
        member_id=(coverage.get("subscriberId") if coverage else None),
        created_at=updated,  # FHIR has no creation time: first seen = last updated (a ceiling; dbt keeps the earliest)
        updated_at=updated,
    )


def _service_request(c: _Ctx) -> None:
    r = c.r
    if r.get("status") in SR_SKIPPED_STATUS or r.get("intent") in SR_SKIPPED_INTENT:
        c.batch.ignore(
            f"FHIR ServiceRequest (status {shown_code(r.get('status'))}, intent {shown_code(r.get('intent'))})"
        )
        return
    requester = r.get("requester")
    requester_type = c.ref_type(requester)
    source_type = {
        "Practitioner": "physician",
        "PractitionerRole": "physician",
        "Patient": "direct_access",
        "RelatedPerson": "direct_access",
    }.get(requester_type or "")
    physician = None
    if requester_type in ("Practitioner", "PractitionerRole"):
        target = c.index.resolve(requester, r)
        physician = _npi((requester or {}).get("identifier")) or (_npi_of(target) if target else None)
    clinic = next((c.clinic(x) for x in r.get("locationReference") or []), None)  # sets the zone
    if clinic is None:
        clinic = next(
            (
                c.ref_id(p, prefer_npi=True)
                for p in r.get("performer") or []
                if c.ref_type(p) in ("Organization", "Location", "HealthcareService")
            ),
            None,
        )
    subject = r.get("subject")
    payer = None
    for coverage_ref in r.get("insurance") or []:
        coverage = c.index.resolve(coverage_ref, r)
        if coverage and (coverage.get("payor") or []):
            payer = c.ref_id(coverage["payor"][0])
            break
    c.batch.add(
        "intake_events",
        c.line,
        event_id=c.derived("#received"),
        referral_id=c.key,
        patient_id=c.ref_id(subject) if c.ref_type(subject) == "Patient" else None,
        clinic_id=clinic,
        event_type="received",
        event_at=c.time(r.get("authoredOn")),
        intake_kind="referral",
        source_type=source_type,
        referring_physician_id=physician,
        channel=None,
        payer_id=payer,
        icd10_code=_icd10(c),
        outreach_method=None,
        outreach_outcome=None,
        reason=None,
        recorded_by=None,
    )


def _icd10(c: _Ctx) -> str | None:
    for concept in c.r.get("reasonCode") or []:
        code = first_code(concept, ICD10_SYSTEMS)
        if code:
            return code
    for ref in c.r.get("reasonReference") or []:
        target = c.index.resolve(ref, c.r)
        code = first_code((target or {}).get("code"), ICD10_SYSTEMS)
        if code:
            return code
    return None


def _appointment(c: _Ctx) -> None:
    r = c.r
    event_type = APPOINTMENT_EVENT.get(r.get("status"))
    if event_type is None:
        c.batch.ignore(f"FHIR Appointment (status {shown_code(r.get('status'))})")
        return
    actors = [p.get("actor") for p in r.get("participant") or [] if isinstance(p.get("actor"), dict)]
    by_type: dict[str, list] = {}
    for actor in actors:
        by_type.setdefault(c.ref_type(actor) or "", []).append(actor)
    therapist = next(iter(by_type.get("Practitioner", []) + by_type.get("PractitionerRole", [])), None)
    episode = next(
        (c.ref_id(x) for x in r.get("supportingInformation") or [] if c.ref_type(x) == "EpisodeOfCare"), None
    )
    referral = next((c.ref_id(x) for x in r.get("basedOn") or [] if c.ref_type(x) == "ServiceRequest"), None)
    clinic = next((c.clinic(a) for a in by_type.get("Location", [])), None)  # sets the zone for the times
    last_updated = c.time((r.get("meta") or {}).get("lastUpdated"))
    created = c.time(r.get("created"))
    # `created` is when the appointment was made: its booking, whatever its status now; the current status
    # is an event at meta.lastUpdated
    events = (
        [("booked", created or last_updated)]
        if event_type == "booked"
        else [("booked", created)] * bool(created) + [(event_type, last_updated)]
    )
    for kind, event_at in events:
        c.batch.add(
            "scheduling_events",
            c.line,
            event_id=c.derived(f"#{kind}"),
            appointment_id=c.key,
            episode_id=episode,
            referral_id=referral,
            patient_id=next((c.ref_id(a) for a in by_type.get("Patient", [])), None),
            clinic_id=clinic,
            therapist_id=c.person(therapist) if therapist else None,
            event_type=kind,
            event_at=event_at,
            scheduled_start=c.time(r.get("start")),
            duration_min=_minutes(r),
            visit_type=_visit_type(r),
            cancel_reason=_cancel_reason(r) if kind == "cancelled" else None,
            notice_hours=None,
            recorded_by=None,
        )


def _minutes(r: dict) -> str | None:
    if r.get("minutesDuration") is not None:
        return str(r["minutesDuration"])
    try:
        start = datetime.fromisoformat(r["start"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(r["end"].replace("Z", "+00:00"))
    except (KeyError, AttributeError, ValueError, TypeError):
        return None
    return str(int((end - start).total_seconds() // 60))


def _visit_type(appointment: dict | None) -> str | None:
    """The practice's own visit type when its code system says it, else v2-0276 FOLLOWUP -> follow_up."""
    concept = (appointment or {}).get("appointmentType")
    own = first_code(concept, {PTPULSE_VISIT_TYPE})
    return own or VISIT_TYPE.get(first_code(concept) or "")


def _cancel_reason(r: dict) -> str | None:
    own = first_code(r.get("cancelationReason"), {PTPULSE_CANCEL_REASON})
    if own:
        return own
    code = first_code(r.get("cancelationReason"))
    if code is None:
        return None
    return CANCEL_REASON.get(code) or ("clinic_cancelled" if code.startswith("prov") else "other")


#: every version of each Claim (by record id) of the file being read: (order, line, mapped), `_latest_claim_versions`
_CLAIM_VERSIONS: ContextVar[dict[str, list[tuple[tuple, int, bool]]] | None] = ContextVar(
    "fhir_claim_versions", default=None
)
#: load-message note (a count) of the Claim versions a later version of the same Claim in the file replaces
SUPERSEDED = (
    "FHIR Claim whose id the same file holds again in a later version (a copy, a history Bundle): only the file's "
    "latest version of the Claim is mapped"
)


def _claim_version(c: _Ctx, mapped: bool) -> None:
    """Note a version of the Claim (mapped, or withdrawn: cancelled, draft, entered-in-error) for this file's
    `_latest_claim_versions`. Its order is the merge order (dbt merge_latest): `created`, then meta.lastUpdated (a
    history Bundle lists the newest version first), then the later in the file."""
    versions = _CLAIM_VERSIONS.get()
    if versions is None or c.key is None or c.r.get("use", "claim") != "claim":
        return
    updated = (c.r.get("meta") or {}).get("lastUpdated") if isinstance(c.r.get("meta"), dict) else None
    times = tuple(utc(t) or "" for t in (c.r.get("created"), updated))
    versions.setdefault(c.key.strip(), []).append(((*times, c.line), c.line, mapped))


def _latest_claim_versions(batch: Batch) -> None:
    """Of a Claim the file holds several versions of (a history Bundle, a Claim re-sent in one export), keep the
    rows of the latest only (`_claim_version` order): dbt keeps the lines of the file that sent a claim's latest
    version (current_claim_lines), so every line of each version in one file counted, as an 837P original and its
    replacement did. A cancelled or entered-in-error latest version lands as the Claim's voided version (`_claim`),
    whether the Claim it withdraws is in the file or came before: one rule for both; a draft latest version leaves
    nothing of the Claim. The versions dropped are counted in the load message (SUPERSEDED). Rows mapped here are
    lists (`Batch.add`)."""
    dropped: dict[tuple[str, int], bool] = {}
    for key, seen in (_CLAIM_VERSIONS.get() or {}).items():
        if len(seen) > 1:
            latest = max(seen)
            # versions on the latest one's line (a Bundle on one NDJSON line) cannot be told apart: all kept
            dropped |= {(key, line): mapped for order, line, mapped in seen if line != latest[1]}
    if not dropped:
        return
    for source in ("claims", "charges"):
        rows = batch.rows.get(source)
        if isinstance(rows, list):
            batch.rows[source] = [(n, row) for n, row in rows if (row.get("claim_id"), n) not in dropped]
    for mapped in dropped.values():
        if mapped:
            batch.ignore(SUPERSEDED)


#: load-message note (a count) of the withdrawn Claims landed as their claim's voided version
VOIDED = (
    "FHIR Claim cancelled or entered-in-error: landed as the claim's voided version (status voided), its items not "
    "mapped; the claim counts as billed nowhere until a later version re-bills it"
)


def _claim(c: _Ctx) -> None:
    """One claims row and a charges row per item. A Claim cancelled or entered in error (VOIDED_CLAIM_STATUS) lands
    its claims row only, with status `voided` (as an 837P void): dbt keeps a claim's lines from the file of its
    latest version (current_claim_lines), so the withdrawn Claim's earlier items stop counting too. A withdrawn Claim
    lacking what a claims row needs (patient, clinic, date of service, total) is quarantined with the `required`
    column it lacks, never dropped."""
    r = c.r
    voided = r.get("status") in VOIDED_CLAIM_STATUS and r.get("use", "claim") == "claim"
    if not voided and (r.get("status") in MONEY_SKIPPED_STATUS or r.get("use", "claim") != "claim"):
        c.batch.ignore(f"FHIR Claim (use {shown_code(r.get('use'))}, status {shown_code(r.get('status'))})")
        _claim_version(c, mapped=False)
        return
    _claim_version(c, mapped=True)
    items = r.get("item") or []
    patient = c.ref_id(r.get("patient"))
    clinic = c.ref_id(r.get("facility"), prefer_npi=True)
    c.clinic(r.get("facility"))  # its zone converts `created`
    if clinic is None and c.ref_type(r.get("provider")) == "Organization":
        clinic = c.ref_id(r.get("provider"), prefer_npi=True)
        c.clinic(r.get("provider"))
    # the items' encounters first: their clinic's zone is the claim's when it names none (service dates, created)
    visits = [_visit(c, next((c.index.resolve(e, r) for e in i.get("encounter") or []), None)) for i in items]
    period = (r.get("billablePeriod") or {}).get("start")
    item_dates = sorted(d for d in (_period_start(c, i) for i in items) if d)
    service_date = c.day(period) or (item_dates[0] if item_dates else None)
    billed = money(r.get("total"))
    if billed is None and items and all(money(i.get("net")) for i in items):
        billed = plain(sum(Decimal(money(i["net"])) for i in items))
    episodes = {v.get("episode_id") for v in visits}
    submitted = c.time(r.get("created"))
    c.batch.add(
        "claims",
        c.line,
        claim_id=c.key,
        episode_id=episodes.pop() if len(episodes) == 1 else None,  # the items' encounters' episode, if one
        patient_id=patient,
        clinic_id=clinic,
        payer_id=c.ref_id(r.get("insurer")),
        service_date=service_date,
        submitted_at=submitted,
        billed_usd=billed,
        claim_number=_claim_number(r),
        status="voided" if voided else None,
    )
    if voided:
        c.batch.adjusted[VOIDED] += 1
        return
    care_team = {t.get("sequence"): t.get("provider") for t in r.get("careTeam") or []}
    default_provider = (
        r.get("provider")
        if c.ref_type(r.get("provider")) in ("Practitioner", "PractitionerRole")
        else next(iter(care_team.values()), None)
    )
    for item, visit, charge_id in zip(items, visits, _item_ids(c, items), strict=True):
        team = [care_team.get(s) for s in item.get("careTeamSequence") or [] if care_team.get(s)]
        provider = team[0] if team else default_provider
        quantity = (item.get("quantity") or {}).get("value")
        charge = money(item.get("net"))
        if charge is None and money(item.get("unitPrice")) and quantity is not None:
            charge = plain(Decimal(money(item["unitPrice"])) * Decimal(str(quantity)))
        modifiers = "|".join(code for m in item.get("modifier") or [] for _, code in codes(m)[:1])
        c.batch.add(
            "charges",
            c.line,
            charge_id=charge_id,
            claim_id=c.key,
            appointment_id=visit.get("appointment_id"),
            episode_id=visit.get("episode_id"),
            patient_id=patient,
            clinic_id=clinic or visit.get("clinic_id"),
            therapist_id=c.person(provider) if provider else visit.get("therapist_id"),
            service_date=_period_start(c, item) or service_date,
            cpt_code=_procedure_code(item.get("productOrService")),
            modifiers=modifiers or None,
            units=whole(quantity) if quantity is not None else "1",  # no quantity: the service once (Synthea)
            minutes=None,
            charge_usd=charge,
            posted_at=submitted,  # a Claim has no posting time: its lines are posted when it is created (as X12)
        )


def _item_id(c: _Ctx, item: dict) -> str | None:
    """A claim item's charge id: the item's element id when the exporter writes one (our generator writes the
    practice's charge id there: a Claim item has no identifier in R4), else `Claim/<id>#item<sequence>`. None for a
    Claim nothing identifies: its lines are quarantined with it, never landed under no claim; None too for an item
    with neither element id nor `sequence` (required by R4): `#itemNone` would be one id for all such items."""
    if c.key is None:
        return None
    element = item.get("id")
    if isinstance(element, str) and element:
        return c.derived(f"#{element}") if id_namespace() else element
    if item.get("sequence") is None:
        return None
    return c.derived(f"#item{item.get('sequence')}")


#: load-message notes (counts only) of the Claim items quarantined by the charge id rules; fhir_fast counts the same
ITEM_NO_SEQUENCE = (
    "FHIR Claim item without sequence (nor an element id): no charge id to land it under (quarantined `required` "
    "charge_id)"
)
ITEM_REPEATED = (
    "FHIR Claim item repeating an earlier item's charge id in its Claim (a sequence or element id written twice): "
    "quarantined `required` charge_id, the first kept"
)


def _item_ids(c: _Ctx, items: list) -> list[str | None]:
    """`_item_id` of each item of the Claim; an item whose charge id an earlier item of the Claim already has (R4 makes
    `sequence` unique within a Claim) gets none, so it is quarantined and counted in the load message instead of
    landing as a version of the other's charge (dbt would keep one of them: money silently lost). The same rule as
    fhir_fast's `_claims` (the ids compared as they land: trimmed)."""
    ids: list[str | None] = []
    seen: set[str] = set()
    for item in items:
        charge_id = _item_id(c, item)
        if charge_id is None:
            if c.key is not None:  # a Claim without identity is counted once, as such (NO_IDENTITY)
                c.batch.adjusted[ITEM_NO_SEQUENCE] += 1
        elif (key := charge_id.strip()) in seen:
            c.batch.adjusted[ITEM_REPEATED] += 1
            charge_id = None
        elif key:
            seen.add(key)
        ids.append(charge_id)
    return ids


def _claim_number(r: dict) -> str | None:
    """The Claim's first identifier, spelled as a reference by identifier to it lands (`ref_id`), so a payer's
    ClaimResponse loaded from another file or another day links to it (int_claim_links)."""
    ident = next((i for i in r.get("identifier") or [] if isinstance(i, dict) and i.get("value")), None)
    return identifier_id(ident.get("system") or "", str(ident["value"])) if ident else None


def _remittance(c: _Ctx) -> None:
    r = c.r
    if r.get("status") in MONEY_SKIPPED_STATUS or r.get("use", "claim") != "claim":
        c.batch.ignore(
            f"FHIR {shown_type(r.get('resourceType'))} (use {shown_code(r.get('use'))}, "
            f"status {shown_code(r.get('status'))})"
        )
        return
    claim_ref = r.get("request") if r.get("resourceType") == "ClaimResponse" else r.get("claim")
    claim_id = c.ref_id(claim_ref)
    if claim_id is None:  # Blue Button names its claim by identifier only
        ident = next((i for i in r.get("identifier") or [] if isinstance(i, dict) and i.get("value")), None)
        claim_id = identifier_id(ident.get("system", ""), ident["value"]) if ident else None
    payment = r.get("payment") or {}
    common = dict(claim_id=claim_id, payer_id=c.ref_id(r.get("insurer")))
    c.clinic(r.get("facility"))  # its zone converts `created`
    created = c.time(r.get("created"))
    totals = {first_code(t.get("category")): money(t.get("amount")) for t in r.get("total") or []}
    if r.get("outcome") == "error":
        c.batch.add(
            "remittances",
            c.line,
            remit_id=c.derived("#denial"),
            event_type="denial",
            event_at=created,
            amount_usd=totals.get("submitted"),
            carc_code=_denial_reason(r),
            **common,
        )
    paid = money(payment.get("amount")) or totals.get("benefit")  # payment made, else the benefit payable
    if paid is not None and Decimal(paid) != 0:
        c.batch.add(
            "remittances",
            c.line,
            remit_id=c.derived("#payer_payment"),
            event_type="payer_payment",
            event_at=timestamp(payment.get("date")) or created,
            amount_usd=paid,
            check_number=(payment.get("identifier") or {}).get("value"),
            **common,
        )
    share = _adjudicated(r, PATIENT_RESPONSIBILITY)
    if share:
        c.batch.add(
            "remittances",
            c.line,
            remit_id=c.derived("#patient_responsibility"),
            event_type="patient_responsibility",
            event_at=created,
            amount_usd=plain(share),
            group_code="PR",
            **common,
        )
    submitted, allowed = _adjudicated(r, {"submitted"}), _adjudicated(r, ALLOWED)
    if submitted is not None and allowed is not None and submitted - allowed > 0:
        c.batch.add(
            "remittances",
            c.line,
            remit_id=c.derived("#contractual_adjustment"),
            event_type="contractual_adjustment",
            event_at=created,
            amount_usd=plain(submitted - allowed),
            group_code="CO",
            **common,
        )


def _denial_reason(r: dict) -> str | None:
    """The CARC of a denied EOB: the first adjudication `reason` coded in the X12 CARC system (header, then items)."""
    adjudications = list(r.get("adjudication") or []) + [
        adj for item in r.get("item") or [] for adj in item.get("adjudication") or []
    ]
    return next((code for adj in adjudications if (code := first_code(adj.get("reason"), {CARC_SYSTEM}))), None)


#: Categories an item may state several times as separate amounts that add up: Blue Button splits the blood
#: deductible from the cash one (233.00 of a 233.83 patient share was lost keeping only the first).
ADDITIVE_CATEGORIES = {"deductible"}


def _adjudicated(r: dict, categories: set[str]) -> Decimal | None:
    """Sum of the adjudication amounts of `categories`: per item (every `ADDITIVE_CATEGORIES` adjudication, the
    first of each other category per item, as Blue Button restates `submitted` and its wage-adjusted coinsurance
    as the reduced one), else the resource totals; None when neither states one."""
    found = False
    total = Decimal(0)
    for item in r.get("item") or []:
        seen = set()
        for adj in item.get("adjudication") or []:
            hit = next((code for _, code in codes(adj.get("category")) if code in categories), None)
            if hit and (hit not in seen or hit in ADDITIVE_CATEGORIES) and money(adj.get("amount")) is not None:
                seen.add(hit)
                found = True
                total += Decimal(money(adj["amount"]))
    if found:
        return total
    for t in r.get("total") or []:
        hit = next((code for _, code in codes(t.get("category")) if code in categories), None)
        if hit and money(t.get("amount")) is not None:
            found = True
            total += Decimal(money(t["amount"]))
    return total if found else None


class _Reverse:
    """Resources of one type by the id their reference element points to, across the file's index and the
    export folder's (parent first); looked up per target, never merged per call (that was O(n^2))."""

    def __init__(self, tables: list[dict[str, list[dict]]]) -> None:
        self.tables = tables

    def get(self, target: str, default: list | None = None) -> list[dict]:
        found = [res for table in self.tables for res in table.get(target, [])]
        return found if found else (default if default is not None else [])

    def keys(self) -> set[str]:
        return {key for table in self.tables for key in table}


def _reverse(c: _Ctx, rtype: str, element: str, npi: bool = False) -> _Reverse:
    """Resources of `rtype` by the id their `element` reference points to, built once per index (file and
    export folder), so a Patient finds its Coverage without a scan per Patient."""
    tables = []
    for index in (c.index.parent, c.index):
        if index is None:
            continue
        key = f"{rtype}.{element}"
        if key not in index.memo:
            table: dict[str, list[dict]] = {}
            for res in index.typed.get(rtype, []):
                ref = res.get(element)
                target = _Ctx(res, index, c.batch, 0).ref_id(ref, prefer_npi=npi) if isinstance(ref, dict) else None
                if target:
                    table.setdefault(target, []).append(res)
            index.memo[key] = table
        tables.append(index.memo[key])
    return _Reverse(tables)


def _coverage_of(c: _Ctx) -> dict | None:
    """The patient's Coverage (beneficiary = this patient, active; order 1 first), from the file or export."""
    found = [r for r in _reverse(c, "Coverage", "beneficiary").get(c.key, []) if r.get("status", "active") == "active"]
    return min(found, key=lambda res: res.get("order") or 99) if found else None


# --- reference resources, visits and procedures ---------------------------------------------------------------

PT_TAXONOMY = ("2251", "2252")  # NUCC: 2251* Physical Therapist, 2252* Physical Therapy Assistant
PT_SNOMED = {"36682004"}  # Physiotherapist (occupation)
NUCC_SPECIALTY = {
    "207X": "orthopedic_surgery",
    "207QS0010X": "sports_medicine",
    "207RS0012X": "sports_medicine",
    "208D": "primary_care",
    "207Q": "primary_care",
    "207R": "primary_care",
    "2084N0400X": "neurology",
    "2084P0800X": "pain_management",
    "208VP0014X": "pain_management",
    "2081": "physiatry",
    "111N": "chiropractic",
    "213E": "podiatry",
    "207V": "obstetrics_gynecology",
    "207T": "neurosurgery",
    "207RR0500X": "rheumatology",
}
CREDENTIALS = {"MD", "DO", "NP", "PA", "DC", "DPM"}
THERAPIST_CREDENTIALS = {"PT", "DPT", "PTA"}
PAYER_ORG_TYPES = {"pay", "ins"}
ALLOWED = {"eligible", "allowed"}


def _address(r: dict) -> dict:
    addresses = r.get("address") or []
    if isinstance(addresses, dict):
        return addresses
    return next((a for a in addresses if a.get("use") == "work"), addresses[0] if addresses else {})


def _zip(value: Any) -> str | None:
    if isinstance(value, str) and re.fullmatch(r"\d{5}(-?\d{4})?", value):
        return value[:5]
    return value


def _location(c: _Ctx) -> None:
    """Location -> clinics (a site where visits happen); npi: its own US NPI identifier, else its managing
    Organization's (int_clinic_crosswalk maps `npi:<NPI>` of X12 / FHIR claims to the clinic by it)."""
    r = c.r
    address = _address(r)
    owner = c.index.resolve(r.get("managingOrganization"), r)
    c.batch.add(
        "clinics",
        c.line,
        clinic_id=c.key,
        npi=_clinic_npi(c, _npi_of(r) or (_npi_of(owner) if isinstance(owner, dict) else None)),
        clinic_name=r.get("name"),
        address_line=", ".join(address.get("line") or []) or None,
        city=address.get("city"),
        state=address.get("state"),
        zip=_zip(address.get("postalCode")),
        timezone=_zone(r) or _default_zone(c),
        opened_on=None,
        treatment_tables=None,
        updated_at=timestamp((r.get("meta") or {}).get("lastUpdated")) or c.ceiling,
    )


def _clinic_npi(c: _Ctx, npi: str | None) -> str | None:
    """A clinic's NPI as the contract takes it (10 digits); another value is left empty and counted, so an odd
    identifier never quarantines the clinic itself."""
    if npi is None or re.fullmatch(r"[0-9]{10}", npi.strip()):
        return npi.strip() if npi else None
    c.batch.adjusted["clinic NPI identifier not 10 digits: npi left empty"] += 1
    return None


DEFAULT_ZONE_ENV = "PTPULSE_DEFAULT_TIMEZONE"


def default_zone() -> str | None:
    """The practice's configured zone (env PTPULSE_DEFAULT_TIMEZONE) when it is a known IANA name, else None."""
    import os

    zone = os.environ.get(DEFAULT_ZONE_ENV, "").strip()
    return zone if _known_zone(zone) else None


def raw_clinic_zones(con: Any) -> dict[str, str]:
    """The zone of every clinic raw.duckdb knows one for, through the loader's connection `con` (empty without it:
    read_interop called outside the loader): the latest landed raw.clinics version stating a known IANA zone, else
    the latest quarantined clinics record stating one (a FHIR Location has no opening date, so it is quarantined
    `required`, but its timezone extension still says where the clinic is); `npi:<NPI>` (an Organization as clinic)
    is the one clinic whose current version has that NPI. Read once per file (a clinic may have landed since);
    fhir_fast maps with the same dict."""
    if con is None:
        return {}
    try:
        catalog = con.execute("SELECT current_database()").fetchone()[0]
        columns = set(
            con.execute(
                "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'raw' "
                "AND table_name IN ('clinics', '_quarantine')",
                [catalog],
            ).fetchall()
        )
        raw = '"' + str(catalog).replace('"', '""') + '"."raw".'
        parts = []
        if {("clinics", c) for c in ("clinic_id", "timezone", "updated_at", "_load_id")} <= columns:
            parts.append(
                f"SELECT clinic_id AS clinic, timezone AS tz, 0 AS tier, updated_at AS ts, _load_id AS lid "
                f"FROM {raw}clinics"
            )
            if ("clinics", "npi") in columns:  # an Organization named by its NPI (`npi:<NPI>`): the one clinic with it
                parts.append(
                    f"SELECT 'npi:' || npi, timezone, 0, updated_at, _load_id FROM (SELECT * FROM {raw}clinics "
                    "QUALIFY row_number() OVER (PARTITION BY clinic_id ORDER BY updated_at DESC NULLS LAST, "
                    "_load_id DESC) = 1) WHERE npi IS NOT NULL QUALIFY count(*) OVER (PARTITION BY npi) = 1"
                )
        if {("_quarantine", c) for c in ("source", "record", "load_id")} <= columns:
            parts.append(
                "SELECT record->>'clinic_id', record->>'timezone', 1, NULL::TIMESTAMP, load_id "
                f"FROM {raw}_quarantine WHERE source = 'clinics' AND json_valid(record) "
                "AND json_type(record) = 'OBJECT'"
            )
        if not parts:
            return {}
        rows = con.execute(
            f"SELECT clinic, trim(tz) FROM ({' UNION ALL '.join(parts)}) "
            "WHERE clinic IS NOT NULL AND nullif(trim(tz), '') IS NOT NULL "
            "ORDER BY tier, ts DESC NULLS LAST, lid DESC"
        ).fetchall()
    except Exception:  # noqa: BLE001 - a closed or foreign connection, an unreadable table: no zones from it
        return {}
    zones: dict[str, str] = {}
    for clinic, zone in rows:
        if clinic not in zones and _known_zone(zone):
            zones[clinic] = zone
    return zones


def _known_zone(zone: str) -> bool:
    try:
        ZoneInfo(zone)
    except (ValueError, ZoneInfoNotFoundError):
        return False
    return True


class Zones:
    """Where the zone of a clinic comes from when the file / export folder does not state it: raw.clinics (a
    Location or clinics CSV loaded before, through the loader's connection `con`), else, for a resource that names a
    clinic, the practice's default zone (`default`: PTPULSE_DEFAULT_TIMEZONE, the zone its clinics row lands with).
    Read once per file: the same instant lands at the same local time however the files were packaged."""

    def __init__(self, con: Any = None) -> None:
        self.con = con
        self.default = default_zone()
        self._known: dict[str, str] | None = None

    def known(self, clinic_id: str | None) -> str | None:
        if clinic_id is None:
            return None
        if self._known is None:
            self._known = raw_clinic_zones(self.con)
        return self._known.get(clinic_id)


def _default_zone(c: _Ctx) -> str | None:
    """The practice's configured zone (env PTPULSE_DEFAULT_TIMEZONE, an IANA name) for a clinic whose export
    states none; counted in the load message (shown on Data health). Unset or unknown: empty (quarantined)."""
    import os

    zone = os.environ.get(DEFAULT_ZONE_ENV, "").strip()
    try:
        ZoneInfo(zone)
    except (ValueError, ZoneInfoNotFoundError):
        c.batch.adjusted[f"clinic without a timezone and no valid {DEFAULT_ZONE_ENV} set: left empty"] += 1
        return None
    c.batch.adjusted[f"clinic without a timezone: the practice default zone ({DEFAULT_ZONE_ENV})"] += 1
    return zone


def _organization(c: _Ctx) -> None:
    """Organization -> payers (type pay / ins) or clinics (a provider without Locations of its own)."""
    r = c.r
    types = {code for t in r.get("type") or [] for _, code in codes(t)}
    updated = timestamp((r.get("meta") or {}).get("lastUpdated")) or c.ceiling
    if types & PAYER_ORG_TYPES:
        c.batch.add(
            "payers",
            c.line,
            payer_id=c.key,
            payer_name=r.get("name"),
            payer_class=None,
            requires_auth=None,
            auth_visit_limit=None,
            updated_at=updated,
        )
        return
    mine = {c.key} | {
        identifier_id(i.get("system", ""), i["value"])
        for i in r.get("identifier") or []
        if isinstance(i, dict) and i.get("value")
    }
    managed = bool(mine & _reverse(c, "Location", "managingOrganization").keys())
    if managed:
        c.batch.ignore("FHIR Organization (its Locations are the clinics)")
        return
    address = _address(r)
    c.batch.add(
        "clinics",
        c.line,
        clinic_id=f"npi:{_npi_of(r)}" if _npi_of(r) else c.key,
        npi=_clinic_npi(c, _npi_of(r)),
        clinic_name=r.get("name"),
        address_line=", ".join(address.get("line") or []) or None,
        city=address.get("city"),
        state=address.get("state"),
        zip=_zip(address.get("postalCode")),
        timezone=_default_zone(c),
        opened_on=None,
        treatment_tables=None,
        updated_at=updated,
    )


def _roles(c: _Ctx) -> list[dict]:
    """PractitionerRoles of this Practitioner (by reference or NPI), from the file or the export."""
    npi = _npi_of(c.r)
    table = _reverse(c, "PractitionerRole", "practitioner", npi=True)
    return table.get(c.key, []) + (table.get(f"npi:{npi}", []) if npi else [])


def _practitioner(c: _Ctx) -> None:
    """Practitioner -> therapists (NUCC 2251/2252 or SNOMED physiotherapist role, or PT/DPT/PTA qualification);
    any other with an NPI -> referring_physicians (specialty from the NUCC taxonomy, else empty)."""
    r = c.r
    roles = _roles(c)
    role_codes = [code for role in roles for concept in role.get("code") or [] for _, code in codes(concept)]
    role_codes += [code for role in roles for concept in role.get("specialty") or [] for _, code in codes(concept)]
    qualifications = [code for q in r.get("qualification") or [] for _, code in codes(q.get("code"))]
    names = r.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    npi = _npi_of(r)
    updated = timestamp((r.get("meta") or {}).get("lastUpdated")) or c.ceiling
    is_pt = any(code.startswith(PT_TAXONOMY) or code in PT_SNOMED for code in role_codes) or bool(
        THERAPIST_CREDENTIALS & set(qualifications)
    )
    if is_pt:
        clinic = next(
            (
                c.clinic(loc)
                for role in roles
                for loc in (role.get("location") or []) + [role.get("organization")]
                if loc
            ),
            None,
        )
        c.batch.add(
            "therapists",
            c.line,
            therapist_id=c.key if r.get("id") or not npi else f"npi:{npi}",
            clinic_id=clinic,
            first_name=_given_name(name),
            last_name=_family_name(name),
            credential=next((q for q in qualifications if q in THERAPIST_CREDENTIALS), None),
            npi=npi,
            hired_on=None,
            terminated_on=None,
            weekly_hours=None,
            work_days=None,
            day_start=None,
            day_end=None,
            updated_at=updated,
        )
        return
    if npi is None:
        c.batch.ignore("FHIR Practitioner (no NPI, not a therapist)")
        return
    specialty = next(
        (
            NUCC_SPECIALTY[k]
            for code in role_codes
            for k in sorted(NUCC_SPECIALTY, key=len, reverse=True)
            if code.startswith(k)
        ),
        None,
    )
    address = _address(r)
    c.batch.add(
        "referring_physicians",
        c.line,
        physician_id=npi,
        first_name=_given_name(name),
        last_name=_family_name(name),
        credential=next((q for q in qualifications if q in CREDENTIALS), None),
        specialty=specialty,
        practice_name=None,
        city=address.get("city"),
        state=address.get("state"),
        updated_at=updated,
    )


AMBULATORY = {"AMB", "ambulatory"}


def _visit(c: _Ctx, encounter: dict | None) -> dict[str, str | None]:
    """Appointment / episode / referral / clinic / therapist ids of an Encounter, by its references."""
    if encounter is None:
        return {}
    e = _Ctx(encounter, c.index, c.batch, c.line)
    appointment = next((e.ref_id(a) for a in encounter.get("appointment") or []), None)
    episode_ref = next(iter(encounter.get("episodeOfCare") or []), None)
    episode = c.index.resolve(episode_ref, encounter)
    referral = next((e.ref_id(x) for x in (episode or {}).get("referralRequest") or []), None)
    referral = referral or next(
        (e.ref_id(x) for x in encounter.get("basedOn") or [] if e.ref_type(x) == "ServiceRequest"), None
    )
    clinic = next(
        (e.clinic(loc.get("location")) for loc in encounter.get("location") or [] if loc.get("location")), None
    )
    clinic = clinic or e.clinic(encounter.get("serviceProvider"))
    people = encounter.get("participant") or []
    primary = [p for p in people if any(code in ("PPRF", "ATND") for t in p.get("type") or [] for _, code in codes(t))]
    actor = next((p.get("individual") for p in primary + people if p.get("individual")), None)
    c.zone = c.zone or e.zone
    c.named_clinic = c.named_clinic or e.named_clinic
    return {
        "appointment_id": appointment or e.key,
        "episode_id": e.ref_id(episode_ref),
        "referral_id": referral,
        "patient_id": e.ref_id(encounter.get("subject")),
        "clinic_id": clinic,
        "therapist_id": e.person(actor) if actor else None,
    }


def _encounter(c: _Ctx) -> None:
    """A finished (or arrived / in-progress) ambulatory Encounter -> `arrived` (+ `completed`) visit events."""
    r = c.r
    klass = r.get("class") or {}
    status = r.get("status")
    if klass.get("code") not in AMBULATORY or status not in ("finished", "arrived", "in-progress"):
        c.batch.ignore(f"FHIR Encounter (not an ambulatory visit, or status {shown_code(status)})")
        return
    ids = _visit(c, r)
    booked = next((c.index.resolve(a, r) for a in r.get("appointment") or []), None)
    period = r.get("period") or {}
    start, end = c.time(period.get("start")), c.time(period.get("end"))
    minutes = _minutes({"start": period.get("start"), "end": period.get("end")}) if period.get("end") else None
    if (r.get("length") or {}).get("unit") in ("min", "minutes") and (r.get("length") or {}).get("value") is not None:
        minutes = whole(r["length"]["value"])
    scheduled = start
    if isinstance(booked, dict) and booked.get("resourceType") == "Appointment" and booked.get("start"):
        scheduled, minutes = c.time(booked["start"]), _minutes(booked)  # the booked slot, by reference
    events = [("arrived", start)] + ([("completed", end or start)] if status == "finished" else [])
    for event_type, event_at in events:
        c.batch.add(
            "scheduling_events",
            c.line,
            event_id=c.derived(f"#{event_type}"),
            event_type=event_type,
            event_at=event_at,
            scheduled_start=scheduled,
            duration_min=minutes,
            visit_type=_visit_type(booked),
            cancel_reason=None,
            notice_hours=None,
            recorded_by=None,
            **ids,
        )


def _procedure(c: _Ctx) -> None:
    """A completed Procedure of an Encounter -> one charge line (CPT/HCPCS coded only; no money, no units)."""
    r = c.r
    encounter = c.index.resolve(r.get("encounter"), r)
    if r.get("status") != "completed" or not isinstance(r.get("encounter"), dict):
        c.batch.ignore(f"FHIR Procedure (no encounter, or status {shown_code(r.get('status'))})")
        return
    ids = _visit(c, encounter) if encounter else {"appointment_id": c.ref_id(r.get("encounter"))}
    performer = next((p.get("actor") for p in r.get("performer") or [] if p.get("actor")), None)
    performed = r.get("performedDateTime") or (r.get("performedPeriod") or {}).get("start")
    c.batch.add(
        "charges",
        c.line,
        charge_id=c.key,
        claim_id=None,
        appointment_id=ids.get("appointment_id"),
        episode_id=ids.get("episode_id"),
        patient_id=c.ref_id(r.get("subject")) or ids.get("patient_id"),
        clinic_id=ids.get("clinic_id") or c.clinic(r.get("location")),
        therapist_id=c.person(performer) if performer else ids.get("therapist_id"),
        service_date=(c.time(performed) or "")[:10] or None,
        cpt_code=_procedure_code(r.get("code")),
        modifiers=None,
        units=None,
        minutes=None,
        charge_usd=None,
        posted_at=None,
    )


MAPPERS = {
    "Patient": _patient,
    "ServiceRequest": _service_request,
    "Appointment": _appointment,
    "Claim": _claim,
    "Location": _location,
    "Organization": _organization,
    "Practitioner": _practitioner,
    "Encounter": _encounter,
    "Procedure": _procedure,
    "ClaimResponse": _remittance,
    "ExplanationOfBenefit": _remittance,
}
