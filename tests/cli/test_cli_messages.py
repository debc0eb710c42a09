"""What the command line says when something is off: messages printed as written (never as rich markup),
usage errors for bad option values, Ctrl-C out of ingestion, and empty input named for what it is.

Real homes under tmp_path and the real loader; the one stand-in is the Ctrl-C itself, raised where DuckDB would
raise it (after a file was staged), because a real SIGINT cannot be timed into one file's load reliably.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

import ingestion.loader
from ptpulse.cli import app
from ptpulse.core.config import get_settings

TINY = Path(__file__).parents[1] / "dbt" / "tiny_practice"


def _run(*args: str):
    return CliRunner(env={"COLUMNS": "1000"}).invoke(app, list(args))


def _flat(text: str) -> str:
    return "".join(text.split())


def _said(result) -> str:
    """Everything the command printed, stdout and stderr, without white space: rich wraps (and folds long words
    of) a message at the console's width, so phrases are compared without theirs (`_flat`)."""
    return _flat(result.output)


# ---------------------------------------------------------------------------------------------- plain text


def test_a_refusal_naming_a_bracketed_word_prints_it(tmp_path, monkeypatch):
    """`[auth]` in the demo-mode refusal was read as a rich style tag and vanished: "Configure OIDC ( in ..."."""
    from ptpulse.notify import auth_configured

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    if auth_configured():
        pytest.skip("an [auth] table is configured for the app: the host is not refused")
    result = _run("app", "--host", "0.0.0.0", "--home", str(tmp_path / "home"))
    assert result.exit_code == 2, result.output
    assert _flat("Configure OIDC ([auth] in .streamlit/secrets.toml") in _said(result)


def test_a_profile_name_with_a_closing_tag_is_named_not_a_crash(tmp_path):
    """`--profile 'acme[/x]'` raised rich's MarkupError (a traceback, exit 1) while printing the refusal."""
    csv = tmp_path / "clinics.csv"
    shutil.copy(TINY / "clinics.csv", csv)
    result = _run("ingest", str(csv), "--profile", "acme[/x]", "--home", str(tmp_path / "home"))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert _flat("no profile named 'acme[/x]'") in _said(result)


def test_a_home_path_with_markup_is_printed_as_written(tmp_path):
    home = tmp_path / "[red]practice[/red]"
    result = _run("build", "--home", str(home))
    assert result.exit_code == 1, result.output
    assert _flat(f"{home}/raw.duckdb does not exist") in _said(result)


# ---------------------------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize("value", ["2024-13-45", "2024-02-30", "yesterday"])
def test_generate_as_of_that_is_not_a_date_is_a_usage_error(tmp_path, value):
    out = tmp_path / "practice"
    result = _run("generate", "--as-of", value, "--out", str(out))
    assert result.exit_code == 2, result.output
    said = _said(result)
    assert _flat("--as-of") in said and _flat(value) in said and _flat("YYYY-MM-DD") in said
    assert _flat("Traceback") not in said and _flat("ValueError") not in said
    assert not out.exists()  # refused before anything was written


# ---------------------------------------------------------------------------------------------- Ctrl-C in ingestion


@pytest.fixture
def interrupt_scheduling(monkeypatch):
    """Ctrl-C while scheduling_events.csv loads: raised just after the real staging query ran, where DuckDB's
    own interrupt reaches the loader (which rolls the file back, records it, and re-raises KeyboardInterrupt)."""
    stage = ingestion.loader._stage

    def staged_then_interrupted(db, path, *args, **kwargs):
        stage(db, path, *args, **kwargs)
        if Path(path).name == "scheduling_events.csv":
            raise KeyboardInterrupt

    monkeypatch.setattr(ingestion.loader, "_stage", staged_then_interrupted)


def _loads(settings) -> dict[str, tuple[str, str]]:
    with duckdb.connect(str(settings.raw_db), read_only=True) as con:
        rows = con.execute("select file, status, message from raw.raw._loads").fetchall()
    return {Path(file).name: (status, message) for file, status, message in rows}


@pytest.mark.parametrize("command", ["ingest", "refresh"])
def test_ctrl_c_while_loading_exits_130_and_builds_nothing(tmp_path, interrupt_scheduling, command):
    settings = get_settings(tmp_path / "home")
    result = _run(command, str(TINY), "--home", str(settings.home))
    assert result.exit_code == 130, result.output
    assert _flat("interrupted: the file being loaded was rolled back; nothing was built") in _said(result)
    loads = _loads(settings)
    assert loads["scheduling_events.csv"][0] == "failed" and "interrupted" in loads["scheduling_events.csv"][1]
    assert "therapists.csv" not in loads  # the files after it were not loaded: the call stopped
    with duckdb.connect(str(settings.raw_db), read_only=True) as con:
        query = "select table_name from information_schema.tables where table_schema = 'raw'"
        tables = {t for (t,) in con.execute(query).fetchall()}
    assert "remittances" in tables  # the files before it landed
    assert "scheduling_events" not in tables  # rolled back: nothing of the file landed
    assert not settings.analytics_db.exists() and not settings.analytics_db.is_symlink()
    assert not any(p.name != "dbt" for p in settings.build_dir.glob("*"))  # no build was started


def test_ctrl_c_while_loading_with_json_is_one_json_object(tmp_path, interrupt_scheduling):
    result = _run("ingest", str(TINY), "--json", "--home", str(tmp_path / "home"))
    assert result.exit_code == 130, result.output
    payload = json.loads(result.stdout)
    assert payload["error"] == "interrupted" and payload["files"] == []


# ---------------------------------------------------------------------------------------------- empty input


def test_ingest_of_an_empty_folder_says_no_files_and_fails(tmp_path):
    empty = tmp_path / "exports"
    empty.mkdir()
    settings = get_settings(tmp_path / "home")
    result = _run("ingest", str(empty), "--home", str(settings.home))
    assert result.exit_code == 2, result.output
    said = _said(result)
    assert _flat(f"no files found in {empty}") in said and _flat("intake_events.csv") in said
    assert not settings.raw_db.exists()  # nothing was opened or created

    as_json = _run("ingest", str(empty), "--json", "--home", str(settings.home))
    assert as_json.exit_code == 2
    payload = json.loads(as_json.stdout)
    assert payload["error"] == "no_files" and str(empty) in payload["message"] and payload["files"] == []


def test_refresh_of_an_empty_folder_says_no_files(tmp_path):
    empty = tmp_path / "exports"
    empty.mkdir()
    settings = get_settings(tmp_path / "home")
    result = _run("refresh", str(empty), "--home", str(settings.home))
    assert result.exit_code == 2, result.output
    assert _flat(f"no files found in {empty}") in _said(result)
    assert not settings.raw_db.exists()


def test_refresh_on_a_new_home_with_empty_incoming_says_what_to_put_there(tmp_path):
    settings = get_settings(tmp_path / "home")
    result = _run("refresh", "--home", str(settings.home))
    assert result.exit_code == 2, result.output
    said = _said(result)
    assert _flat(f"{settings.incoming} is empty") in said
    assert _flat("intake_events.csv") in said and _flat("ptpulse refresh FOLDER") in said
    assert _flat("still served") not in said and _flat("build failed") not in said
    assert not settings.raw_db.exists() and not settings.analytics_db.exists()


def test_build_on_a_new_home_says_there_is_no_earlier_build(tmp_path):
    settings = get_settings(tmp_path / "home")
    result = _run("build", "--home", str(settings.home))
    assert result.exit_code == 1, result.output
    said = _said(result)
    assert _flat("there is no earlier build, so nothing is served yet") in said
    assert _flat("still served") not in said
    assert _flat("raw.duckdb does not exist") in said


def test_json_that_no_source_maps_is_not_reported_as_loaded(tmp_path):
    """The loader records a JSON file with no resource it maps as `loaded`, 0 rows, no source, and says so in
    its message; the table said only "loaded"."""
    weird = tmp_path / "weird.json"
    weird.write_text('{"resourceType": "Banana", "id": "SENTINELB1"}\n')
    result = _run("ingest", str(weird), "--home", str(tmp_path / "home"))
    said = _said(result)
    # the status cell says "nothing mapped" (rich wraps or cuts it on a narrow console), never "loaded"
    assert _flat("│ loaded │") not in said
    assert _flat(f"nothing landed from {weird}: no row for any source in this file") in said
    assert "SENTINELB1" not in said  # a value of the file is never quoted


# ------------------------------------------------------------------------------------- the machine, not the data

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_raw_held_open_by_another_program_is_one_line_and_exit_3(tmp_path, monkeypatch):
    """A DuckDB shell or notebook holding raw.duckdb: the writer waits, then says so in one line with the fix and
    exits 3 (busy), as `ptpulse status` does (before: DuckDB's IOException traceback, exit 1)."""
    import subprocess
    import sys

    import ingestion.rawdb

    home = tmp_path / "home"
    shutil.copytree(TINY, tmp_path / "exports")
    assert _run("ingest", str(tmp_path / "exports" / "clinics.csv"), "--home", str(home)).exit_code == 0
    monkeypatch.setattr(ingestion.rawdb, "WRITER_WAIT_S", 0.3)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(home / "raw.duckdb"), "20"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        result = _run("ingest", str(tmp_path / "exports" / "payers.csv"), "--home", str(home))
        as_json = _run("ingest", str(tmp_path / "exports" / "payers.csv"), "--home", str(home), "--json")
    finally:
        proc.kill()
        proc.wait()
    assert result.exit_code == 3 and "Traceback" not in result.output
    assert "isheldopenbyanotherprogram" in _said(result) and "closeitandrunthecommandagain" in _said(result)
    assert as_json.exit_code == 3 and json.loads(as_json.stdout)["error"] == "environment"


@pytest.mark.parametrize(
    ("exc", "words", "code"),
    [
        (OSError(28, "No space left on device"), "isfull", 1),
        (duckdb.FatalException('Could not write file "x/raw.duckdb": No space left on device'), "isfull", 1),
        (duckdb.FatalException("database has been invalidated because of a previous fatal error"), "invalidated", 1),
        (OSError(30, "Read-only file system"), "isnotwritable(read-onlyfilesystem)", 1),
        (PermissionError(13, "Permission denied"), "isnotwritable(permissiondenied)", 1),
        (duckdb.IOException('Could not set lock on file "x/raw.duckdb"'), "heldopenbyanotherprogram", 3),
    ],
)
def test_environment_problems_are_named_with_their_fix(tmp_path, exc, words, code):
    """A full disk, a read-only home, a store held open: each has its line and exit code (shown by every writer
    command); anything else is left to its traceback (a bug must not be dressed as the machine's fault)."""
    from ptpulse.cli import _environment_problem

    message, got = _environment_problem(exc, tmp_path)
    assert words in _flat(message) and got == code
    assert str(tmp_path) in message  # the home, which the administrator must act on
    assert _environment_problem(ValueError("a bug"), tmp_path) is None
    assert _environment_problem(duckdb.BinderException("column x not found"), tmp_path) is None
