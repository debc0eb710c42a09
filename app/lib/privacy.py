"""Which columns are protected health information, and a last-line filter that strips them.

The list comes from the ingestion contracts (`phi: true` columns, the one place sources are described)
plus patient_id and a few display aliases our queries use. Queries for de-identified roles never select
these columns in the first place; `deidentify` is the second lock on the door, applied to every result a
de-identified role receives.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml

CONTRACTS = Path(__file__).resolve().parents[2] / "ingestion" / "contracts"

# Columns that identify a patient even if no contract flags them (ids, and names our queries build).
ALWAYS_PHI = frozenset({
    "patient_id", "patient_name", "first_name", "last_name", "birth_date", "date_of_birth", "dob",
    "phone", "email", "address", "address_line", "street", "city", "zip", "postal_code", "member_id", "mrn", "ssn",
})


@lru_cache(maxsize=1)
def contract_phi_columns(folder: Path = CONTRACTS) -> frozenset[str]:
    cols: set[str] = set()
    for path in sorted(folder.glob("*.yml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for name, col in (spec.get("columns") or {}).items():
            if isinstance(col, dict) and col.get("phi"):
                cols.add(str(name).lower())
    return frozenset(cols)


PHI_COLUMNS: frozenset[str] = ALWAYS_PHI | contract_phi_columns()


def phi_columns_in(columns) -> list[str]:
    return [c for c in columns if str(c).lower() in PHI_COLUMNS]


def deidentify(df: pd.DataFrame) -> pd.DataFrame:
    """Drop every PHI column (second line of defence for marketing and analyst results)."""
    drop = phi_columns_in(df.columns)
    return df.drop(columns=drop) if drop else df
