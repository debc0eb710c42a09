"""Fixtures for the generator tests: the small practice generated once, clean (dirty=0)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from seed_metrics import connect


@pytest.fixture(scope="session")
def clean_practice(clean_small_practice) -> Path:
    """Small practice (1 clinic x 2 years), seed 42, without dirt (root conftest: the round-trip tests' too)."""
    return clean_small_practice


@pytest.fixture(scope="session")
def con(clean_practice) -> duckdb.DuckDBPyConnection:
    """DuckDB views over the clean practice's CSVs (plus `appt`: one row per appointment)."""
    return connect(clean_practice)
