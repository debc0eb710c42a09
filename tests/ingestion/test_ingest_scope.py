"""Uploads limited to some clinics (review: a clinic-scoped manager could upload, and get served, any clinic's data).

`ingest(..., clinics=[...])` / `ptpulse ingest --clinics` is what the app's Upload page runs for a user limited to some
clinics: rows of other clinics, and rows naming a record kept at another clinic (an appointment, its event ids, an
episode, a referral, a claim) or a patient / therapist known only there, are quarantined as `outside_upload_scope`
(counted: rows read = landed + quarantined + duplicate; the detail names the column, never a value); sources without
a clinic column and FHIR / X12 files are refused whole. A load of every clinic is unchanged, and can still land what a
limited upload set aside (the same bytes are not skipped)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zipfile

import pytest
from ingest_helpers import example_row, query, write_csv

from ingestion.loader import LOADED, REFUSED, ingest

RULE = "outside_upload_scope"


def _event(event_id: str, appointment: str, patient: str, clinic: str, therapist: str, **extra) -> dict[str, str]:
    return example_row(
        "scheduling_events",
        event_id=event_id,
        appointment_id=appointment,
        episode_id=f"EP-{appointment}",
        referral_id=f"RF-{appointment}",
        patient_id=patient,
        clinic_id=clinic,
        therapist_id=therapist,
        **extra,
    )


BASE = [
    _event("E1", "A1", "P1", "CL001", "T1"),  # CL001's appointment, patient, therapist
    _event("E2", "A2", "P2", "CL002", "T2"),  # CL002's
]


@pytest.fixture
def practice(home, exports):
    """Two clinics landed by a load of every clinic (what the nightly refresh lands)."""
    base = exports / "base"
    write_csv(base, "scheduling_events.csv", BASE)
    write_csv(base, "patients.csv", [example_row("patients", patient_id=p) for p in ("P1", "P2", "P3")])
    assert {r.status for r in ingest([base], home)} == {LOADED}
    return home


def _mixed(exports):
    """A CL002 manager's scheduling export with rows the CL002 scope may land and rows it may not."""
    rows = [
        _event("E3", "A2", "P2", "CL002", "T2", event_type="cancelled"),  # own appointment: lands
        _event("E4", "A1", "P1", "CL001", "T1", event_type="cancelled"),  # another clinic's row (the review's repro)
        _event("E5", "A1", "P2", "CL002", "T2", event_type="cancelled"),  # CL001's appointment moved to CL002
        _event("E1", "A7", "P2", "CL002", "T2"),  # a new version of CL001's event E1
        _event("E6", "A9", "P1", "CL002", "T2"),  # a patient seen only at CL001
        _event("E7", "A10", "P3", "CL002", "T2"),  # a registered patient seen at no clinic yet
        _event("E8", "A11", "P9", "CL002", "T1"),  # a therapist known only at CL001
        _event("E9", "A12", "P9", "CL002", "T2"),  # a patient new to PT Pulse at the own clinic: lands
        _event("E10", "A13", "P2", "CL001", "T1", duration_min="999"),  # a broken rule reports itself first
        BASE[1],  # sent again: a duplicate
    ]
    return write_csv(exports / "up", "scheduling_events_oakpark.csv", rows)


def test_a_limited_upload_lands_only_its_clinics_rows_and_sets_the_others_aside(practice, exports):
    path = _mixed(exports)
    (result,) = ingest([path], practice, clinics=["CL002"])
    assert result.status == LOADED and result.upload_scope == "CL002"
    assert result.rows_read == 10 == result.rows_landed + result.rows_quarantined + result.rows_duplicate
    assert (result.rows_landed, result.rows_quarantined, result.rows_duplicate) == (2, 7, 1)
    landed = {
        r[0] for r in query(practice, "SELECT event_id FROM raw.scheduling_events WHERE _load_id = ?", [result.load_id])
    }
    assert landed == {"E3", "E9"}
    # CL001's appointment is untouched: no cancel, no move to CL002
    assert query(practice, "SELECT count(*) FROM raw.scheduling_events WHERE appointment_id = 'A1'")[0][0] == 1

    rows = query(
        practice,
        "SELECT line, rule, column_name, detail FROM raw._quarantine WHERE load_id = ? ORDER BY line",
        [result.load_id],
    )
    got = {line: (rule, column) for line, rule, column, _ in rows}
    assert got == {
        3: (RULE, "clinic_id"),
        4: (RULE, "appointment_id"),
        5: (RULE, "event_id"),
        6: (RULE, "patient_id"),
        7: (RULE, "patient_id"),
        8: (RULE, "therapist_id"),
        10: ("above_max", "duration_min"),
    }
    details = " ".join(d for *_, d in rows)
    assert "administrator" in details
    for value in ("CL001", "CL002", "A1", "E1", "P1", "P3", "T1"):  # never a value, nor the scope's clinics
        assert value not in details
    message = query(practice, "SELECT message FROM raw._loads WHERE load_id = ?", [result.load_id])[0][0]
    assert "upload limited to 1 clinic(s)" in message and "CL00" not in message


def test_sources_without_a_clinic_and_fhir_x12_files_are_refused_for_a_limited_upload(practice, exports):
    up = exports / "up"
    write_csv(up, "patients.csv", [example_row("patients", patient_id="P1", phone="312-555-0199")])
    write_csv(up, "payers.csv", [example_row("payers")])
    write_csv(up, "referring_physicians.csv", [example_row("referring_physicians")])
    write_csv(up, "remittances.csv", [example_row("remittances")])
    write_csv(up, "marketing_touches.csv", [example_row("marketing_touches")])
    (up / "Patient.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "P1"}) + "\n")
    (up / "remit.835").write_text("ISA*00*          *00*          *ZZ*A*ZZ*B*240101*1200*^*00501*1*0*P*:~")
    with gzip.open(up / "patients_more.csv.gz", "wt") as fh:
        fh.write((up / "patients.csv").read_text())
    with zipfile.ZipFile(up / "export.zip", "w") as zf:  # a zip: each member on its own
        zf.writestr("patients.csv", (up / "patients.csv").read_text().replace("0199", "0198"))
        lines = _mixed(exports).read_text().splitlines()
        zf.writestr("scheduling_events.csv", "\n".join(lines[:3]) + "\n")  # CL002's cancel, CL001's cancel
    before = query(practice, "SELECT count(*), max(phone) FROM raw.patients")[0]

    results = ingest([up], practice, clinics=["CL002"])
    by_file = {r.file.rsplit("/", 1)[-1]: r for r in results}
    refused = {name for name, r in by_file.items() if r.status == REFUSED}
    assert refused == {
        "patients.csv",
        "payers.csv",
        "referring_physicians.csv",
        "remittances.csv",
        "marketing_touches.csv",
        "Patient.ndjson",
        "remit.835",
        "patients_more.csv.gz",
        "export.zip!patients.csv",
    }, {n: (r.status, r.message) for n, r in by_file.items()}
    for name in refused:
        message = by_file[name].message
        assert "upload limited to some clinics cannot load it" in message and "administrator" in message, message
        assert by_file[name].upload_scope == "CL002"
    assert "no clinic column" in by_file["patients.csv"].message
    assert "FHIR and X12" in by_file["Patient.ndjson"].message and "FHIR and X12" in by_file["remit.835"].message
    member = by_file["export.zip!scheduling_events.csv"]  # the zip's clinic-carrying member is loaded, limited
    assert member.status == LOADED and member.upload_scope == "CL002"
    assert (member.rows_landed, member.rows_quarantined) == (1, 1)
    assert query(practice, "SELECT count(*), max(phone) FROM raw.patients")[0] == before
    landed = {r[0] for r in query(practice, "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'raw'")}
    assert not landed & {"payers", "referring_physicians", "remittances", "marketing_touches"}


def test_a_load_of_every_clinic_is_unchanged_and_lands_what_a_limited_upload_set_aside(practice, exports):
    path = _mixed(exports)
    (limited,) = ingest([path], practice, clinics=["CL002"])
    (again,) = ingest([path], practice, clinics=["CL002"])  # the same scope: the same bytes are skipped
    assert again.status == "skipped_same_hash"
    (admin,) = ingest([path], practice)  # every clinic: not skipped, the rows set aside land now
    assert admin.status == LOADED and admin.upload_scope is None
    assert admin.rows_read == admin.rows_landed + admin.rows_quarantined + admin.rows_duplicate
    assert admin.rows_quarantined == 1 and admin.rows_landed == 6 and admin.rows_duplicate == 3
    assert not query(practice, "SELECT * FROM raw._quarantine WHERE load_id = ? AND rule = ?", [admin.load_id, RULE])
    scopes = dict(query(practice, "SELECT load_id, upload_scope FROM raw._loads"))
    assert scopes[limited.load_id] == "CL002" and scopes[admin.load_id] is None
    # the cancel of CL001's appointment lands only now, by the administrator's load
    assert query(practice, "SELECT count(*) FROM raw.scheduling_events WHERE appointment_id = 'A1'")[0][0] == 3


def test_an_upload_limited_to_several_clinics_or_to_none(practice, exports):
    path = _mixed(exports)
    (both,) = ingest([path], practice, clinics=["CL002", "CL001"])
    assert both.upload_scope == "CL001,CL002" and both.rows_landed == 7
    # still set aside: the broken row, and the registered patient no clinic has seen yet (P3)
    assert both.rows_quarantined == 2
    (none,) = ingest(
        [write_csv(exports / "n", "scheduling_events.csv", [_event("E20", "A20", "P2", "CL002", "T2")])],
        practice,
        clinics=[],
    )
    assert none.upload_scope == "" and none.rows_landed == 0 and none.rows_quarantined == 1
    from ingestion.loader import upload_scope

    with pytest.raises(ValueError):
        upload_scope(["CL001,CL003"])  # never widened by a comma


def test_cli_clinics_option_reports_the_rule_and_column_without_values(practice, exports):
    path = _mixed(exports)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ptpulse.cli",
            "ingest",
            str(path),
            "--home",
            str(practice.home),
            "--json",
            "--clinics",
            "CL002",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    answer = json.loads(proc.stdout)
    (f,) = answer["files"]
    assert f["status"] == LOADED and f["rows_read"] == f["rows_landed"] + f["rows_quarantined"] + f["rows_duplicate"]
    rules = {(r["rule"], r["column"]): r["rows"] for r in f["quarantine_by_rule"]}
    assert rules[(RULE, "clinic_id")] == 1 and rules[(RULE, "patient_id")] == 2
    for value in ("CL001", "P1", "A1", "T1"):
        assert value not in proc.stdout.replace(str(practice.home), "").replace(str(path), "")


def test_therapists_and_clinics_rows_of_a_limited_upload(practice, exports):
    """Reference rows with a clinic: a manager adds their own clinic's therapist and edits their clinic's row, but
    neither re-homes another clinic's therapist nor gives their records another clinic's NPI (an NPI shared by two
    records maps to neither in the X12 / FHIR crosswalk)."""
    base = exports / "ref"
    write_csv(
        base, "therapists.csv", [example_row("therapists", therapist_id="T1", clinic_id="CL001", npi="1111111111")]
    )
    write_csv(
        base, "clinics.csv", [example_row("clinics", clinic_id=c, npi=f"{c[-1]}000000000") for c in ("CL001", "CL002")]
    )
    assert {r.status for r in ingest([base], practice)} == {LOADED}
    up = exports / "ref_up"
    therapists = write_csv(
        up,
        "therapists.csv",
        [
            example_row("therapists", therapist_id="T5", clinic_id="CL002", npi="5555555555"),  # a new hire: lands
            example_row("therapists", therapist_id="T1", clinic_id="CL002"),  # CL001's therapist re-homed
            example_row("therapists", therapist_id="T6", clinic_id="CL002", npi="1111111111"),  # CL001's NPI
        ],
    )
    clinics = write_csv(
        up,
        "clinics.csv",
        [
            example_row("clinics", clinic_id="CL002", clinic_name="Oak Park", npi="2000000000"),  # own row: lands
            example_row("clinics", clinic_id="CL001", clinic_name="Renamed"),  # another clinic's row
            example_row(
                "clinics", clinic_id="CL002", clinic_name="Oak Park", npi="1000000000", updated_at="2024-03-16 09:00:00"
            ),
        ],
    )
    by_source = {r.source: r for r in ingest([therapists, clinics], practice, clinics=["CL002"])}
    t, c = by_source["therapists"], by_source["clinics"]
    assert (t.rows_landed, t.rows_quarantined) == (1, 2) and (c.rows_landed, c.rows_quarantined) == (1, 2)
    rows = query(
        practice, "SELECT load_id, line, column_name FROM raw._quarantine WHERE rule = ? ORDER BY load_id, line", [RULE]
    )
    assert sorted(rows) == sorted(
        [(t.load_id, 3, "therapist_id"), (t.load_id, 4, "npi"), (c.load_id, 3, "clinic_id"), (c.load_id, 4, "npi")]
    )


def test_a_vendor_export_mapped_by_a_profile_is_limited_too(practice, exports):
    """WebPT appointments (ingestion/profiles/webpt_standard_extract.yml): the mapped rows go through the same
    checks; the profile's own exclusions are still counted as such."""
    from test_profiles import APPOINTMENT_COLUMNS, appointment

    rows = [
        appointment(appointmnet_id="101", clinic_id="CL002", patient_id="P2", therapist_id="T2",
                    start_date="2024-03-05 09:00:00", end_date="2024-03-05 09:45:00"),
        appointment(appointmnet_id="102", clinic_id="CL001", patient_id="P2", therapist_id="T2",
                    start_date="2024-03-05 10:00:00", end_date="2024-03-05 10:45:00"),
        appointment(appointmnet_id="103", clinic_id="CL002", patient_id="P2", therapist_id="T2",
                    appointment_status="Inactive", start_date="2024-03-05 11:00:00", end_date="2024-03-05 11:45:00"),
    ]  # fmt: skip
    path = write_csv(exports / "webpt", "appointments_export.csv", rows, APPOINTMENT_COLUMNS)
    (result,) = ingest([path], practice, clinics=["CL002"])
    assert result.profile == "webpt_standard_extract/appointments" and result.upload_scope == "CL002"
    assert result.rows_read == result.rows_landed + result.rows_quarantined + result.rows_duplicate
    rules = query(
        practice,
        "SELECT rule, column_name, count(*) FROM raw._quarantine WHERE load_id = ? GROUP BY ALL ORDER BY 1",
        [result.load_id],
    )
    # 101 lands (booked), 102 (booked, at CL001) is set aside, 103's unresolved cancel stays the contract's
    assert rules == [("not_accepted", "event_type", 1), (RULE, "clinic_id", 1)]
    landed = query(
        practice, "SELECT DISTINCT clinic_id FROM raw.scheduling_events WHERE _load_id = ?", [result.load_id]
    )
    assert landed == [("CL002",)]
