"""Nothing read from a FHIR or X12 file is dropped or merged away without a trace: every row read is landed or
quarantined (the load's invariant), and what maps to no row is counted in the load message, which the human CLI
prints too.

The defects: a FHIR Claim item without `sequence` landed as `Claim/<id>#itemNone` on the per-resource path (all such
items one charge) but was quarantined on the SQL path; a repeated sequence (FHIR) or LX number / REF*6R (837P) gave
two lines one charge id, of which dbt kept one; an 837P LX without SV1 vanished; a denied 835 claim kept only its
first CAS (a CAS*PR patient share was neither landed nor counted); Bundle entries without a resource (a DELETE
request, a string, no resourceType) vanished uncounted; and `ptpulse ingest` / `status` showed no load message of a
loaded file.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from ingest_helpers import query
from typer.testing import CliRunner

from ingestion.interop import Batch, read_interop
from ingestion.interop import fhir as F
from ingestion.interop import fhir_fast as FF
from ingestion.interop import x12 as X
from ingestion.loader import ingest
from ptpulse.cli import app
from ptpulse.core.config import get_settings
from ptpulse.core.contracts import load_contracts
from tests.interop.x12_text import clp, file_835, file_837p, payment_835

CPT = "http://www.ama-assn.org/go/cpt"


def _item(cpt: str, net: int, seq: int | None = None) -> dict:
    item = {
        "productOrService": {"coding": [{"system": CPT, "code": cpt}]},
        "quantity": {"value": 1},
        "net": {"value": net},
    }
    return item | ({"sequence": seq} if seq is not None else {})


def _fhir_claim(cid: str, items: list[dict]) -> dict:
    return {
        "resourceType": "Claim", "id": cid, "status": "active", "use": "claim",
        "patient": {"reference": "Patient/pat1"}, "created": "2024-01-05T10:00:00Z",
        "insurer": {"reference": "Organization/payer1"}, "provider": {"reference": "Organization/clinic1"},
        "billablePeriod": {"start": "2024-01-04"}, "item": items,
    }  # fmt: skip


CLAIMS = [
    _fhir_claim("ok", [_item("97110", 60, 1), _item("97140", 30, 2)]),
    _fhir_claim("noseq", [_item("97110", 60), _item("97140", 30)]),  # R4 requires item.sequence
    _fhir_claim("twice", [_item("97110", 60, 1), _item("97140", 30, 1), _item("97530", 45, 2)]),  # unique in R4
]


def _loads(results) -> dict[str, tuple[int, int, int, int]]:
    return {r.source: (r.rows_read, r.rows_landed, r.rows_quarantined, r.rows_duplicate) for r in results}


# --- D1: FHIR Claim items without a sequence, or with one repeated ----------------------------------------


def test_fhir_claim_items_without_or_with_a_repeated_sequence_are_quarantined_alike_on_both_paths(
    tmp_path, monkeypatch
):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "Claim.000.ndjson").write_text("\n".join(json.dumps(c) for c in CLAIMS) + "\n")
    con = duckdb.connect()
    try:  # the SQL path maps every line itself (none is left to fhir.py)
        assert FF.read_bulk(folder / "Claim.000.ndjson", Batch(load_contracts()), con) == []
    finally:
        con.close()
    seen = {}
    for mode in ("1", "0"):
        monkeypatch.setenv("PTPULSE_FHIR_FAST", mode)
        home = get_settings(tmp_path / f"home{mode}").ensure()
        results = ingest([folder], home)
        # read 7 items: ok#item1, ok#item2, twice#item1, twice#item2 land; both noseq items and the second
        # twice#item1 are quarantined (never one charge for two items, never `#itemNone`)
        assert _loads(results)["charges"] == (7, 4, 3, 0), mode
        charges = query(home, "SELECT charge_id, cpt_code FROM raw.charges ORDER BY ALL")
        assert charges == [
            ("Claim/ok#item1", "97110"),
            ("Claim/ok#item2", "97140"),
            ("Claim/twice#item1", "97110"),  # the first item with the sequence is kept
            ("Claim/twice#item2", "97530"),
        ], mode
        quarantined = query(home, "SELECT rule, column_name, line FROM raw._quarantine ORDER BY line")
        assert quarantined == [("required", "charge_id", 2)] * 2 + [("required", "charge_id", 3)], mode
        message = next(r.message for r in results if r.source == "charges")
        assert f"{F.ITEM_NO_SEQUENCE} x2" in message and f"{F.ITEM_REPEATED} x1" in message, message
        seen[mode] = (charges, quarantined, message.replace("load_id 1", "load_id ?").replace("load_id 2", "load_id ?"))
    assert seen["1"] == seen["0"]


def test_a_bundle_claim_item_with_a_repeated_element_id_is_quarantined(tmp_path, home):
    items = [_item("97110", 60, 1) | {"id": "CH-1"}, _item("97140", 30, 2) | {"id": "CH-1"}]
    path = tmp_path / "claim.json"
    path.write_text(json.dumps(_fhir_claim("c1", items)))
    assert _loads(ingest([path], home))["charges"] == (2, 1, 1, 0)
    assert query(home, "SELECT charge_id, charge_usd FROM raw.charges") == [("CH-1", Decimal("60.00"))]


# --- D2, D3: 837P lines with a repeated line id, or without SV1 -------------------------------------------


def _837p(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_837p_lines_repeating_an_lx_number_or_a_ref_6r_are_quarantined_not_merged(tmp_path, home):
    by_ref = file_837p(
        1, "CLAIMR", "MRN1", "PAYER1", "20250306", "1", [("L1", "97110", "50.00"), ("L1", "97140", "100.00")]
    )
    by_lx = file_837p(2, "CLAIMX", "MRN1", "PAYER1", "20250306", "1", [("", "97110", "50.00"), ("", "97140", "100.00")])
    by_lx = by_lx.replace("LX*2~", "LX*1~")
    assert "REF*6R*~" in by_lx  # an empty REF*6R: the line id is CLM01#LX01
    for name, text, kept in (("ref.837", by_ref, "L1"), ("lx.837", by_lx, "CLAIMX#1")):
        results = ingest([_837p(tmp_path, name, text)], home)
        assert _loads(results)["charges"] == (2, 1, 1, 0), name
        assert query(home, f"SELECT cpt_code FROM raw.charges WHERE charge_id = '{kept}'") == [("97110",)]
        assert X.REPEATED_LINE in next(r.message for r in results if r.source == "charges")
    assert query(home, "SELECT rule, column_name FROM raw._quarantine") == [("required", "charge_id")] * 2


def test_an_837p_line_without_sv1_is_quarantined_and_counted(tmp_path, home):
    text = file_837p(
        3, "CLAIMS", "MRN1", "PAYER1", "20250306", "1", [("L1", "97110", "50.00"), ("L2", "97140", "100.00")]
    )
    text = text.replace("SV1*HC:97140:GP*100.00*UN*1***1~\n", "")
    results = ingest([_837p(tmp_path, "nosv1.837", text)], home)
    assert _loads(results)["charges"] == (2, 1, 1, 0)
    assert query(home, "SELECT rule, column_name FROM raw._quarantine") == [("required", "cpt_code")]
    assert f"{X.NO_SV1} x1" in next(r.message for r in results if r.source == "charges")


# --- D4: a denied 835 claim's other CAS ---------------------------------------------------------------------


def _835(tmp_path: Path, name: str, *claims: str):
    path = tmp_path / name
    path.write_text(file_835([payment_835("0001", "0", "20250324", "TD", "PY2", "MEDICARE", list(claims))], 7))
    return path


def test_a_denied_claims_patient_share_lands_and_its_other_adjustments_are_counted(tmp_path, home):
    denied = clp("C30", "4", "100.00", "0", [("CO", "50", "75.00"), ("PR", "1", "20.00"), ("CO", "45", "5.00")])
    path = _835(tmp_path, "den.835", denied)
    batch = read_interop(path, load_contracts())
    rows = sorted(
        (r["event_type"], r["amount_usd"], r["group_code"], r["carc_code"]) for _, r in batch.rows["remittances"]
    )
    assert rows == [("denial", "100.00", "CO", "50"), ("patient_responsibility", "20.00", "PR", "1")]
    assert batch.ignored == {"X12 835 denied claim CAS CO-45 (the denial states the denied amount)": 1}
    [result] = ingest([path], home)
    assert (result.rows_read, result.rows_landed, result.rows_quarantined) == (2, 2, 0)
    assert "CO-45" in result.message


def test_a_later_payers_denial_leaves_the_prior_payers_patient_share(tmp_path):
    """A secondary's denial repeats the patient share the primary's 835 landed: counted, not landed again."""
    denied = clp("C31", "4", "270.00", "0", [("CO", "27", "0.00"), ("OA", "23", "230.00"), ("PR", "2", "40.00")])
    batch = read_interop(_835(tmp_path, "sec.835", denied), load_contracts())
    assert [r["event_type"] for _, r in batch.rows["remittances"]] == ["denial"]
    assert batch.ignored["X12 835 later payer's denied claim CAS PR-2 (the prior payer's 835 states it)"] == 1


# --- D5: Bundle entries holding no resource ---------------------------------------------------------------


def _patient(pid: str) -> dict:
    return {
        "resourceType": "Patient", "id": pid, "meta": {"lastUpdated": "2024-01-02T10:00:00Z"},
        "name": [{"family": "Roe", "given": ["Jo"]}], "birthDate": "1980-01-02", "gender": "female",
    }  # fmt: skip


def test_bundle_entries_without_a_resource_are_counted_and_take_no_position(tmp_path, home):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": _patient("p1"), "request": {"method": "PUT", "url": "Patient/p1"}},
            {"request": {"method": "DELETE", "url": "Patient/p7"}},
            {"fullUrl": "urn:uuid:2", "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:3", "resource": "a resource written as text"},
            {"fullUrl": "urn:uuid:4", "resource": {"id": "p9", "name": [{"family": "NoType"}]}},
            "not an entry",
            {"fullUrl": "urn:uuid:5", "resource": _patient("p2")},
        ],
    }
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    batch = read_interop(path, load_contracts())
    assert dict(batch.ignored) == {
        F.ENTRY_DELETE: 1,
        F.ENTRY_NO_RESOURCE: 1,
        F.ENTRY_RESOURCE_NOT_OBJECT: 1,
        F.ENTRY_NO_TYPE: 1,
        F.ENTRY_NOT_OBJECT: 1,
    }
    assert [(line, row["patient_id"]) for line, row in batch.rows["patients"]] == [(1, "p1"), (2, "p2")]
    [result] = ingest([path], home)
    assert (result.rows_read, result.rows_landed) == (2, 2)
    assert "DELETE entry" in result.message and "without a resource" in result.message


# --- D6: the human CLI prints a loaded file's message ------------------------------------------------------


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_ingest_and_status_print_the_message_of_a_loaded_file(tmp_path, home):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": _patient("p1")}, {"resource": {"resourceType": "Observation", "id": "o1", "status": "final"}},
    ]}  # fmt: skip
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bundle.json").write_text(json.dumps(bundle))
    runner = CliRunner()
    ingested = runner.invoke(app, ["ingest", str(tmp_path / "in"), "--home", str(home.home)])
    assert ingested.exit_code == 0, ingested.output
    note = "notebundle.json:notmappedtoanysource(seeingestion/interop/README.md):FHIRObservationx1"
    assert note in _flat(ingested.output)
    status = runner.invoke(app, ["status", "--home", str(home.home)])
    assert status.exit_code == 0, status.output
    assert note in _flat(status.output)


def test_a_file_whose_loads_say_nothing_prints_no_note(tmp_path, home):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bundle.json").write_text(json.dumps(_patient("p1")))
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "in"), "--home", str(home.home)])
    assert result.exit_code == 0, result.output
    assert "note " not in result.output


@pytest.fixture(autouse=True)
def _default_fast(monkeypatch):
    monkeypatch.delenv("PTPULSE_FHIR_FAST", raising=False)
