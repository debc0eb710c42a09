"""Fixtures for the recomputation tests: three practices, each recomputed from its CSVs and built for real.

- `small_default`: the suite's shared small practice (root conftest: seed 42, default dirt, already built
  with ML for the other layers, so it costs nothing extra here).
- `small_dirt3`: an unseen seed of the small practice at 3% dirt (every kind of defect the generator makes).
- `multi_clinic`: the two-clinic test scale (`multi_test`, two chunks), default dirt, so per-clinic rows and
  cross-clinic joins are exercised.

The two new practices are built once per session with `ptpulse.build.orchestrate.build` (dbt only, no ML: the marts
compared here do not depend on ML). Treat the homes as read-only.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ptpulse.core.config import Settings, get_settings
from tests.conftest import shared_dir

sys.path.insert(0, str(Path(__file__).parent))
import recompute as R  # noqa: E402

DIRT3_SEED, MULTI_SEED = 1013, 2027  # unseen by the other suites
CASES = ("small_default", "small_dirt3", "multi_clinic")


@dataclass
class Case:
    """One practice: the recomputation from its CSVs and the marts its real build served."""

    name: str
    practice: R.Practice
    analytics: Path

    def mart(self, sql: str) -> pl.DataFrame:
        con = duckdb.connect(str(self.analytics), read_only=True)
        try:
            return con.sql(sql).pl()
        finally:
            con.close()


def _generated_and_built(tmp_path_factory, name: str, scale: str, seed: int, dirty: float) -> tuple[Path, Settings]:
    """(csv folder, built home), made once per test run (shared_dir: one pytest-xdist worker builds them)."""
    from ingestion.loader import ingest
    from ptpulse.build.orchestrate import build
    from seed_data.generator import generate

    out = shared_dir(tmp_path_factory, f"{name}_csv", lambda d: generate(d, scale=scale, seed=seed, dirty=dirty))

    def make(home: Path) -> None:
        settings = get_settings(home).ensure()
        ingest([out], settings)
        result = build(settings)
        assert result.ok, result.message

    return out, get_settings(shared_dir(tmp_path_factory, f"{name}_home", make)).ensure()


@pytest.fixture(scope="session")
def small_dirt3_built(tmp_path_factory) -> tuple[Path, Settings]:
    return _generated_and_built(tmp_path_factory, "dirt3", "small", DIRT3_SEED, 0.03)


@pytest.fixture(scope="session")
def multi_clinic_built(tmp_path_factory) -> tuple[Path, Settings]:
    return _generated_and_built(tmp_path_factory, "multi", "multi_test", MULTI_SEED, 0.005)


_CACHE: dict[str, Case] = {}


@pytest.fixture(scope="session", params=CASES)
def case(request) -> Case:
    """Each practice in turn (built lazily, recomputed once)."""
    name = request.param
    if name not in _CACHE:
        if name == "small_default":
            csv, settings = request.getfixturevalue("small_practice"), request.getfixturevalue("built_home")
        elif name == "small_dirt3":
            csv, settings = request.getfixturevalue("small_dirt3_built")
        else:
            csv, settings = request.getfixturevalue("multi_clinic_built")
        _CACHE[name] = Case(name, R.practice(csv), settings.analytics_db)
    return _CACHE[name]
