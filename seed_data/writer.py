"""Contract-shaped CSV output: column order, text formats and streaming appends, all driven by the YAML.

Every frame is turned into text columns here (vectorised) before dirt is injected and before writing, so
formats (timestamps, 2-decimal money, true/false) are decided once and dirt can put any text in any cell.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO

import polars as pl

from ptpulse.core.contracts import Column, Contract, load_contracts

SOURCES = (
    "clinics",
    "therapists",
    "referring_physicians",
    "payers",
    "patients",
    "intake_events",
    "marketing_touches",
    "marketing_spend",
    "scheduling_events",
    "authorizations",
    "documentation_events",
    "charges",
    "claims",
    "remittances",
)


def contract(source: str) -> Contract:
    """The contract of one source (parsed once, by ptpulse/core/contracts.py)."""
    return load_contracts()[source]


def columns(source: str) -> dict[str, Column]:
    """The source's columns by name, in file order."""
    return {c.name: c for c in contract(source).columns}


def _text(expr: pl.Expr, typ: str, dtype: pl.DataType) -> pl.Expr:
    if typ == "timestamp":
        if dtype == pl.Int64:  # epoch seconds
            expr = pl.from_epoch(expr, time_unit="s")
        return expr.dt.strftime("%Y-%m-%d %H:%M:%S")
    if typ == "date":
        if dtype == pl.Int64 or dtype == pl.Int32:  # day index
            expr = pl.from_epoch(expr.cast(pl.Int64) * 86400, time_unit="s").dt.date()
        return expr.dt.strftime("%Y-%m-%d")
    if typ == "decimal":
        cents = (expr.cast(pl.Float64) * 100).round(0).cast(pl.Int64)
        sign = pl.when(cents < 0).then(pl.lit("-")).otherwise(pl.lit(""))
        a = cents.abs()
        return pl.concat_str([sign, (a // 100).cast(pl.String), pl.lit("."), (a % 100).cast(pl.String).str.zfill(2)])
    if typ == "boolean":
        return pl.when(expr).then(pl.lit("true")).otherwise(pl.lit("false"))
    return expr.cast(pl.String)


def to_text(source: str, df: pl.DataFrame) -> pl.DataFrame:
    """Select the contract's columns in order and render each as contract-formatted text (null stays null).

    Timestamps may be given as Datetime or int epoch seconds, dates as Date or int day indices.
    """
    exprs = []
    for name, col in columns(source).items():
        if name in df.columns:
            exprs.append(_text(pl.col(name), col.type, df.schema[name]).alias(name))
        else:
            exprs.append(pl.lit(None, dtype=pl.String).alias(name))
    return df.select(exprs)


# gzip level of compressed exports: level 1 is ~4x faster than the default 6 for ~15% more bytes, and a 900-clinic
# chain writes 29 GB of CSV (docs/scale.md)
GZIP_LEVEL = 1


def file_name(source: str, compress: bool = False) -> str:
    """The export's file name: `<source>.csv`, or `<source>.csv.gz` (ingestion reads either as the source)."""
    return f"{source}.csv.gz" if compress else f"{source}.csv"


class Writer:
    """Keeps one open file per source and appends text frames; counts rows for the manifest. `compress`: gzip
    streams (no name or time in their header, so the same seed still gives byte-identical files)."""

    def __init__(self, out: Path, compress: bool = False) -> None:
        self.out = out
        self.compress = compress
        out.mkdir(parents=True, exist_ok=True)
        self.handles: dict[str, IO[bytes]] = {}
        self.files: list[IO[bytes]] = []
        self.rows: dict[str, int] = {}

    def _open(self, source: str) -> IO[bytes]:
        raw = open(self.out / file_name(source, self.compress), "wb")  # noqa: SIM115 - closed by close()
        self.files.append(raw)
        if not self.compress:
            return raw
        return gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=raw, mtime=0)

    def write(self, source: str, text: pl.DataFrame) -> None:
        first = source not in self.handles
        if first:
            self.handles[source] = self._open(source)
            self.rows[source] = 0
        if text.height == 0 and not first:
            return
        text.write_csv(self.handles[source], include_header=first, null_value="", line_terminator="\n")
        self.rows[source] += text.height

    def close(self) -> None:
        for h in self.handles.values():
            h.close()  # a gzip stream writes its trailer, then the file below it is closed
        for f in self.files:
            f.close()
        self.handles.clear()
        self.files.clear()


def write_plain(path: Path, df: pl.DataFrame) -> None:
    """Write a truth file (not a contract source)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_csv(path, null_value="", line_terminator="\n")
