"""Fixtures for the dbt tests: the hand-built tiny practice and the generated small practice, each landed
through the real loader and built once per session (treat the homes as read-only; copy to modify)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from ptpulse.build import build
from ptpulse.config import Settings, get_settings
sys.path.insert(0, str(Path(__file__).resolve().parent))  # dbt_rawdb

from dbt_rawdb import land  # noqa: E402

TINY = Path(__file__).parent / "tiny_practice"


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory) -> Settings:
    settings = get_settings(tmp_path_factory.mktemp("tiny_home")).ensure()
    land(TINY, settings)
    result = build(settings)
    assert result.ok, result.message
    return settings


@pytest.fixture(scope="session")
def small_built(tmp_path_factory, ingested_home) -> Settings:
    """The generated small practice (root conftest: generator + real loader), dbt-built without ML scoring."""
    home = tmp_path_factory.mktemp("small_built")
    shutil.copy2(ingested_home.raw_db, home / "raw.duckdb")
    settings = get_settings(home).ensure()
    result = build(settings)
    assert result.ok, result.message
    return settings


def copy_of(settings: Settings, target: Path) -> Settings:
    """A writable copy of a home (raw + served analytics file, no build scratch)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("raw.duckdb", "analytics.duckdb", "app.sqlite"):
        if (settings.home / name).exists():
            shutil.copy2(settings.home / name, target / name)
    return get_settings(target)
