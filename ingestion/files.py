"""File-level work before any row is read: finding the files, fingerprinting them, and reading the header.

A file that cannot be read as a whole (empty, binary, UTF-16, not UTF-8, wrong delimiter, missing
required columns) is refused here with a message that names the problem and the fix, so the loader never
lands part of a file that is wrong everywhere. Messages never quote row values (they may be PHI).
"""

from __future__ import annotations

import codecs
import os
import csv
import hashlib
from pathlib import Path
from typing import Iterable, Sequence

from ingestion.contracts import Contract

# .csv, plus FHIR (.json, .ndjson) and X12 (.835, .837, .x12, .edi) files read by ingestion/interop
READABLE_SUFFIXES = (".csv", ".json", ".ndjson", ".835", ".837", ".x12", ".edi")
SKIPPED_FOLDERS = {"truth"}  # the generator's answer key, never ingested (interfaces.md section 1)
SNIFF_BYTES = 64 * 1024
HASH_CHUNK = 4 * 1024 * 1024


class FileRefused(Exception):
    """The file cannot be loaded as a whole; the message says what is wrong and what to do."""


def discover(paths: Sequence[Path]) -> list[Path]:
    """Files to ingest, sorted and de-duplicated: given files as they are, folders searched for *.csv (and the
    FHIR / X12 suffixes of READABLE_SUFFIXES).

    Folders named `truth` are skipped at any depth. A path that does not exist is returned as is so the
    loader can refuse it with a message, rather than silently ignoring a typo.
    """
    found: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            found.update(_csvs_under(path))
        else:
            found.add(Path(os.path.abspath(path)))
    return sorted(found)


def _csvs_under(folder: Path) -> Iterable[Path]:
    for csv_path in folder.rglob("*"):
        if not csv_path.is_file() or csv_path.suffix.lower() not in READABLE_SUFFIXES:
            continue
        relative_parts = csv_path.relative_to(folder).parts[:-1]
        if any(part.lower() in SKIPPED_FOLDERS for part in relative_parts):
            continue
        yield Path(os.path.abspath(csv_path))


def sha256_of(path: Path) -> str:
    """Hex sha256 of the file's bytes: the identity used to skip a file that was already loaded."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_readable(path: Path) -> None:
    """Refuse paths that are not an existing regular .csv (or FHIR / X12) file."""
    if not path.exists():
        raise FileRefused(f"{path} does not exist. Check the path and run ingest again.")
    if not path.is_file():
        raise FileRefused(f"{path} is not a regular file. Pass a CSV file or a folder of them.")
    if path.suffix.lower() not in READABLE_SUFFIXES:
        raise FileRefused(f"{path.name} is not a .csv file. Export the source as CSV (UTF-8, comma separated), "
                          f"or as FHIR R4 JSON (.json, .ndjson) or X12 835/837P (.835, .837, .x12, .edi).")


def read_header(path: Path) -> list[str]:
    """The header row's column names, after checking the start of the file is UTF-8 comma-separated text."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    _check_bytes(path, head)
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8):]
    end = head.find(b"\n")
    if end < 0 and len(head) >= SNIFF_BYTES - len(codecs.BOM_UTF8):
        raise FileRefused(f"{path.name}: no line break in the first {SNIFF_BYTES // 1024} KB, so no header row "
                          f"was found. Is it a CSV file? Export it as CSV with a header row.")
    try:
        line = head[: end if end >= 0 else len(head)].decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        raise FileRefused(_encoding_message(path, "the header row")) from None
    names = next(csv.reader([line]), [])
    names = [n.strip() for n in names]
    if not any(names):
        raise FileRefused(f"{path.name}: the first line is empty, so there is no header row. Export the file "
                          f"with the column names on line 1.")
    return names


def _check_bytes(path: Path, head: bytes) -> None:
    """Refuse empty, UTF-16/32 and binary files from their first bytes."""
    if not head.strip():
        raise FileRefused(f"{path.name} is empty. Export the source again (a header row is required), "
                          f"or remove the file.")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise FileRefused(f"{path.name} is UTF-16/UTF-32 encoded. Save it as UTF-8 (e.g. `iconv -f UTF-16 "
                          f"-t UTF-8 in.csv > out.csv`) and ingest it again.")
    if b"\x00" in head:
        raise FileRefused(f"{path.name} contains NUL bytes: it is binary (e.g. a spreadsheet or zip) or UTF-16 "
                          f"without a byte-order mark. Export it as CSV, UTF-8, and ingest it again.")


def _encoding_message(path: Path, where: str) -> str:
    return (f"{path.name}: {where} is not valid UTF-8 (probably Latin-1/Windows-1252). Convert it, e.g. "
            f"`iconv -f WINDOWS-1252 -t UTF-8 in.csv > out.csv`, and ingest it again.")


def encoding_refusal(path: Path, line: int) -> FileRefused:
    """The refusal for a file whose rows are not UTF-8 (found by DuckDB while reading it)."""
    return FileRefused(_encoding_message(path, f"line {line}"))


def check_columns(path: Path, names: list[str], contract: Contract) -> list[str]:
    """Refuse a header that lacks required columns or repeats a name; return notes on tolerated gaps."""
    repeated = sorted({n for n in names if names.count(n) > 1 and n})
    if repeated:
        raise FileRefused(f"{path.name}: the header repeats the column(s) {', '.join(repeated)}. Each column "
                          f"name must appear once; fix the export and ingest it again.")
    missing_required = [c for c in contract.required_columns if c not in names]
    if missing_required:
        hint = _delimiter_hint(names)
        raise FileRefused(
            f"{path.name}: missing required column(s) {', '.join(missing_required)} for source "
            f"{contract.source!r} (found: {', '.join(names)[:300]}).{hint} The columns are listed in "
            f"ingestion/contracts/{contract.source}.yml; fix the export and ingest it again."
        )
    notes = []
    missing_optional = [c for c in contract.column_names if c not in names]
    if missing_optional:
        notes.append(f"optional column(s) absent, landed as empty: {', '.join(missing_optional)}")
    extra = [n for n in names if n not in contract.column_names]
    if extra:
        notes.append(f"column(s) not in the contract, ignored: {', '.join(extra)[:300]}")
    return notes


def _delimiter_hint(names: list[str]) -> str:
    if len(names) == 1 and any(sep in names[0] for sep in (";", "\t", "|")):
        return " The file looks separated by ';', tab or '|': PT Pulse reads comma-separated files only."
    return ""
