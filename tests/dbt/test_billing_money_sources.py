"""Money that vanished or doubled between an 835 reversal, an 837P sent twice in one file and a second payer's cash
told by another system; the tiny practice plus hand-written X12 and CSV files, real loader, real dbt (a full build,
an incremental night, then a full rebuild of the same raw file beside it), no mocks.

A. A denial reversed on appeal (835 CLP02 = 22 of a CLP02 = 4). The denial's CO adjustment never lands (the denial
   states the denied amount: x12._denied_adjustments), but the reversal landed its CAS negated: C30 ($200, denied
   CO-50, reversed, paid 150 + CO-45 50) showed contractual -150 and an insurance balance of 200 after the appeal
   paid it. Now a reversal of a denial counts only what cancels money the denial landed (its payment, its patient
   share): int_remittances_linked. C31 denies with a patient share (CO-50 150 + PR-1 50); C32 brings the denial,
   the reversal and the correction in one file.
B. An 837P original and its replacement (CLM05-3 = 7) in one file counted both sets of lines (X2: $200 of lines on
   a $100 claim), and a void (CLM05-3 = 8) after its original in one file left the original billed (X3). Within a
   file only the latest version of a claim is mapped (merge order: creation time, then ISA / ST / CLM order):
   x12._latest_versions. The same for a FHIR Claim a Bundle holds twice (F1), or cancels later (F2):
   fhir._latest_claim_versions. A void that is the file's latest version lands as the claim's voided version (X3,
   F2: billed 0, its billed in voided_usd, no lines), as a void in a later file does (test_claim_voids_billing.py).
C. A secondary payer's payment told by another system than the primary's 835: C15's primary pays by 835 (X12), the
   Medigap plan's payment is in the practice's ledger (native CSV, more authoritative). Each kind of a claim's money
   came from one system, so the 835's payment and patient share were dropped (C15: paid 30, patient responsibility
   -30, insurance balance 190). Now per claim, kind of money AND payer (int_remittances_linked), also on the
   incremental night the ledger's payment arrives after the 835; the same payment told by two systems still counts
   once (C04's 835 repeats the ledger; C01's 835 names a payer id no payer file holds, so it cannot be told apart
   from the ledger's and does not count either).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from night_helpers import assert_same_rows, full_build_beside, project_snapshot

from ingestion.loader import ingest
from ptpulse.build.orchestrate import build
from ptpulse.core.config import get_settings
from tests.built import open_built
from tests.interop.x12_text import clp, file_835, file_837p, payment_835

pytestmark = pytest.mark.slow

TINY = Path(__file__).parent / "tiny_practice"

PAYERS = (
    "payer_id,payer_name,payer_class,requires_auth,auth_visit_limit,updated_at\n"
    "PY3,Medigap Plan,commercial,false,,2025-01-01 00:00:00\n"
)
CLAIMS = (
    "claim_id,episode_id,patient_id,clinic_id,payer_id,service_date,submitted_at,billed_usd\n"
    "C30,E01,P01,CL001,PY1,2025-03-12,2025-03-12 16:00:00,200.00\n"
    "C31,E01,P01,CL001,PY1,2025-03-13,2025-03-13 16:00:00,200.00\n"
    "C32,E01,P01,CL001,PY1,2025-03-14,2025-03-14 16:00:00,200.00\n"
)
C30_DENIED = clp("C30", "4", "200.00", "0.00", [("CO", "50", "200.00")])
C31_DENIED = clp("C31", "4", "200.00", "0.00", [("CO", "50", "150.00"), ("PR", "1", "50.00")])
C32_DENIED = clp("C32", "4", "200.00", "0.00", [("CO", "50", "200.00")])
DENIALS_835 = file_835(
    [payment_835("0001", "0.00", "20250318", "TRND1", "PY1", "ACME", [C30_DENIED, C31_DENIED])], control=31
)
# the appeal: each denial reversed (amounts negated, TR3 1.10.2.8), then the claim paid
APPEAL_835 = file_835(
    [
        payment_835(
            "0001",
            "270.00",
            "20250404",
            "TRNA1",
            "PY1",
            "ACME",
            [
                clp("C30", "22", "-200.00", "0.00", [("CO", "50", "-200.00")]),
                clp("C30", "1", "200.00", "150.00", [("CO", "45", "50.00")]),
                clp("C31", "22", "-200.00", "0.00", [("CO", "50", "-150.00"), ("PR", "1", "-50.00")]),
                clp("C31", "1", "200.00", "120.00", [("CO", "45", "30.00"), ("PR", "1", "50.00")]),
            ],
        )
    ],
    control=32,
)
# C32: the denial and, in a later check of the same file, its reversal and the payment
C32_835 = file_835(
    [
        payment_835("0001", "0.00", "20250320", "TRND2", "PY1", "ACME", [C32_DENIED]),
        payment_835(
            "0002",
            "150.00",
            "20250404",
            "TRNA2",
            "PY1",
            "ACME",
            [
                clp("C32", "22", "-200.00", "0.00", [("CO", "50", "-200.00")]),
                clp("C32", "1", "200.00", "150.00", [("CO", "45", "50.00")]),
            ],
        ),
    ],
    control=33,
)
# C15's primary (Medicare, PY2) by 835; C04's 835 tells the ledger's payment again; C01's names an unknown payer id
PRIMARY_835 = file_835(
    [
        payment_835(
            "0001",
            "286.00",
            "20250324",
            "TRNP1",
            "PY2",
            "MEDICARE",
            [
                clp("C15", "1", "270.00", "150.00", [("CO", "45", "80.00"), ("PR", "1", "40.00")]),
                clp("C04", "1", "270.00", "136.00", [("CO", "45", "100.00"), ("PR", "2", "34.00")]),
            ],
        ),
        payment_835(
            "0002",
            "160.00",
            "20250320",
            "TRNP2",
            "ZZZ99",
            "ACME CLEARING",
            [clp("C01", "1", "270.00", "160.00", [("CO", "45", "80.00"), ("PR", "2", "30.00")])],
        ),
    ],
    control=34,
)
# the Medigap plan's payment of C15 in the practice's ledger: it pays 30 of the 40 the primary left to the patient
SECONDARY_CSV = (
    "remit_id,claim_id,payer_id,event_type,event_at,amount_usd,group_code,carc_code,check_number\n"
    "RMG1,C15,PY3,payer_payment,2025-03-28 12:00:00,30.00,,,CHKG1\n"
    "RMG2,C15,PY3,patient_responsibility,2025-03-28 12:00:00,-30.00,PR,,CHKG1\n"
)
X2_LINES = [("L21", "97110", "100.00"), ("L22", "97140", "100.00")]
# one file, two interchanges: X2 and its replacement (drops L22); X3 and its void
BOTH_837 = (
    file_837p(41, "X2", "P99", "PY1", "20250306", "1", X2_LINES)
    + file_837p(42, "X2", "P99", "PY1", "20250306", "7", X2_LINES[:1])
    + file_837p(43, "X3", "P99", "PY1", "20250306", "1", [("L31", "97110", "100.00")])
    + file_837p(44, "X3", "P99", "PY1", "20250307", "8", [("L31", "97110", "100.00")])
)
# night 2: X5 and its replacement (another line id, another charge) in one file
X5_837 = file_837p(45, "X5", "P99", "PY1", "20250307", "1", [("L51", "97110", "100.00")]) + file_837p(
    46, "X5", "P99", "PY1", "20250307", "7", [("L52", "97110", "120.00")]
)


def _fhir_claim(claim_id: str, created: str, nets: list[int], status: str = "active") -> dict:
    return {
        "resourceType": "Claim", "id": claim_id, "status": status, "use": "claim",
        "patient": {"reference": "Patient/P01"}, "created": created,
        "insurer": {"reference": "Organization/PY1"}, "provider": {"reference": "Organization/CL001"},
        "billablePeriod": {"start": "2025-03-07"},
        "item": [
            {"sequence": n, "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": cpt}]},
             "quantity": {"value": 1}, "net": {"value": net}}
            for n, (cpt, net) in enumerate(zip(("97110", "97140"), nets, strict=False), start=1)
        ],
    }  # fmt: skip


# night 2, one Bundle: F1 and its corrected version (drops item 2), F2 and its cancellation (FHIR's void)
FHIR_VERSIONS = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"resource": _fhir_claim("F1", "2025-03-07T16:00:00", [60, 30])},
        {"resource": _fhir_claim("F1", "2025-03-08T09:00:00", [60])},
        {"resource": _fhir_claim("F2", "2025-03-07T16:00:00", [60])},
        {"resource": _fhir_claim("F2", "2025-03-08T09:00:00", [60], status="cancelled")},
    ],
}


def _ingest(home, folder: Path) -> None:
    results = ingest([folder], home)
    assert all(r.status == "loaded" and r.rows_quarantined == 0 for r in results), [
        (r.file, r.status, r.rows_quarantined, r.message) for r in results
    ]


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> dict:
    """Night 1: the tiny practice, the denials, the primary 835 and the 837P file with both versions; a full build.
    Night 2: the appeal 835, the ledger's secondary payment, C32's file, X5's file and the FHIR Bundle; an incremental
    build. Then a full rebuild of the same raw file beside it."""
    root = tmp_path_factory.mktemp("billing_money_sources")
    project = project_snapshot(root)
    first = root / "first"
    shutil.copytree(TINY, first)
    (first / "payers_medigap.csv").write_text(PAYERS)
    (first / "claims_appealed.csv").write_text(CLAIMS)
    (first / "denials.835").write_text(DENIALS_835)
    (first / "primary.835").write_text(PRIMARY_835)
    (first / "both_versions.837").write_text(BOTH_837)
    home = get_settings(root / "home").ensure()
    _ingest(home, first)
    night1 = build(home, project_dir=project)
    assert night1.ok, night1.message
    with open_built(home.analytics_db) as con:
        denied = con.execute(
            "select claim_id, is_denied, insurance_balance_usd from marts.claims where claim_id in ('C30', 'C31') "
            "order by 1"
        ).fetchall()
    c15_night1 = _money(_claim(home, "C15"))
    second = root / "second"
    second.mkdir()
    (second / "appeal.835").write_text(APPEAL_835)
    (second / "remittances_secondary.csv").write_text(SECONDARY_CSV)
    (second / "c32.835").write_text(C32_835)
    (second / "x5_both.837").write_text(X5_837)
    (second / "claims_history.json").write_text(json.dumps(FHIR_VERSIONS))
    _ingest(home, second)
    night2 = build(home, project_dir=project)
    assert night2.ok, night2.message
    full, _ = full_build_beside(home, root / "full", project_dir=project)
    return {"home": home, "full": full, "results": [night1, night2], "denied_night1": denied, "c15_night1": c15_night1}


def _claim(home, claim_id: str) -> dict:
    with open_built(home.analytics_db) as con:
        cur = con.execute(
            """select billed_usd, payer_paid_usd, contractual_adj_usd, patient_resp_usd, insurance_balance_usd,
                      patient_balance_usd, is_denied, denied_usd, charge_lines, charge_lines_usd
               from marts.claims where claim_id = ?""",
            [claim_id],
        )
        row = cur.fetchone()
        return (
            {}
            if row is None
            else {d[0]: (str(v) if v is not None else None) for d, v in zip(cur.description, row, strict=True)}
        )


def _voided(home, claim_id: str) -> tuple:
    with open_built(home.analytics_db) as con:
        row = con.execute(
            "select claim_status, billed_usd, voided_usd, charge_lines, ar_age_bucket from marts.claims "
            "where claim_id = ?",
            [claim_id],
        ).fetchone()
    return tuple(str(v) for v in row) if row else ()


MONEY = ("billed_usd", "payer_paid_usd", "contractual_adj_usd", "patient_resp_usd", "insurance_balance_usd")


def _money(claim: dict) -> tuple:
    return tuple(claim[k] for k in MONEY) + (claim["patient_balance_usd"],)


def test_a_denial_reversed_on_appeal_leaves_no_negative_adjustment_and_closes(nights):
    # before the appeal: denied, the whole billed amount open with the insurer
    assert nights["denied_night1"] == [("C30", True, 200), ("C31", True, 150)]
    assert nights["results"][1].full_refresh is False, nights["results"][1].mode_reason
    for claim_id in ("C30", "C32"):  # reversal in a later file; and denial, reversal, payment in one file
        claim = _claim(nights["home"], claim_id)
        # was contractual -150.00, insurance balance 200.00
        assert _money(claim) == ("200.00", "150.00", "50.00", "0.00", "0.00", "0.00"), (claim_id, claim)
        assert (claim["is_denied"], claim["denied_usd"]) == ("True", "200.00"), claim  # denied, then paid on appeal
    c31 = _claim(nights["home"], "C31")
    # the denial's patient share (PR-1 50) landed and its reversal cancels it; the payment's share stays
    assert _money(c31) == ("200.00", "120.00", "30.00", "50.00", "0.00", "50.00"), c31


def test_no_claim_shows_a_negative_adjustment_or_owes_the_insurer_less_than_nothing(nights):
    for result in nights["results"]:
        assert not [w for w in result.warnings if "insurance_balance_not_negative" in w], result.warnings
    with open_built(nights["home"].analytics_db) as con:
        negative = con.execute(
            "select claim_id from marts.claims where contractual_adj_usd < 0 or insurance_balance_usd < 0"
        ).fetchall()
    assert negative == []


def test_an_837p_sent_with_its_replacement_or_void_in_one_file_counts_the_last_version(nights):
    home = nights["home"]
    x2 = _claim(home, "X2")
    assert (x2["billed_usd"], x2["charge_lines"], x2["charge_lines_usd"]) == ("100.00", "1", "100.00"), x2  # was 2, 200
    x5 = _claim(home, "X5")
    assert (x5["billed_usd"], x5["charge_lines"], x5["charge_lines_usd"]) == ("120.00", "1", "120.00"), x5  # was 2, 220
    # voided in the file that sent it: was billed 100 with its line, then no row; now its voided version
    assert _voided(home, "X3") == ("voided", "0.00", "100.00", "0", "closed")
    f1 = _claim(home, "F1")  # the FHIR Claim corrected in the same Bundle
    assert (f1["billed_usd"], f1["charge_lines"], f1["charge_lines_usd"]) == ("60.00", "1", "60.00"), f1  # was 2, 90
    assert _voided(home, "F2") == ("voided", "0.00", "60.00", "0", "closed")  # cancelled in the Bundle: was 60 billed
    with open_built(home.analytics_db) as con:
        lines = con.execute(
            "select claim_id, charge_id from marts.charge_lines where claim_id in ('X2', 'X3', 'X5', 'F1', 'F2') "
            "order by 1, 2"
        ).fetchall()
    assert lines == [("F1", "Claim/F1#item1"), ("X2", "L21"), ("X5", "L52")]


def test_a_secondary_payment_from_another_system_counts_and_a_repeated_one_does_not(nights):
    home = nights["home"]
    # night 1: the primary's 835 alone (the patient owes the 40 it left)
    assert nights["c15_night1"] == ("270.00", "150.00", "80.00", "40.00", "0.00", "40.00")
    c15 = _claim(home, "C15")
    # primary (835) 150 + secondary (ledger) 30; the patient owes the 10 the Medigap plan left
    assert _money(c15) == ("270.00", "180.00", "80.00", "10.00", "0.00", "10.00"), c15  # was 30, 80, -30, 190
    # the same payment in the ledger and an 835 counts once: as the tiny practice's ledger alone says
    assert _money(_claim(home, "C04")) == ("270.00", "136.00", "100.00", "34.00", "0.00", "0.00")
    assert _money(_claim(home, "C01")) == ("270.00", "160.00", "80.00", "30.00", "0.00", "0.00")
    with open_built(home.analytics_db) as con:
        by_payer = con.execute(
            """select payer_id, sum(amount_usd) from intermediate.int_remittances_linked
               where claim_id = 'C15' and event_type = 'payer_payment' group by 1 order by 1"""
        ).fetchall()
    assert [(p, str(v)) for p, v in by_payer] == [("PY2", "150.00"), ("PY3", "30.00")]


def test_the_appeal_night_equals_a_full_rebuild(nights):
    assert_same_rows(nights["home"].analytics_db, nights["full"].analytics_db)
