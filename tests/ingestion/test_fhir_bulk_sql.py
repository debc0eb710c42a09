"""FHIR Bulk files mapped in SQL inside the loader's raw.duckdb connection (ingestion/interop/fhir_fast.py):
legitimate shapes that used to fall back to the per-resource reader (a Claim without a facility), the rows
staged without leaving DuckDB (nothing left behind in raw.duckdb), and clinics.npi from the US NPI identifier."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import duckdb
import pytest

from ingestion.interop import TableRows, read_interop
from ingestion.interop import fhir_fast as FF
from ingestion.loader import ingest
from ptpulse.core.config import get_settings
from ptpulse.core.contracts import load_contracts

NPI = "http://hl7.org/fhir/sid/us-npi"
TZ = "http://hl7.org/fhir/StructureDefinition/timezone"


def _ndjson(path: Path, resources: list[dict]) -> None:
    path.write_text("\n".join(json.dumps(r, separators=(",", ":")) for r in resources) + "\n")


def _item(seq: int, charge_id: str, cpt: str, net: float) -> dict:
    return {
        "id": charge_id,
        "sequence": seq,
        "careTeamSequence": [1],
        "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": cpt}]},
        "servicedDate": "2026-03-02",
        "quantity": {"value": 1},
        "net": {"value": net, "currency": "USD"},
        "encounter": [{"reference": "Encounter/E1"}],
    }


def _claim(cid: str, **extra) -> dict:
    return {
        "resourceType": "Claim",
        "id": cid,
        "status": "active",
        "use": "claim",
        "patient": {"reference": "Patient/PT1"},
        "billablePeriod": {"start": "2026-03-02"},
        "created": "2026-03-03T15:00:00Z",
        "insurer": {"reference": "Organization/PY1"},
        "careTeam": [{"sequence": 1, "provider": {"reference": "Practitioner/TH1"}}],
        "item": [_item(1, f"{cid}-1", "97110", 62.0), _item(2, f"{cid}-2", "97140", 60.5)],
        "total": {"value": 122.5, "currency": "USD"},
    } | extra


@pytest.fixture
def bulk(tmp_path: Path) -> Path:
    """A small `$export` folder: Claims with a facility, without one (provider Organization / Practitioner)."""
    folder = tmp_path / "export"
    folder.mkdir()
    _ndjson(
        folder / "Organization.000.ndjson",
        [
            {"resourceType": "Organization", "id": "ORG1", "name": "Riverside PT Group",
             "identifier": [{"system": NPI, "value": "1234567893"}],
             "type": [{"coding": [{"code": "prov"}]}]},
            {"resourceType": "Organization", "id": "PY1", "name": "Payer One",
             "type": [{"coding": [{"code": "pay"}]}]},
        ],
    )  # fmt: skip
    address = {"line": ["1 Main St"], "city": "Austin", "state": "TX", "postalCode": "78701"}
    _ndjson(
        folder / "Location.000.ndjson",
        [
            {"resourceType": "Location", "id": "CL1", "name": "Riverside North", "address": address,
             "extension": [{"url": TZ, "valueCode": "America/Chicago"}],
             "managingOrganization": {"reference": "Organization/ORG1"}},
            {"resourceType": "Location", "id": "CL2", "name": "Own NPI", "address": address,
             "identifier": [{"system": NPI, "value": "1999999992"}]},
            {"resourceType": "Location", "id": "CL3", "name": "Odd NPI", "address": address,
             "identifier": [{"system": NPI, "value": "12-34"}]},
        ],
    )  # fmt: skip
    _ndjson(
        folder / "Practitioner.000.ndjson",
        [{"resourceType": "Practitioner", "id": "TH1", "name": [{"family": "Lee", "given": ["Ana"]}],
          "qualification": [{"code": {"coding": [{"code": "DPT"}]}}]}],
    )  # fmt: skip
    _ndjson(
        folder / "Patient.000.ndjson",
        [{"resourceType": "Patient", "id": "PT1", "meta": {"lastUpdated": "2026-01-05T10:00:00Z"},
          "name": [{"family": " Roe ", "given": ["Jo  "]}],
          "birthDate": "1980-01-02", "gender": "female"}],
    )  # fmt: skip
    _ndjson(
        folder / "Encounter.000.ndjson",
        [{"resourceType": "Encounter", "id": "E1", "status": "finished", "class": {"code": "AMB"},
          "subject": {"reference": "Patient/PT1"},
          "participant": [{"individual": {"reference": "Practitioner/TH1"}}],
          "period": {"start": "2026-03-02T15:00:00Z", "end": "2026-03-02T15:45:00Z"},
          "location": [{"location": {"reference": "Location/CL1"}}]}],
    )  # fmt: skip
    appointment = {
        "resourceType": "Appointment", "id": "AP1", "status": "fulfilled", "meta": {"lastUpdated": "2026-03-02T16:00:00Z"},
        "start": "2026-03-02T15:00:00Z", "end": "2026-03-02T15:45:00Z", "minutesDuration": 45,
        "created": "2026-02-20T10:00:00Z",
        "participant": [{"actor": {"reference": "Patient/PT1"}}, {"actor": {"reference": "Practitioner/TH1"}},
                        {"actor": {"reference": "Location/CL1"}}],
    }  # fmt: skip
    no_id = {k: v for k, v in appointment.items() if k != "id"}  # no record id: quarantined by both readers
    _ndjson(folder / "Appointment.000.ndjson", [appointment, no_id, appointment | {"id": ""}])
    _ndjson(
        folder / "Claim.000.ndjson",
        [
            _claim("C1", facility={"reference": "Location/CL1"}),
            _claim("C2", provider={"reference": "Organization/ORG1"}),  # no facility: the provider is the clinic
            _claim("C3", provider={"reference": "Practitioner/TH1"}),  # no facility: the encounter's clinic
        ],
    )
    return folder


def _raw(home, sql: str) -> list[tuple]:
    con = duckdb.connect(str(home.raw_db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_claims_without_a_facility_are_mapped_in_sql_not_left_to_the_per_resource_reader(bulk, tmp_path):
    con = duckdb.connect()
    try:
        batch = read_interop(bulk / "Claim.000.ndjson", load_contracts(), con)
        assert set(batch.rows) == {"claims", "charges"}
        assert all(isinstance(rows, TableRows) for rows in batch.rows.values())  # nothing came back to Python
        for name in ("Claim.000.ndjson", "Appointment.000.ndjson"):  # no line is left to the per-resource reader
            assert FF.read_bulk(bulk / name, batch, con) == [], name
        claims = {row["claim_id"]: row for _, row in batch.rows["claims"]}
    finally:
        con.close()
    assert claims["C1"]["clinic_id"] == "CL1"
    assert claims["C2"]["clinic_id"] == "npi:1234567893"  # the provider Organization, by its NPI (as X12 names it)
    assert claims["C3"]["clinic_id"] is None  # the claim says no clinic; its charges take the encounter's
    # created 15:00Z in the encounter's clinic zone (America/Chicago, CST in March before the change)
    assert {c["submitted_at"] for c in claims.values()} == {"2026-03-03 09:00:00"}


def test_sql_and_per_resource_readers_land_the_same_rows_in_raw(bulk, tmp_path, monkeypatch):
    """The same landed rows whichever reader maps the folder; the SQL path leaves nothing in raw.duckdb (its
    tables and macros are TEMP in the loader's connection)."""
    homes = {}
    for mode in ("1", "0"):
        monkeypatch.setenv("PTPULSE_FHIR_FAST", mode)
        homes[mode] = get_settings(tmp_path / f"home{mode}").ensure()
        results = ingest([bulk], homes[mode])
        assert {r.status for r in results} == {"loaded"}
        assert all(r.rows_read == r.rows_landed + r.rows_quarantined + r.rows_duplicate for r in results)
    for table in ("claims", "charges", "scheduling_events", "patients"):
        sql = f"SELECT * EXCLUDE (_load_id, _row_hash) FROM raw.raw.{table} ORDER BY ALL"
        fast, slow = _raw(homes["1"], sql), _raw(homes["0"], sql)
        assert fast and fast == slow, table
    appointments = _raw(homes["1"], "SELECT DISTINCT appointment_id FROM raw.raw.scheduling_events ORDER BY 1")
    assert appointments == [("AP1",), ("E1",)]
    charges = dict(_raw(homes["1"], "SELECT charge_id, clinic_id FROM raw.raw.charges"))
    assert charges["C3-1"] == "CL1" and charges["C2-2"] == "npi:1234567893"
    left = _raw(
        homes["1"],
        "SELECT (SELECT count(*) FROM duckdb_tables() WHERE database_name = 'raw' AND schema_name <> 'raw'), "
        "(SELECT count(*) FROM duckdb_functions() WHERE database_name = 'raw' AND function_type = 'macro')",
    )
    assert left == [(0, 0)]


def test_clinic_npi_from_the_location_or_its_managing_organization(bulk):
    os.environ.pop("PTPULSE_FHIR_FAST", None)
    batch = read_interop(bulk / "Location.000.ndjson", load_contracts())
    npi = {row["clinic_id"]: row["npi"] for _, row in batch.rows["clinics"]}
    assert npi == {"CL1": "1234567893", "CL2": "1999999992", "CL3": None}
    assert any("not 10 digits" in note for note in batch.summary())  # counted, the value is never shown


def test_an_organization_that_is_the_clinic_carries_its_npi(tmp_path):
    folder = tmp_path / "org"
    folder.mkdir()
    _ndjson(
        folder / "Organization.000.ndjson",
        [{"resourceType": "Organization", "id": "ORG9", "name": "Solo PT",
          "identifier": [{"system": NPI, "value": "1234567893"}], "address": [{"city": "Austin", "state": "TX"}]}],
    )  # fmt: skip
    batch = read_interop(folder / "Organization.000.ndjson", load_contracts())
    [(_, row)] = batch.rows["clinics"]
    assert row["clinic_id"] == "npi:1234567893" and row["npi"] == "1234567893"


def test_the_byte_check_decides_what_the_sql_reads_without_reading_the_file_as_text(tmp_path):
    """`plain_lines` counts lines on bytes: CR, a BOM, a NUL byte or invalid UTF-8 send the file to fhir.py; a blank
    line is left to `_load` (DuckDB skips it, so its count falls short); `nul_free` sees a `\\u0000` escape even
    across the read chunk boundary, so the loader's NUL test is skipped only when no value can hold one."""
    line = b'{"resourceType":"Patient","id":"P1"}'
    cases = {
        "plain": (line + b"\n" + line + b"\n", 2),
        "no_final_newline": (line + b"\n" + line, 2),
        "cr": (line + b"\r\n" + line + b"\r\n", None),
        "bom": (b"\xef\xbb\xbf" + line + b"\n", None),
        "nul": (line[:-1] + b',"x":"\x00"}\n', None),
        "latin1": (line[:-1] + b',"x":"\xe9"}\n', None),
        "empty": (b"", None),
    }
    for name, (data, lines) in cases.items():
        path = tmp_path / f"{name}.ndjson"
        path.write_bytes(data)
        assert FF.plain_lines(path) == lines, name
    blank = tmp_path / "blank.ndjson"
    blank.write_bytes(line + b"\n\n" + line + b"\n")
    con = duckdb.connect()
    try:
        assert FF.plain_lines(blank) == 3
        assert not FF._load(con, blank, "Patient", "src", 3)  # noqa: SLF001 - DuckDB read 2: fhir.py maps it
    finally:
        con.close()
    escaped = tmp_path / "escaped.ndjson"
    pad = FF.PLAIN_CHUNK - 3 - len(line)  # the escape straddles the first chunk's end
    escaped.write_bytes(line + b"\n" + b'{"a":"' + b"x" * (pad - 6) + b'\\u0000"}\n')
    assert FF.plain_lines(escaped) == 2 and not FF.nul_free(escaped)
    assert FF.nul_free(tmp_path / "plain.ndjson")


def test_a_nul_escape_in_a_bulk_file_is_still_quarantined(bulk, tmp_path):
    """A `\\u0000` in a value of a file mapped in SQL reaches the loader's NUL rule (the byte check saw it)."""
    patients = bulk / "Patient.000.ndjson"
    _ndjson(patients, [{"resourceType": "Patient", "id": "PT1", "name": [{"family": "A\u0000B", "given": ["C"]}]}])
    assert not FF.nul_free(patients)
    home = get_settings(tmp_path / "home").ensure()
    results = [r for r in ingest([patients], home) if r.source == "patients"]
    assert [(r.rows_read, r.rows_quarantined) for r in results] == [(1, 1)]


def test_sql_shortcuts_land_what_the_per_resource_reader_lands(bulk, tmp_path, monkeypatch):
    """The SQL path's shortcuts give fhir.py's rows: values trimmed once in the mapping (every edge whitespace the
    contracts trim, all-space = empty), one regex per resource over all its references (an absolute one sends the
    resource to fhir.py), the care-team member found by position or else searched, UTC instants subtracted as
    plain timestamps (an offset instant takes the general path). The file's sha256 comes from the byte pass."""
    assert FF._space_only_folder(bulk)  # noqa: SLF001 - ASCII, no escape: values trimmed of spaces only
    _ndjson(
        bulk / "Patient.000.ndjson",
        [{"resourceType": "Patient", "id": "PT1", "name": [{"family": "\tRoe\u00a0", "given": ["   "]}],
          "telecom": [{"system": "phone", "value": " 555-0100 "}], "birthDate": "1980-01-02", "gender": "female",
          "address": [{"line": ["\u00a0"], "city": "\ufeffAustin ", "state": " TX", "postalCode": "78701"}]},
         {"resourceType": "Patient", "id": " PT2\t", "name": [{"family": "Poe", "given": ["Al"]}]}],
    )  # fmt: skip
    team = [{"sequence": 2, "provider": {"reference": "Practitioner/TH1"}},
            {"sequence": 1, "provider": {"reference": "Practitioner/TH9"}}]  # fmt: skip
    items = [_item(1, "C1-1", "97110", 62.0) | {"careTeamSequence": [2]}, _item(2, "C1-2", "97140", 60.5)]
    _ndjson(
        bulk / "Claim.000.ndjson",
        [_claim("C1", facility={"reference": "Location/CL1"}, careTeam=team, item=items,
                identifier=[{"system": "urn:pms", "value": ""}, {"system": "urn:pms", "value": "PCN-1"}]),
         _claim("C4", insurer={"reference": "http://example.org/fhir/Organization/PY1"})],
    )  # fmt: skip
    offset = {"resourceType": "Encounter", "id": "E2", "status": "finished", "class": {"code": "AMB"},
              "subject": {"reference": "Patient/PT1"}, "location": [{"location": {"reference": "Location/CL1"}}],
              "participant": [{"individual": {"reference": "Practitioner/TH1"}}],
              "period": {"start": "2026-03-03T10:00:00-05:00", "end": "2026-03-03T10:50:00-05:00"}}  # fmt: skip
    assert not FF._space_only_folder(bulk)  # noqa: SLF001 - a tab escape, a no-break space: the full trim
    encounters = bulk / "Encounter.000.ndjson"
    encounters.write_text(encounters.read_text() + json.dumps(offset) + "\n")
    homes = {}
    for mode in ("1", "0"):
        monkeypatch.setenv("PTPULSE_FHIR_FAST", mode)
        homes[mode] = get_settings(tmp_path / f"home{mode}").ensure()
        assert {r.status for r in ingest([bulk], homes[mode])} == {"loaded"}
    for table in ("claims", "charges", "scheduling_events", "patients", "_quarantine"):
        drop = "load_id" if table == "_quarantine" else "_load_id, _row_hash"
        sql = f"SELECT * EXCLUDE ({drop}) FROM raw.raw.{table} "
        fast, slow = _raw(homes["1"], sql + "ORDER BY ALL"), _raw(homes["0"], sql + "ORDER BY ALL")
        assert fast == slow, table
    records = _raw(homes["1"], "SELECT record FROM raw.raw._quarantine WHERE source = 'patients' ORDER BY 1")
    first, second = (json.loads(r) for (r,) in records)  # quarantined (no first name / birth date): as text
    assert {k: first[k] for k in ("first_name", "last_name", "phone", "address_line", "city", "state")} == {
        "first_name": None, "last_name": "Roe", "phone": "555-0100", "address_line": None, "city": "Austin",
        "state": "TX"}  # fmt: skip
    assert second["patient_id"] == "PT2"
    therapists = dict(_raw(homes["1"], "SELECT charge_id, therapist_id FROM raw.raw.charges"))
    assert therapists["C1-1"] == "TH1" and therapists["C1-2"] == "TH9"
    numbers = dict(_raw(homes["1"], "SELECT claim_id, claim_number FROM raw.raw.claims"))
    assert numbers["C1"] == "PCN-1"  # the first identifier with a value, in SQL (C1) as in fhir.py
    minutes = _raw(homes["1"], "SELECT appointment_id, duration_min FROM raw.raw.scheduling_events "
                   "WHERE appointment_id IN ('E1', 'E2') AND event_type = 'completed' ORDER BY 1")  # fmt: skip
    assert minutes == [("E1", 45), ("E2", 50)]
    con = duckdb.connect()
    try:
        batch = read_interop(bulk / "Claim.000.ndjson", load_contracts(), con)
        assert FF.read_bulk(bulk / "Claim.000.ndjson", batch, con) == [2]  # C4 (absolute reference): fhir.py's
    finally:
        con.close()
    for path in (bulk / "Claim.000.ndjson", tmp_path / "crlf.ndjson"):
        if not path.exists():
            path.write_bytes(b'{"resourceType":"Patient","id":"P1"}\r\n')
        assert FF.digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()
