"""Data tests scoped to the night (dbt_project/macros/scoped_tests.sql): on an incremental build the primary-key
tests of the incremental staging tables check the keys written that night (all their rows), and the key tests of the
incremental intermediates the rows of the keys in their `<model>__scope`; a build without build state (every full
build) checks every row, and so does an intermediate's test without its scope table. Real loader, real dbt, real DuckDB, on the hand-built tiny practice."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from ingestion.loader import ingest
from ptpulse.build.dbt_runner import run_dbt
from ptpulse.build.orchestrate import build
from ptpulse.core.config import Settings
from tests.built import state_file
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
    a minute later, payment RM002 (claim C01) corrected. Not built: each test builds or tests a copy."""
    root = tmp_path_factory.mktemp("scoped_night")
    settings = copy_of(tiny_home, root / "home")
    settings.ensure()
    _night_file(root / "files", "charges", "CH002", (",120.00,", ",125.00,"))
    _night_file(root / "files", "scheduling_events", "SE003", ("2025-03-05 11:00:00,2025", "2025-03-05 11:01:00,2025"))
    _night_file(root / "files", "remittances", "RM002", (",160.00,", ",150.00,"))
    results = ingest([root / "files"], settings)
    assert [r.status for r in results] == ["loaded"] * 3, [(r.file, r.message) for r in results]
    return settings


def _work_home(analytics: Path, home: Settings, work: Path) -> Path:
    """A scratch home in `work` for a dbt command by hand: a copy of `analytics` (the served file's catalog name, which
    the compiled SQL names), and of `home`'s raw file, build state file and secret (dbt reads the state file beside
    raw: ptpulse/build/dbt_runner.dbt_env). Returns the analytics copy."""
    work.mkdir(parents=True)
    copy = work / "analytics.duckdb"
    shutil.copy2(analytics, copy)
    shutil.copy2(home.raw_db, work / home.raw_db.name)
    shutil.copy2(state_file(analytics), work / home.state_db.name)
    shutil.copytree(home.home / "secrets", work / "secrets")
    return copy


def _test_with_planted_duplicates(settings: Settings, work: Path, plants: dict[str, list[str]], state: bool):
    """dbt test of the two staging models on a copy of the served files (the analytics file holds the served build's
    state) with duplicated rows planted; `state=False` drops meta.build_state, as on a full build. Returns the
    failing rows per model."""
    copy = _work_home(settings.analytics_db, settings, work)
    con = duckdb.connect(str(work / settings.state_db.name))
    try:
        for table, key in (("stg_raw__charges", "charge_id"), ("stg_raw__scheduling_events", "event_id")):
            con.execute(
                f"insert into staging.{table} select * from staging.{table} where {key} in (select unnest(?))",
                [plants[table]],
            )
    finally:
        con.close()
    if not state:
        with duckdb.connect(str(copy)) as con:
            con.execute("drop table meta.build_state")
    select = "stg_raw__charges,test_name:primary_key stg_raw__scheduling_events,test_name:primary_key"
    run = run_dbt(["test", "--select", select], copy, work / settings.raw_db.name, work / "dbt")
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


# the incremental intermediates' key tests: table -> (tested key columns, [a key recomputed tonight, one not])
INTERMEDIATE_PLANTS = {
    "int_appointments_collapsed": (["appointment_id"], ["A01", "A10"]),  # A01 was re-sent; A10 is another episode's
    "int_visit_links": (["source", "row_id"], [("charges", "CH002"), ("charges", "CH020")]),  # P01's rows re-linked
    "int_charge_lines_classified": (["charge_id"], ["CH002", "CH020"]),
    "int_claims_reconciled": (["claim_id"], ["C01", "C10"]),  # C01: CH002's and RM002's claim
    "int_remittances_linked": (["remit_id"], ["RM001", "RM020"]),  # RM001: another payment of C01, re-ranked
    "int_remittances_attributed": (["remit_id"], ["RM001", "RM020"]),
    "int_notes_summarised": (["episode_id"], ["E01", "E03"]),  # E01: P01's notes, re-linked with its rows
}


@pytest.fixture(scope="module")
def night_run(night: Settings, tmp_path_factory) -> Path:
    """The night's staging and intermediate models run incrementally on a copy of the served files, as the nightly
    build runs them: their tables rewritten and each intermediate's `<model>__scope` kept (dropped only when the
    build records its state). Tests copy it."""
    work = tmp_path_factory.mktemp("scoped_night_run") / "home"
    copy = _work_home(night.analytics_db, night, work)
    run = run_dbt(
        ["run", "--select", "path:models/staging path:models/intermediate"],
        copy,
        work / night.raw_db.name,
        work / "dbt",
    )
    assert run.ok, run.message
    return copy


def _test_intermediates(settings: Settings, built: Path, work: Path, drop: tuple[str, ...]) -> dict[str, int]:
    """dbt test of the intermediates' key tests on a copy of `built` with, in each table, both keys of
    INTERMEDIATE_PLANTS duplicated; `drop` names tables to drop first (meta.build_state: a full build; a scope table:
    a model that did not run incrementally). Returns the failing rows per model."""
    copy = _work_home(built, settings, work)
    state = work / settings.state_db.name
    con = duckdb.connect(str(state))
    try:
        for table, (key, plants) in INTERMEDIATE_PLANTS.items():
            params = [v for p in plants for v in (p if isinstance(p, tuple) else (p,))]
            match = " or ".join("(" + " and ".join(f"{k} = ?" for k in key) + ")" for _ in plants)
            in_scope = con.execute(f"select count(*) from intermediate.{table}__scope where {match}", params)
            assert in_scope.fetchone()[0] == 1, (
                f"{table}: the night must recompute the first planted key, not the second"
            )
            con.execute(f"insert into intermediate.{table} select * from intermediate.{table} where {match}", params)
    finally:
        con.close()
    for table in drop:  # meta.build_state of the analytics file; the scope tables are in the state file
        with duckdb.connect(str(copy if table.startswith("meta.") else state)) as con:
            con.execute(f"drop table {table}")
    select = " ".join(f"{t},test_name:primary_key {t},test_name:unique_combination" for t in INTERMEDIATE_PLANTS)
    run = run_dbt(["test", "--select", select], copy, work / settings.raw_db.name, work / "dbt")
    assert run.tests == len(INTERMEDIATE_PLANTS) and not run.errors, run.message
    return {
        model: int(f.rsplit("(", 1)[1].split()[0]) for f in run.failures for model in INTERMEDIATE_PLANTS if model in f
    }


def test_a_duplicate_recomputed_tonight_fails_the_scoped_intermediate_test(night: Settings, night_run, tmp_path):
    """Only the duplicate among tonight's recomputed rows is seen: the other one, a row the night kept, cannot have
    been written by it (nor by any build that tested it)."""
    failures = _test_intermediates(night, night_run, tmp_path / "w", drop=())
    assert failures == dict.fromkeys(INTERMEDIATE_PLANTS, 1)


def test_a_full_build_tests_every_intermediate_row(night: Settings, night_run, tmp_path):
    """Without build state (a full build) both duplicates fail each test, scope tables or not."""
    failures = _test_intermediates(night, night_run, tmp_path / "w", drop=("meta.build_state",))
    assert failures == dict.fromkeys(INTERMEDIATE_PLANTS, 2)


def test_an_intermediate_without_its_scope_is_tested_whole(night: Settings, night_run, tmp_path):
    """A model that did not run incrementally in this build wrote no scope: its test checks every row, while the
    others stay scoped."""
    failures = _test_intermediates(
        night, night_run, tmp_path / "w", drop=("intermediate.int_claims_reconciled__scope",)
    )
    assert failures == {**dict.fromkeys(INTERMEDIATE_PLANTS, 1), "int_claims_reconciled": 2}


def test_a_clean_night_passes_and_only_an_incremental_build_scopes(night: Settings, tmp_path):
    """The real nightly build passes its scoped tests (staging, intermediate, incremental mart) and compiles them with tonight's
    scope; a full refresh of the same data compiles them unscoped."""
    settings = copy_of(night, tmp_path / "home")
    compiled = settings.build_dir / "dbt" / "target" / "compiled" / "ptpulse" / "models" / "staging" / "_staging.yml"

    def scoped_sql() -> str:
        files = sorted(compiled.glob("primary_key_stg_raw__charges_charge_id*.sql"))
        assert files, "the staging primary-key test was not compiled"
        return files[0].read_text()

    def intermediate_sql() -> str:
        folder = compiled.parent.parent / "intermediate" / "_intermediate.yml"
        files = sorted(folder.glob("primary_key_int_claims_reconciled_claim_id*.sql"))
        assert files, "the intermediate primary-key test was not compiled"
        return files[0].read_text()

    def mart_sql() -> str:  # an incremental mart's key test: scoped as an intermediate's
        folder = compiled.parent.parent / "marts" / "revenue" / "_revenue.yml"
        files = sorted(folder.glob("primary_key_charge_lines_charge_id*.sql"))
        assert files, "the mart primary-key test was not compiled"
        return files[0].read_text()

    nightly = build(settings)
    assert nightly.ok and not nightly.full_refresh, (nightly.message, nightly.mode_reason)
    assert "_load_id >" in scoped_sql()
    assert "int_claims_reconciled__scope" in intermediate_sql()
    assert "charge_lines__scope" in mart_sql()
    full = build(settings, full_refresh=True)
    assert full.ok and full.full_refresh, full.message
    assert "_load_id >" not in scoped_sql()
    assert "int_claims_reconciled__scope" not in intermediate_sql()
    assert "charge_lines__scope" not in mart_sql()
    assert full.tests == nightly.tests


def test_a_merged_not_null_test_names_the_failing_column(tiny_home: Settings, tmp_path):
    """charge_lines' not_null tests are one node, one scan (tests/generic/not_null_columns.sql): a null planted in one
    column fails it, and its failing row names that column and counts its nulls."""
    copy = _work_home(tiny_home.analytics_db, tiny_home, tmp_path / "home")
    con = duckdb.connect(str(copy))
    con.execute("update marts.charge_lines set episode_link = null where charge_id in ('CH001', 'CH002')")
    con.close()
    run = run_dbt(
        ["test", "--select", "charge_lines,test_name:not_null_columns"], copy, copy.parent / "raw.duckdb", tmp_path
    )
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
