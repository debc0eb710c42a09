"""Uploads in the browser and the first run (issue 14 items 4 and 7): safe saving of hostile names and zips, the
upload page driven by AppTest with real seed-data files and a hostile one, a real `ptpulse ingest --json`
subprocess into a tmp PTPULSE_HOME, the background refresh to a served Overview, and every page of an empty
install showing what to load instead of an error."""

from __future__ import annotations

import io
import json
import shutil
import stat
import subprocess
import sys
import zipfile

import duckdb
import pytest
from app_helpers import env, open_page, rendered_text, rerun, wait_refresh

from app.lib import audit, auth, uploads
from ptpulse.core.config import get_settings

pytestmark = pytest.mark.slow  # real builds: under xdist this file starts early (tests/conftest.py)


@pytest.fixture
def empty_home(tmp_path):
    return get_settings(tmp_path / "home").ensure()


# ------------------------------------------------------------------ saving


@pytest.mark.parametrize(
    "offered,expected",
    [
        ("intake_events.csv", "intake_events.csv"),
        ("../../etc/intake_events.csv", "intake_events.csv"),
        ("..\\..\\Windows\\charges_nov.CSV", "charges_nov.csv"),
        (".hidden.csv", "hidden.csv"),
        ("a b;rm -rf.csv", "a_b_rm_-rf.csv"),
        ("Überweisungen.ndjson", "Uberweisungen.ndjson"),
        ("..", "upload"),
        ("x" * 300 + ".835", "x" * 116 + ".835"),
    ],
)
def test_safe_name(offered, expected):
    assert uploads.safe_name(offered) == expected


def _zip(members: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def test_hostile_files_never_leave_the_upload_folder(empty_home, monkeypatch):
    monkeypatch.setenv("PTPULSE_UPLOAD_MAX_MB", "0.01")  # 10 KB
    bulk = _zip(
        {
            "bulk/Patient.ndjson": b'{"resourceType": "Patient"}\n',
            "../../../escape.csv": b"a,b\n",
            "__MACOSX/._Patient.ndjson": b"junk",
            "inner.zip": b"PK",
            "big.csv": b"x" * 20_000,
        },
        links=("link.csv",),
    )
    saved = uploads.save_files(
        empty_home,
        [
            ("../../outside.csv", io.BytesIO(b"a,b\n1,2\n")),
            ("tool.exe", io.BytesIO(b"MZ")),
            ("huge_intake_events.csv", io.BytesIO(b"y" * 20_000)),
            ("export.zip", io.BytesIO(bulk)),
        ],
    )
    assert saved.folder.parent == empty_home.incoming
    on_disk = sorted(p.name for p in saved.folder.iterdir())
    assert on_disk == sorted(saved.files) == ["Patient.ndjson", "escape.csv", "outside.csv"]
    assert not (empty_home.home / "outside.csv").exists() and not (empty_home.home.parent / "escape.csv").exists()
    refused = {r["file"]: r["message"] for r in saved.not_saved}
    assert set(refused) == {
        "tool.exe",
        "huge_intake_events.csv",
        "export.zip/inner.zip",
        "export.zip/big.csv",
        "export.zip/link.csv",
    }
    assert "upload limit" in refused["huge_intake_events.csv"] and "not read" in refused["tool.exe"]
    assert saved.offered["Patient.ndjson"] == "export.zip/Patient.ndjson"


def test_two_files_with_one_name_are_both_kept(empty_home):
    saved = uploads.save_files(empty_home, [("a/clinics.csv", io.BytesIO(b"1")), ("b/clinics.csv", io.BytesIO(b"2"))])
    assert saved.files == ["clinics.csv", "clinics_2.csv"]


# ------------------------------------------------------------------ ingest --json


def test_ingest_json_reports_each_file_without_values(small_practice, tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "intake_events.csv").write_bytes((small_practice / "intake_events.csv").read_bytes())
    (folder / "patients.csv").write_bytes(b"\xff\xfe\x00binary")
    home = tmp_path / "home"
    proc = subprocess.run(
        [sys.executable, "-m", "ptpulse.cli", "ingest", str(folder), "--home", str(home), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2  # a refused file: the same exit code as without --json
    answer = json.loads(proc.stdout)
    by_file = {f["file"]: f for f in answer["files"]}
    intake, patients = by_file["intake_events.csv"], by_file["patients.csv"]
    assert intake["status"] == "loaded" and intake["rows_quarantined"] > 0
    assert sum(r["rows"] for r in intake["quarantine_by_rule"]) == intake["rows_quarantined"]
    assert {"rule", "column", "rows"} == set(intake["quarantine_by_rule"][0])
    assert intake["rows_read"] == intake["rows_landed"] + intake["rows_quarantined"] + intake["rows_duplicate"]
    assert patients["status"] == "refused" and "UTF-8" in patients["message"]
    assert answer["totals"]["rows_landed"] == intake["rows_landed"]
    # never a row value: no quarantined record's content appears in the answer
    con = duckdb.connect(str(home / "raw.duckdb"), read_only=True)
    records = [r[0] for r in con.execute("select record::varchar from raw.raw._quarantine").fetchall()]
    con.close()
    values = {v for rec in records for v in json.loads(rec).values() if isinstance(v, str) and len(v) > 5}
    assert values and not [v for v in values if v in proc.stdout]


# ------------------------------------------------------------------ the page, end to end


def test_upload_page_validates_lands_and_refreshes_to_a_served_overview(small_practice, empty_home):
    home = empty_home
    at = open_page(home, "manager", "upload")
    assert not at.exception, [e.value for e in at.exception]
    uploader = at.file_uploader[0]
    # the whole practice (every export, as a manager would send it on day one)
    files = [(p.name, p.read_bytes(), "text/csv") for p in sorted(small_practice.glob("*.csv"))]
    hostile = ("../../../etc/charges.csv", b"\x00\x01\x02 not a csv \xff" * 10, "text/csv")
    uploader.set_value([*files, hostile, ("intake_events_notes.txt", b"just some notes", "text/plain")])
    rerun(at, home)
    at.button(key="upload_go").click()
    rerun(at, home)
    assert not at.exception, [e.value for e in at.exception]

    table = at.dataframe[0].value.set_index("file")
    assert table.loc["intake_events.csv", "result"] == "Landed"
    intake = table.loc["intake_events.csv"]
    assert intake["rows_quarantined"] > 0 and "(event_id)" in intake["why_set_aside"]
    assert intake["rows_read"] == intake["rows_landed"] + intake["rows_quarantined"] + intake["rows_duplicate"]
    # the hostile file shares a name with the real export: kept apart as charges_2.csv, refused by the ingest
    assert table.loc["charges_2.csv", "result"] == "Refused" and "UTF-8" in table.loc["charges_2.csv", "fix"]
    assert table.loc["charges.csv", "result"] == "Landed"
    assert table.loc["intake_events_notes.txt", "result"] == "Refused"
    assert str(home.home) not in rendered_text(at)  # no server paths in what the page shows
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Files landed"] == f"{len(files)} of {len(files) + 2}" and metrics["Files refused"] == "2"

    # the refused files left incoming/
    assert not list(home.incoming.rglob("charges_2.csv"))
    assert list((home.home / uploads.REFUSED_DIR).rglob("charges_2.csv"))
    events = audit.recent(home.app_db)["event"].tolist()
    assert "upload.ingested" in events and "refresh.started" in events

    status = wait_refresh(home)
    assert status.ok, status.tail
    # what landed is exactly what the table says (read once the refresh, a writer, is done with the file;
    # it skips the files the page already landed)
    con = duckdb.connect(str(home.raw_db), read_only=True)
    landed = con.execute("select count(*) from raw.raw.intake_events").fetchone()[0]
    con.close()
    assert landed == intake["rows_landed"]
    overview = open_page(home, "manager", "overview", at=None)
    assert not overview.exception and not overview.error, [e.value for e in overview.error]
    assert "No-show rate" in [m.label for m in overview.metric]

    # the same upload again lands nothing twice and starts no rebuild
    again = open_page(home, "manager", "upload")
    again.file_uploader[0].set_value(files[:1])
    rerun(again, home)
    again.button(key="upload_go").click()
    rerun(again, home)
    row = again.dataframe[0].value.iloc[0]
    assert row["result"] == "Already loaded (same file)" and row["rows_landed"] == 0
    assert any("not rebuilt" in i.value for i in again.info)


# ------------------------------------------------------------------ first run


FIRST_RUN_CASES = [(role, page) for role in auth.ROLES for page in auth.pages_for(role)]


@pytest.mark.parametrize("role,page", FIRST_RUN_CASES)
def test_first_run_every_page_says_what_to_load(empty_home, role, page):
    with env(PTPULSE_HOME=str(empty_home.home)):
        at = open_page(empty_home, role, page)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    links = [link.proto.page for link in at.get("page_link")]
    if page in ("admin", "upload"):
        return  # they work without data (refresh, roles, the upload itself)
    infos = " ".join(i.value for i in at.info)
    assert "no data has been loaded yet" in infos, infos
    assert not at.metric and not at.dataframe
    if role in auth.UPLOAD_ROLES:
        assert any(link.endswith("upload") for link in links), links
    else:
        assert "Ask an administrator or a clinic manager" in infos


def test_first_run_message_names_the_pages_own_exports():
    from app.lib.source_needs import first_run_message

    text = first_run_message("attribution", can_upload=True)
    assert "(`marketing_touches`)" in text and "(`intake_events`)" in text and "Upload data" in text


# ------------------------------------------------------------------ loaded, not built


@pytest.fixture
def not_built_home(tmp_path, ingested_home):
    """Exports ingested (raw.duckdb) but no served build: the build has not run yet, or it failed."""
    home = get_settings(tmp_path / "home").ensure()
    shutil.copy2(ingested_home.raw_db, home.raw_db)
    return home


@pytest.mark.parametrize("role,page", FIRST_RUN_CASES)
def test_loaded_but_not_built_says_build_not_upload_again(not_built_home, role, page):
    """Review #3: data loaded but never built used to greet every page with 'no data has been loaded yet' and
    ask for the exports again; it says the dashboards are not built and points to the refresh."""
    at = open_page(not_built_home, role, page)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    if page in ("admin", "upload"):
        return  # they work without data
    infos = " ".join(i.value for i in at.info)
    assert "dashboards are not built yet" in infos and "no need to upload the exports again" in infos, infos
    assert "no data has been loaded yet" not in infos
    assert not at.metric and not at.dataframe
    links = [link.proto.page for link in at.get("page_link")]
    if role == "admin":
        assert "Admin → Refresh now" in infos and "`ptpulse build`" in infos
        assert any(link.endswith("admin") for link in links), links
    else:
        assert "Ask an administrator" in infos
        assert not any(link.endswith("upload") for link in links), links
    assert str(not_built_home.home) not in infos
