from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ptpulse.core.config import Settings, get_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))  # ingest_helpers


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    """An empty PTPULSE_HOME with a real (not yet created) raw.duckdb."""
    return get_settings(tmp_path / "home").ensure()


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    """A folder to write hand-made source files into."""
    folder = tmp_path / "exports"
    folder.mkdir()
    return folder
