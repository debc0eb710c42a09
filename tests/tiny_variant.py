"""A variant of the hand-built tiny practice (tests/dbt/tiny_practice), landed and built for real: the fixture of a
test that adds or changes a few rows to reproduce one case (a referral re-sent, an exit then a booking, a second
referral on one episode, a referral without a source)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from ingestion.loader import ingest
from ptpulse.build.orchestrate import build
from ptpulse.core.config import Settings, get_settings
from tests.built import open_built

TINY = Path(__file__).parent / "dbt" / "tiny_practice"


def append_rows(path: Path, lines: list[str]) -> None:
    """Add CSV lines at the end of an export file."""
    path.write_text(path.read_text().rstrip("\n") + "\n" + "\n".join(lines) + "\n")


def build_tiny_variant(root: Path, edit: Callable[[Path], None]) -> Settings:
    """Copy the tiny practice to `root/csv`, let `edit` change its files, ingest them through the real loader (every
    file loaded, no row quarantined: the case is what the test says, not a rejected row) and build them with real dbt
    into `root/home`."""
    src = root / "csv"
    shutil.copytree(TINY, src)
    edit(src)
    settings = get_settings(root / "home").ensure()
    results = ingest([src], settings)
    assert all(r.status == "loaded" and r.rows_quarantined == 0 for r in results), [
        (r.file, r.status, r.rows_quarantined, r.message) for r in results
    ]
    result = build(settings)
    assert result.ok, result.message
    return settings


def mart_rows(settings: Settings, sql: str, params: list | None = None) -> list[tuple]:
    """The rows of a query on the served analytics file, read-only."""
    with open_built(settings.analytics_db) as con:
        return con.execute(sql, params or []).fetchall()
