"""Merging source systems (docs/architecture.md "Merging sources", dbt macro merge_latest): the tiny practice's
native CSVs plus a billing system's export of some of the same claims (a vendor profile, so another source
system in raw._loads). Each field of a claim comes from the most authoritative system that carries it, a
vendor delete drops only that system's version, and the payments of one claim come from one system only, so
cash is never counted twice. Real loader (the profile engine), real dbt build.
"""

from __future__ import annotations

from decimal import Decimal

import duckdb
from conftest import copy_of

from ingestion.loader import ingest
from ptpulse.build.orchestrate import build

PROFILE = """
profile: billing_test
vendor: a billing system (test)
defaults: {date_formats: ["%Y-%m-%d"], timestamp_formats: ["%Y-%m-%d %H:%M:%S"], timezone: clinic_local}
value_maps:
  flag: {"A": upsert, "D": tombstone}
files:
  - name: claims
    match: {header_required: [ClaimNo, Account, Facility, Insurer, DOS, Sent, Billed, Flag]}
    feeds: claims
    change_flag: {column: Flag, map: flag}
    columns:
      claim_id: {from: ClaimNo, prefix: true}
      patient_id: {from: Account, prefix: true}
      clinic_id: {from: Facility, prefix: "npi"}
      payer_id: {from: Insurer, prefix: "billing:payer"}
      service_date: {from: DOS, parse: date}
      submitted_at: {from: Sent, parse: timestamp}
      billed_usd: {from: Billed, parse: decimal}
  - name: payments
    match: {header_required: [PaymentNo, ClaimNo, Paid, PaidOn]}
    feeds: remittances
    columns:
      remit_id: {from: PaymentNo, prefix: "billing:payment"}
      claim_id: {from: ClaimNo, prefix: true}
      event_type: {const: payer_payment}
      event_at: {from: PaidOn, parse: timestamp}
      amount_usd: {from: Paid, parse: decimal}
"""

# C01: the native claim, re-sent later by the billing system with its own clinic / payer ids (native wins);
# C02: deleted in the billing system (the native version stays); C99: known to the billing system only.
CLAIMS = """ClaimNo,Account,Facility,Insurer,DOS,Sent,Billed,Flag
C01,P01,1234567893,ACME,2025-03-05,2025-03-09 09:00:00,999.00,A
C02,P01,1234567893,ACME,2025-03-07,2025-03-09 09:00:00,180.00,A
C02,P01,1234567893,ACME,2025-03-07,2025-03-10 09:00:00,180.00,D
C99,P01,1234567893,ACME,2025-03-12,2025-03-13 09:00:00,100.00,A
"""
# C01's payment is the native ledger's payer payment told again (not counted twice); C99's is new money
PAYMENTS = """PaymentNo,ClaimNo,Paid,PaidOn
1,C01,160.00,2025-03-20 12:00:00
2,C99,70.00,2025-03-25 12:00:00
"""


def _cash(con: duckdb.DuckDBPyConnection) -> Decimal:
    return con.execute("select sum(payer_paid_usd) from marts.claims").fetchone()[0]


def test_fields_come_from_the_most_authoritative_system_and_cash_counts_once(tiny_home, tmp_path):
    with duckdb.connect(str(tiny_home.analytics_db), read_only=True) as con:
        native_cash = _cash(con)
        c01 = con.execute(
            "select clinic_id, payer_id, submitted_at, billed_usd, payer_paid_usd from marts.claims "
            "where claim_id = 'C01'"
        ).fetchone()
        claims = con.execute("select count(*) from marts.claims").fetchone()[0]
    home = copy_of(tiny_home, tmp_path / "home")
    exports = tmp_path / "billing"
    exports.mkdir()
    (exports / "claims_export.csv").write_text(CLAIMS)
    (exports / "payments_export.csv").write_text(PAYMENTS)
    profile = tmp_path / "billing_test.yml"
    profile.write_text(PROFILE)
    results = ingest([exports], home, profile=str(profile))
    assert sorted((r.profile, r.status, r.rows_landed) for r in results) == [
        ("billing_test/claims", "loaded", 4),
        ("billing_test/payments", "loaded", 2),
    ]
    result = build(home)
    assert result.ok, result.message
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        assert (
            con.execute(
                "select clinic_id, payer_id, submitted_at, billed_usd, payer_paid_usd from marts.claims "
                "where claim_id = 'C01'"
            ).fetchone()
            == c01
        )  # every field the native CSVs carried, none from the thinner export
        assert con.execute("select count(*) from marts.claims where claim_id = 'C02'").fetchone()[0] == 1
        c99 = con.execute(
            "select clinic_id, payer_id, billed_usd, payer_paid_usd from marts.claims where claim_id = 'C99'"
        ).fetchone()
        assert c99 == ("npi:1234567893", "billing:payer:ACME", Decimal("100.00"), Decimal("70.00"))
        assert con.execute("select count(*) from marts.claims").fetchone()[0] == claims + 1
        assert _cash(con) == native_cash + Decimal("70.00")  # C01's payment told twice counts once


def test_each_kind_of_a_claims_money_comes_from_the_system_that_reports_it(tiny_home, tmp_path):
    """The practice's ledger holds only the front desk's copay of C15; the billing system holds the insurer's payment
    of it. Both count: a copay in the ledger must not hide the payer cash only the other system carries."""
    home = copy_of(tiny_home, tmp_path / "home")
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    (ledger / "remittances_copays.csv").write_text(
        "remit_id,claim_id,payer_id,event_type,event_at,amount_usd,group_code,carc_code,check_number\n"
        "RM901,C15,,patient_payment,2025-03-26 12:00:00,25.00,,,CHK901\n"
    )
    assert ingest([ledger], home)[0].rows_landed == 1
    exports = tmp_path / "billing"
    exports.mkdir()
    (exports / "payments_export.csv").write_text("PaymentNo,ClaimNo,Paid,PaidOn\n3,C15,150.00,2025-03-27 12:00:00\n")
    profile = tmp_path / "billing_test.yml"
    profile.write_text(PROFILE)
    assert ingest([exports], home, profile=str(profile))[0].rows_landed == 1
    result = build(home)
    assert result.ok, result.message
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        c15 = con.execute("select payer_paid_usd, patient_paid_usd from marts.claims where claim_id = 'C15'").fetchone()
    assert c15 == (Decimal("150.00"), Decimal("25.00"))
