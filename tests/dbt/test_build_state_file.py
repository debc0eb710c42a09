"""The build state file (ptpulse/build/incremental.py): dbt's staging and intermediate tables live in
`build_state.duckdb`, written in place by each build and never served; the served analytics file holds only what
readers use. A build that does not reach its swap leaves the state flagged (`meta.build_in_progress`), and the next
build is full, so a crash or a failure mid-build never lets a night start from a state the served marts do not
match. Real builds of the hand-built tiny practice."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from ptpulse.build.incremental import plan_build
from ptpulse.build.orchestrate import build
from ptpulse.core.config import DBT_PROJECT_DIR, Settings
from ptpulse.core.secrets import key_id
from tests.dbt.conftest import copy_of

pytestmark = pytest.mark.slow


def _schemas(path: Path) -> set[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {s for (s,) in con.execute("select distinct schema_name from duckdb_tables()").fetchall()}


def _plan(home: Settings):
    return plan_build(
        home.analytics_db,
        home.raw_db,
        DBT_PROJECT_DIR,
        None,
        False,
        datetime.now(),
        key_id(home),
        state_db=home.state_db,
    )


# a reader that opens a DuckDB file read-only, says how many build states it sees, and keeps it open
HOLD_READ_ONLY = (
    "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); "
    "print(c.execute('select count(*) from meta.build_state').fetchone()[0], flush=True); time.sleep(600)"
)


def _flagged(home: Settings) -> bool:
    with duckdb.connect(str(home.state_db), read_only=True) as con:
        return bool(
            con.execute("select count(*) from duckdb_tables() where table_name = 'build_in_progress'").fetchone()[0]
        )


def test_the_served_file_holds_no_build_state(tiny_home: Settings):
    """Staging and intermediate tables are in the state file only; the served file and its twin never hold them."""
    assert {"staging", "intermediate"} <= _schemas(tiny_home.state_db)
    assert not {"staging", "intermediate"} & _schemas(tiny_home.analytics_db)
    assert "marts" in _schemas(tiny_home.analytics_db)
    assert not _flagged(tiny_home)
    with duckdb.connect(str(tiny_home.state_db), read_only=True) as con:  # build-time plumbing is gone
        assert con.execute("select count(*) from duckdb_views() where not internal").fetchone()[0] == 0
        assert not con.execute(
            "select table_name from duckdb_tables() where suffix(table_name, '__scope') or suffix(table_name, '__prev')"
        ).fetchall()


def test_a_build_that_fails_after_dbt_leaves_the_state_flagged_and_the_next_build_full(tiny_home: Settings, tmp_path):
    home = copy_of(tiny_home, tmp_path / "home")
    assert not _plan(home).full  # a clean state that records the served build: a night may start from it
    served = hashlib.sha256(home.analytics_db.read_bytes()).hexdigest()

    def crash(_new_path: Path) -> None:  # dbt has rewritten the state file in place by now
        raise RuntimeError("power cut before the swap")

    failed = build(home, before_swap=crash)
    assert not failed.ok, failed.message
    assert hashlib.sha256(home.analytics_db.read_bytes()).hexdigest() == served  # the last good build stays served
    assert _flagged(home)
    copied = copy_of(home, tmp_path / "copy")  # a copy of the home taken now carries the flag: it is in the file
    assert _plan(copied).full
    plan = _plan(home)
    assert plan.full and "left mid-build" in plan.reason

    rebuilt = build(home)
    assert rebuilt.ok and rebuilt.full_refresh and "left mid-build" in rebuilt.mode_reason, rebuilt.message
    assert not _flagged(home)
    assert not _plan(home).full  # served again: the next night is incremental


def test_a_reader_holding_the_state_file_makes_the_build_full_not_failed(tiny_home: Settings, tmp_path):
    """DuckDB gives a file one writer or readers: a notebook left open on the state file would block the night's
    write. The build goes full into a new file instead (the reader keeps its own), says why, and is served."""
    home = copy_of(tiny_home, tmp_path / "home")
    assert not _plan(home).full
    reader = subprocess.Popen(  # another process, as a notebook would be (one process shares one DuckDB instance)
        [sys.executable, "-c", HOLD_READ_ONLY, str(home.state_db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().strip() == "1"  # it holds the file (and read its build state)
        result = build(home)
    finally:
        reader.kill()
        reader.wait()
    assert result.ok and result.full_refresh and "held open by another process" in result.mode_reason, result.message
    assert not _flagged(home) and not _plan(home).full


def test_a_missing_or_foreign_state_file_makes_the_next_build_full(tiny_home: Settings, tmp_path):
    home = copy_of(tiny_home, tmp_path / "home")
    with duckdb.connect(str(home.state_db)) as con:  # a state file kept from another build than the served one
        con.execute("update meta.build_state set raw_load_id = raw_load_id - 1")
    plan = _plan(home)
    assert plan.full and "another build" in plan.reason
    home.state_db.unlink()
    plan = _plan(home)
    assert plan.full and "no build state file" in plan.reason
