"""Validate source files against their contracts and land them in raw.duckdb, with a full audit.

Per file: fingerprint (sha256) -> skip if that exact file already loaded -> check the header -> stage the
file all-VARCHAR in a temp table while computing, in the same SQL pass, each row's first broken rule and
its content hash -> in ONE transaction: quarantine the broken rows, land the valid new rows typed, write
the audit row. A crash before COMMIT leaves nothing of the file in raw.

Row outcome (every row read gets exactly one): quarantined (broken rule or malformed CSV line), duplicate
(same natural key and same content already landed, in raw or earlier in the same file), or landed (new
key, or a new version of a known key). `rows_read = rows_landed + rows_quarantined + rows_duplicate` is
asserted before every commit.

Compressed deliveries (a `.gz`, a `.zip`) are unpacked into a private working folder first (ingestion/files.py
`unpacked`) and each file inside goes through exactly the same path, recorded as delivered (`x.csv.gz`,
`export.zip!x.csv`), keyed on its uncompressed bytes.

No input stops the call: a file that cannot be read is that file's refusal (file, problem, fix; audited in
raw._loads) and the next file is loaded. Messages never carry file content: DuckDB's error texts (which
quote lines) are reduced to a fixed problem and a line number.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ingestion import validation as v
from ingestion.files import (
    PRIVATE_COPY_PREFIX,
    FileRefused,
    FileScan,
    UnknownSource,
    check_columns,
    check_readable,
    compression,
    copy_after_lines,
    discover,
    display_name,
    encoding_refusal,
    ensure_unchanged,
    file_identity,
    header_key,
    is_documentation,
    is_fhir_gzip,
    is_member,
    looks_like_x12,
    match_source,
    normalise_line_endings,
    os_error_message,
    read_header,
    scan,
    shown_as,
    shown_column_names,
    unpacked,
)
from ingestion.interop import FrameRows, TableRows, file_digest, is_interop, read_interop
from ingestion.profiles import (
    AUTO_HEADER_LINES,
    OCCURRENCE_MARK,
    Profile,
    ProfileError,
    ProfileFile,
    available_profiles,
    clinic_zone_problem,
    detect,
    file_of,
    header_skip,
    known_columns,
    non_header_problem,
    occurrence_keys,
    profile_sql,
    resolve_profile,
    unmapped_notes,
    unsupplied,
    untitled_problem,
)
from ingestion.rawdb import SCHEMA, RawDB, open_raw
from ptpulse.core.config import Settings
from ptpulse.core.contracts import Contract, load_contracts
from ptpulse.core.progress import ProgressFn
from ptpulse.core.sql import quote_ident

log = logging.getLogger(__name__)

LOADED, SKIPPED, REFUSED, FAILED = "loaded", "skipped_same_hash", "refused", "failed"
SKIPPED_NOT_DATA = "skipped_not_data"  # a README / PDF / hidden file beside the exports: audited, not an error

LOADS_DDL = """
CREATE TABLE IF NOT EXISTS {loads} (
    load_id BIGINT PRIMARY KEY, file VARCHAR NOT NULL, sha256 VARCHAR, source VARCHAR,
    rows_read BIGINT NOT NULL, rows_landed BIGINT NOT NULL, rows_quarantined BIGINT NOT NULL,
    rows_duplicate BIGINT NOT NULL, started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP,
    status VARCHAR NOT NULL, message VARCHAR, profile VARCHAR, mapping_sha256 VARCHAR, upload_scope VARCHAR)
"""
LOADS_COLUMNS = (
    "load_id, file, sha256, source, rows_read, rows_landed, rows_quarantined, rows_duplicate, started_at, "
    "finished_at, status, message, profile, mapping_sha256, upload_scope"
)
QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS {quarantine} (
    load_id BIGINT NOT NULL, source VARCHAR NOT NULL, file VARCHAR NOT NULL, line BIGINT, rule VARCHAR NOT NULL,
    column_name VARCHAR, detail VARCHAR, record JSON)
"""
# DuckDB's CSV reader, fixed to the interface (UTF-8, comma, double quotes, header row): no sniffing, so a
# file is never read differently from the next. Lines it cannot split go to a rejects table, not an error.
READ_CSV = (
    "read_csv(?, header = true, auto_detect = false, columns = ?, delim = ',', quote = '\"', "
    "escape = '\"', store_rejects = true, rejects_table = '_reject_errors', "
    "rejects_scan = '_reject_scans')"
)
TEMP_TABLES = (
    "_staged",
    "_malformed",
    "_line_shift",
    "_break_shift",
    "_gaps",
    "_empty",
    "_file_lines",
    "_dups",
    "_reject_errors",
    "_reject_scans",
    "_interop_rows",
    "_vendor",
    "_profiled",
    "_excluded",
    "_clinic_tz",
)

EXCLUDED_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS _excluded (line BIGINT, column_name VARCHAR, detail VARCHAR, record JSON)"
)

MALFORMED_DETAILS = {
    "MISSING COLUMNS": "the line has fewer fields than the header; a field or a comma is missing",
    "TOO MANY COLUMNS": "the line has more fields than the header; quote values that contain commas",
    "UNQUOTED VALUE": "a value contains a double quote but is not enclosed in double quotes",
    "LINE SIZE OVER MAXIMUM": "the line is longer than the CSV reader's maximum line size",
    "INVALID STATE": "the line could not be parsed as CSV (unbalanced quotes?)",
}


@dataclass
class LoadResult:
    """What happened to one file; also the row written to raw._loads."""

    load_id: int
    file: str
    sha256: str = ""
    source: str | None = None
    rows_read: int = 0
    rows_landed: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    status: str = REFUSED
    message: str = ""
    started_at: datetime = field(default_factory=lambda: _now())
    finished_at: datetime | None = None
    profile: str | None = None  # the source profile that mapped a vendor export (ingestion/profiles/)
    mapping_sha256: str | None = None  # that profile's fingerprint: the same bytes under a fixed profile re-read
    upload_scope: str | None = None  # an upload limited to some clinics: their ids, sorted, comma-separated

    def as_dict(self) -> dict:
        return asdict(self)


def _now() -> datetime:
    """Audit times are UTC without zone (TIMESTAMP columns), so loads from any machine compare."""
    return datetime.now(UTC).replace(tzinfo=None)


def ingest(
    paths: Sequence[Path],
    settings: Settings,
    progress: ProgressFn = None,
    profile: str | None = None,
    clinics: Iterable[str] | None = None,
    reload: bool = False,
) -> list[LoadResult]:
    """Load every CSV in `paths` (files or folders, `truth/` skipped) into settings.raw_db, in sorted order.

    A CSV whose header matches a source profile's signature is mapped by that profile (ingestion/profiles.py);
    `profile` (a shipped name or a .yml path) forces one for every CSV; other files load by their file name.
    A `.gz` loads as the file it holds, a `.zip` as each of its members (`_load_compressed`).

    `clinics`: an upload limited to these clinics (`ptpulse ingest --clinics`, the app's Upload page for a user
    limited to some clinics; None = every clinic, the default). Rows outside them are quarantined as
    `outside_upload_scope` (validation.py `scope_checks`), files of a source without a clinic column and FHIR / X12
    files are refused, and every load records the clinics in raw._loads.upload_scope (`upload_scope`).

    `reload`: read files loaded before again (`ptpulse ingest --reload`) instead of skipping them as
    skipped_same_hash: their rows landed before count as duplicates, so only rows set aside then land.

    Opens raw.duckdb read-write once for the whole call. Files are independent: a refused file does not
    stop the others. An unexpected error rolls back the file being loaded and records it as `failed` in
    raw._loads (with its exception type, never its text), and the call goes on; only an interrupt (Ctrl-C)
    or a broken connection to raw.duckdb stops it.
    """
    scope = upload_scope(clinics)  # a clinic id it cannot record stops the call before anything is read
    token = _RELOAD.set(reload)
    try:
        return _ingest(paths, settings, progress, profile, scope)
    finally:
        _RELOAD.reset(token)


# `ingest(reload=True)` (`ptpulse ingest --reload`): files loaded before are read again instead of skipped as
# skipped_same_hash. Safe: rows landed before are duplicates by row hash, so only rows set aside then (e.g. for
# a setting fixed since) land.
_RELOAD: ContextVar[bool] = ContextVar("ptpulse_ingest_reload", default=False)


def _ingest(
    paths: Sequence[Path], settings: Settings, progress: ProgressFn, profile: str | None, scope: str | None
) -> list[LoadResult]:
    contracts = load_contracts()
    forced = resolve_profile(profile, settings.home) if profile else None  # a bad name stops the call at once
    profiles = available_profiles(settings.home)  # shipped + $PTPULSE_HOME/profiles/; a broken one stops it too
    files = discover(paths)
    settings.ensure()
    db = open_raw(settings.raw_db)
    work_dir = settings.raw_db.parent
    try:
        _remove_stale_copies(work_dir)
        _prepare(db)
        results = []
        done = 0
        for unit in _deliveries(files):
            path = unit[0]
            _report(progress, display_name(path), done, len(files))
            if compression(path) is not None:
                results.extend(_load_compressed(db, unit, contracts, work_dir, forced, profiles, scope=scope))
            elif is_interop(path):
                results.extend(_load_interop_file(db, path, contracts, scope=scope))
            else:
                results.append(_load_file(db, path, contracts, work_dir, forced, profiles, scope=scope))
            done += len(unit)
        _report(progress, "done", len(files), len(files))
        return results
    finally:
        db.close()


def upload_scope(clinics: Iterable[str] | None) -> str | None:
    """The clinics an upload is limited to, as raw._loads.upload_scope records them: sorted, comma-separated
    (`CL002,CL003`; an empty text for a scope of no clinic, which lands nothing). None = every clinic. A clinic id
    that is empty, has a comma or surrounding spaces cannot be recorded: refused (ValueError), never widened."""
    if clinics is None:
        return None
    if isinstance(clinics, str):
        raise ValueError("clinics: give a list of clinic ids, not one text")
    ids = sorted({str(c) for c in clinics})
    bad = [c for c in ids if not c or "," in c or c != c.strip()]
    if bad:
        raise ValueError("a clinic id of the upload's scope is empty, holds a comma or surrounding spaces")
    return ",".join(ids)


def _scope_clinics(scope: str | None) -> tuple[str, ...] | None:
    """`upload_scope`'s text back as clinic ids (None = every clinic)."""
    if scope is None:
        return None
    return tuple(c for c in scope.split(",") if c)


# A file an upload limited to some clinics cannot load: its rows name no clinic (they are shared by every clinic), or
# name clinics by reference / NPI (FHIR, X12) rather than by the clinic ids the scope lists.
SCOPE_REFUSAL = (
    "{name}: {what}, so an upload limited to some clinics cannot load it ({why}). Nothing of it landed; an "
    "administrator (a user not limited to clinics) can load it."
)


def _scope_refusal(path: Path, contract: Contract | None) -> str | None:
    """The refusal of `path` for an upload limited to some clinics, or None when its rows can be checked."""
    name = display_name(path)
    if contract is None:
        return SCOPE_REFUSAL.format(
            name=name,
            what="FHIR and X12 files name clinics by reference or NPI, not by a clinic column",
            why="which clinic each row belongs to cannot be checked",
        )
    if v.CLINIC_COLUMN not in contract.column_names:
        return SCOPE_REFUSAL.format(
            name=name,
            what=f"{contract.source} rows have no clinic column",
            why="they are shared by every clinic: a patient's phone or a payer changed here changes it for all",
        )
    return None


def _deliveries(files: Sequence[Path]) -> list[list[Path]]:
    """The discovered files as units of loading, in order: each file on its own, except the gzip-compressed FHIR
    files of one folder (`Patient.ndjson.gz`, `Encounter.ndjson.gz`), which are unpacked together where the first
    of them comes, so a Bulk export's references across its files resolve as in a plain folder."""
    units: list[list[Path]] = []
    fhir_gz: dict[Path, list[Path]] = {}
    for path in files:
        if is_fhir_gzip(path) and not path.is_symlink() and path.is_file() and not is_documentation(path):
            if path.parent not in fhir_gz:
                fhir_gz[path.parent] = []
                units.append(fhir_gz[path.parent])
            fhir_gz[path.parent].append(path)
        else:
            units.append([path])
    return units


# PRIVATE_COPY_PREFIX (ingestion/files.py): a private LF copy of a file with mixed line endings, and the folder a
# compressed delivery is unpacked into (they hold the file's rows, patient data included).


def _remove_stale_copies(work_dir: Path) -> None:
    """Private copies and unpacked folders left by a killed load (`finally` never ran). Only the writer holding
    raw.duckdb, which is this call, makes them, so any found now are stale: a crash must not leave patient data
    lying around."""
    for stale in work_dir.glob(f"{PRIVATE_COPY_PREFIX}*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _report(progress: ProgressFn, step: str, done: int, total: int) -> None:
    if progress is not None:
        progress(step, done, total)


def _prepare(db: RawDB) -> None:
    """Audit tables in raw (an unknown code is a data-quality warning in the build, not a load rule)."""
    db.con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(db.catalog)}.{quote_ident(SCHEMA)}")
    db.con.execute(LOADS_DDL.format(loads=db.t("_loads")))
    db.con.execute(f"ALTER TABLE {db.t('_loads')} ADD COLUMN IF NOT EXISTS profile VARCHAR")  # pre-profile files
    db.con.execute(f"ALTER TABLE {db.t('_loads')} ADD COLUMN IF NOT EXISTS mapping_sha256 VARCHAR")
    db.con.execute(f"ALTER TABLE {db.t('_loads')} ADD COLUMN IF NOT EXISTS upload_scope VARCHAR")  # pre-scope files
    db.con.execute(QUARANTINE_DDL.format(quarantine=db.t("_quarantine")))


def _load_file(
    db: RawDB,
    path: Path,
    contracts: Mapping[str, Contract],
    work_dir: Path,
    forced: Profile | None = None,
    profiles: Mapping[str, Profile] | None = None,
    file: str | None = None,
    scope: str | None = None,
) -> LoadResult:
    """One file, start to audit. Refusals are results; anything unexpected is recorded as `failed` and the
    call goes on (an interrupt is recorded, then re-raised). `file`: what raw._loads records when `path` is the
    private working copy of a compressed delivery (`x.csv.gz`, `export.zip!x.csv`). `scope`: the clinics of an
    upload limited to some (`upload_scope`; None = every clinic)."""
    result = LoadResult(load_id=_next_load_id(db), file=file or str(path), upload_scope=scope)
    normalised: Path | None = None
    if not path.is_symlink() and path.is_file() and is_documentation(path):
        _skip_documentation(db, result)
        return result
    try:
        check_readable(path)
        before = file_identity(path)
        file_scan = scan(path)
        result.sha256 = file_scan.sha256
        mapped = _profile_for(path, forced, profiles)
        if mapped is not None:
            profile, pfile = mapped
            contract = contracts[pfile.feeds]
            result.profile = f"{profile.name}/{pfile.name}"
            result.mapping_sha256 = _profile_fingerprint(profile)
        else:
            contract = _match_source(path, contracts)
        result.source = contract.source
        refusal = _scope_refusal(path, contract) if scope is not None else None
        if refusal:
            raise FileRefused(refusal)
        previous = _previous_load(db, result.sha256, mapping=result.mapping_sha256, scope=scope)
        if previous is not None:
            _skip(db, result, previous)
        elif mapped is not None:
            _load_profiled(db, result, path, work_dir, file_scan, mapped[0], mapped[1], contract, before)
        else:
            names = read_header(path)
            notes = check_columns(path, names, contract)
            readable = path
            if file_scan.mixed_line_endings:  # DuckDB's strict reader takes one kind; a private LF copy
                handle, name = tempfile.mkstemp(prefix=PRIVATE_COPY_PREFIX, suffix=".csv", dir=work_dir)
                os.close(handle)
                normalised = readable = Path(name)
                normalise_line_endings(path, normalised)
                notes.append("mixed line endings (LF / CRLF / CR) read as one kind")
            _stage(db, path, readable, names, contract, file_scan)
            ensure_unchanged(path, before)
            _carry_absent_columns(db, contract, names)
            _land(db, result, contract, notes)
    except (FileRefused, UnknownSource, ProfileError) as exc:
        _refuse(db, result, str(exc))
    except OSError as exc:
        _refuse(db, result, _os_error_message(path, exc))
    except Exception as exc:
        _fail(db, result, exc)
        if _interrupted(exc):  # Ctrl-C reached DuckDB mid-query: stop the whole call, not just this file
            raise KeyboardInterrupt from None
    except BaseException as exc:
        _fail(db, result, exc)
        raise
    finally:
        _drop_temp(db)
        if normalised is not None:
            normalised.unlink(missing_ok=True)
    log.info(
        "load %s %s: %s (%s read, %s landed, %s quarantined, %s duplicate)",
        result.load_id,
        display_name(path),
        result.status,
        result.rows_read,
        result.rows_landed,
        result.rows_quarantined,
        result.rows_duplicate,
    )
    return result


def _match_source(path: Path, contracts: Mapping[str, Contract]) -> Contract:
    """`match_source`, except that a CSV whose line 1 is not a header row (a report title above it, or another
    delimiter) is refused for that: renaming it would not help, so the name refusal would mislead."""
    try:
        return match_source(path, contracts)
    except UnknownSource:
        if path.suffix.lower() != ".csv":
            raise
        names = read_header(path)  # an empty, binary or non-UTF-8 file is refused for that instead
        problem = non_header_problem(
            display_name(path),
            names,
            known_columns(names, contracts),
            "nothing was loaded",
            "Export it with the column names on line 1 and ingest it again.",
        )
        if problem is None:
            raise
        raise FileRefused(
            f"{problem} Its file name also matches no source contract: once line 1 holds the column names, name "
            f"it <source>.csv (one of: {', '.join(sorted(contracts))}) or map it with a source profile (--profile)."
        ) from None


def _os_error_message(path: Path, exc: OSError) -> str:
    """A refusal for a file the operating system would not read; the errno name only, never a path beyond it."""
    reason = os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__
    return (
        f"{display_name(path)} could not be read ({reason}). Check that the file is a regular, readable "
        f"file and ingest it again."
    )


def _load_compressed(
    db: RawDB,
    unit: Sequence[Path],
    contracts: Mapping[str, Contract],
    work_dir: Path,
    forced: Profile | None,
    profiles: Mapping[str, Profile] | None,
    scope: str | None = None,
) -> list[LoadResult]:
    """A compressed delivery (one .zip, or the FHIR .gz files of one folder, or one .gz): unpacked into a private
    folder (ingestion/files.py `unpacked`), then every file inside loaded exactly like a plain file, each its own
    load, transaction and raw._loads row (`rows_read = landed + quarantined + duplicate` per member), recorded as
    delivered: the .gz, or `<archive>!<member>`. A member that cannot be read is a `refused` row with its reason;
    an archive that cannot be read at all (not a zip, damaged, over a zip-bomb limit) is one `refused` row naming
    it, and nothing of it lands. The folder is removed when the delivery is done."""
    results: list[LoadResult] = []
    unit = list(unit)
    for path in [p for p in unit if not p.is_symlink() and p.is_file() and is_documentation(p)]:
        result = LoadResult(load_id=_next_load_id(db), file=str(path), upload_scope=scope)  # a hidden `.x.csv.gz`
        _skip_documentation(db, result)
        results.append(result)
        unit.remove(path)
    if not unit:
        return results
    stack = ExitStack()  # the unpacked folder: removed when the delivery's files are loaded (or on any error)
    try:
        members = stack.enter_context(unpacked(unit, work_dir))
    except BaseException as exc:  # nothing of the delivery was read: one row per compressed file, with the reason
        for path in unit:
            result = LoadResult(load_id=_next_load_id(db), file=str(path), upload_scope=scope)
            if isinstance(exc, FileRefused):
                _refuse(db, result, str(exc))
            elif isinstance(exc, OSError):
                _refuse(db, result, os_error_message(path, exc))
            else:
                _fail(db, result, exc)
            results.append(result)
        if isinstance(exc, Exception) and _interrupted(exc):
            raise KeyboardInterrupt from None
        if not isinstance(exc, Exception):
            raise
        return results
    with stack, shown_as({m.path: m.file for m in members if m.path is not None}):
        for member in members:
            if member.path is None:
                result = LoadResult(load_id=_next_load_id(db), file=member.file, upload_scope=scope)
                _refuse(db, result, member.refusal)
                log.info("load %s %s: refused", result.load_id, display_name(Path(member.file)))
                results.append(result)
            elif is_interop(member.path):
                results.extend(_load_interop_file(db, member.path, contracts, file=member.file, scope=scope))
            else:
                results.append(
                    _load_file(db, member.path, contracts, work_dir, forced, profiles, file=member.file, scope=scope)
                )
    return results


def _next_load_id(db: RawDB) -> int:
    return db.con.execute(f"SELECT coalesce(max(load_id), 0) + 1 FROM {db.t('_loads')}").fetchone()[0]


def _previous_load(
    db: RawDB,
    sha256: str,
    source: str | None = None,
    by_source: bool = False,
    mapping: str | None = None,
    scope: str | None = None,
) -> tuple | None:
    """(load_id, file, finished_at) of the earlier successful load of the same bytes, if any.

    `by_source`: only a load of the same bytes into `source` counts (FHIR / X12 files load once per source).
    `mapping`: the fingerprint of the profile mapping the file now; a load under another version of the
    profile does not count, so fixing a profile (a date format, a value map) and re-ingesting re-reads the
    file (what it landed before becomes duplicates) instead of leaving its quarantined rows stuck.
    `scope`: the clinics this load is limited to (None = every clinic). A load limited to other clinics (or to
    some, for a load of every clinic) landed only part of the file: it does not count, so an administrator can
    land the rows a clinic manager's upload set aside by loading the same file.
    """
    if _RELOAD.get():  # `--reload`: read it again; what landed before counts as duplicate rows
        return None
    where = " AND source IS NOT DISTINCT FROM ?" if by_source else ""
    params = [sha256, LOADED] + ([source] if by_source else []) + [mapping, scope]
    return db.con.execute(
        f"SELECT load_id, file, finished_at FROM {db.t('_loads')} WHERE sha256 = ? AND status = ?"
        f"{where} AND mapping_sha256 IS NOT DISTINCT FROM ? AND (upload_scope IS NULL OR upload_scope = ?) "
        "ORDER BY load_id LIMIT 1",
        params,
    ).fetchone()


def _skip(db: RawDB, result: LoadResult, previous: tuple) -> None:
    load_id, _file, finished_at = previous
    result.status = SKIPPED
    when = f"{finished_at:%Y-%m-%d %H:%M} UTC" if finished_at else "earlier"
    # a compressed delivery is keyed on the bytes it holds: the same export sent plain, .gz or zipped is one file
    same = "unpacked, is byte-identical to" if _compressed_delivery(result.file) else "is byte-identical to"
    # the earlier file by its load id, not its name: a per-patient export's name is the patient's (Synthea), and
    # the message reaches marts.data_quality with only this file's own name replaced
    result.message = (
        f"{display_name(Path(result.file))} {same} the file of load {load_id} ({when}); nothing "
        f"landed. Re-sending a file is safe; corrected rows need a new export. Rows of it set aside for a "
        f"setting since fixed (e.g. PTPULSE_DEFAULT_TIMEZONE) land with `ptpulse ingest --reload` (what landed "
        f"before counts as duplicate rows)."
    )
    _write_audit(db, result)


def _compressed_delivery(file: str) -> bool:
    """A recorded file that was unpacked: a .gz, or a zip member (`<archive>!<member>`)."""
    return compression(Path(file)) == "gzip" or is_member(file)


def _skip_documentation(db: RawDB, result: LoadResult) -> None:
    result.status = SKIPPED_NOT_DATA
    result.message = (
        f"{display_name(Path(result.file))} looks like documentation or a system file (hidden, README, PDF, "
        f"image), not an export: skipped, nothing landed. Keep it beside the exports if you like; rename it "
        f"if it really is data."
    )
    _write_audit(db, result)


def _refuse(db: RawDB, result: LoadResult, message: str) -> None:
    _rollback_if_open(db)
    result.status = REFUSED
    result.rows_read = result.rows_landed = result.rows_quarantined = result.rows_duplicate = 0
    result.message = message
    _write_audit(db, result)


def _interrupted(exc: BaseException) -> bool:
    """Ctrl-C: Python's KeyboardInterrupt, or DuckDB's own error for a query it stopped because of one."""
    if isinstance(exc, KeyboardInterrupt | duckdb.InterruptException):
        return True
    return isinstance(exc, RuntimeError) and "interrupted" in str(exc).lower()


def _fail(db: RawDB, result: LoadResult, exc: BaseException) -> None:
    """Roll back the file and record the failure; the message names no data (it could be PHI)."""
    _rollback_if_open(db)
    result.status = FAILED
    result.rows_read = result.rows_landed = result.rows_quarantined = result.rows_duplicate = 0
    name = display_name(Path(result.file))
    if _interrupted(exc):
        result.message = (
            f"interrupted (Ctrl-C) while loading {name}; the file was rolled back and nothing of it landed. "
            f"Run ingest again to load it."
        )
        log.warning("load %s interrupted", result.load_id)
    else:
        result.message = (
            f"internal error while loading {name} ({type(exc).__name__}); the file was rolled back and nothing "
            f"of it landed. Run ingest again; if it fails again, report load {result.load_id} (the log has the "
            f"traceback)."
        )
        log.error("load %s failed (%s)", result.load_id, type(exc).__name__, exc_info=exc)
    try:
        _write_audit(db, result)
    except duckdb.Error:  # the connection itself is broken: nothing more can be loaded in this call
        log.exception("could not record failed load %s", result.load_id)
        raise exc from None


def _rollback_if_open(db: RawDB) -> None:
    try:
        db.con.rollback()
    except duckdb.Error:
        pass  # no transaction open


def _write_audit(db: RawDB, result: LoadResult) -> None:
    result.finished_at = _now()
    db.con.execute(
        f"INSERT INTO {db.t('_loads')} ({LOADS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            result.load_id,
            result.file,
            result.sha256,
            result.source,
            result.rows_read,
            result.rows_landed,
            result.rows_quarantined,
            result.rows_duplicate,
            result.started_at,
            result.finished_at,
            result.status,
            result.message,
            result.profile,
            result.mapping_sha256,
            result.upload_scope,
        ],
    )


def _drop_temp(db: RawDB) -> None:
    for table in TEMP_TABLES:
        db.con.execute(f"DROP TABLE IF EXISTS temp.{quote_ident(table)}")


# --- staging: one read of the file, validation and hashing in the same pass ---------------------------------


def _stage(db: RawDB, path: Path, readable: Path, names: list[str], contract: Contract, file_scan: FileScan) -> None:
    """Read the file all-VARCHAR into temp._staged with `_violation` and `_row_hash` per row.

    Runs outside the landing transaction (temp tables only), so rowid is the 0-based order of the row in
    the file. Lines the CSV reader cannot split land in temp._malformed; a file that is not UTF-8 is refused.
    DuckDB sees positional names (`__f1`, `__f2`, ...), never the header's, so names that are empty or hold
    odd characters cannot break the query; a contract column is found by `header_key` (trimmed, any case).
    `readable` is `path` or its LF-only copy.
    """
    file_columns = {f"__f{i}": "VARCHAR" for i in range(1, len(names) + 1)}
    position = {}
    for i, name in enumerate(names, start=1):
        position.setdefault(header_key(name), f"__f{i}")
    text = ", ".join(
        f"{quote_ident(position[c.name])} AS {quote_ident(c.name)}"
        if c.name in position
        else f"CAST(NULL AS VARCHAR) AS {quote_ident(c.name)}"
        for c in contract.columns
    )
    sql = _staging_sql(contract, _csv_rows_sql(text, list(file_columns), file_scan))
    try:
        db.con.execute(sql, [str(readable), file_columns])
    except duckdb.Error as exc:
        raise FileRefused(
            f"{display_name(path)} could not be read as CSV ({_csv_problem(exc)}). Check that it is "
            f"a comma-separated UTF-8 export with a header row, and ingest it again."
        ) from None
    _collect_malformed(db, path, shown_column_names(names, contract))
    _map_lines(db, readable, file_scan)


WIDE_FILE_COLUMNS = 100


def _csv_rows_sql(contract_text: str, columns: list[str], file_scan: FileScan) -> str:
    """The CSV's rows as contract columns, plus `_newlines` (line breaks inside the row's fields, extra columns
    too: the record's extra physical lines, for line numbers), `_breaks` (the same count when the record looks
    joined by a stray double quote, else 0) and `_nul` (a NUL byte in any field).

    A quoted value may hold line breaks (a multi-line address or visit comment): that record lands. A stray
    quote that the reader could still split swallows whole lines of the file into one value, and the value then
    has the shape of rows: the rest of its own line plus the start of the line where the quote closes hold
    exactly a row's worth of field separators (the split only works when the quote closes in the same field
    of a later line), and every whole line between holds at least that many. A line-broken value with exactly
    a row's worth of commas per line break, or with an inner line holding a whole row's worth, is counted in
    `_breaks` and quarantined (`multiline_record`), never landed with following rows inside a value; a visit
    comment over three lines with a few commas on each lands. A stray quote the reader cannot split refuses
    the file (`_collect_malformed`).

    The file scan says whether any of it can occur (a line break inside a field needs a double quote
    somewhere in the file), so most files skip it. Per-column `contains` is a memchr and allocates nothing; a
    file wider than WIDE_FILE_COLUMNS is checked on one concat of its fields instead (commas of every field of
    a line-broken record then count), because a chain of per-column ORs would exceed DuckDB's expression
    depth."""
    if not file_scan.quotes and not file_scan.nuls:
        return f"SELECT {contract_text}, 0 AS _newlines, 0 AS _breaks, false AS _nul FROM {READ_CSV}"
    if len(columns) > WIDE_FILE_COLUMNS:
        checked, source = ["_all"], (f"SELECT {contract_text}, concat({', '.join(columns)}) AS _all FROM {READ_CSV}")
    else:
        checked, source = columns, f"SELECT {contract_text}, {', '.join(columns)} FROM {READ_CSV}"
    newlines, joined, nul = "0", "false", "false"
    separators = max(len(columns) - 1, 1)
    if file_scan.quotes:  # LF (or CRLF) files break lines with \n, CR-only files with \r
        eol = "chr(10)" if file_scan.lf or file_scan.crlf else "chr(13)"
        flagged = " OR ".join(f"contains({c}, {eol})" for c in checked)
        count = " + ".join(f"coalesce(length({c}) - length(replace({c}, {eol}, '')), 0)" for c in checked)
        shaped = " OR ".join(f"coalesce({_row_shaped(c, eol, separators)}, false)" for c in checked)
        newlines = f"CASE WHEN {flagged} THEN {count} ELSE 0 END"
        joined = f"CASE WHEN _newlines > 0 THEN {shaped} ELSE false END"  # only rows with a break: most skip it
    if file_scan.nuls:
        nul = "coalesce(" + " OR ".join(f"contains({c}, chr(0))" for c in checked) + ", false)"
    return (
        f"SELECT * EXCLUDE (_joined), CASE WHEN _joined THEN _newlines ELSE 0 END AS _breaks "
        f"FROM (SELECT * EXCLUDE ({', '.join(checked)}), {joined} AS _joined "
        f"FROM (SELECT *, {newlines} AS _newlines, {nul} AS _nul FROM ({source})))"
    )


def _row_shaped(column: str, eol: str, separators: int) -> str:
    """SQL: the line-broken value `column` looks like lines of the file joined by a stray quote: exactly a row's
    worth of commas per line break, or an inner line holding at least a row's worth."""
    commas = f"(length({column}) - length(replace({column}, ',', '')))"
    breaks = f"(length({column}) - length(replace({column}, {eol}, '')))"
    inner = f"string_split({column}, {eol})[2:-2]"
    inner_max = f"list_max(list_transform({inner}, lambda x: length(x) - length(replace(x, ',', ''))))"
    return (
        f"(contains({column}, {eol}) AND ({commas} = {separators} * {breaks} "
        f"OR coalesce({inner_max}, 0) >= {separators}))"
    )


def _staging_sql(contract: Contract, rows_sql: str, pretrimmed: bool = False, written: bool = True) -> str:
    """CREATE temp._staged from `rows_sql` (contract columns as text, `_breaks`, `_nul`): values trimmed per
    contract, typed values, first broken rule, hash. `pretrimmed`: the rows' values are already trimmed exactly
    so (FHIR Bulk rows mapped in SQL, TableRows.cleaned), so the trim is not run twice. `written`: the values are
    text a person or an export wrote (CSV, native or profiled), so money with more than 2 decimals is
    `too_many_decimals`; FHIR / X12 amounts are numbers their mapping wrote out (JSON floats: 112.416 is a
    computed coinsurance, 410.20000000000005 binary noise) and land rounded to the cent, as before."""
    typed = v.typed_columns(contract)
    checks = v.checks_for(contract)
    trimmed = ", ".join(
        f"{quote_ident(c.name) if pretrimmed else v.trimmed_expr(c)} AS {quote_ident(c.name)}" for c in contract.columns
    )
    excluded = ", ".join(quote_ident(c.name) for c in contract.columns)
    return (
        f"CREATE OR REPLACE TEMP TABLE _staged AS SELECT *, {v.violation_expr(checks)} AS _violation, "
        f"{v.row_hash_expr(contract)} AS _row_hash "
        f"FROM (SELECT *{', ' + typed if typed else ''} FROM ("
        f"SELECT {trimmed}, * EXCLUDE ({excluded}), {v.lit(written)} AS {v.WRITTEN} FROM ({rows_sql})))"
    )


def _csv_problem(exc: duckdb.Error, offset: int = 0) -> str:
    """What went wrong reading the CSV, as fixed text and a line number: DuckDB's own message quotes the
    offending line (which may hold PHI) and the file path, so none of it is passed on."""
    text = str(exc)
    found = re.search(r"\bline:?\s+(\d+)", text, flags=re.IGNORECASE)
    at = f" at line {int(found.group(1)) + offset}" if found else ""
    lower = text.lower()
    if "line size" in lower or "max_line_size" in lower:
        return f"a line{at} is longer than the CSV reader's maximum line size"
    if "unicode" in lower or "utf-8" in lower or "encoding" in lower:
        return f"the text{at} is not valid UTF-8"
    if "invalid state" in lower or "state machine" in lower or "quote" in lower:
        return f"the CSV could not be split into fields{at} (unbalanced double quotes?)"
    if "out of memory" in lower or "memory" in lower:
        return "the reader ran out of memory; try again with fewer files at once"
    return f"the CSV reader stopped{at} ({type(exc).__name__})"


def _collect_malformed(db: RawDB, path: Path, shown: Sequence[str | None], offset: int = 0) -> None:
    """One row per malformed line (DuckDB may report several errors for a line); refuse non-UTF-8 files.
    `offset`: lines above the part of the file read (`_stage_vendor`), for the line numbers of refusals.

    `shown[i]` is the name the quarantine gives the file's column i + 1 (DuckDB only knows `__f<i+1>`): the
    contract column it feeds, or a header name that looks like one, else NULL."""
    bad_encoding = db.con.execute(
        "SELECT min(line) FROM _reject_errors WHERE error_type = 'INVALID ENCODING'"
    ).fetchone()[0]
    if bad_encoding is not None:
        raise encoding_refusal(path, int(bad_encoding) + offset)
    # DuckDB's csv_line starts with the line breaks before the record when they are not plain LF (CRLF files) or
    # follow empty lines: only breaks after the record's first character make it span lines
    db.con.execute(
        "UPDATE _reject_errors SET csv_line = ltrim(csv_line, chr(13) || chr(10)) "
        "WHERE starts_with(csv_line, chr(10)) OR starts_with(csv_line, chr(13))"
    )
    spanning = db.con.execute("""
        SELECT line, length(csv_line) - length(replace(csv_line, chr(10), '')) AS breaks FROM _reject_errors
        WHERE contains(csv_line, chr(10)) OR contains(csv_line, chr(13)) ORDER BY line LIMIT 1""").fetchone()
    if spanning is not None:
        line, breaks = int(spanning[0]) + offset, int(spanning[1] or 0)
        raise FileRefused(
            f"{display_name(path)}: line {line} opens a double-quoted value that is not closed where the value "
            f"ends, so {breaks + 1 if breaks else 'several'} lines from there (to the next double quote or the end "
            f'of the file) would be read as one record. Close the quote (write a quote inside a value as two: "") '
            f"or remove it, and ingest the file again."
        )
    cases = " ".join(f"WHEN {v.lit(k)} THEN {v.lit(text)}" for k, text in MALFORMED_DETAILS.items())
    db.con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _malformed AS
        SELECT line, CAST(?[TRY_CAST(substr(arg_min(column_name, coalesce(column_idx, -1)), 4) AS INTEGER)]
                          AS VARCHAR) AS column_name,
               coalesce(CASE arg_min(CAST(error_type AS VARCHAR), coalesce(column_idx, -1)) {cases} END,
                        'the line could not be parsed as CSV') AS detail,
               any_value(csv_line) AS csv_line
        FROM _reject_errors GROUP BY line""",
        [list(shown) or [None]],
    )


# DuckDB's CSV reader as one text column per physical line (an empty line is NULL): for finding empty lines
READ_LINES = (
    "read_csv(?, header = false, auto_detect = false, columns = {'l': 'VARCHAR'}, delim = chr(0), quote = '', "
    "escape = '', strict_mode = false)"
)


def _map_lines(db: RawDB, readable: Path, file_scan: FileScan) -> None:
    """Tables mapping staged rows and malformed lines to their first line in the file (header = line 1).

    DuckDB numbers a rejected line by the lines of the file minus the line breaks inside earlier quoted values,
    and skips empty lines. In that numbering the staged rows fill every line but the header, the malformed
    lines and the empty lines (the gaps): the j-th gap g pushes every staged row with 1-based ordinal r >= g - j
    one line further down (thresholds are non-decreasing in j, so an ASOF join finds a row's shift,
    `_line_shift`). The line breaks inside the fields of earlier staged rows push rows and malformed lines
    further (`_break_shift`). Empty lines are looked for only when the file scan saw two line breaks in a row
    (`_empty_lines`); the common file costs two counts."""
    _empty_lines(db, readable, file_scan)
    db.con.execute("""
        CREATE OR REPLACE TEMP TABLE _gaps AS
        SELECT line, malformed, row_number() OVER (ORDER BY line) AS j FROM (
            SELECT line, true AS malformed FROM _malformed UNION ALL SELECT line, false FROM _empty)""")
    db.con.execute("""
        CREATE OR REPLACE TEMP TABLE _line_shift AS
        SELECT line - j AS threshold, max(j) AS shift FROM _gaps GROUP BY threshold""")
    db.con.execute("CREATE OR REPLACE TEMP TABLE _break_shift (after BIGINT, shift HUGEINT)")
    if db.con.execute("SELECT count(*) FROM _staged WHERE _newlines > 0").fetchone()[0]:
        db.con.execute("""
            INSERT INTO _break_shift
            SELECT rowid + 1, sum(_newlines) OVER (ORDER BY rowid) FROM _staged WHERE _newlines > 0""")
        # a malformed line (gap j at DuckDB line g) follows g - j - 1 staged rows
        db.con.execute("""
            CREATE OR REPLACE TEMP TABLE _malformed AS
            SELECT m.* REPLACE (m.line + coalesce(bs.shift, 0) AS line)
            FROM _malformed m JOIN (SELECT line, line - j - 1 AS rows_before FROM _gaps WHERE malformed) g USING (line)
            ASOF LEFT JOIN _break_shift bs ON g.rows_before >= bs.after""")


def _empty_lines(db: RawDB, readable: Path, file_scan: FileScan) -> None:
    """temp._empty: DuckDB's line number (see `_map_lines`) of each empty line of the file outside a quoted value.

    Only when the scan saw two line breaks in a row: one more read of the file, as lines, keeping two numbers a
    line; a line starts inside a quoted value when the double quotes before it are odd in number (an escaped
    quote counts two). A file with NUL bytes, or that the line read cannot take, keeps the numbering without
    empty lines."""
    db.con.execute("CREATE OR REPLACE TEMP TABLE _empty (line BIGINT)")
    if not file_scan.blank or file_scan.nuls:
        return
    quotes = "coalesce(length(l) - length(replace(l, '\"', '')), 0)" if file_scan.quotes else "0"
    try:
        db.con.execute(
            f"CREATE OR REPLACE TEMP TABLE _file_lines AS SELECT l IS NULL AS empty, {quotes} AS quotes "
            f"FROM {READ_LINES}",
            [str(readable)],
        )
    except duckdb.Error:
        log.warning("could not read %s as lines; line numbers do not count its empty lines", display_name(readable))
        return
    db.con.execute("""
        INSERT INTO _empty
        SELECT line - continued FROM (
            SELECT line, empty, inside, sum(inside::INTEGER) OVER (ORDER BY line) AS continued FROM (
                SELECT rowid + 1 AS line, empty,
                       coalesce(sum(quotes) OVER (ORDER BY rowid ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                           % 2 = 1 AS inside
                FROM _file_lines))
        WHERE empty AND NOT inside AND line > 1""")


def _line_sql(db: RawDB) -> tuple[str, str]:
    """(join clause, expression) giving the file line of staged row `s` (header = line 1), from `_map_lines`.

    Without malformed or empty lines and line breaks in fields it is simply rowid + 2; otherwise an ASOF join adds
    the gaps that precede the row, and another the line breaks inside the fields of earlier rows.
    """
    joins, line = [], "s.rowid + 2"
    if db.con.execute("SELECT count(*) FROM _line_shift").fetchone()[0]:
        joins.append("ASOF LEFT JOIN _line_shift ls ON s.rowid + 1 >= ls.threshold")
        line += " + coalesce(ls.shift, 0)"
    if db.con.execute("SELECT count(*) FROM _break_shift").fetchone()[0]:
        joins.append("ASOF LEFT JOIN _break_shift bs ON s.rowid >= bs.after")
        line += " + coalesce(bs.shift, 0)"
    return " ".join(joins), line


# --- vendor exports mapped by a source profile (ingestion/profiles.py) ----------------------------------------


def _profile_fingerprint(profile: Profile) -> str:
    """What the profile maps and how (not where its file lies): a load is only 'the same' under the same mapping."""
    return hashlib.sha256(
        repr((profile.name, profile.defaults, profile.value_maps, profile.files)).encode()
    ).hexdigest()


def _profile_for(
    path: Path, forced: Profile | None, profiles: Mapping[str, Profile] | None = None
) -> tuple[Profile, ProfileFile] | None:
    """The profile and file type that map `path`: the forced profile (a header it does not fit is refused),
    else the profile (shipped, or the home's: `available_profiles`) whose header signature fits; None = the
    native contract named by the file."""
    try:
        names: list[str] | None = read_header(path)
        unreadable: FileRefused | None = None
    except FileRefused as exc:  # line 1 (e.g. empty above a report title): a file type with skip_lines may fit
        names, unreadable = None, exc
    header_at = _header_reader(path)
    if forced is not None:
        if names is None and not any(f.skip_lines or f.skip_auto for f in forced.files):
            raise unreadable
        pfile = file_of(forced, names or [], header_at)
        if isinstance(pfile, str) and unreadable is not None:  # no header anywhere: line 1's own reason (UTF-16,
            raise unreadable  # a non-UTF-8 header, binary) is the one to fix, not the profile's
        if isinstance(pfile, str):
            raise FileRefused(
                f"{display_name(path)}: {pfile}. Check that the file is that vendor export, or ingest it "
                f"without --profile."
            )
        return forced, pfile
    return detect(names, available_profiles() if profiles is None else profiles, header_at)


def _header_reader(path: Path) -> Callable[[int], list[str] | None]:
    """The column names on line n + 1 of `path` (a profile's `skip_lines: n`), None when that line is no header
    row; read once per n."""
    read: dict[int, list[str] | None] = {}

    def header_at(skip: int) -> list[str] | None:
        if skip not in read:
            try:
                read[skip] = read_header(path, skip)
            except FileRefused:
                read[skip] = None
        return read[skip]

    return header_at


def _check_skip_lines(path: Path, profile: Profile, pfile: ProfileFile) -> None:
    """A file type with `skip_lines` whose file has the column names on line 1 (exported without its report
    title): reading from line skip_lines + 1 would lose the first rows, so the file is refused."""
    try:
        first = read_header(path)
    except FileRefused:
        return
    if pfile.score(first) is not None:
        raise FileRefused(f"{display_name(path)}: {untitled_problem(profile, pfile)}.")


def _auto_skip(path: Path, profile: Profile, pfile: ProfileFile) -> int:
    """The lines above the header of a file type with `skip_lines: auto`: the first of the file's first
    AUTO_HEADER_LINES lines that fits the file type (0 when line 1 does); refused when none does."""
    skip = header_skip(pfile, None, _header_reader(path))
    if skip is None:
        raise FileRefused(
            f"{display_name(path)}: none of its first {AUTO_HEADER_LINES} lines holds the column names of file type "
            f"{pfile.name!r} of profile {profile.name!r} (skip_lines: auto); nothing was loaded. Check that the file "
            f"is that export, or set skip_lines to the number of lines above its header"
        )
    return skip


def _load_profiled(
    db: RawDB,
    result: LoadResult,
    path: Path,
    work_dir: Path,
    file_scan: FileScan,
    profile: Profile,
    pfile: ProfileFile,
    contract: Contract,
    before: tuple[int, int, int, int],
) -> None:
    """Read the vendor file all-VARCHAR, apply the profile in one SQL statement, then validate, quarantine,
    land and audit exactly like a native file. Excluded rows (profile filters, unknown change flags) are
    quarantined as `excluded_by_profile`, so rows read = landed + quarantined + duplicate still holds."""
    problem = clinic_zone_problem(profile)
    if problem:
        raise FileRefused(f"{display_name(path)}: {problem}.")
    skip = pfile.skip_lines
    if pfile.skip_auto:
        skip = _auto_skip(path, profile, pfile)
    elif skip:
        _check_skip_lines(path, profile, pfile)
    names = read_header(path, skip)
    normalised = None
    readable = path
    try:
        if file_scan.mixed_line_endings or skip:  # a private copy: LF only, and / or from the header line on
            handle, name = tempfile.mkstemp(prefix=PRIVATE_COPY_PREFIX, suffix=".csv", dir=work_dir)
            os.close(handle)
            normalised = readable = Path(name)
            if skip:
                copy_after_lines(path, normalised, skip, normalise=file_scan.mixed_line_endings)
            else:
                normalise_line_endings(path, normalised)
        _stage_vendor(db, path, readable, names, file_scan, offset=skip)
        ensure_unchanged(path, before)
    finally:
        if normalised is not None:
            normalised.unlink(missing_ok=True)
    _clinic_zones(db)
    db.con.execute(f"CREATE OR REPLACE TEMP TABLE _profiled AS {profile_sql(profile, pfile, names, contract)}")
    record = v.record_expr(contract)
    db.con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _excluded AS
        SELECT _src_line AS line, _skip_column AS column_name, _skip AS detail, {record} AS record
        FROM _profiled WHERE _skip IS NOT NULL""")
    db.con.execute(
        _staging_sql(contract, "SELECT * EXCLUDE (_skip, _skip_column, _occurrence) FROM _profiled WHERE _skip IS NULL")
    )
    # a tombstone is a new version even when every contract value equals the last one
    db.con.execute("UPDATE _staged SET _row_hash = hash(_row_hash, 'tombstone') WHERE _op = 'tombstone'")
    notes = [f"mapped by profile {profile.name} (file type {pfile.name})"]
    if skip:
        how = "skip_lines: auto" if pfile.skip_auto else "skip_lines"
        notes.append(f"header read on line {skip + 1}: the {skip} line(s) above it skipped (profile {how})")
    notes += unmapped_notes(db.con, profile, pfile, names)
    notes += _occurrence_notes(db, pfile, contract)
    gaps = unsupplied(pfile, contract)
    if gaps:
        notes.append(f"the export has no column for required {', '.join(gaps)}: those rows are quarantined")
    _land(db, result, contract, notes, INTEROP_LINE)


def _occurrence_notes(db: RawDB, pfile: ProfileFile, contract: Contract) -> list[str]:
    """How many rows of the file share a `concat` record id with another row of it and were numbered
    (`profile_sql`), per key column: counts and column names only."""
    keys = occurrence_keys(pfile, contract)
    if not keys:
        return []
    n = db.con.execute(
        "SELECT count(DISTINCT _src_line) FROM _profiled WHERE _skip IS NULL AND _occurrence > 1"
    ).fetchone()[0]
    if not n:
        return []
    args = ", ".join(str(a) for a in (pfile.spec["columns"][keys[0]].get("args") or []))
    return [
        f"{keys[0]}: {n} row(s) have the same record id (concat of {args}) as another row of this file; each "
        f"landed as its own record, numbered {keys[0]}{OCCURRENCE_MARK}2, {OCCURRENCE_MARK}3, ... in the order of "
        f"their values (a re-sent file lands nothing twice). If these are one record sent twice, give the export's "
        f"row id (or identical_rows: merge)"
    ]


def _stage_vendor(
    db: RawDB, path: Path, readable: Path, names: list[str], file_scan: FileScan, offset: int = 0
) -> None:
    """temp._vendor: the file's rows as positional text columns `_v1`..`_vN` with `_src_line` (the file line),
    `_breaks` and `_nul`; malformed lines go to temp._malformed, as for a native file. `offset`: lines of the
    file above `readable`'s first line (a profile's `skip_lines`), added to every line number so quarantine
    records and messages keep the file's own line numbers."""
    file_columns = {f"__f{i}": "VARCHAR" for i in range(1, len(names) + 1)}
    text = ", ".join(f"{quote_ident(f)} AS {quote_ident(f'_v{i}')}" for i, f in enumerate(file_columns, start=1))
    try:
        db.con.execute(
            f"CREATE OR REPLACE TEMP TABLE _staged AS {_csv_rows_sql(text, list(file_columns), file_scan)}",
            [str(readable), file_columns],
        )
    except duckdb.Error as exc:
        raise FileRefused(
            f"{display_name(path)} could not be read as CSV ({_csv_problem(exc, offset)}). Check that it is "
            f"a comma-separated UTF-8 export with a header row, and ingest it again."
        ) from None
    _collect_malformed(db, path, shown_column_names(names), offset)
    _map_lines(db, readable, file_scan)
    join, line = _line_sql(db)
    db.con.execute(
        f"CREATE OR REPLACE TEMP TABLE _vendor AS SELECT s.*, {line} + {int(offset)} AS _src_line FROM _staged s {join}"
    )
    if offset:
        db.con.execute(f"UPDATE _malformed SET line = line + {int(offset)}")


def _clinic_zones(db: RawDB) -> None:
    """temp._clinic_tz: each known clinic's IANA zone (latest version), for profiles that convert times. A zone
    DuckDB does not know (landed before the contract checked it) is left out: the profile's own zone applies."""
    db.con.execute("CREATE OR REPLACE TEMP TABLE _clinic_tz (clinic_id VARCHAR, tz VARCHAR)")
    if db.has_table("clinics"):
        db.con.execute(
            "INSERT INTO _clinic_tz SELECT clinic_id, tz FROM ("
            f"SELECT clinic_id, arg_max(timezone, updated_at) AS tz FROM {db.t('clinics')} GROUP BY clinic_id"
            ") WHERE tz IN (SELECT name FROM pg_timezone_names())"
        )


# --- landing: one transaction per file ------------------------------------------------------------------------


def _land(
    db: RawDB, result: LoadResult, contract: Contract, notes: list[str], line: tuple[str, str] | None = None
) -> None:
    """Quarantine, land and audit the staged file atomically; assert the row-count invariant first."""
    db.con.execute(EXCLUDED_DDL)  # rows a source profile excluded (none for native files)
    scope_checks = _apply_scope(db, result, contract)
    if scope_checks is not None:
        notes = [*notes, _scope_note(result.upload_scope)]
    staged, malformed, excluded = db.con.execute(
        "SELECT (SELECT count(*) FROM _staged), (SELECT count(*) FROM _malformed), (SELECT count(*) FROM _excluded)"
    ).fetchone()
    with_op = "/" in (result.profile or "")  # a source profile's "name/file" (not "x12" / "fhir"): delete flags
    line = line or _line_sql(db)
    db.con.begin()
    ensure_source_table(db, contract, with_op=with_op)
    result.rows_read = staged + malformed + excluded
    result.rows_quarantined = _quarantine(db, result, contract, line, scope_checks or []) + malformed + excluded
    result.rows_duplicate = _find_duplicates(db, contract, result.profile)
    result.rows_landed = _insert_rows(db, result, contract, line, with_op=with_op)
    assert_counts(result)
    result.status = LOADED
    result.message = "; ".join(notes + _summary(result))
    _write_audit(db, result)
    db.con.commit()


def _apply_scope(db: RawDB, result: LoadResult, contract: Contract) -> list[v.Check] | None:
    """An upload limited to some clinics (result.upload_scope): mark the staged valid rows outside it with the number
    of the first scope check they break (numbered after the contract's checks), so `_quarantine` sets them aside as
    `outside_upload_scope` with the column and the fix, and they count as quarantined. Returns the checks (None for
    a load of every clinic). Ids are compared with what raw holds before this load, read in the same connection."""
    clinics = _scope_clinics(result.upload_scope)
    if clinics is None:
        return None
    if v.CLINIC_COLUMN not in contract.column_names:  # refused before staging (`_scope_refusal`): never reached
        raise FileRefused(f"{contract.source}: no clinic column, not loadable by an upload limited to some clinics")
    held_columns, shared_columns = v.scope_columns(contract)
    held = {}
    for name in held_columns:
        landed = _clinic_tables(db, name)  # an id of a record kept at one clinic: wherever it is landed
        tables = landed if name in v.HELD_COLUMNS else [t for t in landed if t == contract.source]  # own key, NPI
        if tables:
            held[name] = _ids_at(db, name, tables, clinics, inside=False)
    shared = {}
    for name in shared_columns:
        tables = _clinic_tables(db, name)
        known = [_ids_at(db, name, tables, clinics, inside=False)] if tables else []
        if name == "patient_id" and "patient_id" in _landed_columns(db, "patients"):  # registered, no visit yet
            known.append(f"SELECT patient_id AS id FROM {db.t('patients')} WHERE patient_id IS NOT NULL")
        if known:
            inside = _ids_at(db, name, tables, clinics, inside=True) if tables else "SELECT NULL AS id WHERE false"
            shared[name] = (" UNION ALL ".join(known), inside)
    checks = v.scope_checks(contract, clinics, held, shared)
    first = len(v.checks_for(contract))
    for number, check in enumerate(checks, start=first + 1):
        db.con.execute(f"UPDATE _staged SET _violation = {number} WHERE _violation IS NULL AND ({check.condition})")
    return checks


def _clinic_tables(db: RawDB, column: str) -> list[str]:
    """Landed raw tables with both `column` and clinic_id (the sources that say at which clinic an id is)."""
    rows = db.con.execute(
        "SELECT table_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? "
        "AND column_name IN (?, ?) AND table_name NOT LIKE '\\_%' ESCAPE '\\' "
        "GROUP BY table_name HAVING count(DISTINCT column_name) = 2 ORDER BY table_name",
        [db.catalog, SCHEMA, column, v.CLINIC_COLUMN],
    ).fetchall()
    return [r[0] for r in rows]


def _ids_at(db: RawDB, column: str, tables: Sequence[str], clinics: tuple[str, ...], inside: bool) -> str:
    """SQL selecting the ids of `column` landed in `tables` at one of `clinics` (`inside`) or at any other clinic
    (a row without a clinic counts as another clinic's)."""
    at = v.in_clinics(quote_ident(v.CLINIC_COLUMN), clinics)
    where = at if inside else f"NOT {at}"
    col = quote_ident(column)
    return " UNION ALL ".join(f"SELECT {col} AS id FROM {db.t(t)} WHERE {col} IS NOT NULL AND {where}" for t in tables)


def _scope_note(scope: str | None) -> str:
    """The load's message for an upload limited to some clinics: how many, never which (raw._loads.upload_scope)."""
    n = len(_scope_clinics(scope) or ())
    return (
        f"upload limited to {n} clinic(s) (raw._loads.upload_scope): rows of other clinics, or naming records kept "
        f"at them, are quarantined as {v.SCOPE_RULE}"
    )


def assert_counts(result: LoadResult) -> None:
    """Every row read is landed, quarantined or a duplicate: exactly one of them."""
    total = result.rows_landed + result.rows_quarantined + result.rows_duplicate
    if result.rows_read != total:
        raise AssertionError(
            f"load {result.load_id}: rows_read {result.rows_read} != landed {result.rows_landed} "
            f"+ quarantined {result.rows_quarantined} + duplicate {result.rows_duplicate}"
        )


def _summary(result: LoadResult) -> list[str]:
    if result.rows_quarantined:
        return [
            f"{result.rows_quarantined} row(s) quarantined: see `ptpulse status` and raw._quarantine "
            f"(load_id {result.load_id}), fix them in the source and re-send the file"
        ]
    return []


def ensure_source_table(db: RawDB, contract: Contract, with_op: bool = False) -> None:
    """raw.<source> typed per the contract; columns added to a contract later are added to the table.

    `with_op`: the table also gets `_op` (NULL or 'upsert' = a version, 'tombstone' = the key was deleted at
    the source), added the first time a source profile lands rows in it."""
    table = db.t(contract.source)
    columns = ", ".join(f"{quote_ident(c.name)} {c.sql_type}" for c in contract.columns)
    db.con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns}, _load_id BIGINT, _row_hash UBIGINT, _line BIGINT)")
    existing = {
        row[0]
        for row in db.con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
            [db.catalog, SCHEMA, contract.source],
        ).fetchall()
    }
    for col in contract.columns:
        if col.name not in existing:
            db.con.execute(f"ALTER TABLE {table} ADD COLUMN {quote_ident(col.name)} {col.sql_type}")
    if with_op and "_op" not in existing:
        db.con.execute(f"ALTER TABLE {table} ADD COLUMN _op VARCHAR")
    _rehash_if_older_rule(db, contract, has_op=with_op or "_op" in existing)


def _rehash_if_older_rule(db: RawDB, contract: Contract, has_op: bool) -> None:
    """Recompute `_row_hash` of every landed row when the table's recorded rule is not `v.row_hash_rule` (rows
    landed before the hash was over typed values, or before a column was added to the contract), so the
    duplicate check compares like with like. Runs in the load's transaction, once per change; the table's
    comment records the rule."""
    rule = db.con.execute(
        "SELECT comment FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
        [db.catalog, SCHEMA, contract.source],
    ).fetchone()[0]
    if rule == v.row_hash_rule(contract):
        return
    table = db.t(contract.source)
    rehash = v.row_hash_expr(contract, landed=True)
    if has_op:  # a tombstone is a new version even when every value equals the last one (as when staged)
        rehash = f"CASE WHEN _op = 'tombstone' THEN hash({rehash}, 'tombstone') ELSE {rehash} END"
    db.con.execute(f"UPDATE {table} SET _row_hash = {rehash}")
    db.con.execute(f"COMMENT ON TABLE {table} IS {v.lit(v.row_hash_rule(contract))}")


def _quarantine(
    db: RawDB, result: LoadResult, contract: Contract, line: tuple[str, str], scope_checks: Sequence[v.Check] = ()
) -> int:
    """Copy rows with a broken rule, and malformed lines, to raw._quarantine; return the broken-rule count.
    `scope_checks`: those `_apply_scope` numbered after the contract's checks (an upload limited to some clinics)."""
    checks = v.checks_for(contract) + list(scope_checks)
    params = [result.load_id, contract.source, result.file]
    broken = 0
    if checks:
        broken = db.con.execute(
            f"""
            INSERT INTO {db.t("_quarantine")}
            SELECT ?, ?, ?, {line[1]}, {v.rule_expr(checks)}, {v.column_expr(checks)}, {v.detail_expr(checks)},
                   {v.record_expr(contract)}
            FROM _staged s {line[0]} WHERE _violation IS NOT NULL""",
            params,
        ).fetchone()[0]
    db.con.execute(
        f"""
        INSERT INTO {db.t("_quarantine")}
        SELECT ?, ?, ?, line, 'malformed_row', column_name, detail, json_object('_raw_line', csv_line)
        FROM _malformed""",
        params,
    )
    db.con.execute(
        f"""
        INSERT INTO {db.t("_quarantine")}
        SELECT ?, ?, ?, line, 'excluded_by_profile', column_name, detail, record FROM _excluded""",
        params,
    )
    return broken


# a staged row's place in dbt's merge order (macros/ptpulse.sql merge_latest: latest event time, nulls last, then
# load, then line); a staged row is in the load being written, after every landed one
_NEW_LOAD = 2**62


def _merge_order(event_time: str, load: str, line: str) -> str:
    return (
        f"{{'dated': {event_time} IS NOT NULL, 'at': coalesce(epoch({event_time}), 0), 'load': {load}, 'line': {line}}}"
    )


# The source system of a load as dbt ranks it (macros/ptpulse.sql source_system_ranks, default source_precedence)
# from raw._loads.profile: every vendor profile ("name/file": the shipped one or a practice's fixed copy) is one
# system, 'profile'; FHIR and X12 files are 'fhir' / 'x12'; a native CSV (NULL) is 'native'.
SOURCE_SYSTEM = "CASE WHEN {0} LIKE '%/%' THEN 'profile' ELSE coalesce({0}, 'native') END"


def _carry_absent_columns(db: RawDB, contract: Contract, names: Sequence[str]) -> None:
    """A native file without an optional column did not export it; it did not empty it. Each valid staged row
    takes the absent columns from its key's current version landed by native files (latest event time, load,
    line: dbt's rule), so a narrower re-export neither blanks the phone and email of every patient nor lands
    unchanged rows again (with the values carried, the hash matches). A key new to PT Pulse stays empty."""
    in_file = {header_key(n) for n in names}
    landed = _landed_columns(db, contract.source)
    absent = [c for c in contract.columns if c.name not in in_file and c.name in landed]
    if not absent:
        return
    keys = [contract.column(k) for k in contract.natural_key]
    key_at = {k.name: f"__key{i}" for i, k in enumerate(keys)}
    db.con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _carried AS
        SELECT {", ".join(f"r.{quote_ident(k.name)} AS {key_at[k.name]}" for k in keys)},
            {", ".join(f"r.{quote_ident(c.name)} AS {quote_ident('__carried_' + c.name)}" for c in absent)}
        FROM {db.t(contract.source)} r
        SEMI JOIN (SELECT {", ".join(f"{v.typed_ref(k)} AS {key_at[k.name]}" for k in keys)}
                   FROM _staged WHERE _violation IS NULL) s
            ON {" AND ".join(f"r.{quote_ident(k.name)} = s.{key_at[k.name]}" for k in keys)}
        WHERE r._load_id IN (SELECT load_id FROM {db.t("_loads")} WHERE {SOURCE_SYSTEM.format("profile")} = 'native')
        QUALIFY row_number() OVER (
            PARTITION BY {", ".join(f"r.{quote_ident(k.name)}" for k in keys)}
            ORDER BY r.{quote_ident(contract.event_time)} DESC NULLS LAST, r._load_id DESC, r._line DESC) = 1"""
    )
    sets = ", ".join(
        f"{quote_ident(c.name if c.type == 'varchar' else v.TYPED_PREFIX + c.name)} = "
        f"c.{quote_ident('__carried_' + c.name)}"
        for c in absent
    )
    match = " AND ".join(f"c.{key_at[k.name]} = {v.typed_ref(k)}" for k in keys)
    db.con.execute(f"UPDATE _staged SET {sets} FROM _carried c WHERE _violation IS NULL AND {match}")
    db.con.execute(f"UPDATE _staged SET _row_hash = {v.row_hash_expr(contract)} WHERE _violation IS NULL")


def _landed_columns(db: RawDB, source: str) -> set[str]:
    """Columns of raw.<source> (none when nothing landed yet; a column a newer contract added is not there)."""
    rows = db.con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
        [db.catalog, SCHEMA, source],
    ).fetchall()
    return {r[0] for r in rows}


def _find_duplicates(db: RawDB, contract: Contract, profile: str | None) -> int:
    """Fill temp._dups with the valid staged rows that change nothing, so a reload or an overlapping re-export
    lands nothing while a row that goes back to an earlier version (v1 -> v2 -> v1) lands and is current.

    A row is a candidate when an identical version (natural key and content hash) came before it: landed by an
    earlier load of the same source system (dbt merges per system) or on an earlier line of this file. A
    candidate is a duplicate when it equals the version current just before it (dbt's merge order over raw and
    the file's earlier lines), or when it would not become current (an earlier event time than a version before
    it); and every row of a key is one when the file re-sends the key: all its rows seen before and its last word
    the landed current version (a file with v1, v2, v1 of a key, sent again, lands nothing). A candidate whose
    key has one version before it is decided by a hash join; only keys with several go through the window.
    """
    keys = [quote_ident(contract.column(k).name) for k in contract.natural_key]
    typed_keys = ", ".join(f"{v.typed_ref(contract.column(k))} AS {quote_ident(k)}" for k in contract.natural_key)
    key_cols = ", ".join(keys)

    def same_key(a: str, b: str) -> str:
        return " AND ".join(f"{a}.{k} IS NOT DISTINCT FROM {b}.{k}" for k in keys)

    def cols(alias: str) -> str:
        return ", ".join(f"{alias}.{k}" for k in keys)

    table = db.t(contract.source)
    event_time = quote_ident(contract.event_time)
    typed_et = v.typed_ref(contract.column(contract.event_time))
    # the source system as dbt ranks it (macros/ptpulse.sql source_system_ranks, default source_precedence):
    # every vendor profile ("name/file": the shipped one or a practice's fixed copy) is one system, 'profile'
    system = SOURCE_SYSTEM
    db.con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _dups AS
        WITH valid AS MATERIALIZED (
            SELECT rowid AS rid, _row_hash, {typed_et} AS _et, {typed_keys} FROM _staged WHERE _violation IS NULL),
        system_loads AS (
            SELECT load_id FROM {db.t("_loads")}
            WHERE {system.format("profile")} = (SELECT {system.format("p")} FROM (SELECT CAST(? AS VARCHAR) AS p))),
        landed AS (SELECT * FROM {table} WHERE _load_id IN (SELECT load_id FROM system_loads)),
        repeated AS (SELECT _row_hash FROM valid GROUP BY _row_hash HAVING count(*) > 1),
        seen_in_file AS (
            SELECT rid FROM (
                SELECT rid, row_number() OVER (PARTITION BY _row_hash, {key_cols} ORDER BY rid) AS n
                FROM valid SEMI JOIN repeated USING (_row_hash))
            WHERE n > 1),
        seen_in_raw AS (SELECT f.rid FROM valid f JOIN landed r ON r._row_hash = f._row_hash AND {same_key("r", "f")}),
        candidates AS MATERIALIZED (SELECT rid FROM seen_in_file UNION SELECT rid FROM seen_in_raw),
        candidate_keys AS MATERIALIZED (
            SELECT DISTINCT {cols("f")} FROM valid f WHERE f.rid IN (SELECT rid FROM candidates)),
        versions AS MATERIALIZED (
            SELECT {cols("r")}, r._row_hash, NULL::BIGINT AS rid, true AS seen,
                {_merge_order(f"r.{event_time}", "r._load_id", "r._line")} AS _order
            FROM landed r SEMI JOIN candidate_keys k ON {same_key("r", "k")}
            UNION ALL
            SELECT {cols("f")}, f._row_hash, f.rid, f.rid IN (SELECT rid FROM candidates),
                {_merge_order("f._et", str(_NEW_LOAD), "f.rid")}
            FROM valid f SEMI JOIN candidate_keys k ON {same_key("f", "k")}),
        several AS (SELECT {key_cols} FROM versions GROUP BY ALL HAVING count(*) > 2),
        -- a re-sent key: every row of it in the file was seen before, and the file's last word on it (its greatest
        -- row in merge order) is the landed current version or loses to it: the file changes nothing of the key
        resent AS (
            SELECT {cols("v")} FROM versions v SEMI JOIN several s ON {same_key("v", "s")}
            GROUP BY ALL
            HAVING count(*) FILTER (WHERE v.rid IS NULL) > 0
                AND count(*) FILTER (WHERE v.rid IS NOT NULL AND NOT v.seen) = 0
                AND (
                    arg_max(v._row_hash, v._order) FILTER (WHERE v.rid IS NOT NULL)
                    = arg_max(v._row_hash, v._order) FILTER (WHERE v.rid IS NULL)
                    OR max(v._order) FILTER (WHERE v.rid IS NOT NULL) < max(v._order) FILTER (WHERE v.rid IS NULL)
                )),
        -- one version before the candidate: it is the current one, and the candidate is identical to it
        single AS (
            SELECT v.rid FROM versions v ANTI JOIN several s ON {same_key("v", "s")} WHERE v.rid IS NOT NULL
                AND v.rid IN (SELECT rid FROM candidates)),
        ordered AS (
            SELECT rid, _row_hash, _order,
                arg_max(_row_hash, _order) OVER before AS current_hash,
                max(_order) OVER before AS greatest_before
            FROM versions v SEMI JOIN several s ON {same_key("v", "s")}
            WINDOW before AS (
                PARTITION BY {key_cols} ORDER BY rid NULLS FIRST, _order
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)),
        decided AS (
            SELECT rid FROM ordered
            WHERE rid IN (SELECT rid FROM candidates)
                -- a row sorts below one before it only on its event time: its (load, line) is greater than theirs
                AND (_row_hash = current_hash OR _order < greatest_before))
        SELECT rid FROM single UNION SELECT rid FROM decided
        UNION SELECT v.rid FROM versions v SEMI JOIN resent r ON {same_key("v", "r")} WHERE v.rid IS NOT NULL""",
        [profile],
    )
    return db.con.execute("SELECT count(*) FROM _dups").fetchone()[0]


def _insert_rows(
    db: RawDB, result: LoadResult, contract: Contract, line: tuple[str, str], with_op: bool = False
) -> int:
    """Land the valid, non-duplicate staged rows typed, in file order."""
    columns = ", ".join(quote_ident(c.name) for c in contract.columns) + (", _op" if with_op else "")
    typed = ", ".join(v.typed_ref(c) for c in contract.columns) + (", s._op" if with_op else "")
    return db.con.execute(
        f"""
        INSERT INTO {db.t(contract.source)} ({columns}, _load_id, _row_hash, _line)
        SELECT {typed}, ?, s._row_hash, {line[1]}
        FROM _staged s {line[0]}
        WHERE s._violation IS NULL AND s.rowid NOT IN (SELECT rid FROM _dups)""",
        [result.load_id],
    ).fetchone()[0]


# --- FHIR / X12 files: one parse, then per target source the same staging, landing and audit as a CSV ------

INTEROP_LINE = ("", "s._src_line")  # rows carry their position in the file (see ingestion/interop Batch)


def _load_interop_file(
    db: RawDB, path: Path, contracts: Mapping[str, Contract], file: str | None = None, scope: str | None = None
) -> list[LoadResult]:
    """A FHIR or X12 file: parsed once into rows per target source, then one load (and one raw._loads row)
    per source, each its own transaction. A file that cannot be read is one `refused` row (source NULL);
    a file with nothing PT Pulse maps is one `loaded` row with 0 rows and source NULL. Re-offering the same
    bytes skips each source that already loaded, so a source that failed is retried on its own. `file`, `scope`:
    as for `_load_file` (an upload limited to some clinics refuses the file unread: `_scope_refusal`)."""
    result = LoadResult(load_id=_next_load_id(db), file=file or str(path), upload_scope=scope)
    if scope is not None:
        _refuse(db, result, _scope_refusal(path, None))
        return [result]
    try:
        check_readable(path)
        before = file_identity(path)
        result.sha256 = file_digest(path)  # the digest alone: an interop file needs none of `scan`'s line counts
        batch = read_interop(path, contracts, db.con)  # FHIR Bulk rows mapped in SQL stay in this connection
        try:
            ensure_unchanged(path, before)
        except FileRefused:
            for rows in batch.tables():
                rows.drop()
            raise
    except FileRefused as exc:
        _refuse(db, result, str(exc))
        return [result]
    except OSError as exc:
        _refuse(db, result, _os_error_message(path, exc))
        return [result]
    except Exception as exc:
        _fail(db, result, exc)
        if _interrupted(exc):
            raise KeyboardInterrupt from None
        return [result]
    except BaseException as exc:
        _fail(db, result, exc)
        raise
    try:
        return _land_batch(db, path, result, batch, contracts)
    finally:
        for rows in batch.tables():
            rows.drop()


def _land_batch(
    db: RawDB, path: Path, result: LoadResult, batch, contracts: Mapping[str, Contract]
) -> list[LoadResult]:
    """One load per target source of an interop file's batch (see `_load_interop_file`)."""
    notes = batch.summary()
    if not batch.rows:
        previous = _previous_load(db, result.sha256, None, by_source=True, scope=result.upload_scope)
        if previous is not None:
            _skip(db, result, previous)
        else:
            result.status = LOADED
            result.message = "; ".join(["no row for any source in this file"] + notes)
            _write_audit(db, result)
        return [result]
    results = []
    system = "x12" if looks_like_x12(path) else "fhir"  # raw._loads.profile: the source system dbt merges by
    file = result.file
    for source in sorted(batch.rows):
        result = LoadResult(
            load_id=_next_load_id(db),
            file=file,
            sha256=result.sha256,
            source=source,
            profile=system,
            upload_scope=result.upload_scope,
        )
        contract = contracts[source]
        try:
            previous = _previous_load(db, result.sha256, source, by_source=True, scope=result.upload_scope)
            if previous is not None:
                _skip(db, result, previous)
            else:
                _stage_rows(db, batch.rows[source], contract)
                _land(db, result, contract, notes, INTEROP_LINE)
        except FileRefused as exc:
            _refuse(db, result, str(exc))
        except Exception as exc:
            _fail(db, result, exc)
            if _interrupted(exc):
                raise KeyboardInterrupt from None
        except BaseException as exc:
            _fail(db, result, exc)
            raise
        finally:
            _drop_temp(db)
        log.info(
            "load %s %s -> %s: %s (%s read, %s landed, %s quarantined, %s duplicate)",
            result.load_id,
            display_name(path),
            source,
            result.status,
            result.rows_read,
            result.rows_landed,
            result.rows_quarantined,
            result.rows_duplicate,
        )
        results.append(result)
    return results


def _stage_rows(db: RawDB, rows: list, contract: Contract) -> None:
    """Stage reader rows [(line, {column: text})] exactly like a CSV's rows, plus `_src_line`.

    Rows a FHIR Bulk file mapped in SQL (TableRows) are already a temp table of this connection: staged straight
    from it in file order, so millions of rows never cross into Python and back (ingestion/interop/fhir_fast.py)."""
    import polars as pl

    columns = ", ".join(quote_ident(c) for c in contract.column_names)
    nul = " OR ".join(f"coalesce(contains({quote_ident(c)}, chr(0)), false)" for c in contract.column_names)
    _empty_malformed(db)
    if isinstance(rows, TableRows) and rows.con is db.con:
        nul = "false" if rows.nul_free else nul  # checked on the file's bytes (fhir_fast.nul_free)
        db.con.execute(
            _staging_sql(
                contract,
                f"SELECT {columns}, _src_line, 0 AS _breaks, {nul} AS _nul FROM ({rows.rows_sql(contract.column_names)})",
                pretrimmed=rows.cleaned is not None,
                written=False,
            )
        )
        return
    if isinstance(rows, TableRows):  # mapped in another connection (not the loader's): as a frame
        rows = FrameRows(rows.frame(contract.column_names))
    if hasattr(rows, "frame"):  # FrameRows: mapped in SQL (ingestion/interop/fhir_fast.py)
        frame = rows.frame.select([pl.col(c).cast(pl.Utf8) for c in contract.column_names] + [pl.col("_src_line")])
    else:
        schema = {c: pl.Utf8 for c in contract.column_names}
        data = {c: [row[c] for _, row in rows] for c in contract.column_names}
        frame = pl.DataFrame(data, schema=schema).with_columns(
            pl.Series("_src_line", [line for line, _ in rows], dtype=pl.Int64)
        )
    db.con.register("_interop_frame", frame.to_arrow())
    try:
        db.con.execute("CREATE OR REPLACE TEMP TABLE _interop_rows AS SELECT * FROM _interop_frame")
    finally:
        db.con.unregister("_interop_frame")
    db.con.execute(
        _staging_sql(
            contract, f"SELECT {columns}, _src_line, 0 AS _breaks, {nul} AS _nul FROM _interop_rows", written=False
        )
    )


def _empty_malformed(db: RawDB) -> None:
    """Interop rows have no CSV line to break: an empty temp._malformed for `_land`."""
    db.con.execute(
        "CREATE OR REPLACE TEMP TABLE _malformed (line BIGINT, column_name VARCHAR, detail VARCHAR, csv_line VARCHAR)"
    )
