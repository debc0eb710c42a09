"""The recomputation's units per visit follows the definition (kpi_definitions.csv): the units of the charge lines
linked to an attended visit over those visits. A line with no appointment id counts in neither part: polars'
`n_unique` counts a null as one more value, so without the rule an unlinked line added a phantom visit to the
denominator (and its units to the numerator), where the mart, by the same definition, counts neither.

Recomputed from the hand-built tiny practice's CSVs (tests/dbt/tiny_practice, March 2025: 37 units over 12 visits)
plus the two lines of tests/dbt/test_units_per_visit.py (same hand-worked numbers against the built marts): CH101,
4 units on 03-12 with no appointment; CH102, 3 units on 03-11 on A05, a no-show. No build: the CSVs only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
import recompute as R

TINY = Path(__file__).resolve().parents[1] / "dbt" / "tiny_practice"
EXTRA_LINES = [
    "CH101,C20,,,P04,CL001,T1,2025-03-12,97110,GP,4,60,240.00,2025-03-12 15:00:00",
    "CH102,C05,A05,E02,P02,CL001,T1,2025-03-11,97110,GP,3,45,180.00,2025-03-11 15:00:00",
]


@pytest.fixture(scope="module")
def practice(tmp_path_factory) -> R.Practice:
    folder = tmp_path_factory.mktemp("units_rule") / "csv"
    shutil.copytree(TINY, folder)
    charges = folder / "charges.csv"
    charges.write_text(charges.read_text().rstrip("\n") + "\n" + "\n".join(EXTRA_LINES) + "\n")
    p = R.practice(folder)
    assert p.src["charges"].filter(pl.col("appointment_id").is_null()).height == 1  # CH101 landed, no visit
    return p


def _units(p: R.Practice, grain: str, period: str) -> tuple[float, float]:
    k = R.kpis(p, grain).filter(
        (pl.col("kpi") == "units_per_visit")
        & (pl.col("clinic_id") == "ALL")
        & (pl.col("period_start") == pl.lit(period).str.to_date())
    )
    assert k.height == 1, (grain, period)
    return k["numerator"][0], k["denominator"][0]


def test_a_line_with_no_visit_counts_in_neither_part(practice):
    assert _units(practice, "day", "2025-03-12") == (3, 1)  # A13 only (the null id was counted: (7, 2))


def test_a_line_on_a_visit_not_attended_counts_in_neither_part(practice):
    assert _units(practice, "day", "2025-03-11") == (3, 1)  # A10 only; A05 was a no-show


def test_the_month_keeps_the_hand_worked_numbers(practice):
    assert _units(practice, "month", "2025-03-01") == (37, 12)
