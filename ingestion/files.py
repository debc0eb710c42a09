"""File-level work before any row is read: finding the files, fingerprinting them, and reading the header.

Compressed exports (`.gz`, `.zip`) are unpacked here, streaming, into a private working folder (`unpacked`):
the loader then reads each file inside as if it had been delivered plain.

A file that cannot be read as a whole (empty, binary, UTF-16, not UTF-8, wrong delimiter, missing
required columns, a symbolic link) is refused here with a message that names the problem and the fix, so
the loader never lands part of a file that is wrong everywhere. Messages never quote file content, not even
the header of a file that may have none (its "names" may be a patient's row): they name the file, contract
columns, counts and line numbers. File names go through `safe_text` so they cannot drive a terminal.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import os
import re
import shutil
import stat
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ptpulse.core.contracts import Contract, load_contracts

# .csv, plus FHIR (.json, .ndjson) and X12 (.835, .837, .x12, .edi) files read by ingestion/interop
READABLE_SUFFIXES = (".csv", ".json", ".ndjson", ".835", ".837", ".x12", ".edi")
# compressed deliveries, read as the file(s) inside (`unpacked`): `x.csv.gz` is x.csv, a zip each of its members
COMPRESSED_SUFFIXES = (".gz", ".zip")
SKIPPED_FOLDERS = {"truth"}  # the generator's answer key, never ingested (interfaces.md section 1)
SNIFF_BYTES = 64 * 1024
HASH_CHUNK = 4 * 1024 * 1024
MAX_HEADER_BYTES = 1024 * 1024  # a header row longer than this is not a CSV header (DuckDB's line cap is 2 MB)


def looks_like_x12(path: Path) -> bool:
    """True when a regular file starts with an X12 ISA header (whatever its name or extension).

    ISA, then the element separator (any character but a letter, digit or space): `.txt`, `.dat` and
    extension-less interchanges are found by content. Links and non-regular files are never opened (a link
    may point outside the exports; a FIFO would block)."""
    try:
        if os.path.islink(path) or not Path(path).is_file():
            return False
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    head = head.removeprefix(codecs.BOM_UTF8).lstrip()
    return len(head) > 4 and head.startswith(b"ISA") and not chr(head[3]).isalnum() and head[3] not in b" \t\r\n"


class FileRefused(Exception):
    """The file cannot be loaded as a whole; the message says what is wrong and what to do."""


class UnknownSource(ValueError):
    """A file name matches no contract."""


def discover(paths: Sequence[Path]) -> list[Path]:
    """Files to ingest, sorted and de-duplicated: given files as they are, and every file under a folder.

    A folder's files are all returned, whatever their name: .csv and the FHIR / X12 suffixes are read, an
    X12 interchange is found by its ISA header (a `.txt` 835 is read), and anything else gets its own
    `refused` audit row saying why, so no file in a folder is passed over without a word.

    A `.gz` or `.zip` is returned as the one file it is; the loader unpacks it (`unpacked`) and reads what it
    holds. Folders named `truth` are skipped at any depth. A path that does not exist is returned as is so the
    loader can refuse it with a message, rather than silently ignoring a typo. Symbolic links inside a folder
    (to files or folders) are returned, never followed, so the loader refuses them: a link can point
    anywhere on the machine (/etc/passwd), and nothing outside the given paths may be read. A folder given
    by the caller is searched even if it is itself a link (the caller chose it); a given file that is a
    link is refused like any other.
    """
    found: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            found.update(_csvs_under(path))
        else:
            found.add(Path(os.path.abspath(path)))
    return sorted(found)


def _csvs_under(folder: Path) -> Iterable[Path]:
    for root, dirs, files in os.walk(folder, followlinks=False):
        relative_parts = Path(root).relative_to(folder).parts
        if any(part.lower() in SKIPPED_FOLDERS for part in relative_parts):
            dirs[:] = []
            continue
        for name in dirs:
            if os.path.islink(os.path.join(root, name)) and name.lower() not in SKIPPED_FOLDERS:
                yield Path(os.path.abspath(os.path.join(root, name)))  # refused by check_readable
        for name in files:  # every file: read, or refused by check_readable with the reason (never silent)
            yield Path(os.path.abspath(os.path.join(root, name)))


# Control and format characters (ESC, CR, bidi overrides...) in a file name or message could move the cursor,
# recolour or rewrite the terminal; they are shown as \xNN / \uNNNN instead.
def safe_text(text: str, limit: int = 300) -> str:
    """`text` with every control/format character escaped, cut to `limit` characters (for terminals and logs)."""
    out = []
    for ch in str(text)[:limit]:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out) + ("..." if len(str(text)) > limit else "")


def display_name(path: Path) -> str:
    """The file's name as it may appear in a message: a private working copy of a compressed delivery is named
    as delivered (`shown_as`), a zip member as `<archive name>!<member path>` (`delivered_name`)."""
    return safe_text(delivered_name(_SHOWN_AS.get(str(path), path)), 120)


# `<archive path>!<member path>`: how raw._loads.file records a member of a zip (the member path as stored in it)
MEMBER_SEP = "!"
_MEMBER = re.compile(r"(.*?\.zip)!(.*)", re.IGNORECASE | re.DOTALL)


def member_file(archive: Path, member: str) -> str:
    """What raw._loads.file records for `member` of the zip `archive`."""
    return f"{archive}{MEMBER_SEP}{member}"


def is_member(file: str | os.PathLike[str]) -> bool:
    """A recorded file that is a member of a zip (`<archive path>!<member path>`)."""
    return _MEMBER.fullmatch(str(file)) is not None


def delivered_name(file: str | os.PathLike[str]) -> str:
    """A recorded file's short name (not terminal-safe: see `display_name`): its own name, or for a zip member
    `<archive name>!<member path>` (a member's folders inside the archive are kept: `export.zip!bulk/Patient.ndjson`)."""
    text = str(file)
    found = _MEMBER.fullmatch(text)
    if found:
        return Path(found.group(1)).name + MEMBER_SEP + found.group(2)
    return Path(text).name


# private working copy (as str) -> the file it was unpacked from (raw._loads.file), while the loader reads the copy
_SHOWN_AS: dict[str, str] = {}


@contextmanager
def shown_as(copies: Mapping[Path, str]) -> Iterator[None]:
    """Within the block, messages about a working copy name the delivered file instead (`display_name`)."""
    _SHOWN_AS.update({str(copy): file for copy, file in copies.items()})
    try:
        yield
    finally:
        for copy in copies:
            _SHOWN_AS.pop(str(copy), None)


def match_source(file: Path, contracts: Mapping[str, Contract] | None = None) -> Contract:
    """The contract of `file`: named `<source>.csv` or `<source>_<anything>.csv` (longest source wins)."""
    contracts = load_contracts() if contracts is None else contracts
    stem = Path(file).stem.lower()
    matches = [s for s in contracts if stem == s or stem.startswith(s + "_")]
    if not matches:
        known = ", ".join(sorted(contracts))
        raise UnknownSource(
            f"file name '{display_name(Path(file))}' matches no source contract. Name the file <source>.csv or "
            f"<source>_<anything>.csv where <source> is one of: {known}."
        )
    return contracts[max(matches, key=len)]


@dataclass(frozen=True)
class FileScan:
    """What one pass over the bytes tells: the sha256, and the line endings used (for mixed-ending files)."""

    sha256: str
    lf: int  # bare \n
    crlf: int
    cr: int  # bare \r
    quotes: int  # double quotes: without any, no field can hold a line break
    nuls: int
    blank: bool = False  # two line breaks in a row somewhere: maybe an empty line, which the CSV reader skips

    @property
    def mixed_line_endings(self) -> bool:
        return sum(1 for n in (self.lf, self.crlf, self.cr) if n) > 1


def scan(path: Path) -> FileScan:
    """sha256 and line-ending counts in one read of the file."""
    digest = hashlib.sha256()
    lf = cr = crlf = quotes = nuls = 0
    blank = False
    previous = b""
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
            lf += chunk.count(b"\n")
            cr += chunk.count(b"\r")
            crlf += chunk.count(b"\r\n") + (1 if previous[-1:] == b"\r" and chunk[:1] == b"\n" else 0)
            quotes += chunk.count(b'"')
            nuls += chunk.count(b"\x00")
            if not blank:  # \n\n, \n\r\n or \r\r (also across the chunk boundary): a memchr-speed search
                seam = previous + chunk[:2]
                blank = any(b in chunk or b in seam for b in (b"\n\n", b"\n\r\n", b"\r\r"))
            previous = chunk[-2:]
    return FileScan(digest.hexdigest(), lf - crlf, crlf, cr - crlf, quotes, nuls, blank)


def normalise_line_endings(path: Path, target: Path) -> None:
    """Copy `path` to `target` with every line ending written LF (DuckDB's strict reader needs one kind)."""
    pending_cr = False
    with path.open("rb") as source, target.open("wb") as out:
        while chunk := source.read(HASH_CHUNK):
            if pending_cr and chunk.startswith(b"\n"):
                chunk = chunk[1:]
            pending_cr = chunk.endswith(b"\r")
            out.write(chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))


# Files an exports folder often holds beside the data: a README, a PDF of the layout, an OS's metadata. They
# are audited as skipped (not refused), so a vendor's folder with its notes in it ingests cleanly.
# `.done`: an export's completion marker (ours, or an exporter's own `export_20261201.done`), never data
NOT_DATA_SUFFIXES = {".md", ".pdf", ".doc", ".docx", ".rtf", ".html", ".htm", ".png", ".jpg", ".jpeg", ".gif", ".done"}
NOT_DATA_STEMS = {"readme", "license", "changelog", "notes", "thumbs"}


def is_documentation(path: Path) -> bool:
    """A documentation or system file found beside the exports (hidden files, READMEs, PDFs, images)."""
    name = path.name
    if name.startswith(".") or path.suffix.lower() in NOT_DATA_SUFFIXES:
        return True
    return path.stem.lower() in NOT_DATA_STEMS and path.suffix.lower() in {".txt", ""} and not looks_like_x12(path)


def file_identity(path: Path) -> tuple[int, int, int, int]:
    """What changes when a file is written or replaced (size, modification time, inode, device): taken before the
    fingerprint and compared after the rows were read (`ensure_unchanged`)."""
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def ensure_unchanged(path: Path, before: tuple[int, int, int, int]) -> None:
    """Refuse a file written while it was read: its sha256 (the skip key of every later re-send) would name bytes
    other than the rows staged, so the complete file, re-sent, would be skipped with rows never landed."""
    try:
        now = file_identity(path)
    except OSError:
        now = None
    if now != before:
        raise FileRefused(
            f"{display_name(path)} changed while it was being read (an export still being written?): nothing "
            f"of it landed. Ingest it again once the export is complete."
        )


def check_readable(path: Path) -> None:
    """Refuse paths that are not an existing regular .csv (or FHIR / X12, or one of them as .gz / .zip) file, and
    symbolic links."""
    name = display_name(path)
    if path.is_symlink():
        raise FileRefused(
            f"{name} is a symbolic link: PT Pulse does not follow links, which can point outside "
            f"the exports (e.g. to system files). Copy the file itself into the folder and ingest "
            f"it again."
        )
    if not path.exists():
        raise FileRefused(f"{safe_text(str(path))} does not exist. Check the path and run ingest again.")
    if not path.is_file():
        raise FileRefused(f"{name} is not a regular file. Pass a CSV file or a folder of them.")
    if path.suffix.lower() not in READABLE_SUFFIXES + COMPRESSED_SUFFIXES and not looks_like_x12(path):
        raise FileRefused(
            f"{name} is not a file PT Pulse reads (not .csv, FHIR .json / .ndjson, not an X12 "
            f"interchange starting with ISA, nor one of them compressed as .gz or .zip), so nothing was loaded "
            f"from it. Export the source as CSV (UTF-8, comma separated), FHIR R4 JSON or X12 835/837P, or remove "
            f"the file from the exports."
        )
    if not os.access(path, os.R_OK):
        raise FileRefused(
            f"{name} cannot be read (permission denied). Give the user running PT Pulse read "
            f"access to the file and ingest it again."
        )


LINE_END = re.compile(rb"\r\n|\r|\n")


def read_header(path: Path, skip_lines: int = 0) -> list[str]:
    """The header row's column names, after checking the start of the file is UTF-8 comma-separated text.

    The header ends at the first line break of any kind (\\n, \\r\\n or a lone \\r); it may be up to
    MAX_HEADER_BYTES long. A NUL byte in the header marks a binary file; NULs in later rows quarantine
    those rows (loader), wherever they are in the file. `skip_lines`: the header is on line skip_lines + 1 (a
    source profile's `skip_lines`: a report title above it); the lines above are not read as text.
    """
    head = b""
    with path.open("rb") as handle:
        while len(head) < min(skip_lines + 1, 4) * MAX_HEADER_BYTES + len(codecs.BOM_UTF8):  # titles are short
            chunk = handle.read(SNIFF_BYTES)
            head += chunk
            if not chunk or (re.search(b"[\r\n]", chunk) and len(LINE_END.findall(head)) > skip_lines):
                break
    _check_bytes(path, head)
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    where = "line 1" if not skip_lines else f"line {skip_lines + 1} (the header line after skip_lines: {skip_lines})"
    if skip_lines:
        lines = LINE_END.split(head, maxsplit=skip_lines)
        if len(lines) <= skip_lines:
            raise FileRefused(
                f"{display_name(path)} has {len(lines)} line(s), but its profile reads the header on line "
                f"{skip_lines + 1} (skip_lines: {skip_lines}). Check the export, or the profile's skip_lines."
            )
        head = lines[skip_lines]
    match = re.search(b"[\r\n]", head)
    end = match.start() if match else len(head)
    first = "the first line" if not skip_lines else where
    if end > MAX_HEADER_BYTES:
        raise FileRefused(
            f"{display_name(path)}: {first} is longer than {MAX_HEADER_BYTES // 1024 // 1024} MB "
            f"without a line break, so it is not a header row. Is it a CSV file? Export it as CSV "
            f"with the column names on {'line 1' if not skip_lines else where}."
        )
    if b"\x00" in head[:end]:
        raise FileRefused(
            f"{display_name(path)} contains NUL bytes in {'its first line' if not skip_lines else where}: it is "
            f"binary (e.g. a spreadsheet or zip) or UTF-16 without a byte-order mark. Export it as CSV, UTF-8, and "
            f"ingest it again."
        )
    try:
        line = head[:end].decode("utf-8")
    except UnicodeDecodeError:
        raise FileRefused(_encoding_message(path, f"the header row ({where})")) from None
    try:
        names = next(csv.reader([line]), [])
    except csv.Error:
        raise FileRefused(
            f"{display_name(path)}: the header row ({where}) could not be split into column names "
            f"(unbalanced double quotes?). Export the file with plain column names on {where.split(' (')[0]}."
        ) from None
    names = [n.strip() for n in names]
    if not any(names):
        raise FileRefused(
            f"{display_name(path)}: {first} is empty, so there is no header row. Export the "
            f"file with the column names on {where.split(' (')[0]}."
        )
    return names


def copy_after_lines(path: Path, target: Path, skip_lines: int, normalise: bool = False) -> None:
    """Copy `path` to `target` without its first `skip_lines` physical lines (a report title above the header,
    a source profile's `skip_lines`; a line ends at \\n, \\r\\n or a lone \\r), streaming; `normalise` also
    writes every line ending LF (`normalise_line_endings`). The loader adds `skip_lines` back to every line
    number, so quarantine records keep the file's own line numbers."""
    remaining = skip_lines
    skip_cr = norm_cr = False  # a \r ended the previous chunk: a \n starting the next one belongs to it
    with path.open("rb") as source, target.open("wb") as out:
        while chunk := source.read(HASH_CHUNK):
            if skip_cr and chunk.startswith(b"\n"):
                chunk = chunk[1:]
            skip_cr = False
            while remaining and chunk:
                found = LINE_END.search(chunk)
                if found is None:
                    chunk = b""
                    break
                remaining -= 1
                skip_cr = found.group() == b"\r" and found.end() == len(chunk)
                chunk = chunk[found.end() :]
            if not chunk:
                continue
            if normalise:
                if norm_cr and chunk.startswith(b"\n"):
                    chunk = chunk[1:]
                norm_cr = chunk.endswith(b"\r")
                chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            out.write(chunk)


def _check_bytes(path: Path, head: bytes) -> None:
    """Refuse empty and UTF-16/32 files from their first bytes."""
    if not head.strip():
        raise FileRefused(
            f"{display_name(path)} is empty. Export the source again (a header row is required), or remove the file."
        )
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise FileRefused(
            f"{display_name(path)} is UTF-16/UTF-32 encoded. Save it as UTF-8 (e.g. `iconv -f "
            f"UTF-16 -t UTF-8 in.csv > out.csv`) and ingest it again."
        )


def _encoding_message(path: Path, where: str) -> str:
    return (
        f"{display_name(path)}: {where} is not valid UTF-8 (probably Latin-1/Windows-1252). Convert it, e.g. "
        f"`iconv -f WINDOWS-1252 -t UTF-8 in.csv > out.csv`, and ingest it again."
    )


def encoding_refusal(path: Path, line: int) -> FileRefused:
    """The refusal for a file whose rows are not UTF-8 (found by DuckDB while reading it)."""
    return FileRefused(_encoding_message(path, f"line {line}"))


COLUMN_NAME_SHOWN = re.compile(r"^[A-Za-z][A-Za-z0-9_ .()/#-]{0,63}$")


def header_key(name: str) -> str:
    """How a native header name is matched to a contract column: trimmed, case-insensitive (`PATIENT_ID`,
    ` Patient_Id ` and `patient_id` are the same column; contract names are lower_snake_case)."""
    return name.strip().lower()


def check_columns(path: Path, names: list[str], contract: Contract) -> list[str]:
    """Refuse a header that lacks required columns or repeats a contract column; return notes on tolerated gaps.

    Header names are matched to the contract trimmed and case-insensitively (`header_key`), as source profiles
    match theirs. Two header names that are the same contract column (`patient_id` and `Patient_ID`) refuse
    the file: which one holds the value is not ours to guess. Required columns are checked first and the
    refusal lists only contract names and counts: a file without a header has a data row on line 1, and that
    row must not be echoed. Names not in the contract are named in the note only when the header is known to
    be one (all required columns present) and the name looks like a column name.
    """
    name = display_name(path)
    keys = [header_key(n) for n in names]
    missing_required = [c for c in contract.required_columns if c not in keys]
    if missing_required:
        known = [k for k in keys if k in contract.column_names]
        found = f"line 1 has {len(names)} field(s), {len(known)} of them column(s) of the contract" + (
            f" ({', '.join(known)})" if known else "; is the header row missing?"
        )
        raise FileRefused(
            f"{name}: missing required column(s) {', '.join(missing_required)} for source {contract.source!r} "
            f"({found}).{_delimiter_hint(names)} The columns are listed in "
            f"ingestion/contracts/{contract.source}.yml; fix the export and ingest it again."
        )
    repeated = sorted({k for k in keys if k in contract.column_names and keys.count(k) > 1})
    if repeated:
        only_case = [
            k for k in repeated if len({n.strip() for n, key in zip(names, keys, strict=True) if key == k}) > 1
        ]
        why = (
            f" ({', '.join(only_case)} written in different upper/lower case: header names are matched "
            f"case-insensitively, so they are the same column)"
            if only_case
            else ""
        )
        raise FileRefused(
            f"{name}: the header repeats the column(s) {', '.join(repeated)}{why}. Each column "
            f"name must appear once; fix the export (rename or remove the extra column) and ingest it again."
        )
    notes = []
    missing_optional = [c for c in contract.column_names if c not in keys]
    if missing_optional:
        notes.append(
            f"optional column(s) absent, kept as each row's last landed value (empty for new rows): "
            f"{', '.join(missing_optional)}"
        )
    extra = [n for n, k in zip(names, keys, strict=True) if k not in contract.column_names]
    if extra:
        shown = [safe_text(n) for n in extra if COLUMN_NAME_SHOWN.match(n)][:20]
        more = len(extra) - len(shown)
        listed = ", ".join(shown) + (f" and {more} other(s)" if shown and more else f"{more} unnamed" if more else "")
        notes.append(f"{len(extra)} column(s) not in the contract, ignored: {listed}")
    return notes


def shown_column_names(names: Sequence[str], contract: Contract | None = None) -> list[str | None]:
    """Per header field, the name a quarantine row may give it: the contract column it is (`header_key`), else
    the header's own name when it looks like a column name (terminal-safe), else None. Only for a header that
    passed `check_columns` or matched a source profile, so it is known to be a header, not a data row."""
    known = set(contract.column_names) if contract is not None else set()
    return [
        header_key(n)
        if header_key(n) in known
        else safe_text(n.strip())
        if COLUMN_NAME_SHOWN.match(n.strip())
        else None
        for n in names
    ]


def _delimiter_hint(names: list[str]) -> str:
    if len(names) == 1 and any(sep in names[0] for sep in (";", "\t", "|")):
        return " The file looks separated by ';', tab or '|': PT Pulse reads comma-separated files only."
    return ""


# --- compressed deliveries: .gz (the file inside) and .zip (each member its own file) ---------------------------

# The loader's private working copies (patient rows): a mixed-line-ending file's LF copy, and the folder a compressed
# delivery is unpacked into. Made next to raw.duckdb by the writer holding it; stale ones removed by the next ingest.
PRIVATE_COPY_PREFIX = ".ingest-"
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a member's local header; the end record of an empty archive
# a member (or the file in a .gz) with one of these names is a compressed file of its own: one level is unpacked
NESTED_SUFFIXES = (".zip", ".gz", ".tgz", ".tar", ".7z", ".rar", ".bz2", ".xz", ".zst")
FHIR_NAMES = (".ndjson", ".json")

# zip-bomb guards, per compressed delivery (a .gz, or a zip with all its members)
ARCHIVE_MAX_BYTES_ENV = "PTPULSE_ARCHIVE_MAX_BYTES"
DEFAULT_ARCHIVE_MAX_BYTES = "64GiB"  # the 900-clinic practice's whole export is 29 GB of CSV (docs/scale.md)
ARCHIVE_MAX_RATIO_ENV = "PTPULSE_ARCHIVE_MAX_RATIO"
DEFAULT_ARCHIVE_MAX_RATIO = 200.0  # exports compress 5-20x; deflate's ceiling is ~1030x, a bomb sits near it
RATIO_MIN_BYTES = 16 * 1024 * 1024  # below this much unpacked, no ratio is checked (a tiny file's says nothing)
MAX_ARCHIVE_MEMBERS = 50_000
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})
_SIZE_TEXT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


def compression(path: Path) -> str | None:
    """How a file named as compressed is unpacked: `gzip` (`x.csv.gz`) or `zip` (`export.zip`), any case; None for
    any other name. Only the name: the bytes are checked when it is unpacked (`unpacked`), and a file that is not
    what its name says is refused there."""
    suffix = Path(path).suffix.lower()
    return {".gz": "gzip", ".zip": "zip"}.get(suffix)


def inner_name(path: Path) -> str:
    """The name of the file inside a .gz: its own name without `.gz` (`remit.835.gz` holds `remit.835`)."""
    return Path(path).name[: -len(".gz")]


def is_fhir_gzip(path: Path) -> bool:
    """A gzip-named FHIR file (`Patient.ndjson.gz`): the loader unpacks those of one folder together, so references
    across a Bulk export's files resolve as in a plain folder."""
    return compression(path) == "gzip" and Path(inner_name(path)).suffix.lower() in FHIR_NAMES


@dataclass(frozen=True)
class ArchiveLimits:
    max_bytes: int
    max_ratio: float


def archive_limits(name: str) -> ArchiveLimits:
    """$PTPULSE_ARCHIVE_MAX_BYTES (bytes, or a size such as 64GiB / 500MB; default 64GiB) and
    $PTPULSE_ARCHIVE_MAX_RATIO (unpacked / compressed, default 200); a value that is not one refuses the
    compressed file `name`, naming the variable (never falls back silently to a default)."""
    size_text = os.environ.get(ARCHIVE_MAX_BYTES_ENV, "").strip() or DEFAULT_ARCHIVE_MAX_BYTES
    found = _SIZE_TEXT.fullmatch(size_text)
    unit = found.group(2).lower() if found else ""
    if not found or unit not in _UNITS:
        raise FileRefused(
            f"{name} was not unpacked: ${ARCHIVE_MAX_BYTES_ENV} is not a size. Write bytes or a number and a unit "
            f"(64GiB, 500MB), or unset it for the default {DEFAULT_ARCHIVE_MAX_BYTES}, and ingest it again."
        )
    ratio_text = os.environ.get(ARCHIVE_MAX_RATIO_ENV, "").strip()
    try:
        ratio = float(ratio_text) if ratio_text else DEFAULT_ARCHIVE_MAX_RATIO
    except ValueError:
        ratio = -1.0
    if not ratio > 1:
        raise FileRefused(
            f"{name} was not unpacked: ${ARCHIVE_MAX_RATIO_ENV} is not a ratio above 1. Write one (e.g. 200), or "
            f"unset it for the default {DEFAULT_ARCHIVE_MAX_RATIO:g}, and ingest it again."
        )
    return ArchiveLimits(int(float(found.group(1)) * _UNITS[unit]), ratio)


def _size(n: float) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:,.1f} {unit}"
    return f"{int(n):,} bytes"


@dataclass(frozen=True)
class Unpacked:
    """One file out of a compressed delivery: what raw._loads.file records for it (the .gz's own path, or
    `<archive path>!<member path>`), and its private working copy, or why it was not read (a `refused` load)."""

    file: str
    path: Path | None = None
    refusal: str = ""


class _TooBig(Exception):
    """Unpacking passed a zip-bomb guard: the message names the delivery and the limit, never content."""


class _Budget:
    """What one compressed delivery may unpack to: the total cap, and the ratio to its compressed bytes (of the
    whole delivery, and of each member) once past RATIO_MIN_BYTES. Counted on the bytes written, not on sizes a
    header declares (a header can lie)."""

    def __init__(self, name: str, limits: ArchiveLimits, compressed: int) -> None:
        self.name, self.limits, self.compressed, self.written = name, limits, max(compressed, 1), 0

    def check(self, total: int, member: int = 0, member_compressed: int | None = None) -> None:
        limits = self.limits
        if total > limits.max_bytes:
            raise _TooBig(
                f"{self.name}: unpacked, it holds more than {_size(limits.max_bytes)} (the limit for one compressed "
                f"export, ${ARCHIVE_MAX_BYTES_ENV}), so nothing of it was read: a compressed file that large may be "
                f"a zip bomb. Send the export in parts, or raise ${ARCHIVE_MAX_BYTES_ENV} if it is genuine (the "
                f"unpacked files need that much free disk next to raw.duckdb)."
            )
        ratios = [(total, self.compressed)]
        if member_compressed is not None:
            ratios.append((member, max(member_compressed, 1)))
        for unpacked, packed in ratios:
            if unpacked > RATIO_MIN_BYTES and unpacked > limits.max_ratio * packed:
                raise _TooBig(
                    f"{self.name}: it unpacks to more than {limits.max_ratio:g} times its compressed size (the "
                    f"limit, ${ARCHIVE_MAX_RATIO_ENV}), so nothing of it was read: exports compress far less, a zip "
                    f"bomb far more. Re-create the archive from the export files, or raise "
                    f"${ARCHIVE_MAX_RATIO_ENV} if it is genuine."
                )

    def copy(self, source, target: Path, member_compressed: int | None = None) -> int:
        """Stream `source` into the new file `target`, HASH_CHUNK at a time (memory stays flat whatever the size),
        checking the guards after every chunk; the bytes written."""
        member = 0
        with target.open("xb") as out:
            while chunk := source.read(HASH_CHUNK):
                member += len(chunk)
                self.written += len(chunk)
                self.check(self.written, member, member_compressed)
                out.write(chunk)
        return member


def _starts_with(path: Path, magics: Sequence[bytes]) -> bool:
    with path.open("rb") as handle:
        head = handle.read(8)
    return any(head.startswith(m) for m in magics)


def _nested(name: str) -> str:
    return (
        f"{name} is itself a compressed file (zip, gzip or another archive) inside a compressed file: PT Pulse "
        f"unpacks one level only, so nothing was read from it. Unpack it and send the files inside (or one archive "
        f"of them)."
    )


def _damaged(name: str, kind: str) -> str:
    return (
        f"{name} is not a complete {kind} (damaged, or cut short by a transfer that stopped early), so nothing of "
        f"it was read. Send the file again."
    )


@contextmanager
def unpacked(paths: Sequence[Path], work_dir: Path) -> Iterator[list[Unpacked]]:
    """The files inside compressed deliveries `paths` (one .zip, or .gz files of one folder), as private working
    copies in one new folder under `work_dir` (mode 0700, named PRIVATE_COPY_PREFIX...), removed when the block
    ends (or by the next ingest if this process is killed).

    A .gz is the one file it holds, named as the .gz without `.gz`; a zip is each of its members, in name order,
    folders inside it kept (a Bulk export's files stay siblings, so their references resolve). Every byte is
    streamed (memory stays flat for a file of GBs) and counted against `archive_limits`. Directory entries,
    `__MACOSX/` and hidden (dot) members are left out, as nothing to read; a member that cannot be read (nested
    archive, encrypted, link, a path leading out of the archive, damaged, an unknown compression method, a name
    twice) is an `Unpacked` with its refusal, never skipped in silence. A .gz that cannot be read is its own
    refusal; a zip that cannot be read as a whole (not a zip, damaged, a bomb) raises FileRefused naming the
    archive, and nothing of it is read.
    """
    folder = Path(tempfile.mkdtemp(prefix=PRIVATE_COPY_PREFIX, dir=work_dir))
    try:
        found: list[Unpacked] = []
        for path in paths:
            if compression(path) == "zip":
                found.extend(_unzip(Path(path), folder))
            else:
                found.append(_gunzip(Path(path), folder))
        yield found
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _gunzip(path: Path, folder: Path) -> Unpacked:
    """The file inside the .gz `path`, as `folder`/<name without .gz>, or its refusal."""
    name = display_name(path)
    file = str(path)
    target = folder / _disk_name(inner_name(path))
    try:
        limits = archive_limits(name)
        check_readable(path)
        if not _starts_with(path, (GZIP_MAGIC,)):
            return Unpacked(
                file,
                refusal=f"{name} is named .gz but is not gzip-compressed (it does not start with gzip's header), so "
                f"nothing was read from it. Compress it with gzip, or remove `.gz` from its name if it is a plain "
                f"export, and ingest it again.",
            )
        inner = inner_name(path)
        if not inner.strip(". "):
            return Unpacked(
                file,
                refusal=f"{name}: its name without `.gz` is empty, so what it holds cannot be told. Name it after "
                f"the file inside (`<source>.csv.gz`, `remit.835.gz`, `Patient.ndjson.gz`) and ingest it again.",
            )
        if Path(inner).suffix.lower() in NESTED_SUFFIXES:
            return Unpacked(file, refusal=_nested(name))
        if target.exists():
            return Unpacked(
                file,
                refusal=f"{name} holds a file of the same name as another .gz of the folder (names differing only in "
                f"`.gz` / `.GZ` count as one), so it was not read. Rename one of them and ingest it again.",
            )
        before = file_identity(path)
        budget = _Budget(name, limits, before[0])
        with gzip.open(path, "rb") as source:
            budget.copy(source, target)
        ensure_unchanged(path, before)
        if _starts_with(target, (GZIP_MAGIC, *ZIP_MAGICS)):
            target.unlink()
            return Unpacked(file, refusal=_nested(name))
    except FileRefused as exc:
        target.unlink(missing_ok=True)
        return Unpacked(file, refusal=str(exc))
    except _TooBig as exc:
        target.unlink(missing_ok=True)
        return Unpacked(file, refusal=str(exc))
    except (gzip.BadGzipFile, EOFError, zlib.error):
        target.unlink(missing_ok=True)
        return Unpacked(file, refusal=_damaged(name, "gzip file"))
    except OSError as exc:  # the others of the folder are still read: this .gz is its own refusal
        target.unlink(missing_ok=True)
        if exc.errno is None:  # gzip raises plain OSErrors for bad flags / headers
            return Unpacked(file, refusal=_damaged(name, "gzip file"))
        return Unpacked(file, refusal=os_error_message(path, exc))
    return Unpacked(file, target)


def _unzip(path: Path, folder: Path) -> list[Unpacked]:
    """Every member of the zip `path` under `folder`/ (see `unpacked`); FileRefused when the archive as a whole
    cannot be read (nothing of it is then read)."""
    name = display_name(path)
    limits = archive_limits(name)
    check_readable(path)
    if not _starts_with(path, ZIP_MAGICS):
        raise FileRefused(
            f"{name} is named .zip but is not a zip archive (it does not start with a zip header), so nothing was "
            f"read from it. Create the archive with a zip tool (or remove `.zip` from its name) and ingest it again."
        )
    before = file_identity(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, NotImplementedError):
        raise FileRefused(_damaged(name, "zip archive")) from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ARCHIVE_MEMBERS:
            raise FileRefused(
                f"{name} holds more than {MAX_ARCHIVE_MEMBERS:,} files, so nothing of it was read. Send the export "
                f"in several archives."
            )
        members = sorted((i for i in infos if not _left_out(i.filename) and not i.is_dir()), key=lambda i: i.filename)
        budget = _Budget(name, limits, before[0])
        declared = sum(i.file_size for i in members)  # refused before a byte is written; counted again as written
        try:
            budget.check(declared)
            for info in members:
                budget.check(info.file_size, info.file_size, info.compress_size)
        except _TooBig as exc:
            raise FileRefused(str(exc)) from None
        found = [_unzip_member(archive, info, path, folder, budget) for info in members]
    ensure_unchanged(path, before)
    if not found:
        raise FileRefused(
            f"{name} holds no file to read (only folders, hidden files or macOS metadata), so nothing was loaded. "
            f"Check that the export was written into the archive, and ingest it again."
        )
    return found


def _left_out(member: str) -> bool:
    """Members that are nothing to read, as in a folder of exports: macOS resource forks (`__MACOSX/`) and hidden
    files or folders (`.DS_Store`, `._x.csv`). A name with a `..` part is never left out: it is refused as a path
    out of the archive, even when it names a hidden file."""
    parts = [p for p in re.split(r"[\\/]", member) if p not in ("", ".")]
    if ".." in parts:
        return False
    return any(p == "__MACOSX" or p.startswith(".") for p in parts)


def _unzip_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, folder: Path, budget: _Budget
) -> Unpacked:
    file = member_file(path, info.filename)
    name = display_name(Path(file))
    parts = [p for p in re.split(r"[\\/]", info.filename) if p not in ("", ".")]
    if not parts or ".." in parts or info.filename.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", info.filename):
        return Unpacked(
            file,
            refusal=f"{name}: its path inside the archive leads out of the archive's folder (`..`, or a path from the "
            f"root or a drive), so it was not unpacked. Re-create the archive with plain relative names.",
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        return Unpacked(
            file,
            refusal=f"{name} is a symbolic link inside the archive: PT Pulse does not follow links, which can point "
            f"anywhere. Put the file itself in the archive.",
        )
    if info.flag_bits & 0x1:
        return Unpacked(file, refusal=_encrypted(name))
    if Path(parts[-1]).suffix.lower() in NESTED_SUFFIXES:
        return Unpacked(file, refusal=_nested(name))
    target = folder.joinpath(*(_disk_name(p) for p in parts))
    if not target.resolve().is_relative_to(folder.resolve()):  # never reached with the parts above: a last guard
        return Unpacked(file, refusal=f"{name}: its path inside the archive leads out of the archive's folder.")
    if target.exists() or any(p.exists() and not p.is_dir() for p in target.parents if p != folder):
        return Unpacked(
            file,
            refusal=f"{name} has the name of another member of the archive (written twice, or differing only in "
            f"characters a file name cannot hold), so only the first was read. Re-create the archive with distinct "
            f"names.",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with archive.open(info) as source:
            budget.copy(source, target, member_compressed=info.compress_size)
    except _TooBig as exc:
        raise FileRefused(str(exc)) from None
    except NotImplementedError:
        target.unlink(missing_ok=True)
        return Unpacked(
            file,
            refusal=f"{name} is compressed with a method PT Pulse cannot unpack (zip method {info.compress_type}), "
            f"so nothing was read from it. Re-create the archive with standard (deflate) compression.",
        )
    except RuntimeError:  # zipfile: "encrypted, password required" (a flag we did not see)
        target.unlink(missing_ok=True)
        return Unpacked(file, refusal=_encrypted(name))
    except (zipfile.BadZipFile, EOFError, zlib.error, ValueError):
        target.unlink(missing_ok=True)
        return Unpacked(file, refusal=_damaged(name, "member of the archive"))
    if _starts_with(target, (GZIP_MAGIC, *ZIP_MAGICS)):
        target.unlink()
        return Unpacked(file, refusal=_nested(name))
    return Unpacked(file, target)


def os_error_message(path: Path, exc: OSError) -> str:
    """A refusal for a file the operating system would not read (or unpack: no space left); the errno's name only,
    never a path beyond the file's own name."""
    reason = os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__
    return (
        f"{display_name(path)} could not be read ({reason}). Check that the file is a regular, readable "
        f"file (and, for a compressed one, that the disk next to raw.duckdb has room for what it holds) and "
        f"ingest it again."
    )


def _encrypted(name: str) -> str:
    return (
        f"{name} is password-protected (encrypted) in the archive, so it cannot be read. Export the archive "
        f"without a password (protect the transfer instead: SFTP, or an encrypted link) and ingest it again."
    )


def _disk_name(part: str) -> str:
    """One path part as a file name in the working folder: control and format characters and the characters
    Windows forbids as `_`, at most 200 bytes with the suffix kept (the loader picks a source by name and suffix)."""
    cleaned = "".join("_" if unicodedata.category(c)[0] == "C" or c in '<>:"|?*' else c for c in part)
    stem, suffix = os.path.splitext(cleaned)
    while len((stem + suffix).encode("utf-8")) > 200 and stem:
        stem = stem[:-1]
    return (stem + suffix)[:200] or "_"
