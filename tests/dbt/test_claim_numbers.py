"""A payer's remittance that names a claim by the claim's own number (a FHIR ClaimResponse's request.identifier, the
claim's Claim.identifier) links to that claim, whichever of the two arrives first: the claim's number is landed with
it (claims.claim_number) and int_claim_links resolves it, and on an incremental night a claim that brings a number
re-links the remittances already carrying it. Real loader, real dbt build, incremental and full."""

from __future__ import annotations

import duckdb
import pytest
from conftest import copy_of

from ingestion.loader import ingest
from ptpulse.build.orchestrate import build
from tests.built import open_built

REMITTANCE = (
    "remit_id,claim_id,payer_id,event_type,event_at,amount_usd,group_code,carc_code,check_number\n"
    "RMX1,PCN-7,PY1,payer_payment,2025-03-21 12:00:00,55.00,,,CHK9\n"
)
CLAIM = (
    "claim_id,episode_id,patient_id,clinic_id,payer_id,service_date,submitted_at,billed_usd,claim_number\n"
    "CX1,E01,P01,CL001,PY1,2025-03-10,2025-03-10 16:00:00,90.00,PCN-7\n"
)


def _night(home, tmp_path, name: str, text: str, full_refresh: bool) -> duckdb.DuckDBPyConnection:
    folder = tmp_path / name
    folder.mkdir()
    (folder / name).write_text(text)
    assert [r.rows_landed for r in ingest([folder], home)] == [1]
    result = build(home, full_refresh=full_refresh)
    assert result.ok, result.message
    assert result.full_refresh == full_refresh
    return open_built(home.analytics_db)


def _link(con) -> tuple:
    return con.execute(
        "select claim_id, claim_link from intermediate.int_claim_links where source = 'remittances' and row_id = 'RMX1'"
    ).fetchone()


@pytest.mark.parametrize("full_refresh", [False, True], ids=["incremental", "full"])
def test_a_remittance_naming_the_claims_number_links_to_it_whichever_arrives_first(tiny_home, tmp_path, full_refresh):
    home = copy_of(tiny_home, tmp_path / "home")
    with _night(home, tmp_path, "remittances_payer.csv", REMITTANCE, full_refresh) as con:
        assert _link(con) == ("PCN-7", "source")  # no claim holds the number yet: carried as written
        assert con.execute("select count(*) from marts.claims where claim_id = 'CX1'").fetchone()[0] == 0
    with _night(home, tmp_path, "claims_emr.csv", CLAIM, full_refresh) as con:
        assert _link(con) == ("CX1", "claim_number")
        paid = con.execute("select payer_paid_usd from marts.claims where claim_id = 'CX1'").fetchone()[0]
        unknown = con.execute(
            "select count(*) from intermediate.int_remittances_attributed where remit_id = 'RMX1' and not claim_known"
        ).fetchone()[0]
    assert str(paid) == "55.00" and unknown == 0


def test_an_id_wins_over_a_number_and_a_number_two_claims_share_links_neither(tiny_home, tmp_path):
    home = copy_of(tiny_home, tmp_path / "home")
    shared = (
        CLAIM
        + "CX2,E01,P01,CL001,PY1,2025-03-10,2025-03-10 16:05:00,90.00,PCN-7\n"
        + (
            "CX3,E01,P01,CL001,PY1,2025-03-10,2025-03-10 16:10:00,90.00,C01\n"  # a number that is another claim's id
        )
    )
    remit = REMITTANCE + "RMX2,C01,PY1,payer_payment,2025-03-21 12:00:00,5.00,,,CHK9\n"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "claims_emr.csv").write_text(shared)
    (tmp_path / "in" / "remittances_payer.csv").write_text(remit)
    ingest([tmp_path / "in"], home)
    result = build(home, full_refresh=True)
    assert result.ok, result.message
    with open_built(home.analytics_db) as con:
        links = con.execute(
            "select row_id, claim_id, claim_link from intermediate.int_claim_links where source = 'remittances' "
            "and row_id in ('RMX1', 'RMX2') order by row_id"
        ).fetchall()
    assert links == [("RMX1", "PCN-7", "source"), ("RMX2", "C01", "source")]
