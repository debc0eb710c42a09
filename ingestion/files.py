"""File-level work before any row is read: finding the files, fingerprinting them, and reading the header.

A file that cannot be read as a whole (empty, binary, UTF-16, not UTF-8, wrong delimiter, missing
required columns, a symbolic link) is refused here with a message that names the problem and the fix, so
the loader never lands part of a file that is wrong everywhere. Messages never quote file content, not even
the header of a file that may have none (its "names" may be a patient's row): they name the file, contract
columns, counts and line numbers. File names go through `safe_text` so they cannot drive a terminal.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ptpulse.core.contracts import Contract, load_contracts

# .csv, plus FHIR (.json, .ndjson) and X12 (.835, .837, .x12, .edi) files read by ingestion/interop
READABLE_SUFFIXES = (".csv", ".json", ".ndjson", ".835", ".837", ".x12", ".edi")
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

    Folders named `truth` are skipped at any depth. A path that does not exist is returned as is so the
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
    """The file's name as it may appear in a message."""
    return safe_text(Path(path).name, 120)


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
    """Refuse paths that are not an existing regular .csv (or FHIR / X12) file, and symbolic links."""
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
    if path.suffix.lower() not in READABLE_SUFFIXES and not looks_like_x12(path):
        raise FileRefused(
            f"{name} is not a file PT Pulse reads (not .csv, FHIR .json / .ndjson, and not an X12 "
            f"interchange starting with ISA), so nothing was loaded from it. Export the source as CSV "
            f"(UTF-8, comma separated), FHIR R4 JSON or X12 835/837P, or remove the file from the exports."
        )
    if not os.access(path, os.R_OK):
        raise FileRefused(
            f"{name} cannot be read (permission denied). Give the user running PT Pulse read "
            f"access to the file and ingest it again."
        )


def read_header(path: Path) -> list[str]:
    """The header row's column names, after checking the start of the file is UTF-8 comma-separated text.

    The header ends at the first line break of any kind (\\n, \\r\\n or a lone \\r); it may be up to
    MAX_HEADER_BYTES long. A NUL byte in the header marks a binary file; NULs in later rows quarantine
    those rows (loader), wherever they are in the file.
    """
    head = b""
    with path.open("rb") as handle:
        while len(head) < MAX_HEADER_BYTES + len(codecs.BOM_UTF8):
            chunk = handle.read(SNIFF_BYTES)
            head += chunk
            if not chunk or re.search(b"[\r\n]", chunk):
                break
    _check_bytes(path, head)
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    match = re.search(b"[\r\n]", head)
    end = match.start() if match else len(head)
    if end > MAX_HEADER_BYTES:
        raise FileRefused(
            f"{display_name(path)}: the first line is longer than {MAX_HEADER_BYTES // 1024 // 1024} MB "
            f"without a line break, so it is not a header row. Is it a CSV file? Export it as CSV "
            f"with the column names on line 1."
        )
    if b"\x00" in head[:end]:
        raise FileRefused(
            f"{display_name(path)} contains NUL bytes in its first line: it is binary (e.g. a "
            f"spreadsheet or zip) or UTF-16 without a byte-order mark. Export it as CSV, UTF-8, and "
            f"ingest it again."
        )
    try:
        line = head[:end].decode("utf-8")
    except UnicodeDecodeError:
        raise FileRefused(_encoding_message(path, "the header row (line 1)")) from None
    try:
        names = next(csv.reader([line]), [])
    except csv.Error:
        raise FileRefused(
            f"{display_name(path)}: the header row (line 1) could not be split into column names "
            f"(unbalanced double quotes?). Export the file with plain column names on line 1."
        ) from None
    names = [n.strip() for n in names]
    if not any(names):
        raise FileRefused(
            f"{display_name(path)}: the first line is empty, so there is no header row. Export the "
            f"file with the column names on line 1."
        )
    return names


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
