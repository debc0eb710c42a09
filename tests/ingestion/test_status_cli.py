"""status_report (data, ingestion/status.py) / render_status (tables, ptpulse/cli.py), and the CLI commands that
call the ingestion layer."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ingest_helpers import example_row, write_csv
from rich.console import Console
from typer.testing import CliRunner

from ingestion.loader import ingest
from ingestion.status import StatusUnavailable, status_report
from ptpulse.cli import app, render_status

LOAD_KEYS = {
    "file",
    "sha256",
    "source",
    "rows_read",
    "rows_landed",
    "rows_quarantined",
    "rows_duplicate",
    "status",
    "started_at",
    "finished_at",
    "message",
}


def test_status_before_any_ingest_is_empty(home):
    assert not home.raw_db.exists()
    assert status_report(home) == {"loads": [], "quarantine_by_rule": [], "freshness": []}
    assert not home.raw_db.exists()  # a status call never creates the store


def test_status_report_shape(home, exports):
    write_csv(
        exports,
        "scheduling_events.csv",
        [
            example_row("scheduling_events", event_at="2024-06-01 08:00:00"),
            example_row("scheduling_events", event_at="2024-06-03 09:00:00"),
            example_row("scheduling_events", duration_min="999"),
        ],
    )
    (exports / "clinics.csv").write_bytes(b"")
    ingest([exports], home)

    report = status_report(home)

    assert set(report) == {"loads", "quarantine_by_rule", "freshness"}
    assert [r["status"] for r in report["loads"]] == ["refused", "loaded"]
    assert all(LOAD_KEYS <= set(r) for r in report["loads"])
    assert report["quarantine_by_rule"] == [
        {"source": "scheduling_events", "rule": "above_max", "column": "duration_min", "rows": 1}
    ]
    fresh = {r["source"]: r for r in report["freshness"]}
    assert fresh["scheduling_events"]["rows"] == 2
    assert str(fresh["scheduling_events"]["latest_event_at"]) == "2024-06-03 09:00:00"
    assert fresh["scheduling_events"]["last_load_at"] is not None
    assert fresh["clinics"]["rows"] == 0 and fresh["clinics"]["last_load_at"] is None
    json.dumps(report, default=str)  # the CLI's --json path


def test_status_while_another_process_writes_says_what_to_do(home, exports):
    write_csv(exports, "clinics.csv", [example_row("clinics")])
    ingest([exports], home)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); sys.stdin.read()",
            str(home.raw_db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StatusUnavailable, match="wait for it to finish"):
            status_report(home)
    finally:
        holder.communicate("")
    assert status_report(home)["loads"]


def test_render_status_prints_the_three_tables(home, exports):
    write_csv(exports, "clinics.csv", [example_row("clinics"), example_row("clinics", state="Texas")])
    (exports / "payers.csv").write_bytes(b"\x00\x01binary")
    ingest([exports], home)
    console = Console(record=True, width=200)
    render_status(status_report(home), console)
    text = console.export_text()
    for fragment in ("Loads", "Quarantine by rule", "pattern_mismatch", "Freshness", "refused", "binary"):
        assert fragment in text


def test_render_status_without_loads(home):
    console = Console(record=True, width=120)
    render_status(status_report(home), console)
    assert "No loads yet" in console.export_text()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_cli_ingest_and_status_json(runner, home, exports):
    write_csv(exports, "clinics.csv", [example_row("clinics")])
    ok = runner.invoke(app, ["ingest", str(exports), "--home", str(home.home)])
    assert ok.exit_code == 0, ok.output
    assert "clinics.csv" in ok.output

    again = runner.invoke(app, ["ingest", str(exports), "--home", str(home.home)])
    assert again.exit_code == 0, again.output

    status = runner.invoke(app, ["status", "--json", "--home", str(home.home)])
    assert status.exit_code == 0
    report = json.loads(status.stdout)
    assert [r["status"] for r in report["loads"]] == ["loaded", "skipped_same_hash"]


def test_cli_ingest_exits_2_when_a_file_is_refused(runner, home, exports):
    write_csv(exports, "clinics.csv", [example_row("clinics")])
    (exports / "payers.csv").write_bytes("payer_id,payer_name\n".encode("utf-16"))
    result = runner.invoke(app, ["ingest", str(exports), "--home", str(home.home)])
    assert result.exit_code == 2
    assert "UTF-16" in result.output
    report = status_report(home)
    assert sorted(r["status"] for r in report["loads"]) == ["loaded", "refused"]


def test_cli_status_on_an_empty_home(runner, home):
    result = runner.invoke(app, ["status", "--json", "--home", str(home.home)])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"loads": [], "quarantine_by_rule": [], "freshness": []}
