"""The two-clinic practice for the clinic-scope tests, and AppTest helpers for a user limited to some clinics.

The practice is `multi_test` (two clinics), seed 2027 with 0.5% dirt, generated and built once per run under the
names tests/recompute/conftest.py uses (tests/app/test_overview_balance_kpis.py imports it), so a run of several of them
builds it once (dbt only, no ML: the pages say the ML parts appear once the ML step has run).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from app_helpers import app_test

from ptpulse.core.config import Settings, get_settings, scoped_environ
from tests.conftest import shared_dir


def build_multi(tmp_path_factory) -> Settings:
    """The built two-clinic home, made once per run (a test module's session fixture returns it). Treat as
    read-only (copy it with `writable`)."""
    from ingestion.loader import ingest
    from ptpulse.build.orchestrate import build
    from seed_data.generator import generate

    out = shared_dir(tmp_path_factory, "multi_csv", lambda d: generate(d, scale="multi_test", seed=2027, dirty=0.005))

    def make(home: Path) -> None:
        settings = get_settings(home).ensure()
        ingest([out], settings)
        result = build(settings)
        assert result.ok, result.message

    return get_settings(shared_dir(tmp_path_factory, "multi_home", make)).ensure()


def writable(settings: Settings, target: Path) -> Settings:
    """A copy of a built home the app may write to (app.sqlite: audit log, goals)."""
    shutil.copytree(settings.home, target, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
    return get_settings(target)


def open_page(home: Settings, role: str, page: str, clinics: str | None = None, **env: str):
    """Run the app as the demo user of `role`, limited to `clinics` (PTPULSE_DEMO_CLINICS: 'CL002', or '*' for
    every clinic), and switch to `page`; returns the AppTest."""

    values = {"PTPULSE_HOME": str(home.home), "PTPULSE_DEMO_ROLE": role, "PTPULSE_DEMO_CLINICS": clinics or "*"}
    with scoped_environ({**values, **env}):
        at = app_test()
        at.run()
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def run(at, home: Settings, **env: str):
    """Run again (after a click or a state change) with the same home."""
    with scoped_environ({"PTPULSE_HOME": str(home.home), **env}):
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def reader(home: Settings, role: str = "owner", clinics: tuple[str, ...] | None = None):
    """The pages' DbReader on the home's served analytics file, as `role` scoped to `clinics` (None = all)."""
    from app.lib.auth import Scope
    from app.lib.db import AnalyticsDb
    from app.lib.queries.base import DbReader

    return DbReader(AnalyticsDb(home.analytics_db), Scope(role, clinics))


def sql_frame(home: Settings, sql: str, params=None):
    """A query's rows (a pandas frame) from the home's served analytics file, read-only: the tests' own restatement."""
    import duckdb

    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        return con.execute(sql, params or {}).df()
