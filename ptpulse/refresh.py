"""The whole refresh: ingest -> dbt build -> ML scoring -> serve, strictly in sequence.

The roof that ties the layers together (ingestion, ptpulse.build, ml); `ptpulse refresh`, `ptpulse build` and
the Admin page's background run all come through here. Callers hold the pipeline lock (ptpulse/core/lock.py);
these functions assume they are the only writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ptpulse.core.config import Settings
from ptpulse.core.progress import ProgressFn


@dataclass
class RefreshResult:
    loads: list = field(default_factory=list)
    build: object = None


def _score_before_swap(settings: Settings, progress: ProgressFn):
    """The hook the build calls with the new (not yet served) analytics file."""

    def score(new_analytics: Path) -> None:
        from ml.train_score import score as score_models

        score_models(settings, new_analytics, progress=progress)

    return score


def run_build(settings: Settings, score: bool = True, progress: ProgressFn = None, full_refresh: bool = False):
    """dbt build into a new file, optionally score ML into it, then serve it (or keep the old one).
    `full_refresh`: rebuild the incremental staging tables from all of raw (ptpulse/build/incremental.py)."""
    from ptpulse.build.orchestrate import build

    hook = _score_before_swap(settings, progress) if score else None
    return build(settings, progress=progress, before_swap=hook, full_refresh=full_refresh)


def refresh(
    settings: Settings, paths: Sequence[Path] | None = None, progress: ProgressFn = None, full_refresh: bool = False
) -> RefreshResult:
    """Ingest `paths` (default: the incoming folder), then build and serve."""
    from ingestion.loader import ingest

    settings.ensure()
    settings.incoming.mkdir(parents=True, exist_ok=True)
    sources = list(paths) if paths else [settings.incoming]
    loads = ingest(sources, settings, progress=progress)
    return RefreshResult(loads=loads, build=run_build(settings, progress=progress, full_refresh=full_refresh))
