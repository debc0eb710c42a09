"""Which columns are protected health information, and a last-line filter that strips them.

The rule itself lives in ptpulse/core/deid.py (PHI columns from the ingestion contracts' `phi: true` flags plus
patient_id and the display aliases our queries use; excluded tables and free-text columns), shared with the
build that writes the de-identified twin `analytics_deid.duckdb`. Queries for de-identified roles never
select these columns in the first place; `deidentify` is the second lock on the door, applied to every
result a de-identified role receives.
"""

from __future__ import annotations

import pandas as pd

from ptpulse.core.deid import kept_columns


def deidentify(df: pd.DataFrame) -> pd.DataFrame:
    """Keep only what the de-identified twin keeps (core/deid.py `kept_columns`): no PHI column and no free-text
    or file column (an exporter may name a file after its patient). Second line of defence for marketing and
    analyst results."""
    keep = kept_columns(df.columns)
    return df if len(keep) == len(df.columns) else df[keep]
