"""The raw writer runs under $PTPULSE_MEMORY_LIMIT with a spill folder under the home (docs/scale.md):
without it DuckDB takes up to 80% of RAM and a chain-sized ingest grew to 20 GB."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from ingestion.loader import ingest
from ingestion.rawdb import open_raw
from ptpulse.core.config import MEMORY_LIMIT_ENV, get_settings


def duckdb_size(limit: str) -> str:
    """How DuckDB itself reports a memory limit (e.g. '286.1 MiB'), to compare settings exactly."""
    with duckdb.connect(config={"memory_limit": limit}) as con:
        return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_raw_writer_gets_the_budget_and_a_spill_folder_under_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "300MB")
    settings = get_settings(tmp_path / "home").ensure()
    db = open_raw(settings.raw_db)
    try:
        limit, spill, ordered = db.con.execute(
            "SELECT current_setting('memory_limit'), current_setting('temp_directory'), "
            "current_setting('preserve_insertion_order')"
        ).fetchone()
    finally:
        db.close()
    assert limit == duckdb_size("300MB")
    assert Path(spill).parent == settings.duckdb_temp_root
    assert str(settings.duckdb_temp_root).startswith(str(settings.home))
    assert ordered is True  # the loader maps staged rowid -> file line


def test_default_budget_is_4gb(tmp_path, monkeypatch):
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    settings = get_settings(tmp_path / "home").ensure()
    db = open_raw(settings.raw_db)
    try:
        assert db.con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == duckdb_size("4GB")
    finally:
        db.close()


def test_a_size_duckdb_cannot_read_is_refused_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "80%")
    with pytest.raises(ValueError, match=MEMORY_LIMIT_ENV):
        get_settings(tmp_path / "home")


def test_spill_folders_of_dead_processes_are_removed(tmp_path):
    settings = get_settings(tmp_path / "home").ensure()
    root = settings.duckdb_temp_root
    dead = root / "999999999-0"  # above pid_max: no such process
    mine = root / f"{os.getpid()}-999"
    for folder in (dead, mine):
        folder.mkdir(parents=True)
        (folder / "duckdb_temp_block-1.block").write_bytes(b"x")
    config = settings.duckdb_config()
    assert not dead.exists()
    assert mine.exists()
    assert Path(str(config["temp_directory"])) != mine


def test_ingest_spills_under_a_tight_budget_and_lands_every_row(tmp_path, monkeypatch, exports):
    """A file whose staging exceeds the budget still loads completely: DuckDB spills to the home's folder."""
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "160MB")
    rows = 250_000
    with duckdb.connect() as con:  # a wide valid payers export, bigger in memory than the budget allows
        con.execute(
            f"""COPY (SELECT 'P' || i AS payer_id, 'Payer ' || i || repeat('x', 200) AS payer_name,
                     'commercial' AS payer_class, false AS requires_auth, '2025-01-01 09:00:00' AS updated_at
                     FROM range({rows}) t(i)) TO '{exports / "payers.csv"}' (HEADER)"""
        )
    settings = get_settings(tmp_path / "home").ensure()
    [result] = ingest([exports], settings)
    assert result.status == "loaded", result.message
    assert result.rows_landed + result.rows_quarantined == rows
