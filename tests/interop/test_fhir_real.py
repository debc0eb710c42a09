"""FHIR R4 for real (issue 8 item 2): outside exports load with the invariant, references resolve, EOB money."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from ingestion.interop import read_interop
from ingestion.loader import ingest
from ptpulse.core.contracts import load_contracts

OUTSIDE = Path("/work/shared/interop/outside")
NPI = "http://hl7.org/fhir/sid/us-npi"


@pytest.mark.parametrize("folder", ["fhir-synthea-bundles", "fhir-bulk-ndjson", "fhir-bluebutton"])
def test_outside_fhir_exports_load_with_the_invariant(home, folder):
    if not (OUTSIDE / folder).is_dir():
        pytest.skip("outside corpus not present")
    results = ingest([OUTSIDE / folder], home)
    assert results and all(r.status == "loaded" for r in results), [r.message for r in results if r.status != "loaded"]
    for r in results:
        assert r.rows_read == r.rows_landed + r.rows_quarantined + r.rows_duplicate
    assert sum(r.rows_read for r in results if r.source) > 0


def test_bulk_export_log_is_read_for_its_transaction_time_not_refused(home):
    if not (OUTSIDE / "fhir-bulk-ndjson").is_dir():
        pytest.skip("outside corpus not present")
    results = ingest([OUTSIDE / "fhir-bulk-ndjson"], home)
    log = [r for r in results if Path(r.file).name == "log.ndjson"]
    assert log[0].status == "loaded" and "transactionTime" in log[0].message
    patients = next(r for r in results if r.source == "patients")
    assert "2024-08-06 18:12:57 UTC" in patients.message
    sources = {r.source for r in results}
    assert {"clinics", "referring_physicians", "scheduling_events", "charges"} <= sources


def _bundle(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


HAND_BUNDLE = _bundle(
    {
        "resourceType": "Location",
        "id": "loc1",
        "name": "Lakeside PT",
        "address": {"city": "Madison", "state": "WI", "postalCode": "53703-1234"},
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": "America/Chicago"}],
    },
    {"resourceType": "Organization", "id": "pay1", "name": "Acme Health", "type": [{"coding": [{"code": "pay"}]}]},
    {
        "resourceType": "Practitioner",
        "id": "pt1",
        "identifier": [{"system": NPI, "value": "1234567893"}],
        "name": [{"family": "Kim", "given": ["Ana"]}],
        "qualification": [{"code": {"coding": [{"code": "DPT"}]}}],
    },
    {
        "resourceType": "PractitionerRole",
        "id": "role1",
        "practitioner": {"reference": "Practitioner/pt1"},
        "location": [{"reference": "Location/loc1"}],
        "code": [{"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": "225100000X"}]}],
    },
    {
        "resourceType": "Practitioner",
        "id": "md1",
        "identifier": [{"system": NPI, "value": "1245319599"}],
        "name": [{"family": "Ortho", "given": ["Bo"]}],
    },
    {
        "resourceType": "PractitionerRole",
        "id": "role2",
        "practitioner": {"reference": "Practitioner/md1"},
        "code": [{"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": "207X00000X"}]}],
    },
    {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Doe", "given": ["Jo"]}],
        "birthDate": "1980-02-03",
        "gender": "female",
        "meta": {"lastUpdated": "2024-03-01T12:00:00Z"},
    },
    {
        "resourceType": "Coverage",
        "id": "cov1",
        "status": "active",
        "beneficiary": {"reference": "Patient/p1"},
        "subscriberId": "M123",
        "payor": [{"reference": "Organization/pay1"}],
    },
    {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "requester": {"reference": "Practitioner/md1"},
        "authoredOn": "2024-03-01",
    },
    {
        "resourceType": "EpisodeOfCare",
        "id": "eoc1",
        "status": "active",
        "patient": {"reference": "Patient/p1"},
        "referralRequest": [{"reference": "ServiceRequest/sr1"}],
    },
    {
        "resourceType": "Encounter",
        "id": "enc1",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "episodeOfCare": [{"reference": "EpisodeOfCare/eoc1"}],
        "appointment": [{"reference": "Appointment/ap1"}],
        "participant": [{"type": [{"coding": [{"code": "PPRF"}]}], "individual": {"reference": "Practitioner/pt1"}}],
        "period": {"start": "2024-03-05T15:00:00Z", "end": "2024-03-05T15:45:00Z"},
        "location": [{"location": {"reference": "Location/loc1"}}],
    },
    {
        "resourceType": "Procedure",
        "id": "proc1",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/enc1"},
        "performedDateTime": "2024-03-06T02:30:00Z",
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "97110"}]},
    },
    {
        "resourceType": "ExplanationOfBenefit",
        "id": "eob1",
        "status": "active",
        "use": "claim",
        "outcome": "complete",
        "identifier": [{"system": "urn:claims", "value": "C-9"}],
        "created": "2024-03-20T10:00:00Z",
        "insurer": {"reference": "Organization/pay1"},
        "payment": {"amount": {"value": 60.0}},
        "item": [
            {
                "sequence": 1,
                "adjudication": [
                    {"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": 150.0}},
                    {"category": {"coding": [{"code": "eligible"}]}, "amount": {"value": 100.0}},
                    {"category": {"coding": [{"code": "copay"}]}, "amount": {"value": 20.0}},
                    {"category": {"coding": [{"code": "deductible"}]}, "amount": {"value": 15.0}},
                    {"category": {"coding": [{"code": "coinsurance"}]}, "amount": {"value": 5.0}},
                ],
            }
        ],
    },
)


def _rows(tmp_path, document: dict) -> dict:
    """The rows fhir.py maps from one FHIR document, by source."""
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document))
    return {s: [row for _, row in rows] for s, rows in read_interop(path, load_contracts()).rows.items()}


@pytest.fixture
def hand(tmp_path):
    return _rows(tmp_path, HAND_BUNDLE)


def test_references_resolve_to_clinics_therapists_physicians_and_payers(hand):
    assert hand["clinics"][0]["clinic_id"] == "loc1" and hand["clinics"][0]["timezone"] == "America/Chicago"
    assert hand["clinics"][0]["zip"] == "53703"
    assert hand["payers"][0]["payer_id"] == "pay1"
    therapist = hand["therapists"][0]
    assert (therapist["therapist_id"], therapist["clinic_id"], therapist["credential"]) == (
        "pt1",
        "loc1",
        "DPT",
    )
    physician = hand["referring_physicians"][0]
    assert (physician["physician_id"], physician["specialty"]) == ("1245319599", "orthopedic_surgery")
    patient = hand["patients"][0]
    assert (patient["primary_payer_id"], patient["member_id"]) == ("pay1", "M123")
    assert hand["intake_events"][0]["referring_physician_id"] == "1245319599"


def test_ids_are_the_practices_own_unless_a_namespace_is_configured(tmp_path, monkeypatch):
    """Resource ids ARE the practice's record ids (they merge with its CSVs); PTPULSE_FHIR_ID_NAMESPACE prefixes
    every id for a practice whose FHIR ids collide with another system's; derived ids always keep the type."""
    path = tmp_path / "hand.json"
    path.write_text(json.dumps(HAND_BUNDLE))
    plain = read_interop(path, load_contracts()).rows
    monkeypatch.setenv("PTPULSE_FHIR_ID_NAMESPACE", "emr2")
    spaced = read_interop(path, load_contracts()).rows
    for rows in (plain, spaced):
        assert {row["event_id"].split("#")[0] for _, row in rows["scheduling_events"]} == {
            ("emr2:" if rows is spaced else "") + "Encounter/enc1"
        }
    first = {s: rows[0][1] for s, rows in plain.items()}
    other = {s: rows[0][1] for s, rows in spaced.items()}
    assert (first["scheduling_events"]["appointment_id"], other["scheduling_events"]["appointment_id"]) == (
        "ap1",
        "emr2:Appointment/ap1",
    )
    assert (first["therapists"]["therapist_id"], other["therapists"]["therapist_id"]) == (
        "pt1",
        "emr2:Practitioner/pt1",
    )
    assert {r["claim_id"] for _, r in spaced["remittances"]} == {"emr2:urn:claims|C-9"}


def test_encounter_and_procedure_link_by_reference_and_convert_utc_to_the_clinic_zone(hand):
    events = {e["event_type"]: e for e in hand["scheduling_events"]}
    assert set(events) == {"arrived", "completed"}
    arrived = events["arrived"]
    assert (arrived["appointment_id"], arrived["episode_id"], arrived["referral_id"]) == (
        "ap1",
        "eoc1",
        "sr1",
    )
    assert (arrived["clinic_id"], arrived["therapist_id"]) == ("loc1", "pt1")
    assert arrived["event_at"] == "2024-03-05 09:00:00"  # 15:00Z = 09:00 CST
    assert events["completed"]["event_at"] == "2024-03-05 09:45:00" and arrived["duration_min"] == "45"
    charge = hand["charges"][0]
    assert (charge["appointment_id"], charge["cpt_code"], charge["therapist_id"]) == (
        "ap1",
        "97110",
        "pt1",
    )
    assert charge["service_date"] == "2024-03-05"  # 02:30Z on the 6th is the evening of the 5th in Chicago


def test_eob_patient_responsibility_and_contractual_adjustment(hand):
    rows = {r["event_type"]: r for r in hand["remittances"]}
    assert {r["claim_id"] for r in rows.values()} == {"C-9"}
    assert Decimal(rows["patient_responsibility"]["amount_usd"]) == Decimal("40")  # 20 + 15 + 5
    assert Decimal(rows["contractual_adjustment"]["amount_usd"]) == Decimal("50")  # 150 - 100
    assert rows["contractual_adjustment"]["group_code"] == "CO"
    assert Decimal(rows["payer_payment"]["amount_usd"]) == Decimal("60")


def test_without_a_clinic_zone_utc_stays_utc(tmp_path):
    enc = dict(HAND_BUNDLE["entry"][10]["resource"], location=[])
    path = tmp_path / "enc.json"
    path.write_text(json.dumps(enc))
    batch = read_interop(path, load_contracts())
    arrived = next(row for _, row in batch.rows["scheduling_events"] if row["event_type"] == "arrived")
    assert arrived["event_at"] == "2024-03-05 15:00:00"


def test_a_bulk_folder_resolves_references_across_files(home, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    by_type: dict[str, list] = {}
    for entry in HAND_BUNDLE["entry"]:
        by_type.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    for rtype, items in by_type.items():
        (folder / f"{rtype}.000.ndjson").write_text("\n".join(json.dumps(r) for r in items) + "\n")
    manifest = {"transactionTime": "2024-04-01T00:00:00Z", "request": "x", "requiresAccessToken": False, "output": []}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    results = ingest([folder], home)
    assert all(r.status == "loaded" for r in results)
    assert all(r.rows_read == r.rows_landed + r.rows_quarantined + r.rows_duplicate for r in results)
    batch = read_interop(folder / "Encounter.000.ndjson", load_contracts())
    arrived = next(row for _, row in batch.rows["scheduling_events"] if row["event_type"] == "arrived")
    assert (arrived["clinic_id"], arrived["event_at"]) == ("loc1", "2024-03-05 09:00:00")
    assert any("2024-04-01 00:00:00 UTC" in note for note in batch.notes)
    shutil.rmtree(folder)


def _eob(*adjudications: tuple[str, str, float], **extra) -> dict:
    item = [
        {"category": {"coding": [{"code": code}, {"code": variable}]}, "amount": {"value": value}}
        for code, variable, value in adjudications
    ]
    return {
        "resourceType": "ExplanationOfBenefit",
        "id": "eob1",
        "status": "active",
        "use": "claim",
        "outcome": "complete",
        "created": "2024-12-11T21:37:25+00:00",
        "insurer": {"reference": "Organization/pay1"},
        "patient": {"reference": "Patient/p1"},
        "claim": {"reference": "Claim/c1"},
        "payment": {"amount": {"value": 237.17}},
        "item": [{"sequence": 1, "adjudication": item}],
        **extra,
    }


def test_blue_buttons_two_deductibles_add_up_and_its_restated_coinsurance_does_not(tmp_path):
    """Blue Button writes the blood and the cash deductible as two `deductible` adjudications of one item (they add
    up), and the wage-adjusted coinsurance again as the reduced one (the same amount): 0 + 233 + 0.83, not 0.83."""
    eob = _eob(
        ("deductible", "rev_cntr_blood_ddctbl_amt", 0.0),
        ("deductible", "rev_cntr_cash_ddctbl_amt", 233.0),
        ("coinsurance", "rev_cntr_coinsrnc_wge_adjstd_c", 0.83),
        ("coinsurance", "rev_cntr_rdcd_coinsrnc_amt", 0.83),
    )
    share = {r["event_type"]: r["amount_usd"] for r in _rows(tmp_path, eob)["remittances"]}
    assert Decimal(share["patient_responsibility"]) == Decimal("233.83")


def test_the_real_blue_button_eobs_patient_share_equals_what_the_file_says_the_patient_owes():
    """Each outpatient EOB of the outside Blue Button file states the patient's responsibility
    (rev_cntr_ptnt_rspnsblty_pmt): the landed patient share equals it (233.83 on outpatient--10000930038022)."""
    path = OUTSIDE / "fhir-bluebutton" / "eobData.json"
    if not path.exists():
        pytest.skip("outside corpus not found")
    stated = {}
    for entry in json.loads(path.read_text())["entry"]:
        eob = entry["resource"]
        for item in eob.get("item", []):
            for adj in item.get("adjudication", []):
                if adj["category"]["coding"][0]["code"] == "paidbypatient":
                    stated[eob["id"]] = stated.get(eob["id"], Decimal(0)) + Decimal(str(adj["amount"]["value"]))
    landed = {
        r["remit_id"].split("#")[0]: Decimal(r["amount_usd"])
        for _, r in read_interop(path, load_contracts()).rows["remittances"]
        if r["event_type"] == "patient_responsibility"
    }
    outpatient = {k: v for k, v in stated.items() if k.startswith("outpatient") and v}
    assert outpatient and all(any(key.endswith(eob_id) for key in landed) for eob_id in outpatient), (
        outpatient,
        sorted(landed),
    )
    for eob_id, value in outpatient.items():
        [amount] = [v for k, v in landed.items() if k.endswith(eob_id)]
        assert amount == value, eob_id


def test_a_claim_response_naming_its_claim_by_identifier_in_the_same_bundle_gets_the_claims_id(tmp_path):
    claim = {
        "resourceType": "Claim",
        "id": "CLM1",
        "status": "active",
        "use": "claim",
        "identifier": [{"system": "urn:pms:claim", "value": "PCN-77"}],
        "created": "2024-03-06T10:00:00Z",
        "patient": {"reference": "Patient/p1"},
        "provider": {"reference": "Organization/org1"},
        "insurer": {"reference": "Organization/pay1"},
        "total": {"value": 150.0},
        "billablePeriod": {"start": "2024-03-05"},
    }
    response = {
        "resourceType": "ClaimResponse",
        "id": "cr1",
        "status": "active",
        "use": "claim",
        "outcome": "complete",
        "created": "2024-03-20T10:00:00Z",
        "insurer": {"reference": "Organization/pay1"},
        "patient": {"reference": "Patient/p1"},
        "request": {"type": "Claim", "identifier": {"system": "urn:pms:claim", "value": "PCN-77"}},
        "payment": {"amount": {"value": 150.0}},
    }
    rows = _rows(tmp_path, _bundle(claim, response))
    assert rows["claims"][0]["claim_id"] == "CLM1" and rows["claims"][0]["claim_number"] == "PCN-77"
    assert {r["claim_id"] for r in rows["remittances"]} == {"CLM1"}


def test_a_patient_named_by_identifier_keeps_that_value_whatever_the_file_holds(tmp_path):
    """Only a Claim named by identifier takes the resource's id (a payer's ClaimResponse): an Appointment naming its
    patient by MRN lands the MRN whether or not the Patient is in the same file, as before, so one patient's
    events never split between two ids by how the files were packaged."""
    by_mrn = {"type": "Patient", "identifier": {"system": "urn:mrn", "value": "P100"}}
    appointment = {
        "resourceType": "Appointment",
        "id": "a1",
        "status": "booked",
        "start": "2024-03-05T15:00:00Z",
        "end": "2024-03-05T15:45:00Z",
        "created": "2024-03-01T10:00:00Z",
        "participant": [{"actor": by_mrn, "status": "accepted"}],
    }
    patient = {"resourceType": "Patient", "id": "abc", "identifier": [{"system": "urn:mrn", "value": "P100"}]}
    alone = _rows(tmp_path, _bundle(appointment))["scheduling_events"]
    together = _rows(tmp_path, _bundle(appointment, patient))["scheduling_events"]
    assert {r["patient_id"] for r in alone} == {r["patient_id"] for r in together} == {"P100"}
