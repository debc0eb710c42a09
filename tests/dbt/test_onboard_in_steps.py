"""A practice loads its exports in steps: reference lists and intake first, the EMR's scheduling, notes and
billing a day later. The first build stages the missing event sources from an empty stand-in; the source's
first file must then trigger a full build (the stand-in's untyped table cannot take real rows incrementally),
and every later night is incremental again."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import TINY

from ingestion.loader import ingest
from ptpulse.build.orchestrate import build
from ptpulse.core.config import get_settings

FIRST_DAY = ("clinics", "therapists", "payers", "referring_physicians", "patients", "intake_events")


def test_event_sources_arriving_after_the_first_build_are_built(tmp_path: Path) -> None:
    first, rest = tmp_path / "first", tmp_path / "rest"
    first.mkdir()
    shutil.copytree(TINY, rest)
    for name in FIRST_DAY:
        (rest / f"{name}.csv").rename(first / f"{name}.csv")
    settings = get_settings(tmp_path / "home").ensure()
    ingest([first], settings)
    assert build(settings).ok

    ingest([rest], settings)
    second = build(settings)
    assert second.ok, second.message
    assert second.full_refresh and "sources in raw.duckdb changed" in second.mode_reason

    third = build(settings)
    assert third.ok and not third.full_refresh
