"""CSV exports that are safe to open in a spreadsheet.

A cell starting with =, +, -, @, tab or carriage return is run as a formula by Excel, LibreOffice and
Google Sheets (CSV injection, OWASP). Text cells like that get a leading apostrophe, which spreadsheets
show as plain text. Real numbers (including negative ones) are left alone: they are typed numbers in the
frame, not text, so they cannot carry a formula.
"""

from __future__ import annotations

import io
import re
from typing import Any

import pandas as pd

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def neutralise(value: Any) -> Any:
    """Make one cell inert: prefix text that a spreadsheet would evaluate with an apostrophe."""
    if not isinstance(value, str) or not value:
        return value
    stripped = value.lstrip(" ")
    if stripped.startswith(_TRIGGERS) and not _PLAIN_NUMBER.match(stripped):
        return "'" + value
    return value


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of df whose text cells (and column names) cannot run as formulas."""
    out = df.copy()
    out.columns = [neutralise(str(c)) for c in out.columns]
    for col in out.columns:
        series = out[col]
        if series.dtype == object or pd.api.types.is_string_dtype(series):
            out[col] = series.map(neutralise)
    return out


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """UTF-8 CSV (with BOM so Excel reads accents) of the neutralised frame."""
    buf = io.StringIO()
    safe_frame(df).to_csv(buf, index=False)
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def has_identities(df: pd.DataFrame) -> bool:
    """Whether an export carries identified data (so it must be written to the audit log)."""
    from ptpulse.core.deid import PHI_COLUMNS

    return any(str(c).lower() in PHI_COLUMNS for c in df.columns)
