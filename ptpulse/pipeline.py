"""The pipeline: ingest -> dbt build -> ML scoring -> swap, strictly in sequence.

Callers hold the pipeline lock (see ptpulse.lock); these functions assume they are the only writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ptpulse.config import Settings
from ptpulse.progress import ProgressFn


@dataclass
class RefreshResult:
    loads: list = field(default_factory=list)
    build: object = None


def _score_before_swap(settings: Settings, progress: ProgressFn):
    """The hook the build calls with the new (not yet served) analytics file."""

    def score(new_analytics: Path) -> None:
        from ml.pipeline import score as score_models

        score_models(settings, new_analytics, progress=progress)

    return score


def run_build(settings: Settings, score: bool = True, progress: ProgressFn = None):
    """dbt build into a new file, optionally score ML into it, then swap it in (or keep the old one)."""
    from ptpulse.build import build

    hook = _score_before_swap(settings, progress) if score else None
    return build(settings, progress=progress, before_swap=hook)


def refresh(settings: Settings, paths: Sequence[Path] | None = None, progress: ProgressFn = None) -> RefreshResult:
    """Ingest `paths` (default: the incoming folder), then build and swap."""
    from ingestion.loader import ingest

    settings.ensure()
    settings.incoming.mkdir(parents=True, exist_ok=True)
    sources = list(paths) if paths else [settings.incoming]
    loads = ingest(sources, settings, progress=progress)
    return RefreshResult(loads=loads, build=run_build(settings, progress=progress))
