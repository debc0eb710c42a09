"""Round trip through X12: the practice's claims written as 837P and its payer remittances as 835
(seed_data/formats/x12.py), checked by pyx12, ingested alone and with the native CSVs, built with the real
dbt project and compared with the native build mart by mart.

What the format carries, and so what is compared (money to the cent, counts exact):
- claims (every claim sent to a payer: self-pay claims never reach a clearinghouse): claim_id (CLM01 =
  CLP01), patient_id (REF*EA), payer_id (NM1*PR PI, landed as `x12:payer/<id>`), clinic (2310C facility
  NPI), service_date, submitted_at (BHT04/05), billed (CLM02), and from the 835 the payer paid (CLP04),
  contractual adjustments (CAS CO-45), patient responsibility (CAS PR), denials (CLP02 = 4 + CAS CO-<CARC>),
  with their day (BPR16).
- charge lines: charge_id (REF*6R), claim_id, rendering therapist (NPI), service_date, CPT, modifiers,
  units, charge.
Not carried, so excluded alone: episode / appointment ids (837P has none; linked in dbt by patient + date
when appointments come from another source), minutes (837P bills units), posted_at (837P has only the claim's
creation time), patient payments and write-offs (the practice's ledger, not the payer's), the time of day
of remittances (835 dates only), payer class (no payers table in X12), patient_key (a per-home pseudonym).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from seed_data.formats._native import clinic_npis, read
from tests.roundtrip.conftest import cents, mart, mismatches, raw

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def x12_dir(rt_native_csv, tmp_path_factory) -> Path:
    from seed_data.formats.x12 import write

    out = tmp_path_factory.mktemp("rt_x12")
    write(rt_native_csv, out)
    return out


@pytest.fixture(scope="session")
def x12_alone(rt_build, x12_dir):
    return rt_build("x12", [x12_dir])


@pytest.fixture(scope="session")
def x12_with_native(rt_build, x12_dir, rt_native_csv):
    return rt_build("x12+native", [rt_native_csv, x12_dir])


def npi_maps(native_csv: Path) -> tuple[dict[str, str], dict[str, str]]:
    """npi:<NPI> -> our clinic / therapist id (the test's crosswalk; X12 names providers only by NPI)."""
    clinics = read(native_csv, "clinics")
    clinic = dict(
        zip(("npi:" + clinic_npis(clinics["clinic_id"])).to_list(), clinics["clinic_id"].to_list(), strict=True)
    )
    th = read(native_csv, "therapists")
    therapist = dict(zip(("npi:" + th["npi"]).to_list(), th["therapist_id"].to_list(), strict=True))
    return clinic, therapist


CLAIM_COLUMNS = (
    "claim_id, patient_id, {payer} as payer_id, {clinic} as clinic_id, service_date, submitted_at, "
    + ", ".join(cents(c) for c in ("billed_usd", "payer_paid_usd", "contractual_adj_usd", "patient_resp_usd"))
    + ", is_denied, denial_carc, "
    + cents("denied_usd")
    + ", cast(denied_at as date) as denied_on, charge_lines, "
    + cents("charge_lines_usd")
    + ", billable_units"
)
CHARGE_COLUMNS = (
    "charge_id, claim_id, {clinic} as clinic_id, {therapist} as therapist_id, service_date, cpt_code, modifiers, "
    "units, " + cents("charge_usd") + ", is_timed, is_excluded_from_units, has_kx_modifier"
)


def claims_frames(native, other, native_csv: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    clinic, _ = npi_maps(native_csv)
    exp = mart(
        native,
        f"select {CLAIM_COLUMNS.format(payer='payer_id', clinic='clinic_id')} from marts.claims "
        "where payer_class <> 'self_pay'",
    )
    got = mart(other, f"select {CLAIM_COLUMNS.format(payer='payer_id', clinic='clinic_id')} from marts.claims")
    got = got.with_columns(
        pl.col("payer_id").str.replace(r"^x12:payer/", ""),
        pl.col("clinic_id").replace(clinic),
    )
    return exp, got


def charge_frames(native, other, native_csv: Path, claims_of: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    clinic, therapist = npi_maps(native_csv)
    cols = CHARGE_COLUMNS.format(clinic="clinic_id", therapist="therapist_id")
    exp = mart(native, f"select {cols} from marts.charge_lines where claim_id in ({claims_of})")
    got = mart(other, f"select {cols} from marts.charge_lines").with_columns(
        pl.col("clinic_id").replace(clinic), pl.col("therapist_id").replace(therapist)
    )
    return exp, got


PAYER_CLAIMS = "select claim_id from marts.claims where payer_class <> 'self_pay'"


def test_pyx12_accepts_every_file(x12_dir):
    """pyx12 (an independent X12 validator, with the 005010 implementation guides' maps) accepts every
    837P and 835 file: envelopes, loops, required segments, element formats and code lists."""
    import pyx12.params
    import pyx12.x12n_document

    param = pyx12.params.params()
    files = sorted(x12_dir.iterdir())
    assert {f.suffix for f in files} == {".837", ".835"}
    rejected = [
        f.name
        for f in files
        if not pyx12.x12n_document.x12n_document(
            param=param, src_file=str(f), fd_997=None, fd_html=None, fd_xmldoc=None
        )
    ]
    assert rejected == []


def test_every_payer_claim_and_payment_is_written_once(x12_dir, rt_native_csv):
    """CLM per claim sent to a payer, SV1 per its charge line, and every 835 balances: BPR02 = sum of CLP04."""
    payers = read(rt_native_csv, "payers").filter(pl.col("payer_class") != "self_pay")
    claims = read(rt_native_csv, "claims").join(payers, on="payer_id", how="semi")
    lines = read(rt_native_csv, "charges").join(claims, on="claim_id", how="semi")
    text = {f.suffix: "".join(g.read_text() for g in sorted(x12_dir.glob(f"*{f.suffix}"))) for f in x12_dir.iterdir()}
    assert text[".837"].count("\nCLM*") == claims.height
    assert text[".837"].count("\nSV1*") == lines.height
    for st in text[".835"].split("\nST*835*")[1:]:
        total = st.split("BPR*", 1)[1].split("*")[1]
        paid = [seg.split("*")[4] for seg in st.split("~\n") if seg.startswith("CLP*")]
        assert sum(round(float(p) * 100) for p in paid) == round(float(total) * 100)


def test_x12_alone_lands_every_row(x12_alone):
    loads = raw(x12_alone, "select source, sum(rows_read) r, sum(rows_landed) l from raw.raw._loads group by 1")
    assert loads.filter(pl.col("r") != pl.col("l")).height == 0
    assert sorted(loads["source"].to_list()) == ["charges", "claims", "remittances"]


def test_x12_alone_claims_mart(rt_native, x12_alone, rt_native_csv):
    exp, got = claims_frames(rt_native, x12_alone, rt_native_csv)
    assert exp.height > 9000
    assert mismatches(exp, got, ["claim_id"]) == {}


def test_x12_alone_charge_lines_mart(rt_native, x12_alone, rt_native_csv):
    exp, got = charge_frames(rt_native, x12_alone, rt_native_csv, PAYER_CLAIMS)
    assert exp.height > 19000
    assert mismatches(exp.drop("is_timed"), got.drop("is_timed"), ["charge_id"]) == {}


@pytest.fixture(scope="session")
def x12_with_dims(rt_build, x12_dir, rt_native_csv, tmp_path_factory):
    """The 837P / 835 files plus only the practice's reference files (clinics, therapists and payers, with NPIs)."""
    dims = tmp_path_factory.mktemp("rt_dims")
    for name in ("clinics.csv", "therapists.csv", "payers.csv"):
        shutil.copy(rt_native_csv / name, dims / name)
    return rt_build("x12+dims", [dims, x12_dir])


def test_x12_with_dims_maps_npi_and_payer_ids_to_ours(rt_native, x12_with_dims):
    """The crosswalks (int_clinic_crosswalk, int_therapist_crosswalk, int_payer_crosswalk) turn npi:<NPI> and
    x12:payer/<id> into our clinic, therapist and payer ids: no test-side map, every id is the native one."""
    cols = CLAIM_COLUMNS.format(payer="payer_id", clinic="clinic_id") + ", payer_class"
    exp = mart(rt_native, f"select {cols} from marts.claims where payer_class <> 'self_pay'")
    got = mart(x12_with_dims, f"select {cols} from marts.claims")
    assert exp.height > 9000
    assert mismatches(exp, got, ["claim_id"]) == {}
    lines = CHARGE_COLUMNS.format(clinic="clinic_id", therapist="therapist_id")
    exp = mart(rt_native, f"select {lines} from marts.charge_lines where claim_id in ({PAYER_CLAIMS})")
    got = mart(x12_with_dims, f"select {lines} from marts.charge_lines")
    assert mismatches(exp.drop("is_timed"), got.drop("is_timed"), ["charge_id"]) == {}
    left = mart(
        x12_with_dims,
        "select count(*) n from marts.charge_lines where clinic_id like 'npi:%' or therapist_id like 'npi:%'",
    )
    assert left["n"][0] == 0


def test_x12_alone_charge_lines_is_timed(rt_native, x12_alone, rt_native_csv):
    exp, got = charge_frames(rt_native, x12_alone, rt_native_csv, PAYER_CLAIMS)
    assert mismatches(exp.select("charge_id", "is_timed"), got.select("charge_id", "is_timed"), ["charge_id"]) == {}


def test_x12_alone_revenue_kpis(rt_native, x12_alone):
    """denial_rate per day and clinic: numerator and denominator are claims and denials, both carried."""
    sql = (
        "select date_day, kpi, numerator, denominator from marts.kpi_facts_daily where kpi = 'denial_rate' "
        "and cohort is null"
    )
    assert mismatches(mart(rt_native, sql), mart(x12_alone, sql), ["date_day", "kpi"]) == {}


# --- with the native CSVs: the same claims and payments arrive twice and merge (dbt merge_latest) -----------


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("claims", ["claim_id"]),
        ("charge_lines", ["charge_id"]),
        ("visits", ["appointment_id"]),
        ("episodes", ["episode_id"]),
        ("appointments", ["appointment_id"]),
        ("kpi_facts_daily", ["clinic_id", "date_day", "kpi", "cohort"]),
    ],
)
def test_x12_with_native_marts_equal_native(rt_native, x12_with_native, table, key):
    """Every column of the mart (the native CSVs supply what X12 lacks) equals the native build's."""
    sql = (
        f"select * exclude (patient_key) from marts.{table}"
        if table != "kpi_facts_daily"
        else (f"select * from marts.{table}")
    )
    assert mismatches(mart(rt_native, sql), mart(x12_with_native, sql), key) == {}
