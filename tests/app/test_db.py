"""The read-only connection: missing file message, swap detection, concurrent cursors."""

from __future__ import annotations

import os
import threading

import duckdb
import pytest

from app.lib.db import AnalyticsDb, AnalyticsMissing


def _make(path, value: int) -> None:
    con = duckdb.connect(str(path))
    con.execute(f"create schema marts; create table marts.t as select {value} as v")
    con.close()


def test_missing_file_says_run_refresh(tmp_path):
    db = AnalyticsDb(tmp_path / "analytics.duckdb")
    assert not db.exists()
    with pytest.raises(AnalyticsMissing, match="ptpulse refresh"):
        db.query("select 1")


def test_reconnects_after_atomic_swap_and_old_cursor_keeps_snapshot(tmp_path):
    served = tmp_path / "analytics.duckdb"
    _make(served, 1)
    db = AnalyticsDb(served)
    assert db.scalar("select v from marts.t") == 1
    old_cursor = db.cursor()
    nxt = tmp_path / "build.duckdb"
    _make(nxt, 2)
    os.replace(nxt, served)
    assert db.scalar("select v from marts.t") == 2
    assert old_cursor.execute("select v from marts.t").fetchone()[0] == 1
    assert db.has_table("marts.t")


def test_parameters_are_bound_not_formatted(tmp_path):
    served = tmp_path / "analytics.duckdb"
    _make(served, 1)
    db = AnalyticsDb(served)
    evil = "1; drop table marts.t"
    assert db.query("select count(*) n from marts.t where cast(v as varchar) = ?", [evil])["n"][0] == 0


def test_many_threads_query_at_once(tmp_path):
    served = tmp_path / "analytics.duckdb"
    _make(served, 7)
    db = AnalyticsDb(served)
    results, errors = [], []

    def run():
        try:
            for _ in range(20):
                results.append(db.scalar("select v from marts.t"))
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and results == [7] * 80


def test_lock_held_by_writer_is_retried_then_reported(tmp_path):
    served = tmp_path / "analytics.duckdb"
    _make(served, 1)
    # A writer in another process holds the file; our attach must retry and then explain.
    import subprocess
    import sys
    import time

    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,time; c=duckdb.connect({str(served)!r}); print('ok', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "ok"
        db = AnalyticsDb(served, retries=2, backoff_s=0.05)
        started = time.perf_counter()
        with pytest.raises(Exception, match="locked|lock"):
            db.query("select 1")
        assert time.perf_counter() - started < 5
    finally:
        writer.kill()
        writer.wait()
    assert AnalyticsDb(served).scalar("select v from marts.t") == 1


def test_a_build_folder_removed_between_resolving_and_attaching_is_resolved_again(tmp_path, monkeypatch):
    """A page opened at the moment of a swap resolved the served link to the previous build, whose folder the
    build then removed: DuckDB 2.0 says "database does not exist" (not "no such file"), which the page showed as
    a raw error with the server path. It is retried against the new build. The race is staged by handing the
    first connection attempt the identity resolved before the swap (a real swap cannot be timed into it)."""
    import shutil

    (tmp_path / "build" / "b1").mkdir(parents=True)
    (tmp_path / "build" / "b2").mkdir()
    _make(tmp_path / "build" / "b1" / "analytics.duckdb", 1)
    _make(tmp_path / "build" / "b2" / "analytics.duckdb", 2)
    os.symlink("b1", tmp_path / "build" / "served")
    os.symlink("build/served/analytics.duckdb", tmp_path / "analytics.duckdb")
    db = AnalyticsDb(tmp_path / "analytics.duckdb")
    stale = db.identity()  # resolved to build/b1
    os.replace(_relinked(tmp_path / "build", "b2"), tmp_path / "build" / "served")  # the swap
    shutil.rmtree(tmp_path / "build" / "b1")  # and the old folder's removal
    real, calls = AnalyticsDb.identity, []

    def first_stale(self):
        calls.append(1)
        return stale if len(calls) == 1 else real(self)

    monkeypatch.setattr(AnalyticsDb, "identity", first_stale)
    assert db.scalar("select v from marts.t") == 2


def _relinked(folder, target: str):
    link = folder / "served.new"
    os.symlink(target, link)
    return link
