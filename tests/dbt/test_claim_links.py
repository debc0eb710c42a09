"""The claim rule (issue 8): charge lines and payments that arrive without a claim_id (an EMR charge, a WebPT
front-desk payment that names only its case and visit date) are linked to their claim by ONE rule in dbt
(intermediate.int_claim_links), every row left without a claim is counted in marts.link_health, and no row or
dollar is lost or repeated. The hand-made practice of test_linking.py, plus the rows below. Real loader, real dbt.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from conftest import build_hand_practice

from ptpulse.core.config import Settings
from tests.built import open_built
from tests.dbt.test_linking import FILES as LINKING_FILES

# emr:P1 has two claims on 03-12 besides CLM8 of E1: CLM9 and CLM10 of episode E9 (one visit, two claims)
EXTRA_CLAIMS = """CLM8,E1,emr:P1,CL1,PY1,2025-03-12,2025-03-13 09:00:00,40.00
CLM9,E9,emr:P1,CL1,PY1,2025-03-12,2025-03-13 09:00:00,40.00
CLM10,E9,emr:P1,CL1,PY1,2025-03-12,2025-03-13 09:00:00,10.00
"""
EXTRA_CHARGES = """CH12,,,,bill:P3,CL1,npi:2222222222,2025-03-06,97110,GP,1,15,25.00,2025-03-06 18:00:00
CH13,,,E1,emr:P1,CL1,T1,2025-03-12,97110,GP,1,15,40.00,2025-03-12 18:00:00
CH14,,,E5,emr:P1,CL1,T1,2025-03-12,97140,GP,1,15,35.00,2025-03-12 18:00:00
CH15,,,,bill:P2x,CL1,T1,2025-03-20,97110,GP,1,15,45.00,2025-03-20 18:00:00
"""
REMITTANCES = """remit_id,claim_id,payer_id,event_type,event_at,amount_usd,group_code,carc_code,check_number,episode_id,service_date
RM1,CLM2,PY1,payer_payment,2025-03-20 12:00:00,90.00,,,K1,,
RM2,CLMX,PY1,payer_payment,2025-03-20 12:00:00,55.55,,,K1,,
RM3,CLM3,PY1,payer_payment,2025-03-20 12:00:00,20.00,,,K1,,
RM4,CLM7,PY1,contractual_adjustment,2025-03-20 12:00:00,10.00,CO,45,K1,,
RM5,CLMX,PY1,contractual_adjustment,2025-03-20 12:00:00,5.00,CO,45,K1,,
RM6,,,patient_payment,2025-03-04 12:00:00,25.00,,,,E2,2025-03-04
RM7,,,patient_payment,2025-03-12 12:00:00,15.00,,,,E1,2025-03-12
RM8,,,patient_payment,2025-03-07 12:00:00,12.00,,,,E1,2025-03-07
RM9,,,patient_payment,2025-03-20 12:00:00,7.00,,,,E7,2025-03-04
RM10,,,patient_payment,2025-03-20 12:00:00,9.00,,,,E9,2025-03-12
"""
FILES = {
    **LINKING_FILES,
    "claims.csv": LINKING_FILES["claims.csv"] + EXTRA_CLAIMS,
    "charges.csv": LINKING_FILES["charges.csv"] + EXTRA_CHARGES,
    "remittances.csv": REMITTANCES,
}

# row -> (claim_id, claim_link, unlinked_reason), worked by hand
EXPECTED = {
    **{
        ("charges", c): (claim, "source", None)
        for c, claim in [
            ("CH1", "CLM1"),
            ("CH2", "CLM1"),
            ("CH3", "CLM1"),
            ("CH10", "CLM1"),
            ("CH4", "CLM2"),
            ("CH11", "CLM2"),
            ("CH5", "CLM5"),
            ("CH6", "CLM3"),
            ("CH7", "CLM4"),
            ("CH8", "CLM6"),
            ("CH9", "CLM7"),
        ]
    },
    ("charges", "CH12"): ("CLM4", "patient_date", None),  # bill:P3 = emr:P3 (name + birth date), one claim that day
    ("charges", "CH13"): ("CLM8", "patient_date_episode", None),  # three claims that day, one of its episode E1
    ("charges", "CH14"): (None, "unlinked", "several_claims_on_date"),  # three claims, none of its episode E5
    ("charges", "CH15"): (None, "unlinked", "no_claim_on_date"),
    **{
        ("remittances", r): (claim, "source", None)
        for r, claim in [
            ("RM1", "CLM2"),
            ("RM2", "CLMX"),
            ("RM3", "CLM3"),
            ("RM4", "CLM7"),
            ("RM5", "CLMX"),
        ]
    },
    ("remittances", "RM6"): ("CLM7", "episode_date", None),  # E2's claim of 03-04 (CLM3 is another person's)
    ("remittances", "RM7"): ("CLM8", "episode_date", None),  # E1 on 03-12: CLM8, not E9's CLM9 / CLM10
    ("remittances", "RM8"): ("CLM5", "episode_date", None),  # CLM5's episode is linked (E1's span), not carried
    ("remittances", "RM9"): (None, "unlinked", "no_claim_on_date"),
    ("remittances", "RM10"): (None, "unlinked", "several_claims_on_date"),  # E9 has two claims that day
}


@pytest.fixture(scope="module")
def claim_linked(tmp_path_factory) -> Settings:
    return build_hand_practice(tmp_path_factory.mktemp("claim_links"), FILES)


def _q(settings: Settings, sql: str) -> list[tuple]:
    with open_built(settings.analytics_db) as con:
        return con.execute(sql).fetchall()


def test_charges_and_payments_link_to_one_claim_or_say_why(claim_linked):
    got = {
        (r[0], r[1]): r[2:]
        for r in _q(
            claim_linked,
            "select source, row_id, claim_id, claim_link, unlinked_reason from intermediate.int_claim_links",
        )
    }
    assert got == EXPECTED


def test_linked_money_reaches_the_claim_and_none_is_lost(claim_linked):
    # charge lines carry the linked claim; the claim sums them
    assert _q(claim_linked, "select claim_id from marts.charge_lines where charge_id = 'CH12'") == [("CLM4",)]
    assert _q(claim_linked, "select charge_lines, charge_lines_usd from marts.claims where claim_id = 'CLM4'") == [
        (2, Decimal("175.00"))
    ]
    # front-desk payments count on their claim's patient balance
    paid = dict(_q(claim_linked, "select claim_id, patient_paid_usd from marts.claims where patient_paid_usd <> 0"))
    assert paid == {"CLM7": Decimal("25.00"), "CLM8": Decimal("15.00"), "CLM5": Decimal("12.00")}
    # every dollar of every payment still counts, linked or not
    [(rows, cash)] = _q(claim_linked, "select count(*), sum(amount_usd) from intermediate.int_remittances_attributed")
    assert (rows, cash) == (10, Decimal("248.55"))


def test_rows_without_a_claim_are_counted_on_data_health(claim_linked):
    health = {
        (r[0], r[1], r[2]): (r[3], r[4])
        for r in _q(claim_linked, "select * from marts.link_health where source in ('charge_claims', 'remittances')")
    }
    assert health == {
        ("charge_claims", "carried", "(none)"): (11, Decimal("940.00")),
        ("charge_claims", "linked", "(none)"): (2, Decimal("65.00")),
        ("charge_claims", "unlinked", "several_claims_on_date"): (1, Decimal("35.00")),
        ("charge_claims", "unlinked", "no_claim_on_date"): (1, Decimal("45.00")),
        ("remittances", "carried", "(none)"): (3, Decimal("110.00")),
        ("remittances", "linked", "(none)"): (3, Decimal("52.00")),
        ("remittances", "unlinked", "claim_not_loaded"): (2, Decimal("55.55")),
        ("remittances", "unlinked", "no_claim_on_date"): (1, Decimal("7.00")),
        ("remittances", "unlinked", "several_claims_on_date"): (1, Decimal("9.00")),
    }
