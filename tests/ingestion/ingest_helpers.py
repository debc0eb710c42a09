"""Hand-made source files for ingestion tests: valid rows built from each contract, then broken on purpose."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb

from ptpulse.core.config import Settings
from ptpulse.core.contracts import Column, Contract, load_code_lists, load_contracts

# A valid example for each pattern used in the contracts.
PATTERN_EXAMPLES = {
    "^[A-Z]{2}$": "TX",
    "^[0-9]{5}$": "78701",
    "^[0-9]{10}$": "1234567893",
    "^[A-TV-Z][0-9][0-9A-Z](\\.[0-9A-Z]{1,4})?$": "M54.50",
    "^[A-Z0-9]{2}(\\|[A-Z0-9]{2})*$": "GP|KX",
    "^(Mon|Tue|Wed|Thu|Fri|Sat|Sun)(\\|(Mon|Tue|Wed|Thu|Fri|Sat|Sun))*$": "Mon|Wed|Fri",
    "^[0-2][0-9]:[0-5][0-9]$": "08:00",
}
_ids = itertools.count(1)


def contract(source: str) -> Contract:
    return load_contracts()[source]


def example_value(col: Column, n: int) -> str:
    """A value that passes every rule of `col`; natural-key-ish text columns get a unique suffix."""
    if col.accepted:
        return col.accepted[0]
    if col.codes:
        return sorted(load_code_lists()[col.codes])[0]
    if col.pattern:
        return PATTERN_EXAMPLES[col.pattern]
    if col.iana_zone:
        return "America/Chicago"
    if col.type == "integer":
        return str(col.min if col.min is not None else 3)
    if col.type == "decimal":
        return "10.50" if col.max is None or col.max >= 10.5 else str(col.max)
    if col.type == "date":
        return "2024-03-15"
    if col.type == "timestamp":
        return "2024-03-15 09:30:00"
    if col.type == "boolean":
        return "true"
    return f"{col.name.upper()}{n:05d}"


def example_row(source: str, **overrides: Any) -> dict[str, str]:
    """One valid row of `source` (unique natural key unless overridden), with `overrides` applied."""
    n = next(_ids)
    row = {c.name: example_value(c, n) for c in contract(source).columns}
    for key in contract(source).natural_key:  # make the key unique even where the value comes from a rule
        col = contract(source).column(key)
        if col.type == "varchar" and not (col.accepted or col.pattern or col.codes):
            row[key] = f"{key.upper()}{n:05d}"
    row.update({k: "" if v is None else str(v) for k, v in overrides.items()})
    return row


def csv_text(rows: Iterable[Mapping[str, str]], columns: list[str] | None = None) -> str:
    rows = list(rows)
    columns = columns or list(rows[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(folder: Path, name: str, rows: Iterable[Mapping[str, str]], columns: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(csv_text(rows, columns), encoding="utf-8")
    return path


def query(settings: Settings, sql: str, params: list | None = None) -> list[tuple]:
    """Run a read-only query on raw.duckdb; `raw.` in `sql` means the raw schema of that file."""
    con = duckdb.connect(str(settings.raw_db), read_only=True)
    try:
        catalog = con.execute("SELECT current_database()").fetchone()[0]
        return con.execute(sql.replace("raw.", f'"{catalog}".raw.'), params or []).fetchall()
    finally:
        con.close()


def table_count(settings: Settings, table: str) -> int:
    return query(settings, f"SELECT count(*) FROM raw.{table}")[0][0]
