"""The build's dbt connection runs under $PTPULSE_MEMORY_LIMIT with a fixed spill folder under the home
(dbt_project/profiles.yml `settings:`, set by ptpulse/build/dbt_runner.dbt_env), checked on real dbt-duckdb."""

from __future__ import annotations

from pathlib import Path

import duckdb

from ingestion.rawdb import open_raw
from ptpulse.build.dbt_runner import _release_dbt_duckdb, dbt_env
from ptpulse.core.config import DBT_PROJECT_DIR, MEMORY_LIMIT_ENV, get_settings, scoped_environ

QUERY = (
    "select current_setting('memory_limit') as memory_limit, current_setting('temp_directory') as spill, "
    "current_setting('preserve_insertion_order') as ordered"
)


def test_dbt_connection_gets_the_budget_and_a_stable_spill_folder(tmp_path, monkeypatch):
    from dbt.cli.main import dbtRunner

    monkeypatch.setenv(MEMORY_LIMIT_ENV, "700MB")
    settings = get_settings(tmp_path / "home").ensure()
    open_raw(settings.raw_db).close()  # the profile attaches raw read-only: it must exist
    work = tmp_path / "dbt"
    env = dbt_env(settings.home / "analytics.duckdb", settings.raw_db, work)
    assert env == dbt_env(settings.home / "analytics.duckdb", settings.raw_db, work)  # same profile every build
    args = ["show", "--inline", QUERY, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    args += ["--log-path", str(work / "logs"), "--target-path", str(work / "target"), "--quiet"]
    with scoped_environ(env):
        try:
            res = dbtRunner().invoke(args)
        finally:
            _release_dbt_duckdb()
    assert res.success, res.exception
    [row] = res.result.results[0].agate_table.rows
    with duckdb.connect(config={"memory_limit": "700MB"}) as con:
        expected = con.execute("select current_setting('memory_limit')").fetchone()[0]
    assert row["memory_limit"] == expected
    assert Path(row["spill"]) == settings.duckdb_temp_root / "dbt"
    assert row["ordered"] is False


def test_spill_folder_is_set_once_per_database_not_per_cursor():
    """dbt-duckdb runs `settings:` on every new cursor, and DuckDB refuses to set temp_directory again once
    something spilled: the 200-clinic build failed that way. The budget goes in `config_options` (connect)."""
    import yaml

    output = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())["ptpulse"]["outputs"]["build"]
    assert {"memory_limit", "temp_directory"} <= set(output["config_options"])
    assert not {"memory_limit", "temp_directory"} & set(output.get("settings") or {})
