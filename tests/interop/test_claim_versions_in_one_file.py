"""A claim sent several times in ONE file (an 837P original and its replacement or void, a FHIR Bundle holding a Claim
and its corrected or cancelled version): only the file's latest version is mapped, the others counted in the load
message. dbt keeps a claim's lines from the file that sent its latest version (current_claim_lines), so both
versions' lines counted when they came in one file: the line a replacement dropped stayed billed, a line whose id
changed counted twice, and a void left its original billed. A void (a cancelled FHIR Claim) that is the file's latest
version lands as the claim's voided version (status voided, no lines), as it does in a later file
(test_claim_voids_later_file.py). Real readers and loader; the build is tests/dbt/test_billing_money_sources.py.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from ingest_helpers import query

from ingestion.interop import fhir as F
from ingestion.interop import read_interop
from ingestion.interop import x12 as X
from ingestion.loader import ingest
from ptpulse.core.contracts import load_contracts
from tests.interop.x12_text import file_837p

LINES = [("L1", "97110", "100.00"), ("L2", "97140", "100.00")]


def _read(tmp_path: Path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return read_interop(path, load_contracts())


def _rows(batch, source: str) -> list[tuple]:
    key = {"claims": "billed_usd", "charges": "charge_id"}[source]
    return [(row["claim_id"], row[key]) for _, row in batch.rows.get(source, [])]


def _count(batch, note: str) -> int:
    return batch.ignored.get(note, 0)


def test_an_837p_original_and_its_replacement_in_one_file_map_the_replacement_only(tmp_path):
    text = file_837p(1, "X1", "P1", "PY1", "20250306", "1", LINES) + file_837p(
        2, "X1", "P1", "PY1", "20250306", "7", LINES[:1]
    )
    batch = _read(tmp_path, "both.837", text)
    assert _rows(batch, "claims") == [("X1", "100.00")]  # was ("X1", "200.00") too
    assert _rows(batch, "charges") == [("X1", "L1")]  # was L1, L2 and L1 again
    assert _count(batch, X.SUPERSEDED) == 1


def test_a_void_after_its_original_in_one_file_lands_the_void_only(tmp_path):
    text = file_837p(1, "X1", "P1", "PY1", "20250306", "1", LINES) + file_837p(
        2, "X1", "P1", "PY1", "20250307", "8", LINES
    )
    batch = _read(tmp_path, "void.837", text)
    # was the original, billed 200 with its lines; then nothing of the claim; now its voided version, no lines
    claims = [(row["claim_id"], row["billed_usd"], row["status"]) for _, row in batch.rows["claims"]]
    assert claims == [("X1", "200.00", "voided")]
    assert _rows(batch, "charges") == []
    assert _count(batch, X.SUPERSEDED) == 1 and batch.adjusted[X.VOIDED] == 1


def test_the_latest_version_is_the_merge_orders_creation_time_then_file_order(tmp_path):
    # a replacement created on 03-10 written before an original created on 03-06: the replacement is the latest, as
    # dbt's merge (submitted_at, then load, then line) would pick it across files; one claim's copies: the last
    late = file_837p(1, "X1", "P1", "PY1", "20250310", "7", LINES[:1])
    early = file_837p(2, "X1", "P1", "PY1", "20250306", "1", LINES)
    copies = "".join(file_837p(3 + n, "X2", "P1", "PY1", "20250306", "1", LINES) for n in range(3))
    batch = _read(tmp_path, "order.837", late + early + copies)
    assert _rows(batch, "claims") == [("X1", "100.00"), ("X2", "200.00")]
    assert _rows(batch, "charges") == [("X1", "L1"), ("X2", "L1"), ("X2", "L2")]
    assert _count(batch, X.SUPERSEDED) == 3


def test_claims_without_clm01_are_never_versions_of_one_another(tmp_path):
    text = file_837p(1, "", "P1", "PY1", "20250306", "1", LINES[:1]) + file_837p(
        2, "", "P1", "PY1", "20250306", "1", LINES[1:]
    )
    batch = _read(tmp_path, "noid.837", text)
    assert len(batch.rows["claims"]) == 2 and len(batch.rows["charges"]) == 2  # both read: quarantined `required`
    assert _count(batch, X.SUPERSEDED) == 0


def test_an_837p_replacement_in_the_same_file_lands_through_the_loader(tmp_path, home):
    text = file_837p(1, "X1", "P1", "PY1", "20250306", "1", LINES) + file_837p(
        2, "X1", "P1", "PY1", "20250306", "7", [("L3", "97110", "120.00")]
    )
    path = tmp_path / "both.837"
    path.write_text(text)
    results = ingest([path], home)
    assert {r.source: (r.rows_read, r.rows_landed, r.rows_quarantined) for r in results} == {
        "claims": (1, 1, 0),
        "charges": (1, 1, 0),
    }
    assert query(home, "SELECT claim_id, billed_usd FROM raw.claims") == [("X1", Decimal("120.00"))]
    assert query(home, "SELECT charge_id, charge_usd FROM raw.charges") == [("L3", Decimal("120.00"))]
    assert all("the file's latest version of the claim is mapped" in r.message for r in results), results


def _claim(cid: str, nets: list[int], created: str = "2024-01-05T10:00:00Z", **extra) -> dict:
    items = [
        {
            "sequence": n,
            "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": cpt}]},
            "quantity": {"value": 1},
            "net": {"value": net},
        }
        for n, (cpt, net) in enumerate(zip(("97110", "97140"), nets, strict=False), start=1)
    ]
    return {
        "resourceType": "Claim", "id": cid, "status": "active", "use": "claim", "created": created,
        "patient": {"reference": "Patient/pat1"}, "insurer": {"reference": "Organization/payer1"},
        "provider": {"reference": "Organization/clinic1"}, "billablePeriod": {"start": "2024-01-04"}, "item": items,
    } | extra  # fmt: skip


VERSIONS = [
    _claim("k1", [60, 30]),
    _claim("k1", [60], created="2024-01-06T10:00:00Z"),  # corrected: item 2 dropped
    _claim("k2", [60]),
    _claim("k2", [60], created="2024-01-06T10:00:00Z", status="cancelled"),  # withdrawn: FHIR's void
    # a history Bundle lists the newest version first: the same `created`, meta.lastUpdated tells them apart
    _claim("k3", [70], meta={"lastUpdated": "2024-02-01T00:00:00Z"}),
    _claim("k3", [60, 30], meta={"lastUpdated": "2024-01-01T00:00:00Z"}),
]
EXPECTED_CLAIMS = [("k1", "60"), ("k2", "60"), ("k3", "70")]  # was k1 90 and 60, k2 60, k3 70 and 90; k2: voided
EXPECTED_CHARGES = [("k1", "Claim/k1#item1"), ("k3", "Claim/k3#item1")]  # was 7 lines: k1#item2, k3#item2 billed


def test_a_fhir_bundle_holding_a_claim_twice_maps_its_latest_version(tmp_path):
    bundle = {"resourceType": "Bundle", "type": "history", "entry": [{"resource": c} for c in VERSIONS]}
    batch = _read(tmp_path, "history.json", json.dumps(bundle))
    assert _rows(batch, "claims") == EXPECTED_CLAIMS
    assert _rows(batch, "charges") == EXPECTED_CHARGES
    assert _count(batch, F.SUPERSEDED) == 3  # k1 and k3's earlier versions, k2's active one
    assert [row["status"] for _, row in batch.rows["claims"]] == [None, "voided", None]  # k2 lands cancelled


@pytest.mark.parametrize("fast", ["1", "0"])
def test_a_bulk_file_repeating_a_claim_lands_the_same_rows_on_both_paths(tmp_path, home, monkeypatch, fast):
    """The SQL path (fhir_fast) leaves every version of a repeated Claim to fhir.py, so both paths agree."""
    monkeypatch.setenv("PTPULSE_FHIR_FAST", fast)
    folder = tmp_path / "export"
    folder.mkdir()
    plain = [_claim(f"o{n}", [10]) for n in range(8)]  # most of the file is mapped in SQL
    (folder / "Claim.000.ndjson").write_text("\n".join(json.dumps(c) for c in VERSIONS + plain) + "\n")
    results = ingest([folder], home)
    assert all(r.status == "loaded" for r in results), results
    claims = query(home, "SELECT claim_id, CAST(billed_usd AS INTEGER), status FROM raw.claims ORDER BY _line")
    assert claims == [("k1", 60, None), ("k2", 60, "voided"), ("k3", 70, None)] + [
        (f"o{n}", 10, None) for n in range(8)
    ]
    charges = query(home, "SELECT claim_id, charge_id FROM raw.charges WHERE claim_id LIKE 'k%' ORDER BY _line")
    assert charges == EXPECTED_CHARGES
    message = next(r.message for r in results if r.source == "claims")
    assert f"{F.SUPERSEDED} x3" in message, message
