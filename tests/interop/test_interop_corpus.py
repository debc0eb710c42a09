"""FHIR R4 and X12 readers against the real corpus in /work/shared/interop (never edited)."""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from ingest_helpers import query

from ingestion.interop import read_interop
from ingestion.loader import ingest
from ptpulse.core.contracts import load_contracts

CORPUS = Path("/work/shared/interop")  # as in conftest.py (not imported: tests/ingestion has a conftest too)

MANAGED_CARE = CORPUS / "x12/835_005010X221A1/managed-care.835"


def _corpus_files() -> list[Path]:
    """The files the corpus fixture ingests (`outside/` is other projects' exports: tests/ingestion hostile test)."""
    return sorted(
        p
        for p in CORPUS.rglob("*")
        if p.is_file() and p.name != "README.md" and p.relative_to(CORPUS).parts[0] != "outside"
    )


def test_every_corpus_file_is_audited_and_the_invariant_holds(corpus_home):
    settings, results = corpus_home
    assert all(r.status != "failed" for r in results)
    by_file = defaultdict(list)
    for r in results:
        by_file[Path(r.file).name].append(r)
        assert r.rows_read == r.rows_landed + r.rows_quarantined + r.rows_duplicate, r
    assert {p.name for p in _corpus_files()} <= set(by_file)
    refused = {name for name, rs in by_file.items() if any(r.status == "refused" for r in rs)}
    assert refused == {p.name for p in CORPUS.glob("x12/27*/*")}  # eligibility files: not a supported type
    # audit rows in raw match the results, one per file x target source
    audited = query(settings, "SELECT count(*), count(DISTINCT file) FROM raw._loads")[0]
    assert audited == (len(results), len(by_file))
    assert query(
        settings, "SELECT count(*) FROM raw._loads WHERE rows_read <> rows_landed + rows_quarantined + rows_duplicate"
    ) == [(0,)]


def test_every_fhir_and_x12_file_yields_rows_or_says_what_was_not_mapped():
    contracts = load_contracts()
    for path in sorted(CORPUS.glob("fhir-r4-examples/*.json")) + sorted(CORPUS.glob("x12/83*/*")):
        batch = read_interop(path, contracts)
        assert batch.rows or batch.ignored, path.name


def test_835_managed_care_lands_both_payments_for_their_claims(corpus_home):
    settings, _ = corpus_home
    rows = query(
        settings,
        "SELECT claim_id, amount_usd, check_number, event_at::DATE::VARCHAR, _line "
        "FROM raw.remittances WHERE event_type = 'payer_payment' AND claim_id IN "
        "('5554555444', '8765432112') ORDER BY claim_id",
    )
    assert rows == [
        ("5554555444", Decimal("450.00"), "7170066655", "2002-03-14", 13),
        ("8765432112", Decimal("495.00"), "7170066655", "2002-03-14", 20),
    ]
    assert sum(r[1] for r in rows) == Decimal("945.00")  # BPR02
    # the rest of each claim's adjudication, so billed = paid + adjustments + patient responsibility
    moved = query(
        settings,
        "SELECT claim_id, sum(amount_usd) FROM raw.remittances WHERE check_number = '7170066655' GROUP BY 1 ORDER BY 1",
    )
    quarantined = query(settings, "SELECT rule, detail FROM raw._quarantine WHERE file LIKE '%managed-care.835'")
    # CLP03 billed 800.00 = 450 paid + 300 PR-1 + 50 CO-A2; 1200.00 = 495 + 600 PR + 105 CO-A2/42
    assert moved == [("5554555444", Decimal("800.00")), ("8765432112", Decimal("1200.00"))]
    assert quarantined == []


def test_837p_billed_amount_is_the_sum_of_its_lines_and_cpts_reach_charges(corpus_home):
    settings, _ = corpus_home
    contracts = load_contracts()
    claims_seen = 0
    for path in sorted(CORPUS.glob("x12/837_005010X222A2/*.837")):
        batch = read_interop(path, contracts)
        for _, claim in batch.rows["claims"]:
            lines = [r for _, r in batch.rows["charges"] if r["claim_id"] == claim["claim_id"]]
            assert Decimal(claim["billed_usd"]) == sum(Decimal(r["charge_usd"]) for r in lines), path.name
            claims_seen += 1
    assert claims_seen == 18
    # in raw: the claim and its lines are kept, quarantined on patient_id: the patient is a dependent (2000C),
    # whom 837P names without a member id (a missing episode / appointment id no longer quarantines: dbt links)
    [(record, rule, column)] = query(
        settings,
        "SELECT record, rule, column_name FROM raw._quarantine "
        "WHERE source = 'claims' AND file LIKE '%demo.example1.837'",
    )
    assert json.loads(record)["billed_usd"] == "100.00" and (rule, column) == ("required", "patient_id")
    charges = [
        json.loads(r[0])
        for r in query(
            settings,
            "SELECT record FROM raw._quarantine WHERE source = 'charges' "
            "AND file LIKE '%demo.example1.837' ORDER BY line",
        )
    ]
    assert [c["cpt_code"] for c in charges] == ["99213", "87070", "99214", "86663"]
    assert sum(Decimal(c["charge_usd"]) for c in charges) == Decimal("100.00")
    assert {c["claim_id"] for c in charges} == {"26463774"}


def test_physical_therapy_service_request_becomes_a_received_intake_event(corpus_home):
    settings, _ = corpus_home
    [(line, rule, column, record)] = query(
        settings,
        "SELECT line, rule, column_name, record FROM raw._quarantine WHERE source = 'intake_events' "
        "AND file LIKE '%ServiceRequest-physical-therapy.json'",
    )
    event = json.loads(record)
    assert {
        k: event[k] for k in ("event_id", "referral_id", "patient_id", "event_type", "event_at", "intake_kind")
    } == {
        "event_id": "ServiceRequest/physical-therapy#received",
        "referral_id": "physical-therapy",
        "patient_id": "example",
        "event_type": "received",
        "event_at": "2016-09-20 00:00:00",
        "intake_kind": "referral",
    }
    # the HL7 example names no clinic (no locationReference, performer is a display only): quarantined, not guessed
    assert (line, rule, column, event["clinic_id"]) == (1, "required", "clinic_id", None)


def test_known_fhir_values(corpus_home):
    settings, _ = corpus_home
    [(record,)] = query(
        settings,
        "SELECT record FROM raw._quarantine WHERE source = 'intake_events' "
        "AND file LIKE '%ServiceRequest-physiotherapy.json'",
    )
    assert json.loads(record)["icd10_code"] == "E84.0"  # from the contained Condition of reasonReference
    appointments = query(
        settings,
        "SELECT rule, column_name, record FROM raw._quarantine WHERE source = 'scheduling_events' ORDER BY line",
    )
    # no episode id in these examples: it no longer quarantines (dbt links visits to episodes by date)
    assert {(r[0], r[1]) for r in appointments} == {("required", "clinic_id"), ("required", "event_at")}
    [example] = query(
        settings,
        "SELECT clinic_id, therapist_id, duration_min, visit_type, episode_id FROM raw.scheduling_events "
        "WHERE event_id LIKE '%Appointment/example#%'",
    )
    assert example == ("1", "example", 120, "follow_up", None)
    payments = query(
        settings,
        "SELECT claim_id, amount_usd, check_number FROM raw.remittances "
        "WHERE remit_id = 'ClaimResponse/R3500#payer_payment'",
    )
    assert payments == [
        ("http://www.BenefitsInc.com/fhir/oralhealthclaim/15476332402", Decimal("100.47"), "201408-2-1569478")
    ]


def test_reingesting_the_corpus_lands_nothing(corpus_home):
    settings, first = corpus_home
    again = ingest([CORPUS / "fhir-r4-examples", CORPUS / "x12"], settings)
    eligibility = {p.name for p in CORPUS.glob("x12/27*/*")}  # found in the folder by their ISA header
    assert {r.status for r in again if Path(r.file).name not in eligibility} == {"skipped_same_hash"}
    assert {Path(r.file).name for r in again if r.status == "refused"} == eligibility  # refused again, with why
    assert sum(r.rows_landed for r in again) == 0
    assert len(again) == len([r for r in first if r.status != "refused"]) + len(eligibility)
