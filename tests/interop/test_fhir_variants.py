"""FHIR R4 variants the readers used to get wrong (review s12), each through the real loader into a temp home, in
both the per-resource reader (fhir.py) and, for Bulk folders, the SQL one (fhir_fast.py), which must land the same
rows; money through a real dbt build:

- a transaction Bundle's POST entries named by `fullUrl` only (no `id`): keyed by that fullUrl, references to it
  meet them; a resource with neither is quarantined (never a shared `(no id)`);
- Claims `cancelled` / `draft` and ExplanationOfBenefits `cancelled` carry no money;
- a clinic's zone when its Location is not in the file: raw.clinics (or an earlier Location file), else the
  practice default zone; a mixed-type Bulk `export.ndjson` resolves like one file per type;
- money in exponent form (`1.5E2`) is a plain decimal;
- a PractitionerRole named as therapist stands for its practitioner.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from ingest_helpers import example_row, query, write_csv

from ingestion.interop import fhir as F
from ingestion.interop import read_interop
from ingestion.loader import ingest
from ptpulse.core.config import get_settings
from ptpulse.core.contracts import load_contracts

NPI = "http://hl7.org/fhir/sid/us-npi"
TZ = "http://hl7.org/fhir/StructureDefinition/timezone"
CPT = "http://www.ama-assn.org/go/cpt"
TABLES = ("patients", "claims", "charges", "remittances", "scheduling_events", "clinics", "therapists")


# --- helpers -----------------------------------------------------------------------------------------------------


def _bundle(*entries, kind: str = "collection") -> dict:
    """A Bundle of resources, or of (resource, fullUrl) pairs."""
    out = []
    for entry in entries:
        resource, url = entry if isinstance(entry, tuple) else (entry, None)
        out.append({"resource": resource} | ({"fullUrl": url} if url else {}))
    return {"resourceType": "Bundle", "type": kind, "entry": out}


def _write(path: Path, document: dict | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def _ndjson(path: Path, resources: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r, separators=(",", ":")) for r in resources) + "\n")
    return path


def _no_id(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k != "id"}


def _home(tmp_path: Path, name: str):
    return get_settings(tmp_path / name).ensure()


def _ingest(home, *paths: Path) -> list:
    results = ingest(list(paths), home)
    assert {r.status for r in results} <= {"loaded", "skipped_same_hash"}, [r.message for r in results]
    assert all(r.rows_read == r.rows_landed + r.rows_quarantined + r.rows_duplicate for r in results)
    return results


def _rows(home, table: str, columns: str = "*") -> list[tuple]:
    exclude = " EXCLUDE (_load_id, _row_hash)" if columns == "*" else ""
    try:
        return query(home, f"SELECT {columns}{exclude} FROM raw.{table} ORDER BY ALL")
    except duckdb.CatalogException:
        return []  # nothing of that source landed


def _quarantined(home, source: str) -> list[dict]:
    rows = query(home, "SELECT rule, column_name, record FROM raw._quarantine WHERE source = ? ORDER BY line", [source])
    return [{"rule": rule, "column": column} | json.loads(record) for rule, column, record in rows]


def _both_readers(tmp_path: Path, monkeypatch, *paths: Path) -> dict:
    """Ingest `paths` into one home per reader (PTPULSE_FHIR_FAST=1: Bulk files in SQL, 0: resource by resource);
    every raw table and the quarantine are the same in both. Returns the SQL reader's home and load results."""
    homes, results = {}, {}
    for mode in ("1", "0"):
        monkeypatch.setenv("PTPULSE_FHIR_FAST", mode)
        homes[mode] = _home(tmp_path, f"home{mode}")
        results[mode] = _ingest(homes[mode], *paths)
    monkeypatch.delenv("PTPULSE_FHIR_FAST")
    for table in TABLES:
        assert _rows(homes["1"], table) == _rows(homes["0"], table), table
    quarantine = "SELECT * EXCLUDE (load_id) FROM raw._quarantine ORDER BY ALL"
    assert query(homes["1"], quarantine) == query(homes["0"], quarantine)
    return {"home": homes["1"], "results": results["1"]}


def _messages(results) -> str:
    return " ".join(r.message or "" for r in results)


def _mart(home, sql: str) -> list[tuple]:
    con = duckdb.connect(str(home.home / "analytics.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _claim(cid: str, total, *items: dict, **extra) -> dict:
    return {
        "resourceType": "Claim",
        "id": cid,
        "status": "active",
        "use": "claim",
        "created": "2024-06-07T12:00:00-05:00",
        "billablePeriod": {"start": "2024-06-06"},
        "patient": {"reference": "Patient/p1"},
        "provider": {"reference": "Organization/org1"},
        "insurer": {"reference": "Organization/pay1"},
        "total": {"value": total, "currency": "USD"},
        "item": list(items),
    } | extra


def _item(seq: int, net, cpt: str = "97110", **extra) -> dict:
    return {
        "sequence": seq,
        "productOrService": {"coding": [{"system": CPT, "code": cpt}]},
        "servicedDate": "2024-06-06",
        "quantity": {"value": 1},
        "net": {"value": net},
    } | extra


def _eob(eid: str, claim: str, paid, status: str = "active", **extra) -> dict:
    return {
        "resourceType": "ExplanationOfBenefit",
        "id": eid,
        "status": status,
        "use": "claim",
        "outcome": "complete",
        "created": "2024-06-20T10:00:00-05:00",
        "claim": {"reference": f"Claim/{claim}"},
        "insurer": {"reference": "Organization/pay1"},
        "payment": {"date": "2024-06-20", "amount": {"value": paid}},
        "total": [{"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": 200}}],
    } | extra


ORG = {
    "resourceType": "Organization",
    "id": "org1",
    "name": "PT Clinic",
    "identifier": [{"system": NPI, "value": "1234567893"}],
    "address": [{"city": "Town", "state": "NY"}],
}
LOCATION = {
    "resourceType": "Location",
    "id": "loc1",
    "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
    "name": "Main Clinic",
    "extension": [{"url": TZ, "valueCode": "America/Chicago"}],
    "address": {"line": ["1 Main"], "city": "Chicago", "state": "IL", "postalCode": "60601"},
}
PRACTITIONER = {
    "resourceType": "Practitioner",
    "id": "pt1",
    "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
    "name": [{"family": "Smith", "given": ["Ann"]}],
    "identifier": [{"system": NPI, "value": "1111111111"}],
    "qualification": [{"code": {"coding": [{"code": "PT"}]}}],
}


def _appointment(aid: str, clinic: str = "Location/loc1", therapist: str = "Practitioner/pt1") -> dict:
    """Booked 15:00Z, starting 14:00Z (09:00 in Chicago, CDT)."""
    return {
        "resourceType": "Appointment",
        "id": aid,
        "status": "booked",
        "created": "2024-05-20T15:00:00Z",
        "start": "2024-06-03T14:00:00Z",
        "minutesDuration": 45,
        "participant": [
            {"actor": {"reference": "Patient/p1"}, "status": "accepted"},
            {"actor": {"reference": clinic}, "status": "accepted"},
            {"actor": {"reference": therapist}, "status": "accepted"},
        ],
    }


def _encounter(eid: str, appointment: str, clinic: str = "Location/loc1", therapist: str = "Practitioner/pt1") -> dict:
    """The same 14:00Z written with +05:30 (19:30 wall clock): 09:00 in Chicago."""
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "appointment": [{"reference": f"Appointment/{appointment}"}],
        "participant": [{"type": [{"coding": [{"code": "PPRF"}]}], "individual": {"reference": therapist}}],
        "period": {"start": "2024-06-03T19:30:00+05:30", "end": "2024-06-03T20:15:00+05:30"},
        "location": [{"location": {"reference": clinic}}],
    }


def _events(home) -> dict[str, tuple]:
    return {
        event: (str(at), str(start))
        for event, at, start in _rows(home, "scheduling_events", "event_id, event_at, scheduled_start")
    }


CHICAGO = {  # the instants above, in America/Chicago
    "booked": ("2024-05-20 10:00:00", "2024-06-03 09:00:00"),
    "arrived": ("2024-06-03 09:00:00", "2024-06-03 09:00:00"),
    "completed": ("2024-06-03 09:45:00", "2024-06-03 09:00:00"),
}


# --- 2 + 3: identity and status, through a dbt build ----------------------------------------------------------

TXN = _bundle(
    (
        {"resourceType": "Patient", "meta": {"lastUpdated": "2024-01-01T10:00:00Z"}, "birthDate": "1980-01-01",
         "name": [{"family": "Alpha", "given": ["Ann"]}], "gender": "female"},
        "urn:uuid:11111111-1111-1111-1111-111111111111",
    ),
    (
        {"resourceType": "Patient", "meta": {"lastUpdated": "2024-01-01T10:00:00Z"}, "birthDate": "1975-05-05",
         "name": [{"family": "Beta", "given": ["Bob"]}], "gender": "male"},
        "urn:uuid:22222222-2222-2222-2222-222222222222",
    ),
    (
        _no_id(_claim("x", 100.00, _item(1, 100.00), created="2024-01-10T09:00:00Z",
                      billablePeriod={"start": "2024-01-05"},
                      patient={"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"},
                      provider={"reference": "urn:uuid:44444444-4444-4444-4444-444444444444"},
                      insurer={"display": "Acme"})),
        "urn:uuid:33333333-3333-3333-3333-333333333333",
    ),
    (
        _no_id(_claim("x", 80.00, _item(1, 80.00, "97140"), created="2024-01-11T09:00:00Z",
                      billablePeriod={"start": "2024-01-06"},
                      patient={"reference": "urn:uuid:22222222-2222-2222-2222-222222222222"},
                      provider={"reference": "urn:uuid:44444444-4444-4444-4444-444444444444"},
                      insurer={"display": "Acme"})),
        "urn:uuid:55555555-5555-5555-5555-555555555555",
    ),
    (
        {"resourceType": "Organization", "name": "PT Clinic", "identifier": [{"system": NPI, "value": "1234567893"}]},
        "urn:uuid:44444444-4444-4444-4444-444444444444",
    ),
    kind="transaction",
)  # fmt: skip

STATUSES = _bundle(
    ORG,
    _claim("c-active", 200.0, _item(1, 200.0)),
    _claim("c-cancelled", 300.0, _item(1, 300.0), status="cancelled"),
    _claim("c-draft", 400.0, _item(1, 400.0), status="draft"),
    _eob("eob-old", "c-active", 100.0, status="cancelled"),  # withdrawn: replaced by eob-new
    _eob("eob-new", "c-active", 90.0, created="2024-06-25T10:00:00-05:00"),
)


@pytest.fixture(scope="module")
def money_build(tmp_path_factory):
    """The transaction Bundle and the statuses Bundle ingested into one home and built with the real dbt project."""
    from ptpulse.build.orchestrate import build

    folder = tmp_path_factory.mktemp("money_files")
    txn = _write(folder / "txn.json", TXN)
    statuses = _write(folder / "statuses.json", STATUSES)
    home = get_settings(tmp_path_factory.mktemp("money_home")).ensure()
    results = _ingest(home, txn, statuses)
    built = build(home)
    assert built.ok, built.message
    return home, results


def test_transaction_bundle_entries_named_by_fullurl_are_keyed_by_it(money_build):
    """POST entries without `id` (allowed in a transaction): each Patient and Claim is its fullUrl, references by
    that urn:uuid meet them, and the build bills two claims, $180 (before: both `(no id)`, one claim of $80)."""
    home, _ = money_build
    patients = {pid: last for pid, last in _rows(home, "patients", "patient_id, last_name")}
    assert patients == {
        "urn:uuid:11111111-1111-1111-1111-111111111111": "Alpha",
        "urn:uuid:22222222-2222-2222-2222-222222222222": "Beta",
    }
    claims = _rows(home, "claims", "claim_id, patient_id, clinic_id, billed_usd")
    assert [(c[1], c[2], c[3]) for c in claims if c[0].startswith("urn:")] == [
        ("urn:uuid:11111111-1111-1111-1111-111111111111", "npi:1234567893", Decimal("100.00")),
        ("urn:uuid:22222222-2222-2222-2222-222222222222", "npi:1234567893", Decimal("80.00")),
    ]
    charges = _rows(home, "charges", "charge_id, claim_id")
    assert (
        "Claim/urn:uuid:33333333-3333-3333-3333-333333333333#item1",
        "urn:uuid:33333333-3333-3333-3333-333333333333",
    ) in charges
    built = _mart(
        home,
        "SELECT count(*), sum(billed_usd) FROM marts.claims WHERE claim_id LIKE 'urn:uuid:%'",
    )
    assert built == [(2, Decimal("180.00"))]


def test_cancelled_and_draft_claims_and_a_cancelled_eob_carry_no_money(money_build):
    """A draft or cancelled Claim was never billed, a cancelled EOB was withdrawn (its replacement pays): the build
    bills c-active alone, paid $90, $110 open (before: $900 billed, $190 paid, the cancelled EOB counted twice).
    The cancelled Claim lands as a voided claim: billed 0, its $300 in voided_usd, closed (test_claim_voids_billing.py)."""
    home, results = money_build
    claims = _mart(
        home,
        "SELECT claim_id, claim_status, billed_usd, voided_usd, payer_paid_usd, insurance_balance_usd, ar_age_bucket "
        "FROM marts.claims WHERE claim_id LIKE 'c-%' ORDER BY 1",
    )
    assert claims == [
        ("c-active", "submitted", Decimal("200.00"), Decimal("0.00"), Decimal("90.00"), Decimal("110.00"), "0-30"),
        ("c-cancelled", "voided", Decimal("0.00"), Decimal("300.00"), Decimal("0.00"), Decimal("0.00"), "closed"),
    ]
    assert _rows(home, "remittances", "remit_id") == [("ExplanationOfBenefit/eob-new#payer_payment",)]
    message = _messages(r for r in results if r.source == "claims" and "statuses" in r.file)
    assert f"{F.VOIDED} x1" in message and "status draft) x1" in message
    assert "FHIR ExplanationOfBenefit (use claim, status cancelled) x1" in message
    assert "c-draft" not in message  # counted by status, never by value


def test_bulk_claims_and_eobs_skip_draft_and_cancelled_in_both_readers(tmp_path, monkeypatch):
    folder = tmp_path / "export"
    _ndjson(folder / "Organization.000.ndjson", [ORG])
    _ndjson(
        folder / "Claim.000.ndjson",
        [
            _claim("c-active", 200.0, _item(1, 200.0)),
            _claim("c-cancelled", 300.0, _item(1, 300.0), status="cancelled"),
            _claim("c-draft", 400.0, _item(1, 400.0), status="draft"),
        ],
    )
    _ndjson(
        folder / "ExplanationOfBenefit.000.ndjson",
        [_eob("eob-old", "c-active", 100.0, status="cancelled"), _eob("eob-draft", "c-active", 5.0, status="draft"),
         _eob("eob-new", "c-active", 90.0)],
    )  # fmt: skip
    out = _both_readers(tmp_path, monkeypatch, folder)
    home = out["home"]
    assert _rows(home, "claims", "claim_id, status") == [("c-active", None), ("c-cancelled", "voided")]
    assert _rows(home, "charges", "claim_id") == [("c-active",)]
    assert _rows(home, "remittances", "remit_id, amount_usd") == [
        ("ExplanationOfBenefit/eob-new#payer_payment", Decimal("90.00"))
    ]
    message = _messages(out["results"])
    assert "Claim (use claim, status cancelled) x1" not in message and "status draft) x1" in message
    assert "ExplanationOfBenefit (use claim, status cancelled) x1" in message


def test_a_resource_nothing_identifies_is_quarantined_never_landed_under_a_shared_placeholder(tmp_path, monkeypatch):
    """No `id` and no fullUrl (a Bundle entry without either, any NDJSON line without id): its rows have no id,
    so they are quarantined `required` and the load message says why; before, all of them landed as `(no id)`."""
    anonymous = [
        {"resourceType": "Patient", "meta": {"lastUpdated": "2024-01-01T10:00:00Z"}, "birthDate": "1980-01-01",
         "name": [{"family": family, "given": ["Jo"]}], "gender": "female"}
        for family in ("Alpha", "Beta")
    ]  # fmt: skip
    bundle = _write(tmp_path / "files" / "anonymous.json", _bundle(*anonymous))
    folder = tmp_path / "export"
    _ndjson(folder / "Location.000.ndjson", [LOCATION])
    _ndjson(folder / "Practitioner.000.ndjson", [PRACTITIONER])
    named = _appointment("a1")
    _ndjson(folder / "Appointment.000.ndjson", [_no_id(named), named | {"id": ""}, named])
    _ndjson(folder / "Organization.000.ndjson", [ORG])
    lines = [_item(1, 60.0, id="CHG-1")]  # the practice's charge id: still no line without its claim
    _ndjson(folder / "Claim.000.ndjson", [_no_id(_claim("x", 60.0, *lines)), _claim("c1", 60.0, _item(1, 60.0))])
    out = _both_readers(tmp_path, monkeypatch, bundle, folder)
    home = out["home"]
    assert _rows(home, "patients") == []
    assert [(q["rule"], q["column"], q["patient_id"]) for q in _quarantined(home, "patients")] == [
        ("required", "patient_id", None),
        ("required", "patient_id", None),
    ]
    assert _rows(home, "scheduling_events", "DISTINCT appointment_id") == [("a1",)]
    assert {(q["rule"], q["appointment_id"]) for q in _quarantined(home, "scheduling_events")} == {("required", None)}
    assert _rows(home, "claims", "claim_id") == [("c1",)]
    assert _rows(home, "charges", "charge_id") == [("Claim/c1#item1",)]
    assert [(q["rule"], q["charge_id"], q["claim_id"]) for q in _quarantined(home, "charges")] == [
        ("required", None, None)
    ]
    loads = {(Path(r.file).name, r.source): r.message for r in out["results"]}
    assert "FHIR Patient without id or fullUrl" in loads[("anonymous.json", "patients")]
    assert "FHIR Appointment without id or fullUrl" in loads[("Appointment.000.ndjson", "scheduling_events")]
    assert "x2" in loads[("Appointment.000.ndjson", "scheduling_events")]


# --- 4: the clinic's zone whatever the packaging -----------------------------------------------------------------


def test_a_clinic_in_raw_clinics_gives_its_zone_to_files_without_its_location(tmp_path, monkeypatch):
    """The practice's clinics list (CSV) lands first; a FHIR Bundle and a Bulk folder naming Location/CL9 without
    holding it convert their instants to that clinic's zone, as they would with the Location in the file (before:
    `Z` stayed UTC, `+05:30` kept its wall clock: one instant 5.5 hours apart)."""
    exports = tmp_path / "0_reference"  # the loader takes files in sorted order: the clinics list first
    clinic = example_row("clinics", clinic_id="CL9", timezone="America/Chicago", npi="1234567893")
    clinics = write_csv(exports, "clinics.csv", [clinic])
    late = {"created": "2024-06-07T01:00:00Z"}  # 20:00 on the 6th in Chicago
    bundle = _write(
        tmp_path / "files" / "visits.json",
        _bundle(
            PRACTITIONER,
            _appointment("ap1", "Location/CL9"),
            _encounter("en1", "ap1", "Location/CL9"),
            ORG,  # no zone of its own: the clinic with its NPI (npi:1234567893) has one
            _claim("c1", 50, _item(1, 50), **late),
        ),
    )
    folder = tmp_path / "export"
    _ndjson(folder / "Practitioner.000.ndjson", [PRACTITIONER])
    _ndjson(folder / "Organization.000.ndjson", [ORG])
    _ndjson(folder / "Appointment.000.ndjson", [_appointment("ap2", "Location/CL9")])
    _ndjson(folder / "Encounter.000.ndjson", [_encounter("en2", "ap2", "Location/CL9")])
    _ndjson(folder / "Claim.000.ndjson", [_claim("c2", 50, _item(1, 50), **late)])
    out = _both_readers(tmp_path, monkeypatch, clinics, bundle, folder)
    events = _events(out["home"])
    for n in (1, 2):  # the Bundle's (fhir.py) and the Bulk folder's (SQL, and fhir.py in the other home)
        assert events[f"Appointment/ap{n}#booked"] == CHICAGO["booked"]
        assert events[f"Encounter/en{n}#arrived"] == CHICAGO["arrived"]
        assert events[f"Encounter/en{n}#completed"] == CHICAGO["completed"]
    claims = [(c, str(at)) for c, at in _rows(out["home"], "claims", "claim_id, submitted_at")]
    assert claims == [("c1", "2024-06-06 20:00:00"), ("c2", "2024-06-06 20:00:00")]


def test_a_location_sent_in_an_earlier_file_gives_its_zone(tmp_path):
    """A FHIR Location alone (quarantined: FHIR has no opening date) still tells its clinic's zone to the
    Appointment / Encounter file that comes after it."""
    home = _home(tmp_path, "home")
    _ingest(home, _write(tmp_path / "files" / "location.json", LOCATION))
    visits = _bundle(PRACTITIONER, _appointment("ap1"), _encounter("en1", "ap1"))
    _ingest(home, _write(tmp_path / "files" / "visits.json", visits))
    events = _events(home)
    assert events["Appointment/ap1#booked"] == CHICAGO["booked"]
    assert events["Encounter/en1#arrived"] == CHICAGO["arrived"]


def test_without_a_known_clinic_zone_the_practice_default_zone_applies(tmp_path, monkeypatch):
    """PTPULSE_DEFAULT_TIMEZONE is the zone a clinic without one lands with: times of a resource naming such a clinic
    (its Location without the timezone extension, or not in the file) are converted to it, in both readers."""
    monkeypatch.setenv("PTPULSE_DEFAULT_TIMEZONE", "America/Chicago")
    no_zone = {k: v for k, v in LOCATION.items() if k != "extension"}
    batch = read_interop(
        _write(tmp_path / "one.json", _bundle(no_zone, _appointment("ap1"), _encounter("en1", "ap1"))),
        load_contracts(),
    )
    rows = {r["event_id"]: (r["event_at"], r["scheduled_start"]) for _, r in batch.rows["scheduling_events"]}
    assert rows["Appointment/ap1#booked"] == CHICAGO["booked"] and rows["Encounter/en1#arrived"] == CHICAGO["arrived"]
    folder = tmp_path / "export"
    _ndjson(folder / "Practitioner.000.ndjson", [PRACTITIONER])
    _ndjson(folder / "Appointment.000.ndjson", [_appointment("ap2")])
    _ndjson(folder / "Encounter.000.ndjson", [_encounter("en2", "ap2")])
    # Synthea writes a claim's dates as UTC instants: its service date is the local day, as its created time
    utc = {"billablePeriod": {"start": "2024-06-07T01:39:26+00:00"}, "created": "2024-06-07T01:54:26+00:00"}
    item = _item(1, 50, servicedDate="2024-06-07T01:39:26+00:00")
    _ndjson(folder / "Claim.000.ndjson", [_claim("c2", 50, item, facility={"reference": "Location/loc1"}, **utc)])
    home = _both_readers(tmp_path, monkeypatch, folder)["home"]
    events = _events(home)
    assert events["Appointment/ap2#booked"] == CHICAGO["booked"]
    assert events["Encounter/en2#completed"] == CHICAGO["completed"]
    [(day, submitted)] = _rows(home, "claims", "service_date, submitted_at")
    assert (str(day), str(submitted)) == ("2024-06-06", "2024-06-06 20:54:26")
    assert [str(d) for (d,) in _rows(home, "charges", "service_date")] == ["2024-06-06"]


def _export_resources() -> list[dict]:
    patient = {"resourceType": "Patient", "id": "p1", "meta": {"lastUpdated": "2024-01-02T10:00:00Z"},
               "name": [{"family": "Doe", "given": ["Jo"]}], "birthDate": "1980-02-03", "gender": "female"}  # fmt: skip
    claim = _claim(
        "c1",
        150.0,
        _item(1, 150.0, encounter=[{"reference": "Encounter/en1"}]),
        created="2024-06-07T01:00:00Z",  # the evening of the 6th in Chicago
        facility={"reference": "Location/loc1"},
        provider={"reference": "Practitioner/pt1"},
    )
    eob = _eob("eob1", "c1", 90.0, facility={"reference": "Location/loc1"}, created="2024-06-20T03:00:00Z")
    return [LOCATION, PRACTITIONER, patient, _appointment("ap1"), _encounter("en1", "ap1"), claim, eob]


def test_a_mixed_type_export_ndjson_resolves_like_one_file_per_type(tmp_path, monkeypatch):
    """A Bulk export written as one `export.ndjson` holding every type: its Claim finds its Location (zone) and its
    items their Encounter (appointment), as in a folder of one file per type (before: each line alone, posted_at in
    UTC and the charges without appointment_id)."""
    split = tmp_path / "split"
    by_type: dict[str, list] = {}
    for resource in _export_resources():
        by_type.setdefault(resource["resourceType"], []).append(resource)
    for rtype, resources in by_type.items():
        _ndjson(split / f"{rtype}.000.ndjson", resources)
    mixed = _ndjson(tmp_path / "mixed" / "export.ndjson", _export_resources())
    per_type = _home(tmp_path, "split_home")
    _ingest(per_type, split)
    one_file = _both_readers(tmp_path, monkeypatch, mixed)["home"]
    for table in ("claims", "charges", "remittances", "scheduling_events", "patients"):
        columns = "* EXCLUDE (_load_id, _row_hash, _line)"
        assert query(one_file, f"SELECT {columns} FROM raw.{table} ORDER BY ALL") == query(
            per_type, f"SELECT {columns} FROM raw.{table} ORDER BY ALL"
        ), table
    [(submitted,)] = _rows(one_file, "claims", "submitted_at")
    assert str(submitted) == "2024-06-06 20:00:00"
    assert _rows(one_file, "charges", "appointment_id, posted_at") == [("ap1", submitted)]
    assert _events(one_file)["Encounter/en1#arrived"] == CHICAGO["arrived"]


# --- 5: money in exponent form -------------------------------------------------------------------------------------


def test_money_in_exponent_form_lands_as_a_plain_decimal(tmp_path, monkeypatch):
    """`"value": 1.5E2` is 150 (before: `1.5E+2`, quarantined invalid_decimal), in a Bundle and in a Bulk folder."""
    share = [{"category": {"coding": [{"code": "copay"}]}, "amount": {"value": "COPAY"}},
             {"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": "SUBMITTED"}},
             {"category": {"coding": [{"code": "eligible"}]}, "amount": {"value": "ELIGIBLE"}}]  # fmt: skip
    by_price = {k: v for k, v in _item(2, 0, "97140", unitPrice={"value": "PRICE"}).items() if k != "net"}
    claim = _claim("c-exp", "TOTAL", _item(1, "NET1"), by_price)
    summed = {k: v for k, v in _claim("c-sum", 0, _item(1, "NET1"), _item(2, "NET2", "97140")).items() if k != "total"}
    eob = _eob("eob-exp", "c-exp", "PAID", item=[{"sequence": 1, "adjudication": share}])
    text = (
        json.dumps(_bundle(ORG, claim, summed, eob))
        .replace('"TOTAL"', "1.75E2")
        .replace('"NET1"', "1.5E2")
        .replace('"NET2"', "5E1")
        .replace('"PRICE"', "1.2E2")
        .replace('"PAID"', "9E1")
        .replace('"COPAY"', "2.5E1")
        .replace('"SUBMITTED"', "1.5E2")
        .replace('"ELIGIBLE"', "1.2E2")
    )
    home = _home(tmp_path, "bundle_home")
    _ingest(home, _write(tmp_path / "files" / "exp.json", text))
    assert query(home, "SELECT count(*) FROM raw._quarantine WHERE rule = 'invalid_decimal'") == [(0,)]
    assert _rows(home, "claims", "claim_id, billed_usd") == [("c-exp", Decimal("175.00")), ("c-sum", Decimal("200.00"))]
    assert _rows(home, "charges", "claim_id, charge_usd") == [
        ("c-exp", Decimal("120.00")),
        ("c-exp", Decimal("150.00")),
        ("c-sum", Decimal("50.00")),
        ("c-sum", Decimal("150.00")),
    ]
    assert dict(_rows(home, "remittances", "event_type, amount_usd")) == {
        "payer_payment": Decimal("90.00"),
        "patient_responsibility": Decimal("25.00"),
        "contractual_adjustment": Decimal("30.00"),
    }
    folder = tmp_path / "export"
    _ndjson(folder / "Organization.000.ndjson", [ORG])
    lines = [
        json.dumps(_claim("c-b", "TOTAL", _item(1, "NET1"))).replace('"TOTAL"', "1.5E2").replace('"NET1"', "1.5E2"),
        json.dumps(_claim("c-c", "TOTAL", _item(1, "NET1"))).replace('"TOTAL"', "1e-7").replace('"NET1"', "12345e-2"),
    ]
    _write(folder / "Claim.000.ndjson", "\n".join(lines) + "\n")
    _write(
        folder / "ExplanationOfBenefit.000.ndjson",
        json.dumps(_eob("eob-b", "c-b", "PAID")).replace('"PAID"', "9E1") + "\n",
    )
    bulk = _both_readers(tmp_path, monkeypatch, folder)["home"]
    assert _rows(bulk, "claims", "claim_id, billed_usd") == [("c-b", Decimal("150.00")), ("c-c", Decimal("0.00"))]
    assert _rows(bulk, "charges", "claim_id, charge_usd") == [("c-b", Decimal("150.00")), ("c-c", Decimal("123.45"))]
    assert _rows(bulk, "remittances", "amount_usd") == [(Decimal("90.00"),)]


# --- 6: a PractitionerRole as therapist -------------------------------------------------------------------------

ROLE = {
    "resourceType": "PractitionerRole",
    "id": "role1",
    "practitioner": {"reference": "Practitioner/pt1"},
    "location": [{"reference": "Location/loc1"}],
    "code": [{"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": "225100000X"}]}],
}


def _by_role() -> list[dict]:
    claim = _claim(
        "c1",
        150.0,
        _item(1, 150.0, careTeamSequence=[1]),
        _item(2, 50.0, "97140", careTeamSequence=[2]),
        facility={"reference": "Location/loc1"},
        careTeam=[{"sequence": 1, "provider": {"reference": "PractitionerRole/role1"}},
                  {"sequence": 2, "provider": {"reference": "PractitionerRole/role-elsewhere"}}],
    )  # fmt: skip
    return [
        _appointment("ap1", therapist="PractitionerRole/role1"),
        _encounter("en1", "ap1", therapist="PractitionerRole/role1"),
        _appointment("ap2", therapist="PractitionerRole/role-elsewhere"),  # not in the file: kept as named
        claim,
    ]


def test_a_practitioner_role_named_as_therapist_stands_for_its_practitioner(tmp_path, monkeypatch):
    """An Appointment / Encounter participant or a Claim careTeam member that is a PractitionerRole gives the role's
    practitioner as therapist (pt1, the therapists row), not the role's id (before: `role1`); a role the file or
    export does not hold keeps its id (nothing invented)."""
    home = _home(tmp_path, "bundle_home")
    _ingest(home, _write(tmp_path / "files" / "roles.json", _bundle(LOCATION, PRACTITIONER, ROLE, *_by_role())))
    folder = tmp_path / "export"
    _ndjson(folder / "Location.000.ndjson", [LOCATION])
    _ndjson(folder / "Practitioner.000.ndjson", [PRACTITIONER])
    _ndjson(folder / "PractitionerRole.000.ndjson", [ROLE])
    for resource in _by_role():
        path = folder / f"{resource['resourceType']}.000.ndjson"
        with path.open("a") as handle:
            handle.write(json.dumps(resource) + "\n")
    bulk = _both_readers(tmp_path, monkeypatch, folder)["home"]
    for landed in (home, bulk):
        events = dict(_rows(landed, "scheduling_events", "event_id, therapist_id"))
        assert events["Appointment/ap1#booked"] == "pt1" and events["Encounter/en1#arrived"] == "pt1"
        assert events["Appointment/ap2#booked"] == "role-elsewhere"
        assert _rows(landed, "charges", "charge_id, therapist_id") == [
            ("Claim/c1#item1", "pt1"),
            ("Claim/c1#item2", "role-elsewhere"),
        ]
