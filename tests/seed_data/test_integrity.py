"""Referential and arithmetic integrity of the generated exports across several clinics streamed in chunks
(scale `multi_test`: 2 clinics x 1 year, one clinic per chunk), without dirt: every id a row points at
exists, claims add up to their charge lines, no balance goes negative. And dirt never records the future: a
re-sent version of a row is never later than as_of (the end of history).

At medium scale (seed 7) the clean generator used to leave 2,162 charge lines pointing at claims not in
claims.csv (lines were cut at posted_at, claims at submitted_at); the dbt relationship/invariant warnings on
therapists, billed = sum of lines and negative balances came from dirt (a quarantined therapist row,
quarantined charge lines and patient-responsibility rows), which is what dirt is for.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from seed_metrics import connect

from seed_data.generator import generate


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("multi_clean")
    generate(out, scale="multi_test", seed=7, dirty=0.0)
    return out


@pytest.fixture(scope="module")
def mcon(multi) -> duckdb.DuckDBPyConnection:
    return connect(multi)


def _n(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return con.execute(sql).fetchone()[0]


def test_two_clinics_streamed(mcon):
    assert _n(mcon, "select count(*) from clinics") == 2
    assert _n(mcon, "select count(distinct clinic_id) from scheduling_events") == 2
    for table, key in (
        ("therapists", "therapist_id"),
        ("patients", "patient_id"),
        ("claims", "claim_id"),
        ("charges", "charge_id"),
        ("remittances", "remit_id"),
        ("scheduling_events", "event_id"),
        ("intake_events", "event_id"),
        ("documentation_events", "note_id"),
        ("authorizations", "auth_id"),
        ("marketing_touches", "touch_id"),
    ):
        assert _n(mcon, f"select count(*) - count(distinct {key}) from {table}") == 0, table


REFERENCES = [
    ("scheduling_events", "therapist_id", "therapists", "therapist_id"),
    ("scheduling_events", "patient_id", "patients", "patient_id"),
    ("scheduling_events", "referral_id", "intake_events", "referral_id"),
    ("documentation_events", "therapist_id", "therapists", "therapist_id"),
    ("documentation_events", "appointment_id", "scheduling_events", "appointment_id"),
    ("charges", "claim_id", "claims", "claim_id"),
    ("charges", "appointment_id", "scheduling_events", "appointment_id"),
    ("charges", "therapist_id", "therapists", "therapist_id"),
    ("claims", "patient_id", "patients", "patient_id"),
    ("claims", "payer_id", "payers", "payer_id"),
    ("remittances", "claim_id", "claims", "claim_id"),
    ("authorizations", "episode_id", "scheduling_events", "episode_id"),
    ("intake_events", "patient_id", "patients", "patient_id"),
    ("intake_events", "referring_physician_id", "referring_physicians", "physician_id"),
    ("marketing_touches", "referral_id", "intake_events", "referral_id"),
    ("therapists", "clinic_id", "clinics", "clinic_id"),
]


@pytest.mark.parametrize("src,col,dst,key", REFERENCES, ids=[f"{r[0]}.{r[1]}" for r in REFERENCES])
def test_every_reference_exists(mcon, src, col, dst, key):
    orphans = _n(
        mcon,
        f"""select count(*) from {src} s where s.{col} is not null
                          and s.{col} not in (select {key} from {dst} where {key} is not null)""",
    )
    assert orphans == 0


def test_claims_add_up_to_their_charge_lines(mcon):
    row = mcon.execute("""
        with l as (select claim_id, sum(charge_usd::decimal(18, 2)) as lines from charges group by 1)
        select count(*) filter (where l.claim_id is null),
               count(*) filter (where c.billed_usd::decimal(18, 2) <> l.lines)
        from claims c left join l using (claim_id)""").fetchone()
    assert row == (0, 0)  # every claim has its lines, and billed = their sum


def test_no_negative_balances(mcon):
    row = mcon.execute("""
        with r as (
            select claim_id,
                sum(amount_usd::decimal(18, 2)) filter (where event_type in
                    ('payer_payment', 'contractual_adjustment', 'patient_responsibility', 'write_off')) as resolved,
                coalesce(sum(amount_usd::decimal(18, 2)) filter (where event_type = 'patient_responsibility'), 0) as pr,
                coalesce(sum(amount_usd::decimal(18, 2)) filter (where event_type = 'patient_payment'), 0) as pp,
                count(*) filter (where amount_usd::decimal(18, 2) < 0) as negative
            from remittances group by 1)
        select count(*) filter (where coalesce(r.resolved, 0) > c.billed_usd::decimal(18, 2)),
               count(*) filter (where r.pp > r.pr),
               sum(r.negative)
        from claims c join r using (claim_id)""").fetchone()
    assert row == (0, 0, 0)  # insurance balance >= 0, patient balance >= 0, no negative amounts


def test_dirt_never_records_after_as_of(tmp_path):
    """A heavy dirt rate on a short history: re-sent versions (and their changed signed_at) stay <= as_of,
    and everything else that records the past does too; only future appointments' scheduled_start may be later."""
    out = tmp_path / "dirty"
    generate(out, scale="multi_test", seed=3, dirty=0.05, as_of=date(2025, 6, 30))
    end = "2025-06-30 23:59:59"
    past_columns = {
        "intake_events": ["event_at"],
        "scheduling_events": ["event_at"],
        "remittances": ["event_at"],
        "claims": ["submitted_at"],
        "charges": ["posted_at"],
        "documentation_events": ["created_at", "signed_at"],
        "authorizations": ["received_at"],
        "patients": ["created_at", "updated_at"],
        "marketing_touches": ["touched_at"],
        "therapists": ["updated_at"],
        "clinics": ["updated_at"],
        "referring_physicians": ["updated_at"],
        "marketing_spend": ["reported_at"],
    }
    resent_seen = 0
    for source, cols in past_columns.items():
        df = pl.read_csv(out / f"{source}.csv", infer_schema=False)
        for col in cols:
            ts = df[col].str.strptime(pl.Datetime, "%Y-%m-%d %H:%M:%S", strict=False)
            late = df.filter(ts > pl.lit(end).str.to_datetime())
            assert late.height == 0, f"{source}.{col}: {late.head(3)}"
    import json

    manifest = json.loads((out / "truth" / "manifest.json").read_text())
    resent_seen = sum(d.get("resent", 0) for d in manifest["dirt"].values())
    assert resent_seen > 50  # the rule was exercised
