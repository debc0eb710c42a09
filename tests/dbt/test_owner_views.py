"""The owner-view marts of issue 14 (ar_aging, payer_mix, therapist_productivity, denial_reasons,
referral_diagnoses) against an independent recomputation from the generated practice's CSVs with polars
(tests/recompute/recompute.py cleans rows by the contracts and keeps the latest version of a key), never from
the dbt SQL: counts exact, money to the cent. Totals in = totals out: every open dollar, every payment and
every attended visit of the sources is in exactly one mart row."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recompute"))
import recompute as R  # noqa: E402

BUCKETS = ((30, "0-30"), (60, "31-60"), (90, "61-90"), (120, "91-120"))


@pytest.fixture(scope="module")
def practice(small_practice) -> R.Practice:
    return R.practice(small_practice)


@pytest.fixture(scope="module")
def mart(small_built):
    con = duckdb.connect(str(small_built.analytics_db), read_only=True)

    def q(sql: str) -> pl.DataFrame:
        return con.sql(sql).pl()

    yield q
    con.close()


def _cents(col: str) -> pl.Expr:
    return (pl.col(col).cast(pl.Float64) * 100).round(0).cast(pl.Int64)


def recompute_ar(p: R.Practice) -> pl.DataFrame:
    """Open balance per claim on file = billed - payer payments - contractual - write-offs - patient payments
    (cents), aged by service date at as_of; bucket totals by payer class."""
    moves = (
        p.src["remittances"]
        .filter(pl.col("event_type").is_in(["payer_payment", "contractual_adjustment", "write_off", "patient_payment"]))
        .group_by("claim_id")
        .agg(moved=pl.col("amount_usd").sum())
    )
    c = (
        p.src["claims"]
        .join(moves, on="claim_id", how="left")
        .with_columns(open_cents=pl.col("billed_usd") - pl.col("moved").fill_null(0))
        .filter(pl.col("open_cents") != 0)
        .join(p.src["payers"].select("payer_id", "payer_class"), on="payer_id", how="left")
        .with_columns(
            payer_class=pl.col("payer_class").fill_null("unknown"),
            age=(pl.lit(p.as_of.date()) - pl.col("service_date")).dt.total_days(),
        )
    )
    bucket = pl.lit("120+")
    for limit, name in reversed(BUCKETS):
        bucket = pl.when(pl.col("age") <= limit).then(pl.lit(name)).otherwise(bucket)
    return (
        c.with_columns(ar_age_bucket=bucket)
        .group_by("payer_class", "ar_age_bucket")
        .agg(open_claims=pl.len(), open_cents=pl.col("open_cents").sum())
    )


def test_ar_aging_buckets_match_the_sources_to_the_cent(practice, mart):
    mine = recompute_ar(practice)
    theirs = mart(
        "select payer_class, ar_age_bucket, sum(open_claims) as open_claims, sum(open_balance_usd) as open_usd "
        "from marts.ar_aging group by all"
    ).with_columns(open_cents=_cents("open_usd"), open_claims=pl.col("open_claims").cast(pl.Int64))
    assert mine["open_cents"].sum() > 0, "the small practice should have open A/R"
    j = mine.join(theirs, on=["payer_class", "ar_age_bucket"], how="full", coalesce=True, suffix="_mart")
    bad = j.filter(
        (pl.col("open_cents").fill_null(0) != pl.col("open_cents_mart").fill_null(0))
        | (pl.col("open_claims").fill_null(0) != pl.col("open_claims_mart").fill_null(0))
    )
    assert bad.is_empty(), f"A/R aging differs from the sources (payer class x bucket):\n{bad}"
    # totals in = totals out: the buckets hold every open dollar of the claims mart
    claims_open = mart(
        "select sum(insurance_balance_usd + patient_balance_usd) as v from marts.claims where ar_age_bucket <> 'closed'"
    )["v"][0]
    assert round(float(claims_open) * 100) == int(theirs["open_cents"].sum()) == int(mine["open_cents"].sum())


def test_payer_mix_collections_match_every_landed_payment(practice, mart):
    """Payments by payer class of the claim (else the remittance's payer) and month posted, to the cent."""
    pay = practice.payments.filter(pl.col("event_type").is_in(list(R.PAYMENTS)))
    claim_payer = practice.src["claims"].select("claim_id", claim_payer="payer_id")
    pay = (
        pay.join(claim_payer, on="claim_id", how="left")
        .with_columns(payer_id=pl.coalesce("claim_payer", "payer_id"))
        .join(practice.src["payers"].select("payer_id", "payer_class"), on="payer_id", how="left")
        .with_columns(
            payer_class=pl.col("payer_class").fill_null("unknown"), month=R.period(pl.col("event_at"), "month")
        )
    )
    mine = pay.group_by("payer_class", "month").agg(cents=pl.col("amount_usd").sum())
    theirs = (
        mart("select payer_class, month, sum(collected_usd) as usd from marts.payer_mix group by all")
        .with_columns(cents=_cents("usd"), month=pl.col("month").cast(pl.Date))
        .filter(pl.col("cents") != 0)
    )
    j = mine.join(theirs, on=["payer_class", "month"], how="full", coalesce=True, suffix="_mart")
    bad = j.filter(pl.col("cents").fill_null(0) != pl.col("cents_mart").fill_null(0))
    assert bad.is_empty(), f"payer-mix collections differ from the remittances (payer class x month):\n{bad}"
    assert (
        int(mine["cents"].sum())
        == int(theirs["cents"].sum())
        == int(practice.payments.filter(pl.col("event_type").is_in(list(R.PAYMENTS)))["amount_usd"].sum())
    )


def test_payer_mix_visits_add_up_to_attended_visits(practice, mart):
    a = practice.appointments.filter((pl.col("status") == R.ATTENDED) & (pl.col("scheduled_start") <= practice.as_of))
    mine = a.group_by(month=R.period(pl.col("scheduled_start"), "month")).agg(visits=pl.len())
    theirs = (
        mart("select month, sum(visits) as visits from marts.payer_mix group by all")
        .with_columns(month=pl.col("month").cast(pl.Date), visits=pl.col("visits").cast(pl.Int64))
        .filter(pl.col("visits") > 0)
    )
    j = mine.join(theirs, on="month", how="full", coalesce=True, suffix="_mart")
    assert j.filter(pl.col("visits").fill_null(0) != pl.col("visits_mart").fill_null(0)).is_empty()


def test_therapist_visits_and_units_match_the_sources(practice, mart):
    a = practice.appointments.filter(
        pl.col("status").is_in(list(R.OUTCOMES)) & (pl.col("scheduled_start") <= practice.as_of)
    ).with_columns(
        therapist_id=pl.col("therapist_id").fill_null("unassigned"), month=R.period(pl.col("scheduled_start"), "month")
    )
    mine = a.group_by("therapist_id", "month").agg(
        appointments=pl.len(),
        visits=(pl.col("status") == R.ATTENDED).sum().cast(pl.Int64),
        days_worked=pl.col("scheduled_start").filter(pl.col("status") == R.ATTENDED).dt.date().n_unique(),
    )
    theirs = mart(
        "select therapist_id, month, sum(appointments) as appointments, sum(visits) as visits, "
        "sum(days_worked) as days_worked from marts.therapist_productivity group by all having sum(appointments) > 0"
    ).with_columns(pl.col("appointments", "visits", "days_worked").cast(pl.Int64), month=pl.col("month").cast(pl.Date))
    assert mine["visits"].sum() > 1000
    j = mine.join(theirs, on=["therapist_id", "month"], how="full", coalesce=True, suffix="_mart")
    for col in ("appointments", "visits", "days_worked"):
        bad = j.filter(pl.col(col).fill_null(0) != pl.col(f"{col}_mart").fill_null(0))
        assert bad.is_empty(), f"therapist_productivity.{col} differs from the scheduling events:\n{bad}"
    # units: charge lines linked to an attended visit (G- and L-codes excluded, as the units-per-visit KPI) by
    # therapist on the line
    attended = practice.appointments.filter(pl.col("status") == R.ATTENDED).select("appointment_id")
    ch = practice.src["charges"].filter(~pl.col("cpt_code").str.slice(0, 1).is_in(["G", "L"]))
    ch = ch.join(attended, on="appointment_id", how="semi")
    units = ch.group_by(therapist_id=pl.col("therapist_id").fill_null("unassigned")).agg(units=pl.col("units").sum())
    mart_units = mart("select therapist_id, sum(billed_units) as units from marts.therapist_productivity group by all")
    j = units.join(mart_units, on="therapist_id", how="full", coalesce=True, suffix="_mart")
    assert j.filter(pl.col("units").fill_null(0) != pl.col("units_mart").fill_null(0)).is_empty(), j


def test_denials_by_reason_cover_every_denied_claim(practice, mart):
    denials = practice.src["remittances"].filter(pl.col("event_type") == "denial")
    on_file = denials.join(practice.src["claims"].select("claim_id"), on="claim_id", how="semi")
    first = on_file.sort("event_at").group_by("claim_id").agg(carc=pl.col("carc_code").first())
    mine = first.group_by(carc=pl.col("carc").fill_null("unknown")).agg(n=pl.len())
    theirs = mart(
        "select denial_carc as carc, sum(denied_claims) as n from marts.denial_reasons group by all"
    ).with_columns(pl.col("n").cast(pl.UInt32))
    j = mine.join(theirs, on="carc", how="full", coalesce=True, suffix="_mart")
    assert j.filter(pl.col("n").fill_null(0) != pl.col("n_mart").fill_null(0)).is_empty(), j
    # the group is the CARC list's; 'unknown' exactly for codes missing from it (a dirt warning, the rows stay)
    listed = set(pl.read_csv(R.ROOT / "ingestion" / "codes" / "carc.csv", infer_schema=False)["code"].to_list())
    rows = mart("select distinct denial_carc, carc_group from marts.denial_reasons")
    wrong = rows.filter((pl.col("carc_group") == "unknown") == pl.col("denial_carc").is_in(list(listed)))
    assert wrong.is_empty(), f"CARC groups disagree with ingestion/codes/carc.csv:\n{wrong}"


def test_referrals_by_diagnosis_count_every_referral(practice, mart):
    total = mart("select sum(referrals) as n from marts.referral_diagnoses")["n"][0]
    assert int(total) == practice.funnel.filter(pl.col("received_at") <= practice.as_of).height
    ie = practice.src["intake_events"].filter(pl.col("event_type") == "received")
    coded = (
        ie.filter(pl.col("icd10_code").is_not_null()).group_by(cat=pl.col("icd10_code").str.slice(0, 3)).agg(n=pl.len())
    )
    theirs = mart(
        "select icd10_category as cat, sum(coded_on_referral) as n from marts.referral_diagnoses group by all"
    )
    j = coded.join(theirs.with_columns(pl.col("n").cast(pl.UInt32)), on="cat", how="left", suffix="_mart")
    assert j.filter(pl.col("n") != pl.col("n_mart")).is_empty(), j
