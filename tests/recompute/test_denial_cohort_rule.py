"""The recomputation's denial rate follows the definition (kpi_definitions.csv): denied / adjudicated claims among
the claims sent to a payer. A self-pay claim (payer_class self_pay: the practice's own discount is a contractual
adjustment, so it read as 'adjudicated') and a claim with no payer on file are answered by no payer and are in
neither part; a payer missing from the payers file still counts.

Recomputed from the hand-built tiny practice's CSVs (tests/dbt/tiny_practice, March 2025: 9 claims adjudicated, C06
and C11 denied) plus C20 (self-pay, discounted), C21 (no payer, adjusted) and C22 (a payer not in the payers file,
paid). The same rule against the built marts: tests/dbt/test_billing_money.py. No build: the CSVs only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
import recompute as R

TINY = Path(__file__).resolve().parents[1] / "dbt" / "tiny_practice"
EXTRA = {
    "payers.csv": ["PY9,Self Pay,self_pay,false,,2025-01-01 00:00:00"],
    "claims.csv": [
        "C20,E01,P01,CL001,PY9,2025-03-17,2025-03-17 16:00:00,100.00",
        "C21,E01,P01,CL001,,2025-03-18,2025-03-18 16:00:00,100.00",
        "C22,E01,P01,CL001,PY7,2025-03-19,2025-03-19 16:00:00,100.00",
    ],
    "remittances.csv": [
        "RMS1,C20,PY9,contractual_adjustment,2025-03-17 16:00:00,30.00,CO,45,",
        "RMS2,C20,,patient_payment,2025-03-17 16:00:00,70.00,,,CHKS2",
        "RMS3,C21,,contractual_adjustment,2025-03-18 16:00:00,20.00,CO,45,",
        "RMS4,C22,PY7,payer_payment,2025-03-20 16:00:00,80.00,,,CHKS4",
    ],
}


@pytest.fixture(scope="module")
def practice(tmp_path_factory) -> R.Practice:
    folder = tmp_path_factory.mktemp("denial_cohort") / "csv"
    shutil.copytree(TINY, folder)
    for name, rows in EXTRA.items():
        path = folder / name
        path.write_text(path.read_text().rstrip("\n") + "\n" + "\n".join(rows) + "\n")
    p = R.practice(folder)
    assert set(p.src["claims"]["claim_id"]) >= {"C20", "C21", "C22"}
    return p


def test_self_pay_and_payerless_claims_are_not_in_the_denial_cohort(practice):
    cohort = R.adjudicated_claims(practice)
    assert not set(cohort["claim_id"]) & {"C20", "C21"}
    assert cohort.filter(pl.col("claim_id") == "C22")["adjudicated"].to_list() == [True]


def test_the_month_keeps_the_hand_worked_numbers(practice):
    k = R.kpis(practice, "month").filter(
        (pl.col("kpi") == "denial_rate")
        & (pl.col("clinic_id") == "ALL")
        & (pl.col("period_start") == pl.lit("2025-03-01").str.to_date())
    )
    assert (k["numerator"][0], k["denominator"][0]) == (2, 10)  # the 9 + C22; was (2, 12) with C20 and C21
