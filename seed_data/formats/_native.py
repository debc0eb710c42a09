"""Reads the generator's native CSVs as the source system holds them: typed, current version per key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ptpulse.core.contracts import load_contracts
from seed_data.reference import npi_ids

_TYPES = {
    "integer": pl.Int64,
    "decimal": pl.Float64,
    "date": pl.Date,
    "timestamp": pl.Datetime("us"),
    "boolean": pl.Boolean,
}


def read(native: Path, source: str) -> pl.DataFrame:
    """The source's CSV, typed per its contract, one row per natural key (its latest event time).

    Dirt the generator injected (resent rows, duplicates) collapses to the current row as dbt staging
    picks it; rows with a required value that does not parse, or a number below the contract's minimum
    (negative units), are left out: a vendor system would not hold them either."""
    contract = load_contracts()[source]
    df = pl.read_csv(Path(native) / f"{source}.csv", infer_schema=False)
    casts = []
    for col in contract.columns:
        if col.name not in df.columns:
            casts.append(pl.lit(None).alias(col.name))
            continue
        dtype = _TYPES.get(col.type)
        if dtype is None:
            casts.append(pl.col(col.name))
        elif col.type == "boolean":
            casts.append(
                pl.col(col.name).str.to_lowercase().replace_strict({"true": True, "false": False}, default=None)
            )
        elif col.type in ("date", "timestamp"):
            fmt = "%Y-%m-%d" if col.type == "date" else "%Y-%m-%d %H:%M:%S"
            casts.append(pl.col(col.name).str.strptime(dtype, fmt, strict=False))
        else:
            casts.append(pl.col(col.name).cast(dtype, strict=False))
    df = df.select(casts)
    keys = list(contract.natural_key)
    required = [c.name for c in contract.columns if c.required]
    numeric_min = [
        pl.col(c.name) >= c.min
        for c in contract.columns
        if c.type in ("integer", "decimal") and isinstance(c.min, int | float)
    ]
    df = df.drop_nulls(list(dict.fromkeys(keys + required)))
    if numeric_min:
        df = df.filter(pl.all_horizontal([e.fill_null(True) for e in numeric_min]))
    order = [c for c in (contract.event_time,) if c]
    if order:
        df = df.sort(order, nulls_last=False, maintain_order=True)
    return df.unique(subset=keys, keep="last", maintain_order=True)


def clinic_npis(clinic_ids: pl.Series) -> pl.Series:
    """A stable, Luhn-valid organisation NPI per clinic (clinics.csv carries none; billing needs one)."""
    out = []
    for cid in clinic_ids.to_list():  # one per clinic (at most 900)
        digits = int("".join(ch for ch in cid if ch.isdigit()) or "0")
        out.append(str(npi_ids(np.random.default_rng(7_000_000 + digits), 1)[0]))
    return pl.Series("clinic_npi", out)
