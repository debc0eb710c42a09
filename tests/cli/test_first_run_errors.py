"""What a first run says when the operator gets something wrong: a mistyped path, a build before any ingest, a
vendor export with a report title or `;` on line 1, a bad $PTPULSE_MEMORY_LIMIT, a mistyped --home, a PDF given
to `profile draft`, and the help texts of ingest and train.

Real CLI (typer's CliRunner on `ptpulse.cli.app`), real homes under tmp_path, real DuckDB files. A mistyped path
must leave nothing behind (no raw.duckdb, no load history), and a home where no file ever landed a row must never
be built and served as if it were a healthy empty warehouse.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from ptpulse.cli import app
from ptpulse.core.config import get_settings

TINY = Path(__file__).parents[1] / "dbt" / "tiny_practice"


def _run(*args: str, env: dict[str, str] | None = None):
    return CliRunner(env={"COLUMNS": "1000", **(env or {})}).invoke(app, list(args))


def _said(result) -> str:
    """Everything printed, without white space (rich wraps long messages at the console's width)."""
    return "".join(result.output.split())


def _flat(text: str) -> str:
    return "".join(text.split())


def _title_line_export(folder: Path, name: str = "visit_report.csv") -> Path:
    """A vendor's export with a report title above its header (the header itself is a real contract's)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = (TINY / "clinics.csv").read_text(encoding="utf-8").splitlines()
    path = folder / name
    path.write_text("Clinic Roster Report\n" + "\n".join(lines[:3]) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------- 1. a path that is not there


def test_ingest_of_a_missing_path_is_refused_up_front_and_leaves_nothing(tmp_path):
    home = tmp_path / "home"
    typo = str(tmp_path / "exprots")
    result = _run("ingest", typo, "--home", str(home))
    assert result.exit_code == 2, result.output
    assert _flat(f"no such file or folder: {typo}") in _said(result)
    assert "Checkthepath" in _said(result)
    assert not get_settings(home).raw_db.exists()  # no raw.duckdb, so no refused row in a load history either
    shutil.copytree(TINY, tmp_path / "exports")  # the up-front check lets a real folder through
    assert _run("ingest", str(tmp_path / "exports"), "--home", str(home)).exit_code == 0


def test_ingest_json_of_a_missing_path_is_one_error(tmp_path):
    result = _run("ingest", str(tmp_path / "nope"), "--json", "--home", str(tmp_path / "home"))
    assert result.exit_code == 2, result.output
    assert '"error": "no_such_path"' in result.output
    assert not get_settings(tmp_path / "home").raw_db.exists()


def test_refresh_of_a_missing_path_neither_loads_nor_builds(tmp_path):
    home = tmp_path / "home"
    result = _run("refresh", str(tmp_path / "nonexist2"), "--home", str(home))
    assert result.exit_code == 2, result.output
    assert _flat("no such file or folder") in _said(result)
    settings = get_settings(home)
    assert not settings.raw_db.exists()
    assert not settings.analytics_db.exists()


# ------------------------------------------------------------------------------- 1, 2. nothing loaded: no build


def test_build_before_any_ingest_says_nothing_loaded(tmp_path):
    result = _run("build", "--home", str(tmp_path / "home"))
    assert result.exit_code == 1, result.output
    assert _said(result).startswith(_flat("nothing loaded yet: ptpulse ingest FOLDER"))
    assert "buildfailed" not in _said(result)
    assert not get_settings(tmp_path / "home").analytics_db.exists()


def test_build_after_only_refused_files_says_nothing_loaded(tmp_path):
    home = tmp_path / "home"
    export = _title_line_export(tmp_path / "exports")
    first = _run("ingest", str(export), "--home", str(home))
    assert first.exit_code == 2, first.output  # refused: raw.duckdb now holds a refused row and nothing else
    assert get_settings(home).raw_db.exists()
    result = _run("build", "--home", str(home))
    assert result.exit_code == 1, result.output
    assert _flat("nothing loaded yet: ptpulse ingest FOLDER") in _said(result)
    assert not get_settings(home).analytics_db.exists()


def test_refresh_of_only_refused_files_builds_nothing(tmp_path):
    home = tmp_path / "home"
    export = _title_line_export(tmp_path / "exports")
    result = _run("refresh", str(export.parent), "--home", str(home))
    assert result.exit_code == 2, result.output
    assert _flat("nothing loaded yet: ptpulse ingest FOLDER") in _said(result)
    assert not get_settings(home).analytics_db.exists()


def _served_file(home: Path, last_loaded: datetime | None) -> None:
    """A served analytics file as a build writes it (marts.build_info, marts.source_coverage), built now."""
    home.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(get_settings(home).analytics_db))
    try:
        con.execute("CREATE SCHEMA marts")
        con.execute("CREATE TABLE marts.build_info (build_id VARCHAR, built_at TIMESTAMPTZ, as_of DATE)")
        con.execute("INSERT INTO marts.build_info VALUES ('b1', ?, current_date)", [datetime.now(UTC)])
        con.execute("CREATE TABLE marts.source_coverage (source VARCHAR, last_loaded_at TIMESTAMP)")
        con.execute("INSERT INTO marts.source_coverage VALUES ('clinics', ?), ('patients', NULL)", [last_loaded])
    finally:
        con.close()


def test_health_is_unhealthy_when_no_source_ever_loaded(tmp_path):
    home = tmp_path / "home"
    _served_file(home, last_loaded=None)
    result = _run("health", "--home", str(home))
    assert result.exit_code == 1, result.output
    assert _flat("no source has ever loaded") in _said(result)
    assert not get_settings(home).raw_db.exists()  # the probe never opens (nor creates) raw.duckdb
    get_settings(home).analytics_db.unlink()
    _served_file(home, last_loaded=datetime.now(UTC).replace(tzinfo=None))  # one source loaded: not said
    assert _flat("no source has ever loaded") not in _said(_run("health", "--home", str(home)))


# ---------------------------------------------------------------------- 3. a title line or `;` before the name


def test_a_report_title_above_the_header_is_named_not_the_file_name(tmp_path):
    export = _title_line_export(tmp_path / "exports")
    result = _run("ingest", str(export), "--home", str(tmp_path / "home"))
    assert result.exit_code == 2, result.output
    said = _said(result)
    assert _flat("is there a report title above the header") in said.lower()
    assert not said.startswith(_flat("file name"))
    assert "ClinicRosterReport" not in said  # line 1 is never quoted


def test_a_semicolon_separated_export_is_named_for_its_delimiter(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    lines = (TINY / "clinics.csv").read_text(encoding="utf-8").splitlines()
    (folder / "vendor_export.csv").write_text(
        "\n".join(line.replace(",", ";") for line in lines[:3]) + "\n", encoding="utf-8"
    )
    result = _run("ingest", str(folder), "--home", str(tmp_path / "home"))
    assert result.exit_code == 2, result.output
    assert _flat("looks separated by ';'") in _said(result)


# ------------------------------------------------------------------------------ 4. a bad $PTPULSE_MEMORY_LIMIT


def test_a_bad_memory_limit_is_one_line_not_a_traceback(tmp_path):
    result = _run("status", "--home", str(tmp_path), env={"PTPULSE_MEMORY_LIMIT": "80%"})
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3
    assert "$PTPULSE_MEMORY_LIMIT" in result.output
    assert "80%" not in result.output  # the message names the variable and the fix, not the value


# ------------------------------------------------------------------------------ 5. a mistyped home, a PDF draft


def test_status_of_a_missing_home_says_no_such_folder(tmp_path):
    result = _run("status", "--home", str(tmp_path / "typo"))
    assert result.exit_code == 2, result.output
    assert _flat(f"no such folder: {tmp_path / 'typo'}") in _said(result)
    assert "Noloadsyet" not in _said(result)
    assert not (tmp_path / "typo").exists()


def test_profile_draft_of_a_pdf_says_it_is_not_a_csv(tmp_path):
    pdf = tmp_path / "layout.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n")
    result = _run("profile", "draft", str(pdf))
    assert result.exit_code == 2, result.output
    assert _flat("layout.pdf is not a CSV file") in _said(result)
    assert "reporttitle" not in _said(result)


# -------------------------------------------------------------------------------------------------- 6. help


def test_help_names_every_format_the_home_profiles_and_every_model():
    ingest_help = _said(_run("ingest", "--help"))
    for word in ("FHIR", "X12", ".gz", ".zip", "$PTPULSE_HOME/profiles/"):
        assert _flat(word) in ingest_help, word
    train_help = _said(_run("train", "--help"))
    for word in ("no-show", "demand", "denial", "lead", "attribution"):
        assert word in train_help, word


# ----------------------------------------------------------------------------- 7. a file loaded before: --reload


def _fhir_without_zone(tmp_path: Path) -> Path:
    """A FHIR Bundle whose Location has no time-zone extension: with no PTPULSE_DEFAULT_TIMEZONE its visits land
    without a clinic zone; once the setting is fixed, a reload lands them in the practice zone."""
    location = {"resourceType": "Location", "id": "loc1", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
                "name": "Main Clinic", "address": {"city": "Chicago", "state": "IL", "postalCode": "60601"}}  # fmt: skip
    people = [
        {"actor": {"reference": r}, "status": "accepted"} for r in ("Patient/p1", "Location/loc1", "Practitioner/pt1")
    ]
    appointment = {"resourceType": "Appointment", "id": "ap1", "status": "booked", "created": "2024-05-20T15:00:00Z",
                   "start": "2024-06-03T14:00:00Z", "minutesDuration": 45, "participant": people}  # fmt: skip
    encounter = {"resourceType": "Encounter", "id": "en1", "status": "finished", "class": {"code": "AMB"},
                 "subject": {"reference": "Patient/p1"}, "appointment": [{"reference": "Appointment/ap1"}],
                 "participant": [{"type": [{"coding": [{"code": "PPRF"}]}],
                                  "individual": {"reference": "Practitioner/pt1"}}],
                 "period": {"start": "2024-06-03T14:00:00Z", "end": "2024-06-03T14:45:00Z"},
                 "location": [{"location": {"reference": "Location/loc1"}}]}  # fmt: skip
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (location, appointment, encounter)],
    }
    path = tmp_path / "exports" / "visits.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bundle), encoding="utf-8")
    return path


def _loads(result) -> list[dict]:
    files = json.loads(result.stdout)["files"]
    for f in files:  # every row read is accounted for, on a first load and on a reload alike
        assert f["rows_read"] == f["rows_landed"] + f["rows_quarantined"] + f["rows_duplicate"], f
    return files


def test_a_file_loaded_before_says_how_to_reload_and_reload_lands_only_what_is_new(tmp_path):
    home = str(tmp_path / "home")
    export = _fhir_without_zone(tmp_path)
    no_zone = {"PTPULSE_DEFAULT_TIMEZONE": None}
    first = _loads(_run("ingest", str(export), "--json", "--home", home, env=no_zone))
    assert any(f["rows_landed"] for f in first)
    assert any("PTPULSE_DEFAULT_TIMEZONE" in f["message"] for f in first)
    again = _loads(_run("ingest", str(export), "--json", "--home", home, env=no_zone))
    assert {f["status"] for f in again} == {"skipped_same_hash"}
    assert all("ptpulse ingest --reload" in f["message"] for f in again)
    zoned = {"PTPULSE_DEFAULT_TIMEZONE": "America/Chicago"}
    reload = _loads(_run("ingest", str(export), "--reload", "--json", "--home", home, env=zoned))
    assert {f["status"] for f in reload} == {"loaded"}
    assert any("the practice default zone" in f["message"] for f in reload)
    # a second reload reads the same rows again: all of them land as duplicates, none twice
    twice = _loads(_run("ingest", str(export), "--reload", "--json", "--home", home, env=zoned))
    assert sum(f["rows_landed"] for f in twice) == 0
    assert sum(f["rows_duplicate"] for f in twice) == sum(f["rows_read"] - f["rows_quarantined"] for f in twice) > 0
