"""A claim voided in a LATER file stays billed: an 837P void (CLM05-3 = 8) of a claim an earlier file landed, a FHIR
Claim cancelled or entered-in-error after the Claim landed. Before, the readers dropped both (claims had no status):
the claim stayed billed, in A/R and in the denial work, its lines billed charges. Now the void lands as the claim's
voided version (claims.status) and the latest version wins: a voided claim is billed 0 (its billed in voided_usd),
closed, not denied, with no current line (the void's file carries none: current_claim_lines); a replacement after the
void re-bills it. The tiny practice plus hand-written X12 and FHIR files, real loader, real dbt: a full night, an
incremental night bringing the voids, then a full rebuild of the same raw file beside it, table by table.
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

V1_LINES = [("VL1", "97110", "100.00"), ("VL2", "97140", "100.00")]
V2_LINES = [("VL3", "97110", "100.00")]
# night 1: V1 and V2 billed by 837P, V1 denied by the payer
ORIGINALS_837 = file_837p(61, "V1", "P01", "PY1", "20250306", "1", V1_LINES) + file_837p(
    62, "V2", "P01", "PY1", "20250306", "1", V2_LINES
)
DENIAL_835 = file_835(
    [
        payment_835(
            "0001",
            "0.00",
            "20250318",
            "TRNV1",
            "PY1",
            "ACME",
            [clp("V1", "4", "200.00", "0.00", [("CO", "50", "200.00")])],
        )
    ],
    control=63,
)
# night 2: both voided (each file repeats the claim, as a void does); V2 re-billed later under its number
VOIDS_837 = file_837p(64, "V1", "P01", "PY1", "20250310", "8", V1_LINES) + file_837p(
    65, "V2", "P01", "PY1", "20250310", "8", V2_LINES
)
REBILL_837 = file_837p(66, "V2", "P01", "PY1", "20250312", "7", [("VL4", "97110", "120.00")])


def _fhir_claim(claim_id: str, created: str, status: str = "active") -> dict:
    return {
        "resourceType": "Claim", "id": claim_id, "status": status, "use": "claim",
        "patient": {"reference": "Patient/P01"}, "created": created,
        "insurer": {"reference": "Organization/PY1"}, "provider": {"reference": "Organization/CL001"},
        "billablePeriod": {"start": "2025-03-07"},
        "item": [{"sequence": 1, "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt",
                  "code": "97110"}]}, "quantity": {"value": 1}, "net": {"value": 60}}],
    }  # fmt: skip


def _bundle(*claims: dict) -> str:
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": c} for c in claims]})


FHIR_NIGHT1 = _bundle(_fhir_claim("G1", "2025-03-07T16:00:00"), _fhir_claim("G2", "2025-03-07T16:00:00"))
FHIR_NIGHT2 = _bundle(
    _fhir_claim("G1", "2025-03-09T09:00:00", status="cancelled"),
    _fhir_claim("G2", "2025-03-09T09:00:00", status="entered-in-error"),
)
CLAIMS = ("V1", "V2", "G1", "G2")


def _ingest(home, folder: Path) -> None:
    results = ingest([folder], home)
    assert all(r.status == "loaded" and r.rows_quarantined == 0 for r in results), [
        (r.file, r.status, r.rows_quarantined, r.message) for r in results
    ]


def _facts(home) -> dict:
    """What the revenue pages read: the claims, their current lines, billed and open A/R, the A/R of each day."""
    with open_built(home.analytics_db) as con:
        claims = con.execute(
            """select claim_id, claim_status, billed_usd, voided_usd, charge_lines, charge_lines_usd, is_denied,
                      denied_usd, ar_age_bucket = 'closed'
               from marts.claims where claim_id in ('V1', 'V2', 'G1', 'G2') order by 1"""
        ).fetchall()
        lines = con.execute(
            "select claim_id, charge_id from marts.charge_lines where claim_id in ('V1', 'V2', 'G1', 'G2') order by 2"
        ).fetchall()
        billed = con.execute("select sum(billed_usd) from marts.claims").fetchone()[0]
        open_ar = con.execute("select sum(open_balance_usd) from marts.ar_aging").fetchone()[0]
        daily = dict(
            con.execute(
                "select date_day, sum(ar_balance_usd) from intermediate.int_ar_balances_daily group by 1"
            ).fetchall()
        )
        # the denial work and the denial rate's cohort (adjudicated: denied, paid or adjusted by the payer)
        denied = con.execute(
            "select claim_id, is_denied, is_adjudicated from marts.claims "
            "where (is_denied or is_adjudicated) and claim_id like 'V%'"
        ).fetchall()
        cohort = con.execute(
            "select sum(cohort), sum(numerator) from marts.kpi_facts_daily where kpi = 'denial_rate'"
        ).fetchone()
    return {
        "claims": claims,
        "lines": lines,
        "billed": billed,
        "open_ar": open_ar,
        "daily": daily,
        "denied": denied,
        "cohort": cohort,
    }


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("claim_voids")
    project = project_snapshot(root)
    first = root / "first"
    shutil.copytree(TINY, first)
    (first / "originals.837").write_text(ORIGINALS_837)
    (first / "denial.835").write_text(DENIAL_835)
    (first / "claims_fhir.json").write_text(FHIR_NIGHT1)
    home = get_settings(root / "home").ensure()
    _ingest(home, first)
    night1 = build(home, project_dir=project)
    assert night1.ok, night1.message
    before = _facts(home)
    second = root / "second"
    second.mkdir()
    (second / "voids.837").write_text(VOIDS_837)
    (second / "rebill.837").write_text(REBILL_837)
    (second / "withdrawn_fhir.json").write_text(FHIR_NIGHT2)
    _ingest(home, second)
    night2 = build(home, project_dir=project)
    assert night2.ok, night2.message
    full, _ = full_build_beside(home, root / "full", project_dir=project)
    return {"home": home, "full": full, "night2": night2, "before": before, "after": _facts(home)}


def test_night_one_bills_the_claims_and_v1_is_denied(nights):
    before = nights["before"]
    assert [(c, s, str(b), str(v), n) for c, s, b, v, n, *_ in before["claims"]] == [
        ("G1", "submitted", "60.00", "0.00", 1),
        ("G2", "submitted", "60.00", "0.00", 1),
        ("V1", "submitted", "200.00", "0.00", 2),
        ("V2", "submitted", "100.00", "0.00", 1),
    ]
    assert before["denied"] == [("V1", True, True)]


def test_a_void_in_a_later_file_unbills_the_claim_its_lines_and_its_denial(nights):
    after = nights["after"]
    assert nights["night2"].full_refresh is False, nights["night2"].mode_reason
    # was: V1 billed 200 with 2 lines, denied, open; G1 and G2 billed 60 each (the voids were dropped at ingestion)
    assert [tuple(str(v) for v in row) for row in after["claims"]] == [
        ("G1", "voided", "0.00", "60.00", "0", "0.00", "False", "0.00", "True"),  # cancelled
        ("G2", "voided", "0.00", "60.00", "0", "0.00", "False", "0.00", "True"),  # entered-in-error
        ("V1", "voided", "0.00", "200.00", "0", "0.00", "False", "0.00", "True"),  # no denial to work
        ("V2", "submitted", "120.00", "0.00", "1", "120.00", "False", "0.00", "False"),  # re-billed after its void
    ]
    assert after["lines"] == [("V2", "VL4")]  # the voided claims' lines are billed charges no more
    assert after["denied"] == []  # was V1 denied and adjudicated: in the denial work and the denial rate
    # the denial rate's cohort loses V1, V2's original, G1 and G2 and gains V2's replacement; V1's denial leaves
    before = nights["before"]["cohort"]
    assert after["cohort"] == (before[0] - 3, before[1] - 1)


def test_the_revenue_totals_leave_out_the_voided_claims(nights):
    before, after = nights["before"], nights["after"]
    withdrawn = 200 + 100 + 60 + 60  # V1, V2 (re-billed at 120), G1, G2
    assert after["billed"] == before["billed"] - withdrawn + 120
    assert after["open_ar"] == pytest.approx(float(before["open_ar"]) - withdrawn + 120)
    # A/R of each day night 1 built, after every service date (03-05, 03-07): the voided money left it
    days = [d for d in before["daily"] if str(d) >= "2025-03-07" and d in after["daily"]]
    assert days
    for day in days:
        assert after["daily"][day] == pytest.approx(before["daily"][day] - withdrawn + 120), day


def test_the_void_night_equals_a_full_rebuild(nights):
    assert_same_rows(nights["home"].analytics_db, nights["full"].analytics_db)
