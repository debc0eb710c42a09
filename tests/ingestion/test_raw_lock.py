"""A page reading raw.duckdb for one query must not make an ingest fail: the writer waits for the reader
(the upload page's refresh failed once because a reader held the file at the moment it started)."""

from __future__ import annotations

import subprocess
import sys
import time

import duckdb
import pytest
from ingest_helpers import example_row, table_count, write_csv

from ingestion.loader import ingest
from ingestion.rawdb import open_raw

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def hold_reader(path, seconds: float) -> subprocess.Popen:
    """Another process holding a read-only connection (what a page's quarantine view does), once it holds."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_ingest_waits_for_a_short_reader_and_lands_everything(home, exports):
    open_raw(home.raw_db).close()  # the file exists, as after a first load
    write_csv(exports, "intake_events.csv", [example_row("intake_events"), example_row("intake_events")])
    reader = hold_reader(home.raw_db, 1.5)
    started = time.monotonic()
    loads = ingest([exports], home)
    waited = time.monotonic() - started
    assert reader.wait(timeout=30) == 0
    assert waited >= 1.0  # it did meet the lock, and waited rather than failing
    assert [(x.rows_read, x.rows_landed) for x in loads] == [(2, 2)]
    assert table_count(home, "intake_events") == 2


def test_a_writer_gives_up_after_its_wait_with_duckdbs_own_error(home):
    open_raw(home.raw_db).close()
    reader = hold_reader(home.raw_db, 5)
    try:
        with pytest.raises(duckdb.IOException, match="lock"):
            open_raw(home.raw_db, wait_s=0.3)
    finally:
        reader.kill()
        reader.wait()
