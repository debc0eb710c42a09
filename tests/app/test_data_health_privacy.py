"""Data health never shows a de-identified role a file name: exporters name per-patient files after the patient
(Synthea writes `<Given>_<Family>_<uuid>.json`), so a name in the loads table, or in a message quoting it, is PHI."""

from __future__ import annotations

import shutil

import duckdb
import pytest
from app_helpers import env, open_page, rendered_text

from app.lib import auth
from app.lib.db import AnalyticsDb
from app.lib.privacy import deidentify
from app.lib.queries.base import DbReader
from app.lib.queries.data_health import loads
from ptpulse.core.config import get_settings

PATIENT_FILE = "Jerry_Luna_6f1c2b7e-1111-2222-3333-444455556666.json"


@pytest.fixture(scope="module")
def named_file_home(app_home, tmp_path_factory):
    """A copy of the built home whose first load was a per-patient file, its message quoting the file."""
    target = tmp_path_factory.mktemp("named_file") / "home"
    shutil.copytree(app_home.home, target)
    settings = get_settings(target)
    con = duckdb.connect(str(settings.analytics_db.resolve()))
    try:
        first = con.execute("select min(load_id) from marts.data_quality").fetchone()[0]
        con.execute(
            "update marts.data_quality set file = ?, message = ? where load_id = ?",
            [f"/srv/incoming/{PATIENT_FILE}", f"{PATIENT_FILE}: 1 row(s) quarantined", first],
        )
    finally:
        con.close()
    return settings


@pytest.mark.parametrize("role", ["analyst", "marketing"])
def test_de_identified_roles_get_no_file_name_in_the_loads(named_file_home, role):
    frame = loads(DbReader(AnalyticsDb(named_file_home.analytics_db), auth.Scope(role)))
    assert len(frame) and "file" not in frame.columns
    assert not frame.astype(str).apply(lambda c: c.str.contains("Jerry|Luna")).any().any()
    assert frame["message"].str.contains(r"\(file\): 1 row", regex=True).any()  # the message itself stays useful


def test_admins_see_the_files_own_name_never_its_path(named_file_home):
    frame = loads(DbReader(AnalyticsDb(named_file_home.analytics_db), auth.Scope("admin")))
    assert PATIENT_FILE in set(frame["file"]) and not frame["file"].str.contains("/srv/").any()


def test_the_analysts_data_health_page_shows_no_file_name(named_file_home):
    at = open_page(named_file_home, "analyst", "data_health")
    assert not at.exception
    text = rendered_text(at)
    assert "Jerry" not in text and "Luna" not in text


def test_deidentify_drops_what_the_twin_drops():
    import pandas as pd

    frame = pd.DataFrame({"clinic_id": ["CL1"], "patient_id": ["P1"], "file": ["x.csv"], "note": ["called"]})
    assert list(deidentify(frame).columns) == ["clinic_id"]


def test_the_admin_reads_the_latest_rejected_rows(app_home):
    """Data health's "Show the latest 200 rejected rows" (admin): a table of raw._quarantine's rows (before: every
    click said 'Could not read raw.duckdb right now (Binder Error: Ambiguous reference ...)')."""
    with duckdb.connect(str(app_home.raw_db), read_only=True) as con:
        set_aside = con.execute("select count(*) from raw.raw._quarantine").fetchone()[0]
    assert set_aside > 0  # the small practice's generator sets rows aside on purpose
    at = open_page(app_home, "admin", "data_health")
    with env(PTPULSE_HOME=str(app_home.home), PTPULSE_DEMO_ROLE="admin"):
        at.button(key="dh_show_rejected").click().run()
    assert not at.exception and not [w for w in at.warning if "Could not read" in w.value]
    shown = [t.value for t in at.dataframe if {"rule", "record"} <= set(t.value.columns)]
    assert shown and len(shown[0]) == min(200, set_aside)
