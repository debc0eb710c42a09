"""Data tests scoped to the night (dbt_project/macros/scoped_tests.sql): on an incremental build the primary-key
tests of the incremental staging tables check the keys written that night (all their rows); a build without build
state (every full build) checks every row. Real loader, real dbt, real DuckDB, on the hand-built tiny practice."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from ingestion.loader import ingest
from ptpulse.build.dbt_runner import run_dbt
from ptpulse.build.orchestrate import build
from ptpulse.core.config import Settings
from tests.dbt.conftest import TINY, copy_of


def _night_file(folder: Path, source: str, keep: str, edit: tuple[str, str]) -> None:
    """A one-row export of `source` (tiny practice's row starting with `keep`, one value corrected): tonight's load."""
    folder.mkdir(parents=True, exist_ok=True)
    header, *rows = (TINY / f"{source}.csv").read_text(encoding="utf-8").splitlines()
    row = next(r for r in rows if r.startswith(keep + ","))
    assert edit[0] in row
    (folder / f"{source}.csv").write_text(header + "\n" + row.replace(*edit) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def night(tiny_home: Settings, tmp_path_factory) -> Settings:
    """The tiny practice with one new night landed: charge CH002 re-priced, event SE003 (of appointment A01) re-sent
    a minute later. Not built: each test builds or tests a copy."""
    root = tmp_path_factory.mktemp("scoped_night")
    settings = copy_of(tiny_home, root / "home")
    settings.ensure()
    _night_file(root / "files", "charges", "CH002", (",120.00,", ",125.00,"))
    _night_file(root / "files", "scheduling_events", "SE003", ("2025-03-05 11:00:00,2025", "2025-03-05 11:01:00,2025"))
    results = ingest([root / "files"], settings)
    assert [r.status for r in results] == ["loaded", "loaded"], [(r.file, r.message) for r in results]
    return settings


def _test_with_planted_duplicates(settings: Settings, work: Path, plants: dict[str, list[str]], state: bool):
    """dbt test of the two staging models on a copy of the served file (which holds the served build's state) with
    duplicated rows planted; `state=False` drops meta.build_state, as on a full build. Returns the failing rows per model."""
    work.mkdir(parents=True)
    copy = work / "analytics.duckdb"  # the same catalog name as the served file: the compiled SQL names it
    shutil.copy2(settings.analytics_db, copy)
    con = duckdb.connect(str(copy))
    try:
        for table, key in (("stg_raw__charges", "charge_id"), ("stg_raw__scheduling_events", "event_id")):
            con.execute(
                f"insert into staging.{table} select * from staging.{table} where {key} in (select unnest(?))",
                [plants[table]],
            )
        if not state:
            con.execute("drop table meta.build_state")
    finally:
        con.close()
    select = "stg_raw__charges,test_name:primary_key stg_raw__scheduling_events,test_name:primary_key"
    run = run_dbt(["test", "--select", select], copy, settings.raw_db, work / "dbt")
    assert run.tests == 2 and not run.errors, run.message
    # "test primary_key_stg_raw__charges_charge_id__charges (1 rows)" -> {"stg_raw__charges": 1}
    return {model: int(f.rsplit("(", 1)[1].split()[0]) for f in run.failures for model in plants if f"_{model}_" in f}


PLANTS = {
    # CH002 was written tonight, CH001 (same claim, same day) was not
    "stg_raw__charges": ["CH002", "CH001"],
    # SE001 is not in tonight's load but its appointment A01 is (every event of A01 was re-merged); SE005 is not
    "stg_raw__scheduling_events": ["SE001", "SE005"],
}


def test_a_duplicate_written_tonight_fails_the_scoped_test(night: Settings, tmp_path):
    failures = _test_with_planted_duplicates(night, tmp_path / "w", PLANTS, state=True)
    assert failures == {"stg_raw__charges": 1, "stg_raw__scheduling_events": 1}


def test_without_build_state_every_row_is_tested(night: Settings, tmp_path):
    """A full build starts from an empty file (no meta.build_state): the same tests see both planted duplicates."""
    failures = _test_with_planted_duplicates(night, tmp_path / "w", PLANTS, state=False)
    assert failures == {"stg_raw__charges": 2, "stg_raw__scheduling_events": 2}


def test_a_clean_night_passes_and_only_an_incremental_build_scopes(night: Settings, tmp_path):
    """The real nightly build passes its scoped tests and compiles them with tonight's scope; a full refresh of the
    same data compiles them unscoped."""
    settings = copy_of(night, tmp_path / "home")
    compiled = settings.build_dir / "dbt" / "target" / "compiled" / "ptpulse" / "models" / "staging" / "_staging.yml"

    def scoped_sql() -> str:
        files = sorted(compiled.glob("primary_key_stg_raw__charges_charge_id*.sql"))
        assert files, "the staging primary-key test was not compiled"
        return files[0].read_text()

    nightly = build(settings)
    assert nightly.ok and not nightly.full_refresh, (nightly.message, nightly.mode_reason)
    assert "_load_id >" in scoped_sql()
    full = build(settings, full_refresh=True)
    assert full.ok and full.full_refresh, full.message
    assert "_load_id >" not in scoped_sql()
    assert full.tests == nightly.tests


def test_a_merged_not_null_test_names_the_failing_column(tiny_home: Settings, tmp_path):
    """charge_lines' not_null tests are one node, one scan (tests/generic/not_null_columns.sql): a null planted in one
    column fails it, and its failing row names that column and counts its nulls."""
    copy = tmp_path / "analytics.duckdb"
    shutil.copy2(tiny_home.analytics_db, copy)
    con = duckdb.connect(str(copy))
    con.execute("update marts.charge_lines set episode_link = null where charge_id in ('CH001', 'CH002')")
    con.close()
    run = run_dbt(["test", "--select", "charge_lines,test_name:not_null_columns"], copy, tiny_home.raw_db, tmp_path)
    assert run.tests == 1 and [f.split(" (")[0] for f in run.failures] == [
        "test not_null_columns_charge_lines_cpt_code__appointment_link__episode_link"
    ], run.message
    assert run.failures[0].endswith("(1 rows)")  # one failing row per column with nulls
    compiled = next((tmp_path / "target" / "compiled").rglob("not_null_columns_charge_lines_*.sql")).read_text()
    con = duckdb.connect(str(copy), read_only=True)
    try:
        assert con.execute(compiled).fetchall() == [("episode_link", 2)]
    finally:
        con.close()
