"""Fixtures for the dbt tests: the hand-built tiny practice and the generated small practice, each landed
through the real loader and built once per session (treat the homes as read-only; copy to modify)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingestion.loader import ingest
from ptpulse.build.orchestrate import build
from ptpulse.core.config import Settings, get_settings
from tests.conftest import shared_dir

TINY = Path(__file__).parent / "tiny_practice"


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory) -> Settings:
    """The hand-built tiny practice, built once per test run (shared_dir: one pytest-xdist worker builds it).
    This is the suite's one build with the dbt unit tests (a practice's build skips them): a failing unit test
    fails it, and test_dbt_unit_tests.py reads what they did from its run_results.json."""

    def make(home: Path) -> None:
        settings = get_settings(home).ensure()
        ingest([TINY], settings)
        result = build(settings, unit_tests=True)
        assert result.ok, result.message

    return get_settings(shared_dir(tmp_path_factory, "tiny_home", make)).ensure()


@pytest.fixture(scope="session")
def small_built(built_home) -> Settings:
    """The generated small practice (root conftest: generator, real loader, build with ML scores)."""
    return built_home


def copy_of(settings: Settings, target: Path) -> Settings:
    """A writable copy of a home (raw, served analytics files and build state, no build scratch)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("raw.duckdb", "analytics.duckdb", "analytics_deid.duckdb", "app.sqlite", settings.state_db.name):
        if (settings.home / name).exists():
            shutil.copy2(settings.home / name, target / name)
    if (settings.home / "secrets").exists():  # the same pseudonym secret, so patient_key values carry over
        shutil.copytree(settings.home / "secrets", target / "secrets", dirs_exist_ok=True)
    return get_settings(target)


def build_hand_practice(root: Path, files: dict[str, str]) -> Settings:
    """Ingest hand-written CSV files (name -> text) into a fresh home under `root` and build it: every file must
    load without a quarantined row and the build must pass (the fixtures of the hand-worked linking tests)."""
    settings = get_settings(root / "home").ensure()
    (root / "files").mkdir()
    for name, text in files.items():
        (root / "files" / name).write_text(text, encoding="utf-8")
    results = ingest([root / "files"], settings)
    assert all(r.status == "loaded" and r.rows_quarantined == 0 for r in results), [
        (r.file, r.status, r.rows_quarantined, r.message) for r in results
    ]
    result = build(settings)
    assert result.ok, result.message
    return settings
