"""FHIR / X12 files beyond the corpus: refusals with the fix, NDJSON, duplicates, complete resources land."""

from __future__ import annotations

import json
from pathlib import Path

from ingest_helpers import query, table_count

from ingestion.loader import ingest
from tests.interop.fhir_bundles import REFERRAL_AND_VISIT

CORPUS = Path("/work/shared/interop")  # as in conftest.py (not imported: tests/ingestion has a conftest too)

MANAGED_CARE = CORPUS / "x12/835_005010X221A1/managed-care.835"
FHIR = CORPUS / "fhir-r4-examples"


def _by_name(results):
    out = {}
    for r in results:
        out.setdefault(Path(r.file).name, []).append(r)
    return out


def test_truncated_and_garbled_x12_are_refused_while_others_load(home, tmp_path):
    text = MANAGED_CARE.read_text()
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "truncated.835").write_text(text[: int(len(text) * 0.6)])
    (folder / "garbled.835").write_text(text.replace("CLP*8765432112", "%%%*8765432112"))
    (folder / "not_x12.edi").write_text("hello, this is not an interchange\n")
    (folder / "managed-care.835").write_text(text)
    results = _by_name(ingest([folder], home))
    [truncated], [garbled], [not_x12] = results["truncated.835"], results["garbled.835"], results["not_x12.edi"]
    assert truncated.status == "refused" and "truncated.835" in truncated.message
    assert "ends without the IEA trailer" in truncated.message and "Export the file again" in truncated.message
    assert garbled.status == "refused" and "garbled" in garbled.message and "segment 20" in garbled.message
    assert not_x12.status == "refused" and "not an X12 interchange" in not_x12.message
    [good] = results["managed-care.835"]
    assert good.status == "loaded" and good.rows_landed == 7  # every CLP payment and CAS adjustment of the file
    assert table_count(home, "remittances") == 7  # nothing of the refused files landed


def test_invalid_json_and_non_fhir_json_are_refused_while_others_load(home, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    patient = (FHIR / "ServiceRequest-physical-therapy.json").read_text()
    (folder / "cut.json").write_text(patient[:200])
    (folder / "plain.json").write_text('{"hello": "world"}')
    (folder / "claimresponse.json").write_text((FHIR / "ClaimResponse-R3500.json").read_text())
    results = _by_name(ingest([folder], home))
    [cut], [plain] = results["cut.json"], results["plain.json"]
    assert cut.status == "refused" and "cut.json is not valid JSON (line" in cut.message
    assert "Export it again as FHIR R4 JSON" in cut.message
    assert plain.status == "refused" and "not a FHIR resource" in plain.message
    assert results["claimresponse.json"][0].rows_landed == 2


def test_same_835_content_in_a_new_envelope_is_all_duplicates(home, tmp_path):
    ingest([MANAGED_CARE], home)
    resent = tmp_path / "resent.835"
    resent.write_text(MANAGED_CARE.read_text().replace("000000907", "000000908"))  # new ISA13/IEA02 control
    [result] = ingest([resent], home)
    assert (result.status, result.rows_landed, result.rows_duplicate, result.rows_quarantined) == ("loaded", 0, 7, 0)


def test_ndjson_bulk_export_lines_and_bad_line(home, tmp_path):
    resources = [
        json.loads((FHIR / n).read_text())
        for n in ("ServiceRequest-physical-therapy.json", "Observation-bmi.json", "ClaimResponse-R3502.json")
    ]
    good = tmp_path / "bulk.ndjson"
    good.write_text("\n".join(json.dumps(r) for r in resources) + "\n")
    bad = tmp_path / "bad.ndjson"
    bad.write_text(json.dumps(resources[0]) + "\n{not json\n")
    results = _by_name(ingest([good, bad], home))
    assert {r.source: r.rows_read for r in results["bulk.ndjson"]} == {"intake_events": 1, "remittances": 2}
    assert all("Observation x1" in r.message for r in results["bulk.ndjson"])
    assert query(home, "SELECT DISTINCT _line FROM raw.remittances") == [(3,)]
    assert query(home, "SELECT line FROM raw._quarantine WHERE source = 'intake_events'") == [(1,)]
    [refused] = results["bad.ndjson"]
    assert refused.status == "refused" and "bad.ndjson is not valid JSON (line 2" in refused.message


def test_complete_fhir_resources_land_typed(home, tmp_path):
    """A Bundle carrying what the contracts need lands like a CSV row (references resolved in the Bundle)."""
    bundle = REFERRAL_AND_VISIT
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    results = {r.source: r for r in ingest([path], home)}
    assert {s: (r.rows_landed, r.rows_quarantined) for s, r in results.items()} == {
        "intake_events": (1, 0),
        "scheduling_events": (1, 0),
        "referring_physicians": (0, 1),  # the requester (NPI) has no NUCC taxonomy: specialty required
    }
    assert query(
        home,
        "SELECT referral_id, patient_id, clinic_id, source_type, referring_physician_id, icd10_code, "
        "event_at::VARCHAR, _line FROM raw.intake_events",
    ) == [
        (
            "sr1",
            "p1",
            "clinic1",
            "physician",
            "1234567893",
            "M17.0",
            "2024-03-01 09:15:00",
            2,
        )
    ]
    assert query(
        home,
        "SELECT event_type, episode_id, referral_id, therapist_id, duration_min, visit_type, "
        "scheduled_start::VARCHAR FROM raw.scheduling_events",
    ) == [
        (
            "completed",
            "e1",
            "sr1",
            "t1",
            45,
            "follow_up",
            "2024-03-08 09:00:00",
        )
    ]
    assert "Practitioner" not in results["intake_events"].message  # mapped now (referring_physicians)


def test_discovery_and_dispatch_agree_on_suffixes():
    from ingestion.files import READABLE_SUFFIXES
    from ingestion.interop import SUFFIXES

    assert set(READABLE_SUFFIXES) == {".csv", *SUFFIXES}


def _patient(pid: str, name: dict) -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"lastUpdated": "2024-11-01T13:59:58Z"},
        "name": [name],
        "gender": "male",
        "birthDate": "2006-12-19",
    }


def test_fhir_names_given_as_a_string_or_family_as_a_list_land_whole(home, tmp_path):
    """`given: "Jerry"` is one given name (never its first letter 'J'); a DSTU2-style `family: ["Luna"]` is
    Luna (never the text "['Luna']"); a name part that is not text gives no name (a required first name is
    quarantined). Both readers: a single resource (JSON) and a Bulk NDJSON file."""
    patients = [
        _patient("p1", {"family": "Luna", "given": "Jerry"}),
        _patient("p2", {"family": ["Luna"], "given": ["Jerry", "Q"]}),
        _patient("p3", {"family": ["van", "Dyke"], "given": ["Ann"]}),
        _patient("p4", {"family": "Green", "given": [7]}),
    ]
    single = tmp_path / "single"
    single.mkdir()
    (single / "Patient-p2.json").write_text(json.dumps(patients[1]))
    bulk = tmp_path / "bulk"
    bulk.mkdir()
    (bulk / "Patient.000.ndjson").write_text("\n".join(json.dumps(p) for p in patients) + "\n")
    for folder in (single, bulk):
        ingest([folder], home)
    assert query(home, "SELECT _load_id, patient_id, first_name, last_name FROM raw.patients ORDER BY ALL") == [
        (1, "p2", "Jerry", "Luna"),
        (2, "p1", "Jerry", "Luna"),
        (2, "p3", "Ann", "van Dyke"),
    ]  # p2 again in the Bulk file is a duplicate of load 1
    assert query(home, "SELECT load_id, line, rule, column_name FROM raw._quarantine") == [
        (2, 4, "required", "first_name")
    ]
