"""A claim voided or withdrawn in a LATER file than the one that billed it: an 837P void (CLM05-3 = 8) of a CLM01 an
earlier file landed, a FHIR Claim cancelled or entered-in-error after the Claim landed. Before, both were counted in
the load message and dropped (claims had no status), so the claim stayed billed. Now each lands as the claim's voided
version (claims.status = voided, no charges); a later replacement re-bills it (latest version wins in dbt); a void
lacking what a claims row needs is quarantined with the column it lacks, never dropped. Real readers and loader; the
build (billed, A/R, incremental night) is tests/dbt/test_claim_voids_billing.py.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from ingest_helpers import query

from ingestion.interop import fhir as F
from ingestion.interop import x12 as X
from ingestion.loader import ingest
from tests.interop.x12_text import file_837p

LINES = [("L1", "97110", "100.00"), ("L2", "97140", "100.00")]


def _ingest(home, path: Path, text: str) -> list:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    results = ingest([path], home)
    assert all(r.status == "loaded" for r in results), [(r.source, r.status, r.message) for r in results]
    return results


def _claims(home) -> list[tuple]:
    return query(home, "SELECT claim_id, billed_usd, status FROM raw.claims ORDER BY submitted_at, claim_id")


def test_an_837p_void_in_a_later_file_lands_the_claims_voided_version(tmp_path, home):
    _ingest(home, tmp_path / "a" / "original.837", file_837p(1, "X1", "P1", "PY1", "20250306", "1", LINES))
    results = _ingest(home, tmp_path / "b" / "void.837", file_837p(2, "X1", "P1", "PY1", "20250310", "8", LINES))
    # was: the void counted in the load message, nothing landed (X1 stayed billed 200)
    assert _claims(home) == [("X1", Decimal("200.00"), None), ("X1", Decimal("200.00"), "voided")]
    assert {r.source: r.rows_landed for r in results} == {"claims": 1}  # the void's lines are not mapped
    assert query(home, "SELECT charge_id FROM raw.charges ORDER BY 1") == [("L1",), ("L2",)]  # the original's
    assert f"{X.VOIDED} x1" in " ".join(r.message or "" for r in results)
    # a replacement after the void re-bills the claim (the latest version wins in dbt): it lands as a new version
    _ingest(home, tmp_path / "c" / "rebill.837", file_837p(3, "X1", "P1", "PY1", "20250312", "7", LINES[:1]))
    assert _claims(home)[-1] == ("X1", Decimal("100.00"), None)


def test_a_void_lacking_a_date_of_service_is_quarantined_with_the_column_it_lacks(tmp_path, home):
    # a void with neither service lines nor a claim date of service: no service_date for its claims row
    path = tmp_path / "void.837"
    path.write_text(file_837p(2, "X1", "P1", "PY1", "20250310", "8", []))
    results = ingest([path], home)
    assert {r.source: (r.rows_read, r.rows_landed, r.rows_quarantined) for r in results} == {"claims": (1, 0, 1)}
    rows = query(home, "SELECT rule, column_name, record FROM raw._quarantine WHERE source = 'claims'")
    assert [(rule, column, json.loads(record)["status"]) for rule, column, record in rows] == [
        ("required", "service_date", "voided")
    ]


def _fhir_claim(claim_id: str, created: str, status: str = "active") -> dict:
    return {
        "resourceType": "Claim", "id": claim_id, "status": status, "use": "claim", "created": created,
        "patient": {"reference": "Patient/P01"}, "insurer": {"reference": "Organization/PY1"},
        "provider": {"reference": "Organization/CL001"}, "billablePeriod": {"start": "2025-03-07"},
        "item": [{"sequence": 1, "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt",
                  "code": "97110"}]}, "quantity": {"value": 1}, "net": {"value": 60}}],
    }  # fmt: skip


def _ndjson(path: Path, resources: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in resources) + "\n")
    return path


@pytest.mark.parametrize("fast", ["1", "0"])
def test_a_fhir_claim_cancelled_or_entered_in_error_in_a_later_file_lands_voided(tmp_path, home, monkeypatch, fast):
    """Both readers (PTPULSE_FHIR_FAST=1: the Bulk file mapped in SQL, which leaves a withdrawn Claim to fhir.py)."""
    monkeypatch.setenv("PTPULSE_FHIR_FAST", fast)
    first = [_fhir_claim(f"k{n}", "2025-03-07T16:00:00") for n in range(1, 7)]  # most of the file mapped in SQL
    _ndjson(tmp_path / "night1" / "Claim.000.ndjson", first)
    assert all(r.status == "loaded" for r in ingest([tmp_path / "night1"], home))
    later = [
        _fhir_claim("k1", "2025-03-09T09:00:00", status="cancelled"),
        _fhir_claim("k2", "2025-03-09T09:00:00", status="entered-in-error"),
        _fhir_claim("k3", "2025-03-09T09:00:00", status="draft"),  # never sent: skipped, as before
    ] + [_fhir_claim(f"k{n}", "2025-03-07T16:00:00") for n in range(4, 9)]
    _ndjson(tmp_path / "night2" / "Claim.000.ndjson", later)
    results = ingest([tmp_path / "night2"], home)
    assert all(r.status == "loaded" for r in results), [r.message for r in results]
    voided = query(home, "SELECT claim_id, billed_usd FROM raw.claims WHERE status = 'voided' ORDER BY 1")
    assert voided == [("k1", Decimal("60.00")), ("k2", Decimal("60.00"))]  # was: none (ignored)
    charges = query(home, "SELECT claim_id, count(*) FROM raw.charges WHERE claim_id IN ('k1', 'k2') GROUP BY 1")
    assert sorted(charges) == [("k1", 1), ("k2", 1)]  # the first file's: no line of a withdrawn Claim
    message = " ".join(r.message or "" for r in results)
    assert f"{F.VOIDED} x2" in message and "status draft) x1" in message
