"""Which columns are protected health information, and a last-line filter that strips them.

The rule itself lives in ptpulse/core/deid.py (PHI columns from the ingestion contracts' `phi: true` flags plus
patient_id and the display aliases our queries use; excluded tables and free-text columns), shared with the
build that writes the de-identified twin `analytics_deid.duckdb`. Queries for de-identified roles never
select these columns in the first place; `deidentify` is the second lock on the door, applied to every
result a de-identified role receives.
"""

from __future__ import annotations

import pandas as pd

from ptpulse.core.deid import phi_columns_in


def deidentify(df: pd.DataFrame) -> pd.DataFrame:
    """Drop every PHI column (second line of defence for marketing and analyst results)."""
    drop = phi_columns_in(df.columns)
    return df.drop(columns=drop) if drop else df
