"""`ptpulse refresh` (and Admin → Refresh now, which runs it) takes from incoming/ only what the scheduler would
call a complete export: never incoming/processed/ or incoming/failed/ (the scheduler's archive), never a
transfer still in flight (`.part`, a folder with a `.part` in it, a folder that changed seconds ago). Before, it
ingested the whole folder: the archived failed export was refused again on every refresh (exit code 2 for ever)."""

from __future__ import annotations

import os
import shutil
import threading
import time

import duckdb
from typer.testing import CliRunner

from ptpulse.cli import app as cli
from ptpulse.core.config import get_settings
from ptpulse.refresh import _sources, exports_ready_now


def _age(path, seconds: float) -> None:
    """Make every file under `path` look last changed `seconds` ago."""
    past = time.time() - seconds
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (past, past))


def _incoming_like_after_the_scheduler(incoming, practice):
    """An incoming/ as `ptpulse serve` leaves it, plus exports in every state of arrival."""
    failed = incoming / "failed" / "20261201-020000-nightly"
    failed.mkdir(parents=True)
    (failed / "clinics.csv").write_text("clinic_id,nonsense\nC001,1\n")  # refused when it came in
    processed = incoming / "processed" / "20261130-020000-nightly"
    processed.mkdir(parents=True)
    shutil.copy(practice / "payers.csv", processed / "payers.csv")
    (incoming / "claims.csv.part").write_text("claim_id\n")  # a loose transfer in flight
    in_flight = incoming / "tonight"
    in_flight.mkdir()
    shutil.copy(practice / "payers.csv", in_flight / "payers.csv")
    (in_flight / "charges.csv.crdownload").write_text("x")
    fresh = incoming / "just-copied"  # still changing a moment ago, no marker
    fresh.mkdir()
    shutil.copy(practice / "payers.csv", fresh / "payers.csv")
    settled = incoming / "yesterday"
    settled.mkdir()
    shutil.copy(practice / "therapists.csv", settled / "therapists.csv")
    marked = incoming / "marked"
    marked.mkdir()
    shutil.copy(practice / "payers.csv", marked / "payers.csv")
    (marked / ".done").touch()
    (marked / "export_20261201.done").touch()  # an exporter's own marker: not a file in transfer
    for export in (failed.parent, processed.parent, in_flight, settled, incoming / "claims.csv.part"):
        _age(export, 3600)
    return settled, marked, [fresh, in_flight]


def test_only_complete_exports_are_ready(tmp_path, small_practice):
    incoming = tmp_path / "incoming"
    settled, marked, waiting = _incoming_like_after_the_scheduler(incoming, small_practice)
    ready, later = exports_ready_now(incoming, settle_s=60, probe_s=0)
    assert ready == [marked, settled]
    assert later == sorted(waiting)
    ready, later = exports_ready_now(incoming, settle_s=60, clock=time.time() + 120, probe_s=0)
    assert ready == [incoming / "just-copied", marked, settled]  # it settled; the one in flight still waits
    assert later == [incoming / "tonight"]


def test_a_recent_export_is_taken_when_nothing_writes_to_it(tmp_path, small_practice):
    """`make demo` generates into incoming/ and refreshes at once: unchanged while watched, it is taken; a file
    still growing is not."""
    incoming = tmp_path / "incoming"
    done = incoming / "generated"
    done.mkdir(parents=True)
    shutil.copy(small_practice / "payers.csv", done / "payers.csv")
    growing = incoming / "arriving"
    growing.mkdir()
    stop = threading.Event()

    def write() -> None:
        with open(growing / "charges.csv", "a") as fh:
            while not stop.is_set():
                fh.write("x,y\n")
                fh.flush()
                time.sleep(0.05)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.2)
        assert exports_ready_now(incoming, settle_s=60, probe_s=1.0) == ([done], [growing])
    finally:
        stop.set()
        writer.join()


def test_explicit_paths_are_ingested_as_given(tmp_path):
    settings = get_settings(tmp_path / "home")
    failed = settings.incoming / "failed" / "x"
    failed.mkdir(parents=True)
    other = tmp_path / "elsewhere.csv"
    assert _sources(settings, [failed, other]) == ([failed, other], [])
    assert _sources(settings, [settings.incoming]) == ([], [])  # the folder itself: its ready exports (none)


def test_refresh_skips_the_archive_and_transfers_in_flight(built_home, copy_home, small_practice, no_secrets):
    settings = copy_home(built_home)
    settled, marked, waiting = _incoming_like_after_the_scheduler(settings.incoming, small_practice)
    result = CliRunner().invoke(cli, ["refresh", "--home", str(settings.home)])
    assert result.exit_code == 0, result.output  # the archived failed export is not refused again
    con = duckdb.connect(str(settings.raw_db), read_only=True)
    try:
        files = {r[0] for r in con.execute("select distinct file from raw.raw._loads").fetchall()}
    finally:
        con.close()
    read = {f for f in files if str(settings.incoming) in str(f)}
    assert read and all(any(f"/{e}/" in f for e in ("yesterday", "marked", "just-copied")) for f in read), read
