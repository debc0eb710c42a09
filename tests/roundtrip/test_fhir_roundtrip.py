"""Round trip through FHIR R4 Bulk Data: the practice written as a `$export` folder (seed_data/formats/fhir_bulk.py:
NDJSON per resource type + manifest + log), ingested alone and with the native CSVs, built with the real dbt
project and compared with the native build mart by mart (money to the cent, counts exact).

Ids: a FHIR resource id IS the practice's record id (no prefix unless PTPULSE_FHIR_ID_NAMESPACE is set; the
generator writes each Claim item's element id = the charge id), so FHIR rows and the native CSVs name the same
records and dbt merges them; nothing is translated (`native_ids` still maps the namespaced / NPI / item-sequence
forms back, for a reader that falls back to them).

What the format carries, and so what is compared:
- claims: claim, episode (its items' encounters), appointment, patient, clinic, payer, service date, submitted
  time, billed, allowed, payer paid, contractual adjustment (submitted - eligible), patient responsibility
  (copay + deductible + coinsurance), denials (outcome error + CARC) with their time, adjudication, lines, units;
- charge lines: claim, appointment and episode (item.encounter), clinic, therapist, date, CPT, modifiers
  (KX), units, charge;
- appointments: episode, referral, patient, clinic, therapist, visit type (the practice's own code system),
  booking time (`created`), slot, current status and its time (`meta.lastUpdated`), cancel reason, visit number;
  (local times the clock skipped at the spring-forward change exist in no zone: compared an hour later);
- visits and the KPIs built only from these (arrival and no-show rates, units per visit; not the denial rate,
  whose cohort leaves out self-pay claims: a payer class FHIR does not carry).
Not compared: patients (FHIR has no creation time: created_at = the export transactionTime, not the native one), clinics
(no opening date), payers (no payer class), therapists (no hire date / hours), so payer_class and what
derives from it; the lifecycle before the current status (reschedules, the notice of a cancellation, so
`late_cancelled` arrives as `cancelled`), patient payments and write-offs (the practice's ledger, not an
EOB), posted_at (a Claim's lines are posted when it is created, as in X12), minutes, the intake funnel after
`received`, marketing, authorizations, notes; patient_key (a per-home pseudonym of the patient id).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from seed_data.formats._native import read
from tests.roundtrip.conftest import cents, mart, mismatches, raw

pytestmark = pytest.mark.slow

ID_PREFIX = r"^fhir:[A-Za-z]+/"  # only with PTPULSE_FHIR_ID_NAMESPACE=fhir


@pytest.fixture(scope="session")
def bulk_dir(rt_native_csv, tmp_path_factory) -> Path:
    from seed_data.formats.fhir_bulk import write

    out = tmp_path_factory.mktemp("rt_fhir_bulk")
    write(rt_native_csv, out)
    return out


@pytest.fixture(scope="session")
def fhir_alone(rt_build, bulk_dir):
    return rt_build("fhir-bulk", [bulk_dir])


@pytest.fixture(scope="session")
def fhir_with_native(rt_build, bulk_dir, rt_native_csv):
    return rt_build("fhir-bulk+native", [rt_native_csv, bulk_dir])


@pytest.fixture(scope="session")
def crosswalk(rt_native_csv) -> dict[str, dict[str, str]]:
    """npi:<NPI> -> therapist id; `<claim>#item<n>` -> charge id (the test's maps back to native ids)."""
    th = read(rt_native_csv, "therapists")
    charges = read(rt_native_csv, "charges").sort("charge_id")
    items = charges.with_columns(n=pl.col("charge_id").cum_count().over("claim_id")).select(
        (pl.col("claim_id") + "#item" + pl.col("n").cast(pl.Utf8)).alias("item"), "charge_id"
    )
    return {
        "therapist_id": dict(zip(("npi:" + th["npi"]).to_list(), th["therapist_id"].to_list(), strict=True)),
        "charge_id": dict(zip(items["item"].to_list(), items["charge_id"].to_list(), strict=True)),
    }


@pytest.fixture(scope="session")
def zone(rt_native_csv) -> str:
    zones = read(rt_native_csv, "clinics")["timezone"].unique().to_list()
    assert len(zones) == 1
    return zones[0]


def as_instants(frame: pl.DataFrame, zone: str) -> pl.DataFrame:
    """Native local times as a UTC instant reads back: a time the clock skipped (02:30 on the spring-forward
    day, which the generator can produce) exists in no zone and comes back an hour later."""
    out = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            skipped = (
                column.dt.replace_time_zone(zone, non_existent="null", ambiguous="earliest").is_null()
                & column.is_not_null()
            )
            column = pl.when(skipped).then(column + pl.duration(hours=1)).otherwise(column)
        out.append(column.alias(name))
    return frame.select(out)


def native_ids(frame: pl.DataFrame, crosswalk: dict[str, dict[str, str]]) -> pl.DataFrame:
    """FHIR-namespaced ids back to the practice's own (see the module docstring)."""
    out = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if dtype == pl.Utf8 and (name.endswith("_id") or name == "claim_id"):
            column = column.str.replace(ID_PREFIX, "")
            if name in crosswalk:
                column = column.replace(crosswalk[name])
        out.append(column.alias(name))
    return frame.select(out)


# --- the export itself --------------------------------------------------------------------------------------


def test_bulk_folder_is_an_export_with_every_reference_resolved(bulk_dir, rt_native_csv):
    """One NDJSON file per resource type, the manifest's counts and transactionTime, and every relative reference
    names a resource the export holds (checked in DuckDB over all lines)."""
    import duckdb

    manifest = json.loads((bulk_dir / "manifest.json").read_text())
    assert manifest["transactionTime"].endswith("Z")
    files = {o["url"]: o["count"] for o in manifest["output"]}
    for name, count in files.items():
        assert sum(1 for _ in (bulk_dir / name).open()) == count, name
    claims = read(rt_native_csv, "claims")
    assert files["Claim.000.ndjson"] == claims.height
    assert files["Appointment.000.ndjson"] == read(rt_native_csv, "scheduling_events")["appointment_id"].n_unique()
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE r AS SELECT json->>'$.resourceType' || '/' || (json->>'$.id') AS key, "
        'regexp_extract_all(json::VARCHAR, \'"reference":"([A-Za-z]+/[^"]+)"\', 1) AS refs '
        "FROM read_json_objects(?, format = 'newline_delimited')",
        [str(bulk_dir / "*.000.ndjson")],
    ).fetchall()
    unresolved = con.execute(
        "SELECT count(*) FROM (SELECT unnest(refs) AS ref FROM r) WHERE ref NOT IN (SELECT key FROM r)"
    ).fetchone()[0]
    total = con.execute("SELECT sum(len(refs)) FROM r").fetchone()[0]
    assert total > 100_000 and unresolved == 0


def test_sql_reader_lands_what_the_per_resource_reader_lands(bulk_dir, tmp_path):
    """The vectorised Bulk reader (fhir_fast.py) and fhir.py's per-resource reader give the same landed rows and
    quarantine, row for row (PTPULSE_FHIR_FAST=0 switches the SQL path off)."""
    from ingestion.loader import ingest
    from ptpulse.core.config import get_settings

    homes = {}
    for mode in ("1", "0"):
        os.environ["PTPULSE_FHIR_FAST"] = mode
        try:
            homes[mode] = get_settings(tmp_path / f"fast{mode}").ensure()
            results = ingest([bulk_dir], homes[mode])
        finally:
            os.environ.pop("PTPULSE_FHIR_FAST", None)
        assert all(r.rows_read == r.rows_landed + r.rows_quarantined + r.rows_duplicate for r in results)
    for table in ("patients", "scheduling_events", "claims", "charges", "remittances", "intake_events", "_quarantine"):
        sql = f"select * exclude (_load_id, _row_hash) from raw.raw.{table}"
        if table == "_quarantine":
            sql = "select source, line, rule, column_name, detail, record from raw.raw._quarantine"
        fast, slow = raw(homes["1"], sql), raw(homes["0"], sql)
        assert fast.height > 0 or table == "_quarantine"
        assert fast.sort(fast.columns).equals(slow.sort(slow.columns)), table


# --- FHIR alone ---------------------------------------------------------------------------------------------


def test_fhir_alone_lands_every_mapped_row(fhir_alone):
    """Rows read = landed + quarantined + duplicate; what is quarantined is exactly the reference data FHIR
    cannot complete (required columns no resource carries), never an event or money row."""
    loads = raw(
        fhir_alone,
        "select source, status, rows_read, rows_landed, rows_quarantined, rows_duplicate from raw.raw._loads",
    )
    assert loads.filter(pl.col("status").is_in(["refused", "failed"])).height == 0
    assert (
        loads.filter(
            pl.col("rows_read") != pl.col("rows_landed") + pl.col("rows_quarantined") + pl.col("rows_duplicate")
        ).height
        == 0
    )
    quarantined = raw(fhir_alone, "select distinct source, rule, column_name from raw.raw._quarantine")
    assert sorted(quarantined.iter_rows()) == [
        ("clinics", "required", "opened_on"),
        ("payers", "required", "payer_class"),
        ("therapists", "required", "hired_on"),
    ]
    landed = dict(loads.group_by("source").agg(pl.col("rows_landed").sum()).iter_rows())
    assert all(landed.get(s, 0) > 1000 for s in ("scheduling_events", "claims", "charges", "remittances"))


CLAIM_COLUMNS = (
    "claim_id, episode_id, appointment_id, patient_id, payer_id, clinic_id, service_date, submitted_at, "
    + ", ".join(
        cents(c) for c in ("billed_usd", "allowed_usd", "payer_paid_usd", "contractual_adj_usd", "patient_resp_usd")
    )
    + ", is_denied, denial_carc, "
    + cents("denied_usd")
    + ", denied_at, is_adjudicated, charge_lines, "
    + cents("charge_lines_usd")
    + ", billable_units"
)


def test_fhir_alone_claims_mart(rt_native, fhir_alone, crosswalk, zone):
    """Every claim, every column; but is_adjudicated only of claims sent to a payer: a self-pay claim is out of the
    denial cohort (no payer answers it), and FHIR alone does not say which payer is the patient (no payer class)."""
    sql = f"select {CLAIM_COLUMNS} from marts.claims"
    exp, got = as_instants(mart(rt_native, sql), zone), native_ids(mart(fhir_alone, sql), crosswalk)
    assert exp.height > 9000
    self_pay = set(mart(rt_native, "select claim_id from marts.claims where payer_class = 'self_pay'")["claim_id"])
    assert self_pay
    known = pl.col("claim_id").is_in(list(self_pay)).not_()
    assert mismatches(exp.filter(known), got.filter(known), ["claim_id"]) == {}
    assert mismatches(exp.drop("is_adjudicated"), got.drop("is_adjudicated"), ["claim_id"]) == {}


CHARGE_COLUMNS = (
    "charge_id, claim_id, appointment_id, episode_id, clinic_id, therapist_id, service_date, cpt_code, modifiers, "
    "has_kx_modifier, units, is_timed, is_excluded_from_units, " + cents("charge_usd")
)


def test_fhir_alone_charge_lines_mart(rt_native, fhir_alone, crosswalk):
    sql = f"select {CHARGE_COLUMNS} from marts.charge_lines"
    exp, got = mart(rt_native, sql), native_ids(mart(fhir_alone, sql), crosswalk)
    assert exp.height > 19000
    assert mismatches(exp, got, ["charge_id"]) == {}


APPOINTMENT_COLUMNS = (
    "appointment_id, episode_id, referral_id, patient_id, clinic_id, therapist_id, visit_type, booked_at, "
    "scheduled_start, duration_min, {status} as status, status_at, cancel_reason, lead_time_days, visit_number, "
    "is_future, is_unresolved"
)


def test_fhir_alone_appointments_mart(rt_native, fhir_alone, crosswalk, zone):
    """An Appointment carries its booking and its current status: a late cancellation arrives as cancelled."""
    native_status = "case status when 'late_cancelled' then 'cancelled' else status end"
    exp = as_instants(
        mart(rt_native, f"select {APPOINTMENT_COLUMNS.format(status=native_status)} from marts.appointments"), zone
    )
    got = native_ids(
        mart(fhir_alone, f"select {APPOINTMENT_COLUMNS.format(status='status')} from marts.appointments"), crosswalk
    )
    assert exp.height > 12000
    assert mismatches(exp, got, ["appointment_id"]) == {}


VISIT_COLUMNS = (
    "appointment_id, episode_id, referral_id, clinic_id, therapist_id, visit_type, scheduled_start, visit_date, "
    "duration_min, visit_number, charge_lines, billable_units, " + cents("charges_usd")
)


def test_fhir_alone_visits_mart(rt_native, fhir_alone, crosswalk, zone):
    sql = f"select {VISIT_COLUMNS} from marts.visits"
    exp, got = as_instants(mart(rt_native, sql), zone), native_ids(mart(fhir_alone, sql), crosswalk)
    assert exp.height > 9000
    assert mismatches(exp, got, ["appointment_id"]) == {}


# Not the denial rate: its cohort is the claims sent to a payer, and FHIR alone has no payer class to tell a
# self-pay claim (compared with the native CSVs below).
CARRIED_KPIS = ("arrival_rate", "no_show_rate", "cancel_no_show_rate", "units_per_visit")


def test_fhir_alone_kpis(rt_native, fhir_alone, crosswalk):
    """KPIs whose numerator and denominator FHIR carries, per clinic and day."""
    sql = (
        "select clinic_id, date_day, kpi, numerator, denominator from marts.kpi_facts_daily "
        f"where kpi in {CARRIED_KPIS}"
    )
    exp, got = mart(rt_native, sql), native_ids(mart(fhir_alone, sql), crosswalk)
    assert exp.height > 1000
    assert mismatches(exp, got, ["clinic_id", "date_day", "kpi"]) == {}


# --- with the native CSVs: the same practice arrives twice, by two routes -------------------------------------


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("claims", ["claim_id"]),
        ("charge_lines", ["charge_id"]),
        ("appointments", ["appointment_id"]),
        ("visits", ["appointment_id"]),
        ("kpi_facts_daily", ["clinic_id", "date_day", "kpi", "cohort"]),
    ],
)
def test_fhir_with_native_marts_equal_native(rt_native, fhir_with_native, table, key):
    """Every column of the mart (the native CSVs supply what FHIR lacks) equals the native build's."""
    sql = (
        f"select * exclude (patient_key) from marts.{table}"
        if table != "kpi_facts_daily"
        else f"select * from marts.{table}"
    )
    assert mismatches(mart(rt_native, sql), mart(fhir_with_native, sql), key) == {}
