from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ptpulse.core.config import Settings, get_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ingestion"))  # ingest_helpers.query

CORPUS = Path("/work/shared/interop")


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    return get_settings(tmp_path / "home").ensure()


@pytest.fixture(scope="module")
def corpus_home(tmp_path_factory):
    """The whole corpus ingested once (FHIR and X12 folders, plus the 270/271 files given by name)."""
    from ingestion.loader import ingest

    if not CORPUS.is_dir():
        pytest.skip(f"interop corpus not found at {CORPUS}")
    settings = get_settings(tmp_path_factory.mktemp("interop_home")).ensure()
    others = sorted(CORPUS.glob("x12/27*/*"))
    results = ingest([CORPUS / "fhir-r4-examples", CORPUS / "x12", *others], settings)
    return settings, results
