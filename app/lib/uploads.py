"""Uploads in the browser: save offered files safely under $PTPULSE_HOME/incoming/<upload-id>/, validate and land
them with `ptpulse ingest --json` in a subprocess, and turn its answer into a per-file result table.

Why a subprocess of the CLI: the app may import only ptpulse.core (layer rule), and a file the upload page lands
must pass exactly what the CLI checks (contracts, profiles, the pipeline lock): same code path, so nothing lands
that `ptpulse ingest` would refuse. Pure (no Streamlit): the page renders what these functions return.

Safety: only the file's last name component is kept, reduced to letters, digits, `.`, `_`, `-` (no path
traversal, no hidden files); each file and each zip member is capped (PTPULSE_UPLOAD_MAX_MB, default 200 MB);
a zip (a FHIR Bulk export) is unpacked member by member with the same name rule, a member count cap and a
total-size cap (zip bombs), symlinks and nested zips refused. A `.gz` (`scheduling_events.csv.gz`) is saved as it
is: `ptpulse ingest` reads the file inside (ingestion/README.md "Compressed exports"). Messages name the file and
the fix, never a value.

Clinic scope: a user limited to some clinics (a clinic manager) uploads only for them. Their files are saved under
$PTPULSE_HOME/scoped_uploads/<upload-id>/ (never read by a refresh, which loads incoming/ for every clinic) and
ingested with `--clinics`: the ingestion itself sets aside the rows of other clinics (`outside_upload_scope`) and
refuses exports without a clinic column and FHIR / X12 files (ingestion/README.md "Uploads limited to some
clinics"), so the limit holds wherever the rows land, not only on the page.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import time
import unicodedata
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from app.lib import labels
from ptpulse.core.config import Settings
from ptpulse.core.contracts import load_contracts
from ptpulse.core.retention import SCOPED_DIR, prune_scoped, scoped_days

# What the ingestion reads: CSV, FHIR (NDJSON / JSON Bundle), X12 835/837 (often .txt), a zip of them, and any of
# them gzip-compressed (`.csv.gz`: saved as is, unpacked by the ingestion)
ALLOWED_SUFFIXES: tuple[str, ...] = (".csv", ".ndjson", ".json", ".txt", ".835", ".837", ".x12", ".edi", ".zip", ".gz")
NESTED_SUFFIXES = (".zip", ".gz")  # inside an uploaded zip: an archive in an archive, not unpacked
DEFAULT_MAX_MB = 200
MAX_ZIP_MEMBERS = 5000
MAX_NAME = 120
CHUNK = 1 << 20
INGEST_TIMEOUT_S = 1800
INGEST_WAIT_S = 60  # seconds the ingest waits for a running refresh to release the pipeline lock
REFUSED_DIR = "refused_uploads"  # refused files are moved here so the next refresh does not offer them again
SCOPE_RULE = "outside_upload_scope"  # ingestion/validation.py: a row of (or naming a record of) another clinic
CLINIC_COLUMN = "clinic_id"

# Quarantine rules (ingestion/validation.py) and `ptpulse ingest` statuses (ingestion/loader.py) are shown in the
# words of the shared label table (dbt_project/seeds/labels.csv, domains quarantine_rule and load_status).
RULE_DOMAIN, STATUS_DOMAIN = "quarantine_rule", "load_status"


def status_words(status: str) -> str:
    return labels.label(STATUS_DOMAIN, status)


class UploadError(RuntimeError):
    """The upload as a whole could not be validated (pipeline busy, ingest crashed): says what to do next."""


class PipelineBusyError(UploadError):
    """The pipeline stayed busy past the ingest's wait: the files stay in incoming/<upload-id>/ and the next
    refresh loads them (nothing to upload again)."""


WAITING = "Waiting"
WAITING_FIX = "waiting: the pipeline is busy; it will be loaded by the next refresh"
NOTHING_TO_LOAD = "Read, nothing to load"
ALL_SET_ASIDE = "Read, all rows set aside"
ALREADY_ROWS = "Read, rows already loaded"
PROFILE_RULE = "excluded_by_profile"


def max_bytes() -> int:
    """The per-file cap: $PTPULSE_UPLOAD_MAX_MB (default 200 MB, Streamlit's own upload limit)."""
    try:
        mb = float(os.environ.get("PTPULSE_UPLOAD_MAX_MB", DEFAULT_MAX_MB))
    except ValueError:
        mb = DEFAULT_MAX_MB
    return int(max(mb, 0.001) * 1024 * 1024)


def keep_for_administrator(settings: Settings, saved: Saved, outcome: IngestOutcome) -> list[str]:
    """After a limited upload's load is recorded: keep only the files whose rows of other clinics were set aside
    (`outside_upload_scope`), which an administrator lands by loading the same file (`ptpulse ingest` of the
    folder: what landed before counts as duplicates); delete every other file, and the folder when none is left.
    Refused files were moved to refused_uploads/ already (`set_aside_refused`). Returns the names kept; a limited
    upload is deleted after `scoped_days()` (`prune_scoped`), and at once when `scoped_days()` is 0."""
    if saved.clinics is None or not saved.folder.is_dir():
        return []
    wanted = {
        str(f.get("file") or "")
        for f in outcome.files
        if any(r.get("rule") == SCOPE_RULE and int(r.get("rows") or 0) for r in f.get("quarantine_by_rule") or [])
    }
    if not scoped_days():
        wanted = set()
    for path in saved.folder.iterdir():
        if path.name not in wanted:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    if not any(saved.folder.iterdir()):
        saved.folder.rmdir()
    return sorted(wanted)


def safe_name(name: str) -> str:
    """The file's own name, safe to create in the upload folder: last path component only (`/` and `\\`),
    letters, digits, `.`, `_` and `-`, no leading dot (a hidden file), at most 120 characters, suffix kept
    (the ingestion picks the source from the name: `intake_events_nov.csv`)."""
    base = re.split(r"[\\/]", str(name))[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-") or "upload"
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = stem.strip("._-") or "upload"
    suffix = f".{suffix.lower()}" if suffix else ""
    return stem[: MAX_NAME - len(suffix)] + suffix


def _unique(folder: Path, name: str) -> Path:
    """`name`, or `stem_2.ext`, `stem_3.ext` ... when two uploads share a name (`x_2.csv.gz`: the ingestion reads
    a .gz by the name of the file inside)."""
    target = folder / name
    suffixes = Path(name).suffixes
    suffix = "".join(suffixes[-2:]) if len(suffixes) > 1 and suffixes[-1] == ".gz" else Path(name).suffix
    stem = name[: len(name) - len(suffix)] if suffix else name
    n = 2
    while target.exists():
        target = folder / f"{stem}_{n}{suffix}"
        n += 1
    return target


@dataclass
class Saved:
    """One upload on disk: where, which files were saved, and which offered files were not (with the fix)."""

    upload_id: str
    folder: Path
    files: list[str] = field(default_factory=list)  # names as saved
    offered: dict[str, str] = field(default_factory=dict)  # saved name -> name the user offered (for display)
    not_saved: list[dict[str, str]] = field(default_factory=list)  # {"file", "message"}
    clinics: tuple[str, ...] | None = None  # the uploader's clinics when limited to some (None = every clinic)


def new_upload(settings: Settings, clinics: Iterable[str] | None = None) -> Saved:
    """A fresh upload folder: incoming/<upload-id>/ for a user of every clinic (the next refresh may load what the
    pipeline was too busy to check), scoped_uploads/<upload-id>/ for one limited to `clinics` (no refresh reads it:
    a refresh loads for every clinic)."""
    prune_scoped(settings)  # limited uploads kept past their days, at each new upload
    upload_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    scope = None if clinics is None else tuple(sorted({str(c) for c in clinics}))
    folder = (settings.incoming if scope is None else settings.home / SCOPED_DIR) / upload_id
    folder.mkdir(parents=True, exist_ok=False)
    return Saved(upload_id=upload_id, folder=folder, clinics=scope)


def sources_without_clinic() -> list[str]:
    """The sources whose rows name no clinic (patients, payers ...): an upload limited to some clinics cannot load
    them (the ingestion refuses them), only a user of every clinic."""
    return sorted(c.source for c in load_contracts().values() if CLINIC_COLUMN not in c.column_names)


def _copy_capped(src: BinaryIO, target: Path, cap: int) -> bool:
    """Copy in chunks; stop and delete the partial file past `cap` bytes. True when the whole file fit."""
    written = 0
    with open(target, "xb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > cap:
                break
            out.write(chunk)
    if written > cap:
        target.unlink()
        return False
    return True


def save_files(
    settings: Settings, files: Iterable[tuple[str, BinaryIO]], clinics: Iterable[str] | None = None
) -> Saved:
    """Save offered (name, readable) pairs into a fresh upload folder; zips are unpacked there. `clinics`: the
    uploader's clinics when limited to some (auth.User.clinics; None = every clinic): `run_ingest` then loads the
    upload for those clinics only (`new_upload`)."""
    saved = new_upload(settings, clinics)
    cap = max_bytes()
    for offered, stream in files:
        shown = safe_name(offered)
        suffix = Path(shown).suffix
        if suffix not in ALLOWED_SUFFIXES:
            saved.not_saved.append(
                {
                    "file": shown,
                    "message": f"{shown}: files of this type are not read. Upload CSV, NDJSON/JSON (FHIR), "
                    "X12 835/837 (.txt, .835, .837) files, a zip of them, or any of them gzip-compressed (.gz).",
                }
            )
            continue
        target = _unique(saved.folder, shown)
        if not _copy_capped(stream, target, cap):
            saved.not_saved.append({"file": shown, "message": _too_big(shown, cap)})
            continue
        if suffix == ".zip":
            _unzip(saved, target, cap, offered_as=shown)
            target.unlink()
        else:
            saved.files.append(target.name)
            saved.offered[target.name] = target.name  # `charges_2.csv` when two offered files share a name
    return saved


def _too_big(name: str, cap: int) -> str:
    return (
        f"{name}: larger than the upload limit of {cap // (1024 * 1024):,} MB. Split the export by date range, "
        "or copy it into the incoming folder and run `ptpulse refresh` (an administrator may raise "
        "PTPULSE_UPLOAD_MAX_MB)."
    )


def _unzip(saved: Saved, archive: Path, cap: int, offered_as: str) -> None:
    """Members flattened into the upload folder under safe names; directories, hidden files and macOS resource
    forks skipped; symlinks, nested zips, oversized members and bombs refused (the member is named, the fix said)."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        saved.not_saved.append({"file": offered_as, "message": f"{offered_as}: not a readable zip file. Re-create it."})
        return
    total_cap = cap * 10
    total = 0
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            saved.not_saved.append(
                {
                    "file": offered_as,
                    "message": f"{offered_as}: more than {MAX_ZIP_MEMBERS:,} files inside. Upload it in parts.",
                }
            )
            return
        for m in members:
            parts = re.split(r"[\\/]", m.filename)
            if "__MACOSX" in parts or parts[-1].startswith("."):
                continue
            shown = f"{offered_as}/{safe_name(m.filename)}"
            name = safe_name(m.filename)
            if stat.S_ISLNK(m.external_attr >> 16):
                saved.not_saved.append({"file": shown, "message": f"{shown}: a link, not a file. Zip the file itself."})
                continue
            if Path(name).suffix not in ALLOWED_SUFFIXES or Path(name).suffix in NESTED_SUFFIXES:
                saved.not_saved.append(
                    {
                        "file": shown,
                        "message": f"{shown}: files of this type are not read (a zip or .gz inside a zip is not "
                        "unpacked).",
                    }
                )
                continue
            total += m.file_size
            if m.file_size > cap or total > total_cap:
                saved.not_saved.append({"file": shown, "message": _too_big(shown, cap)})
                continue
            target = _unique(saved.folder, name)
            with zf.open(m) as src:
                if not _copy_capped(src, target, cap):  # the header's size can lie: count what is read
                    saved.not_saved.append({"file": shown, "message": _too_big(shown, cap)})
                    continue
            saved.files.append(target.name)
            saved.offered[target.name] = shown


@dataclass
class IngestOutcome:
    returncode: int
    files: list[dict[str, Any]]
    totals: dict[str, int]
    seconds: float


def run_ingest(settings: Settings, saved: Saved, timeout_s: float = INGEST_TIMEOUT_S) -> IngestOutcome:
    """`ptpulse ingest <upload folder> --json` as a subprocess (same checks as the terminal); raises UploadError
    when it gave no per-file answer (busy pipeline, crash), with the message to show. An upload limited to some
    clinics (`saved.clinics`) is ingested with `--clinics`: the ingestion sets aside the other clinics' rows."""
    if saved.clinics is not None and any(not c or "," in c or c != c.strip() for c in saved.clinics):
        raise UploadError(
            "Your account's clinic list cannot be used to limit an upload (a clinic id is empty or holds a comma). "
            "Nothing was loaded: ask an administrator to correct the roles file."
        )
    cmd = [
        sys.executable,
        "-m",
        "ptpulse.cli",
        "ingest",
        str(saved.folder),
        "--home",
        str(settings.home),
        "--json",
        "--wait",
        str(INGEST_WAIT_S),
        *([] if saved.clinics is None else ["--clinics", ",".join(saved.clinics)]),
    ]
    env = dict(os.environ, PTPULSE_HOME=str(settings.home), COLUMNS="120", PYTHONUNBUFFERED="1")
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=env, stdin=subprocess.DEVNULL, check=False
        )
    except subprocess.TimeoutExpired:
        raise UploadError(
            f"Validating the upload took longer than {timeout_s / 60:.0f} minutes and was stopped. Upload fewer "
            "files at once, or copy them into the incoming folder and run `ptpulse refresh`."
        ) from None
    seconds = time.monotonic() - started
    try:
        answer = json.loads(proc.stdout)
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise UploadError(
            f"The ingest stopped without a result (exit code {proc.returncode}). Nothing of this upload is "
            "shown as landed; see the server log, then upload again."
        )
    if answer.get("error") == "busy" and saved.clinics is not None:
        # a refresh loads incoming/ for every clinic, so a limited upload is never left for it: upload again
        shutil.rmtree(saved.folder, ignore_errors=True)
        raise UploadError(
            "Another pipeline command (a refresh or an ingest) is still running, so this upload could not be "
            "checked yet and nothing of it was loaded. Upload the files again in a few minutes, once it has "
            "finished (an upload limited to your clinics is loaded only while you wait)."
        )
    if answer.get("error") == "busy":
        raise PipelineBusyError(
            "Another pipeline command (a refresh or an ingest) is still running, so this upload could not be "
            "checked yet. Your files are saved and will be loaded by the next refresh: no need to upload them "
            "again (Admin shows the running command's progress and can start a refresh)."
        )
    if answer.get("error"):
        raise UploadError(_scrub(str(answer.get("message", "")), saved.folder))
    return IngestOutcome(proc.returncode, list(answer.get("files", [])), dict(answer.get("totals", {})), seconds)


def _scrub(text: str, folder: Path) -> str:
    """Messages without server paths: the upload folder (and the home above it) are dropped."""
    return text.replace(str(folder) + os.sep, "").replace(str(folder), "upload").replace(str(folder.parent), "incoming")


def _why(rules: list[dict[str, Any]]) -> str:
    return " · ".join(
        labels.label(RULE_DOMAIN, r["rule"])
        + (f" ({r['column']})" if r.get("column") else "")
        + f": {int(r['rows']):,}"
        for r in rules
    )


def _fix(f: Mapping[str, Any], folder: Path) -> str:
    status = f.get("status")
    note = _scrub(str(f.get("message") or ""), folder)
    if status in ("refused", "failed"):
        return note
    if status != "loaded":
        return ""
    if _nothing_read(f):
        return note or "The file holds no rows for any source: nothing to load from it."
    rules = f.get("quarantine_by_rule") or []
    by_rule = [r for r in rules if r.get("rule") not in (PROFILE_RULE, SCOPE_RULE)]
    profile_rows = sum(int(r.get("rows") or 0) for r in rules if r.get("rule") == PROFILE_RULE)
    scope_rows = sum(int(r.get("rows") or 0) for r in rules if r.get("rule") == SCOPE_RULE)
    says = []
    if profile_rows:
        says.append(
            f"{profile_rows:,} row(s) left out by the export's profile by design (such as cancellations): "
            "nothing to fix."
        )
    if scope_rows:
        says.append(
            f"{scope_rows:,} row(s) belong to clinics outside yours, or name their appointments, episodes, referrals, "
            "claims or patients: not loaded. An administrator (not limited to clinics) can load them"
            + (f" (the file is kept {scoped_days():g} days for that)." if scoped_days() else ".")
        )
    if by_rule or (f.get("rows_quarantined") and not profile_rows and not scope_rows):
        says.append("Fix the rows set aside in the source system and upload the file again (Data health lists them).")
    return " ".join(says)


def _nothing_read(f: Mapping[str, Any]) -> bool:
    """Loaded, yet nothing landed, nothing was set aside and nothing was a duplicate (a FHIR resource no source
    maps, a manifest or a log of a Bulk export)."""
    return not any(int(f.get(k) or 0) for k in ("rows_landed", "rows_quarantined", "rows_duplicate"))


def _result(f: Mapping[str, Any]) -> str:
    status = str(f.get("status"))
    if status == "loaded" and not int(f.get("rows_landed") or 0):
        if _nothing_read(f):
            return NOTHING_TO_LOAD
        if int(f.get("rows_quarantined") or 0) and not int(f.get("rows_duplicate") or 0):
            return ALL_SET_ASIDE
        return ALREADY_ROWS
    return status_words(status)


def _why_row(f: Mapping[str, Any]) -> str:
    why = _why(f.get("quarantine_by_rule") or [])
    if _result(f) == ALL_SET_ASIDE:
        return f"all {int(f.get('rows_quarantined') or 0):,} rows set aside: {why}" if why else why
    return why


def result_table(saved: Saved, outcome: IngestOutcome | None, waiting: bool = False) -> pd.DataFrame:
    """One row per load: what a file was read as, the result, row counts, why rows were set aside, the fix. A CSV is
    one load; a FHIR Bundle or an X12 file is one load per table it feeds (`file_table` makes it one row per file,
    what the page counts and shows first).
    `waiting`: the pipeline was busy, so the saved files were not checked yet; each is listed as waiting for the
    next refresh (they stay in incoming/<upload-id>/)."""
    rows: list[dict[str, Any]] = []
    for f in outcome.files if outcome else []:
        name = str(f.get("file") or "")
        rows.append(
            {
                "file": saved.offered.get(name, name),
                "source": f.get("source") or "",
                "result": _result(f),
                "rows_read": int(f.get("rows_read") or 0),
                "rows_landed": int(f.get("rows_landed") or 0),
                "rows_quarantined": int(f.get("rows_quarantined") or 0),
                "rows_duplicate": int(f.get("rows_duplicate") or 0),
                "why_set_aside": _why_row(f),
                "fix": _fix(f, saved.folder),
            }
        )
    if waiting and outcome is None:
        for name in saved.files:
            rows.append(
                {
                    "file": saved.offered.get(name, name),
                    "source": "",
                    "result": WAITING,
                    "rows_read": 0,
                    "rows_landed": 0,
                    "rows_quarantined": 0,
                    "rows_duplicate": 0,
                    "why_set_aside": "",
                    "fix": WAITING_FIX,
                }
            )
    for f in saved.not_saved:
        rows.append(
            {
                "file": f["file"],
                "source": "",
                "result": status_words("not_saved"),
                "rows_read": 0,
                "rows_landed": 0,
                "rows_quarantined": 0,
                "rows_duplicate": 0,
                "why_set_aside": "",
                "fix": f["message"],
            }
        )
    return pd.DataFrame(rows, columns=["file", "source", "result", *OUTCOME_COLUMNS])


# what both result tables say of a file or a load after naming it
OUTCOME_COLUMNS = ["rows_read", "rows_landed", "rows_quarantined", "rows_duplicate", "why_set_aside", "fix"]
FILE_COLUMNS = ["file", "result", "landed_into", *OUTCOME_COLUMNS]


def _file_result(results: list[str]) -> str:
    """A file's result from its loads': landed when any load landed rows; refused when every load was; else the
    most telling of the rest (all set aside, rows already loaded ...), a load that read nothing last."""
    landed, refused = status_words("loaded"), {status_words(s) for s in ("refused", "failed", "not_saved")}
    if landed in results:
        return landed
    if all(r in refused for r in results):
        return results[0]
    telling = [r for r in results if r != NOTHING_TO_LOAD and r not in refused]
    return (telling or results)[0]


def file_table(loads: pd.DataFrame) -> pd.DataFrame:
    """One row per file (what a user offered), from `result_table`'s one row per load: the file's result, the
    tables it landed into (with rows landed in each), its rows summed, and why rows were set aside and what to do,
    each prefixed with the table when the file fed several."""
    rows: list[dict[str, Any]] = []
    for name, group in loads.groupby("file", sort=False):
        several = group["source"].astype(bool).sum() > 1

        def per_load(column: str, group: pd.DataFrame = group, several: bool = several) -> str:
            said = [
                f"{source}: {text}" if several and source else text
                for source, text in zip(group["source"], group[column], strict=True)
                if text
            ]
            return " · ".join(dict.fromkeys(said))

        landed = group[group["rows_landed"] > 0]
        rows.append(
            {
                "file": name,
                "result": _file_result(group["result"].tolist()),
                "landed_into": ", ".join(
                    f"{source} ({int(n):,})" for source, n in zip(landed["source"], landed["rows_landed"], strict=True)
                ),
                **{k: int(group[k].sum()) for k in ("rows_read", "rows_landed", "rows_quarantined", "rows_duplicate")},
                "why_set_aside": per_load("why_set_aside"),
                "fix": per_load("fix") if several else " ".join(dict.fromkeys(f for f in group["fix"] if f)),
            }
        )
    return pd.DataFrame(rows, columns=FILE_COLUMNS)


def counts(table: pd.DataFrame) -> dict[str, int]:
    """Files landed / refused (incl. not accepted) / already loaded, and rows landed / set aside / duplicates: per
    row of `table`, so the page passes `file_table` (files, as the user thinks of them, not loads)."""
    result = table["result"]
    return {
        "files": int(len(table)),
        "landed": int((result == status_words("loaded")).sum()),
        "refused": int(result.isin([status_words(s) for s in ("refused", "failed", "not_saved")]).sum()),
        "already": int((result == status_words("skipped_same_hash")).sum()),
        "waiting": int((result == WAITING).sum()),
        "nothing": int(result.isin([NOTHING_TO_LOAD, ALL_SET_ASIDE, ALREADY_ROWS]).sum()),
        "rows_landed": int(table["rows_landed"].sum()),
        "rows_quarantined": int(table["rows_quarantined"].sum()),
        "rows_duplicate": int(table["rows_duplicate"].sum()),
    }


def set_aside_refused(settings: Settings, saved: Saved, outcome: IngestOutcome) -> int:
    """Move refused and failed files out of incoming/ (to refused_uploads/<upload-id>/) so the next refresh
    does not offer them again; an empty upload folder is removed. Returns how many were moved."""
    moved = 0
    target = settings.home / REFUSED_DIR / saved.upload_id
    statuses: dict[str, set[str]] = {}  # a FHIR or X12 file has one result per source it feeds
    for f in outcome.files:
        statuses.setdefault(str(f.get("file") or ""), set()).add(str(f.get("status")))
    for name, seen in statuses.items():
        if not seen <= {"refused", "failed"}:
            continue
        path = saved.folder / name
        if path.is_file() and path.parent == saved.folder:
            target.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), target / path.name)
            moved += 1
    if saved.folder.exists() and not any(saved.folder.iterdir()):
        saved.folder.rmdir()
    return moved


def needs_refresh(outcome: IngestOutcome) -> bool:
    """A refresh is worth starting when the upload landed rows."""
    return any(f.get("status") == "loaded" and int(f.get("rows_landed") or 0) > 0 for f in outcome.files)
