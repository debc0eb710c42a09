"""Marketing and analysts never receive a patient's name, phone or email: not on any page they may open,
not through the SQL page. Names and phones come from the generated practice's patients.csv."""

from __future__ import annotations

import csv
import re

import duckdb
import pytest
from app_helpers import open_page, rendered_text

from app.lib import auth, sql_guard, sql_worker
from app.lib.db import AnalyticsDb
from app.lib.queries.base import DbReader, Filters, data_date_range
from app.lib.queries.funnel import STAGES, funnel_drilldown
from app.lib.queries.work_queue import queue_candidates
from ptpulse.core.deid import EXCLUDED_COLUMNS, PHI_COLUMNS

pytestmark = pytest.mark.slow  # real builds: under xdist this file starts early (tests/conftest.py)


@pytest.fixture(scope="session")
def identities(small_practice) -> dict[str, set[str]]:
    files = sorted(small_practice.glob("patients*.csv"))
    assert files, "the generated practice has no patients.csv"
    names, phones, emails = set(), set(), set()
    for path in files:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row.get("first_name") and row.get("last_name"):
                    names.add(f"{row['first_name']} {row['last_name']}")
                if row.get("phone") and len(row["phone"]) >= 7:
                    phones.add(row["phone"])
                if row.get("email"):
                    emails.add(row["email"])
    # Clinicians and referring physicians are shown by name on purpose (they are not patients); a patient
    # who happens to share a clinician's full name cannot be told apart by a text search, so skip those.
    professionals = set()
    for pattern in ("referring_physicians*.csv", "therapists*.csv"):
        for path in small_practice.glob(pattern):
            with open(path, newline="", encoding="utf-8") as fh:
                professionals |= {f"{r['first_name']} {r['last_name']}" for r in csv.DictReader(fh)}
    names -= professionals
    assert len(names) > 100 and len(phones) > 100
    return {"names": names, "phones": phones, "emails": emails}


# A word of text: letters and digits, joined inside by - . @ or ' (a phone 609-555-6642, an email, O'Brien), so a
# value's words are the same whether it stands alone, in a sentence or between a CSV's commas and quotes.
_WORD = re.compile(r"[A-Za-z0-9]+(?:[-.@'][A-Za-z0-9]+)*")


def _leaks(text: str, identities: dict[str, set[str]]) -> list[str]:
    """The identities that appear in `text` as whole words (at most 10). Only a value whose every word is among the
    text's words is searched for as a string: a search of every identity in every table's text was most of this
    file's time (~100 s of a ~110 s scan), the word filter ~2 s."""
    words = set(_WORD.findall(text))
    found = [
        v
        for kind in ("names", "phones", "emails")
        for v in identities[kind]
        if set(_WORD.findall(v)) <= words and v in text
    ]
    return sorted(found)[:10]


def test_the_leak_check_finds_an_identity_wherever_it_stands(identities):
    name, phone, email = (sorted(identities[kind])[0] for kind in ("names", "phones", "emails"))
    text = f'id,who\n1,"{name}"\n2,call {phone}.\n3,<{email}>;x\n'
    assert _leaks(text, identities) == sorted([name, phone, email])
    assert _leaks(text.replace(phone, "0" + phone).replace(email, "x" + email), identities) == [name]


def test_identities_do_reach_roles_allowed_to_see_them(app_home, identities):
    """The check below is meaningful: the same search finds names on the front desk's queue."""
    at = open_page(app_home, "front_desk", "work_queue")
    assert _leaks(rendered_text(at), identities)


@pytest.mark.parametrize("role", ["marketing", "analyst"])
def test_deidentified_roles_never_receive_names_or_phones(app_home, identities, role):
    at = None
    for page in auth.pages_for(role):
        at = open_page(app_home, role, page, at)
        assert not at.exception, (page, [e.value for e in at.exception])
        text = rendered_text(at)
        assert not _leaks(text, identities), (role, page, _leaks(text, identities))
        for frame in at.dataframe:
            assert not {c.lower() for c in frame.value.columns} & PHI_COLUMNS, (page, list(frame.value.columns))


@pytest.mark.parametrize("role", ["marketing", "analyst"])
def test_funnel_drilldown_for_every_stage_is_deidentified(app_home, identities, role):
    db = AnalyticsDb(app_home.analytics_db)
    reader = DbReader(db, auth.Scope(role))
    lo, hi = data_date_range(reader)
    f = Filters(lo, hi)
    for stage in STAGES:
        df = funnel_drilldown(reader, f, stage, limit=100000)
        assert "patient_name" not in df.columns and "patient_id" not in df.columns
        assert not _leaks(df.to_csv(), identities)
    queue = queue_candidates(reader, f)
    assert not _leaks(queue.to_csv(), identities)


def test_deidentified_twin_holds_no_identities(app_home, identities):
    """analytics_deid.duckdb, served by the build beside analytics.duckdb, is what analysts open directly."""
    assert app_home.analytics_deid_db.exists()
    with duckdb.connect(str(app_home.analytics_deid_db), read_only=True) as con:
        tables = con.execute("select schema_name, table_name from duckdb_tables() where not internal").fetchall()
        views = con.execute("select view_name from duckdb_views() where not internal").fetchall()
        assert not views
        assert {s for s, _ in tables} == {"marts", "ml", "meta"}
        names = {f"{s}.{t}" for s, t in tables}
        assert "marts.dim_patients" not in names
        assert {"marts.build_info", "meta.builds", "marts.referral_funnel", "ml.no_show_scores"} <= names
        for schema, table in tables:
            frame = con.execute(f'select * from "{schema}"."{table}"').df()
            cols = {c.lower() for c in frame.columns}
            assert not cols & PHI_COLUMNS and not cols & EXCLUDED_COLUMNS, (schema, table, sorted(cols))
            assert not _leaks(frame.to_csv(), identities), (schema, table)
        funnel = con.execute("select count(*), count(distinct patient_key) from marts.referral_funnel").fetchone()
    with duckdb.connect(str(app_home.analytics_db), read_only=True) as con:
        full = con.execute("select count(*), count(distinct patient_key) from marts.referral_funnel").fetchone()
        built = con.execute("select build_id from marts.build_info").fetchone()
    assert funnel == full  # same rows, fewer columns
    with duckdb.connect(str(app_home.analytics_deid_db), read_only=True) as con:
        assert con.execute("select build_id from marts.build_info").fetchone() == built  # the same build


def test_sql_sandbox_holds_no_identities(app_home, identities, tmp_path):
    sandbox = sql_guard.build_sandbox(app_home.analytics_deid_db)
    catalog = sql_guard.sandbox_catalog(sandbox)
    assert "marts.dim_patients" not in set(catalog["table_name"])
    # every table, read whole on the connection the analysts' worker opens (open_locked), here in this process: a
    # worker process per table cost ~2 s each and showed the same rows
    con = sql_worker.open_locked(app_home.analytics_deid_db, sandbox.limits, tmp_path / "spill")
    try:
        for table in catalog["table_name"]:
            frame = con.execute(f"select * from {table}").df()
            assert not {c.lower() for c in frame.columns} & PHI_COLUMNS, table
            assert not _leaks(frame.to_csv(), identities), table
        funnel_rows = con.execute("select count(*) from marts.referral_funnel").fetchone()[0]
    finally:
        con.close()
    # and the route itself: the worker process returns the whole table, without an identity
    res = sql_worker.run_readonly(sandbox, "select * from marts.referral_funnel", row_cap=10**7)
    assert len(res.frame) == funnel_rows > 0
    assert not {c.lower() for c in res.frame.columns} & PHI_COLUMNS
    assert not _leaks(res.frame.to_csv(), identities)
