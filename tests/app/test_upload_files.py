"""The Upload page counts files, as the user offered them, not loads (review: four files, one a FHIR Bundle landing in
three tables, showed "Files landed 5 of 6"); and a limited upload (a clinic manager's, scoped_uploads/) keeps only
what an administrator may still load, for PTPULSE_SCOPED_UPLOAD_DAYS, instead of every file for ever.

The page in AppTest running the real `ptpulse ingest --json` subprocess into a real DuckDB home; the background
refresh the page starts is recorded, not run (a real one rebuilds the practice; tests/app/test_upload.py runs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from multi_practice import metrics, open_page, run

from app.lib import uploads
from ptpulse.core.config import get_settings
from tests.interop.fhir_bundles import REFERRAL_AND_VISIT

TINY = Path(__file__).parents[1] / "dbt" / "tiny_practice"
ROOT = Path(__file__).parents[2]

# a Bundle carrying one referral and one visit: three loads, one per table
BUNDLE = REFERRAL_AND_VISIT


@pytest.fixture
def home(tmp_path):
    return get_settings(tmp_path / "home").ensure()


def _upload(home, files, clinics: str = "*"):
    at = open_page(home, "manager", "upload", clinics=clinics)
    at.file_uploader[0].set_value([(name, data, "application/octet-stream") for name, data in files])
    run(at, home, PTPULSE_DEMO_ROLE="manager", PTPULSE_DEMO_CLINICS=clinics)
    at.button(key="upload_go").click()
    run(at, home, PTPULSE_DEMO_ROLE="manager", PTPULSE_DEMO_CLINICS=clinics)
    return at


def test_a_bundle_landing_in_several_tables_counts_as_one_file(home, refreshes):
    files = [("bundle.json", json.dumps(BUNDLE).encode())]
    files += [(name, (TINY / name).read_bytes()) for name in ("clinics.csv", "payers.csv", "therapists.csv")]
    at = _upload(home, files)

    shown = metrics(at)
    assert shown["Files landed"] == "4 of 4", shown
    assert shown["Files refused"] == "0"
    table = at.dataframe[0].value.set_index("file")
    assert sorted(table.index) == ["bundle.json", "clinics.csv", "payers.csv", "therapists.csv"]
    bundle = table.loc["bundle.json"]
    assert bundle["result"] == "Landed"
    assert bundle["landed_into"] == "intake_events (1), scheduling_events (1)"
    assert (bundle["rows_landed"], bundle["rows_quarantined"]) == (2, 1)
    assert bundle["why_set_aside"].startswith("referring_physicians: ")  # which table set the row aside
    assert table.loc["clinics.csv", "landed_into"] == "clinics (1)"
    # the loads stay one level down: the Bundle's three, one per table
    loads = at.dataframe[1].value
    assert len(loads) == 6
    assert sorted(loads.loc[loads["file"] == "bundle.json", "source"]) == [
        "intake_events",
        "referring_physicians",
        "scheduling_events",
    ]
    assert any("6 loads of these 4 files" in e.label for e in at.expander)
    assert refreshes  # rows landed: the dashboards rebuild


def _scheduling_with_another_clinics_row() -> bytes:
    lines = (TINY / "scheduling_events.csv").read_text(encoding="utf-8").splitlines()
    header, first, *rest = lines
    return "\n".join([header, first.replace(",CL001,", ",CL999,", 1), *rest]).encode() + b"\n"


def test_a_limited_upload_keeps_only_what_an_administrator_may_still_load(home, refreshes, monkeypatch):
    files = [
        ("scheduling_events.csv", _scheduling_with_another_clinics_row()),  # one row of CL999: set aside
        ("therapists.csv", (TINY / "therapists.csv").read_bytes()),  # every row CL001: landed whole
        ("patients.csv", (TINY / "patients.csv").read_bytes()),  # no clinic column: refused
    ]
    at = _upload(home, files, clinics="CL001")
    table = at.dataframe[0].value.set_index("file")
    assert table.loc["scheduling_events.csv", "result"] == "Landed"
    assert table.loc["scheduling_events.csv", "rows_quarantined"] == 1
    assert "kept 30 days" in table.loc["scheduling_events.csv", "fix"]
    assert table.loc["therapists.csv", "rows_quarantined"] == 0
    assert table.loc["patients.csv", "result"] == "Refused"

    root = home.home / uploads.SCOPED_DIR
    (kept,) = list(root.iterdir())
    assert sorted(p.name for p in kept.iterdir()) == ["scheduling_events.csv"]  # nothing else is left there

    # what it is kept for: an administrator's load of the same folder lands the row set aside
    done = subprocess.run(
        [sys.executable, "-m", "ptpulse.cli", "ingest", str(kept), "--home", str(home.home), "--json"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=120,
        check=False,
    )
    (answer,) = json.loads(done.stdout)["files"]
    assert (answer["status"], answer["rows_landed"]) == ("loaded", 1), answer

    # past PTPULSE_SCOPED_UPLOAD_DAYS the next upload deletes it
    old = time.time() - 31 * 86400
    os.utime(kept, (old, old))
    _upload(home, [("therapists.csv", (TINY / "therapists.csv").read_bytes())], clinics="CL001")
    assert not kept.exists()
    assert not list(root.iterdir())  # that upload landed whole (its rows were loaded before): nothing kept


def test_a_limited_upload_that_landed_whole_is_not_kept(home, refreshes):
    _upload(home, [("therapists.csv", (TINY / "therapists.csv").read_bytes())], clinics="CL001")
    assert not list((home.home / uploads.SCOPED_DIR).iterdir())


def test_no_days_keeps_nothing(home, refreshes, monkeypatch):
    monkeypatch.setenv("PTPULSE_SCOPED_UPLOAD_DAYS", "0")
    _upload(home, [("scheduling_events.csv", _scheduling_with_another_clinics_row())], clinics="CL001")
    assert not list((home.home / uploads.SCOPED_DIR).iterdir())
