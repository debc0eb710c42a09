"""Money a claim was counted with twice, fixed in the models and the X12 reader; the tiny practice plus hand-written
files, real loader, real dbt build (full, then an incremental night), no mocks.

1. A secondary payer's 835 for C15 ($270: primary pays 150, CO-45 80, PR-1 40; the secondary pays 30, OA-23 230,
   PR-2 10) double-adjusted the claim: contractual 310, patient responsibility 50, insurance balance -270. Expected
   paid 180, contractual 80, patient owes 10, insurance 0 (x12._prior_share; tests/interop/test_x12_cob.py). The data
   test `claims_adjudicated_insurance_balance_not_negative` warns on such a claim.
2. An 837P replacement claim (CLM05-3 = 7) of X1 that drops line L2 kept L2 billed (stg_raw__charges kept each
   charge id's latest version). A line of an 837P / FHIR claim now counts only while that system's latest version of
   its claim, from the same file, carries it (macros/ptpulse.sql current_claim_lines); the night it arrives is
   incremental and equals a full rebuild.
3. C06, denied CO-50 ($200) and denied again on appeal, counted $400 denied in marts.claims and denial_reasons.
4. A self-pay claim (its discount a contractual adjustment) and a claim with no payer counted in the denial rate's
   denominator as 'adjudicated', though no payer answers them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from night_helpers import assert_same_rows, full_build_beside

from ingestion.loader import ingest
from ptpulse.build.orchestrate import build
from ptpulse.core.config import get_settings
from tests.built import open_built
from tests.interop.x12_text import clp, file_835, file_837p, payment_835

pytestmark = pytest.mark.slow

TINY = Path(__file__).parent / "tiny_practice"
BALANCE_TEST = "claims_adjudicated_insurance_balance_not_negative"

COB_835 = file_835(
    [
        payment_835(
            "0001",
            "150.00",
            "20250324",
            "TRNPRIM",
            "PY2",
            "MEDICARE",
            [clp("C15", "1", "270.00", "150.00", [("CO", "45", "80.00"), ("PR", "1", "40.00")])],
        ),
        payment_835(
            "0002",
            "30.00",
            "20250328",
            "TRNSEC",
            "SUPP9",
            "MEDIGAP PLAN",
            [clp("C15", "2", "270.00", "30.00", [("OA", "23", "230.00"), ("PR", "2", "10.00")])],
        ),
    ],
    control=11,
)
APPEAL_DENIED = (
    "remit_id,claim_id,payer_id,event_type,event_at,amount_usd,group_code,carc_code,check_number\n"
    "RMD2,C06,PY2,denial,2025-03-25 12:00:00,200.00,CO,50,CHKD2\n"
)
SELF_PAY = {
    "payers_selfpay.csv": (
        "payer_id,payer_name,payer_class,requires_auth,auth_visit_limit,updated_at\n"
        "PY9,Self Pay,self_pay,false,,2025-01-01 00:00:00\n"
    ),
    "claims_selfpay.csv": (
        "claim_id,episode_id,patient_id,clinic_id,payer_id,service_date,submitted_at,billed_usd\n"
        "C20,E01,P01,CL001,PY9,2025-03-17,2025-03-17 16:00:00,100.00\n"
        "C21,E01,P01,CL001,,2025-03-18,2025-03-18 16:00:00,100.00\n"
    ),
    "remittances_selfpay.csv": (
        "remit_id,claim_id,payer_id,event_type,event_at,amount_usd,group_code,carc_code,check_number\n"
        "RMS1,C20,PY9,contractual_adjustment,2025-03-17 16:00:00,30.00,CO,45,\n"
        "RMS2,C20,,patient_payment,2025-03-17 16:00:00,70.00,,,CHKS2\n"
        "RMS3,C21,,contractual_adjustment,2025-03-18 16:00:00,20.00,CO,45,\n"
    ),
}
X1_ORIGINAL = file_837p(21, "X1", "P99", "PY1", "20250305", "1", [("L1", "97110", "100.00"), ("L2", "97140", "100.00")])
X1_REPLACEMENT = file_837p(22, "X1", "P99", "PY1", "20250310", "7", [("L1", "97110", "100.00")])
X1_PAID = file_835(
    [
        payment_835(
            "0001",
            "80.00",
            "20250320",
            "TRNX1",
            "PY1",
            "ACME",
            [clp("X1", "1", "100.00", "80.00", [("CO", "45", "20.00")])],
        )
    ],
    control=23,
)


def _ingest(home, folder: Path) -> None:
    results = ingest([folder], home)
    assert all(r.status == "loaded" and r.rows_quarantined == 0 for r in results), [
        (r.file, r.status, r.rows_quarantined, r.message) for r in results
    ]


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> dict:
    """Night 1: the tiny practice with every case but X1's replacement, a full build. Night 2: the replacement
    837P, an incremental build. Then a full rebuild of the same raw file beside it."""
    root = tmp_path_factory.mktemp("billing_money")
    first = root / "first"
    shutil.copytree(TINY, first)
    (first / "cob.835").write_text(COB_835)
    (first / "remittances_appeal.csv").write_text(APPEAL_DENIED)
    for name, text in SELF_PAY.items():
        (first / name).write_text(text)
    (first / "x1_original.837").write_text(X1_ORIGINAL)
    (first / "x1_paid.835").write_text(X1_PAID)
    home = get_settings(root / "home").ensure()
    _ingest(home, first)
    night1 = build(home)
    assert night1.ok, night1.message
    with open_built(home.analytics_db) as con:
        lines1 = con.execute("select charge_id from marts.charge_lines where claim_id = 'X1' order by 1").fetchall()
    second = root / "second"
    second.mkdir()
    (second / "x1_replacement.837").write_text(X1_REPLACEMENT)
    _ingest(home, second)
    night2 = build(home)
    assert night2.ok, night2.message
    full, _ = full_build_beside(home, root / "full")
    return {"home": home, "full": full, "results": [night1, night2], "lines_night1": lines1}


def _one(home, sql: str, params: list | None = None) -> tuple:
    with open_built(home.analytics_db) as con:
        return con.execute(sql, params or []).fetchone()


def test_secondary_payer_835_restates_the_patient_share_instead_of_adding_to_it(nights):
    row = _one(
        nights["home"],
        """select billed_usd, payer_paid_usd, contractual_adj_usd, patient_resp_usd, insurance_balance_usd,
                  patient_balance_usd, ar_age_bucket <> 'closed'
           from marts.claims where claim_id = 'C15'""",
    )
    assert tuple(str(v) for v in row[:6]) == ("270.00", "180.00", "80.00", "10.00", "0.00", "10.00"), row
    assert row[6] is True  # the patient still owes 10: open A/R
    assert _one(
        nights["home"],
        "select sum(insurance_balance_usd), sum(patient_balance_usd) from marts.ar_aging where payer_id = 'PY2'",
    ) == (200.0, 10.0)  # C08 (200, never answered) and C15's patient share; was (-70, 50)


def test_an_adjudicated_claim_never_owes_the_insurer_less_than_nothing(nights):
    for result in nights["results"]:
        assert not [w for w in result.warnings if BALANCE_TEST in w], result.warnings
    negative = _one(
        nights["home"], "select count(*) from marts.claims where is_adjudicated and insurance_balance_usd < -0.005"
    )
    assert negative == (0,)


def test_a_replacement_837p_drops_the_line_it_no_longer_carries(nights):
    home = nights["home"]
    assert nights["lines_night1"] == [("L1",), ("L2",)]
    assert nights["results"][1].full_refresh is False, nights["results"][1].mode_reason
    row = _one(
        home,
        "select billed_usd, charge_lines, charge_lines_usd, billable_units from marts.claims where claim_id = 'X1'",
    )
    assert tuple(str(v) for v in row) == ("100.00", "1", "100.00", "1"), row
    with open_built(home.analytics_db) as con:
        for table in ("staging.stg_raw__charges", "intermediate.int_charge_lines_classified", "marts.charge_lines"):
            ids = con.execute(f"select charge_id from {table} where claim_id = 'X1' order by 1").fetchall()
            assert ids == [("L1",)], table


def test_the_replacement_night_equals_a_full_rebuild(nights):
    assert_same_rows(nights["home"].analytics_db, nights["full"].analytics_db)


def test_a_claim_denied_twice_counts_its_billed_once(nights):
    home = nights["home"]
    claim = _one(home, "select billed_usd, denied_usd from marts.claims where claim_id = 'C06'")
    assert tuple(str(v) for v in claim) == ("200.00", "200.00"), claim  # was 400 (200 per denial)
    reason = _one(home, "select denied_claims, denied_usd from marts.denial_reasons where denial_carc = '50'")
    assert reason == (1, 200.0), reason


def test_self_pay_and_payerless_claims_are_not_in_the_denial_rate(nights):
    home = nights["home"]
    with open_built(home.analytics_db) as con:
        flags = dict(
            con.execute("select claim_id, is_adjudicated from marts.claims where claim_id in ('C20', 'C21')").fetchall()
        )
        kpi = con.execute(
            """select numerator, denominator, cohort, pending from marts.practice_kpis
               where kpi = 'denial_rate' and grain = 'month' and clinic_id = 'ALL' and period_start = '2025-03-01'"""
        ).fetchone()
    assert flags == {"C20": False, "C21": False}
    # adjudicated payer claims: the tiny practice's 9, C15 (its two 835s) and X1 (its 835); denied C06 and C11;
    # waiting: C08 and C18. C20 (self-pay discount) and C21 (no payer) are in no part.
    assert kpi == (2, 11, 13, 2), kpi
