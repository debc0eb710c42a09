"""The whole refresh: ingest -> dbt build -> ML scoring -> serve, strictly in sequence.

The roof that ties the layers together (ingestion, ptpulse.build, ml); `ptpulse refresh`, `ptpulse build` and
the Admin page's background run all come through here. Callers hold the pipeline lock (ptpulse/core/lock.py);
these functions assume they are the only writer.

It also holds the rules for when an export in `$PTPULSE_HOME/incoming/` is complete (`ready_exports` for the
scheduler's polls, `exports_ready_now` for a one-shot refresh): `ptpulse serve` imports them from here, so both
ways of refreshing take the same exports and this module never imports the service.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import yaml

from ptpulse.core.config import Settings
from ptpulse.core.progress import ProgressFn

DONE_MARKER = ".done"
MANIFESTS = ("manifest.json", "truth/manifest.json")
# names in incoming/ that are never an export (ours, or a transfer still in flight)
SKIP_NAMES = {"processed", "failed"}
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart", ".done")
DEFAULT_SETTLE_S = 60.0  # service.yml settle_seconds when not set
PROBE_S = 3.0  # a one-shot refresh watches a recently changed export this long for a write still going on


@dataclass
class RefreshResult:
    loads: list = field(default_factory=list)
    build: object = None  # the BuildResult; None when there was nothing to load and nothing loaded before
    waiting: list = field(default_factory=list)  # exports in incoming/ not complete yet: left for a later refresh


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


def nothing_loaded(settings: Settings) -> bool:
    """True when no file has ever landed a row: no raw.duckdb, or a load history of refusals and empty files only
    (`ptpulse build` and `refresh` then say what to load instead of building an empty warehouse). Call it under
    the pipeline lock: it opens raw.duckdb read-only for one query, which an ingest's writer would conflict with."""
    if not settings.raw_db.exists():
        return True
    catalog = settings.raw_db.stem
    con = duckdb.connect(str(settings.raw_db), read_only=True)
    try:
        landed = con.execute(f'SELECT count(*) FROM "{catalog}".raw._loads WHERE rows_landed > 0').fetchone()
    except duckdb.CatalogException:  # created but never written (no load history table)
        return True
    finally:
        con.close()
    return not landed or landed[0] == 0


# ------------------------------------------------------------------------------------------------ incoming exports


def config_path(settings: Settings) -> Path:
    env = os.environ.get("PTPULSE_SERVICE_FILE")
    return Path(env).expanduser() if env else settings.home / "service.yml"


def settle_seconds(settings: Settings) -> float:
    """`settle_seconds` of service.yml (what `ptpulse serve` uses), else the default; a file `ptpulse serve` would
    refuse is reported by `ptpulse health`, not here."""
    try:
        data = yaml.safe_load(config_path(settings).read_text(encoding="utf-8")) or {}
        return float(data.get("settle_seconds", DEFAULT_SETTLE_S))
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError):
        return DEFAULT_SETTLE_S


def _is_candidate(path: Path) -> bool:
    name = path.name
    return not (name.startswith(".") or name in SKIP_NAMES or name.lower().endswith(PARTIAL_SUFFIXES))


def _snapshot(export: Path) -> tuple:
    """(relative name, size, mtime) of every file in the export: it is settled when this stops changing."""
    if export.is_file():
        st = export.stat()
        return ((export.name, st.st_size, st.st_mtime_ns),)
    out = []
    for p in sorted(export.rglob("*")):
        try:
            if p.is_file():
                st = p.stat()
                out.append((str(p.relative_to(export)), st.st_size, st.st_mtime_ns))
        except OSError:  # removed while we looked: still changing
            out.append((str(p), -1, -1))
    return tuple(out)


def _marker(export: Path) -> Path | None:
    for m in ((export / DONE_MARKER) if export.is_dir() else None, export.with_name(export.name + DONE_MARKER)):
        if m is not None and m.exists():
            return m
    return None


def _manifest_complete(export: Path) -> bool:
    """True without a manifest; with one, every file it names (outside truth/) must exist."""
    if not export.is_dir():
        return True
    for rel in MANIFESTS:
        path = export / rel
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return False  # still being written
        named = data.get("files") or list((data.get("rows") or {}).keys()) if isinstance(data, dict) else []
        return all((export / str(n)).exists() for n in named if not str(n).startswith("truth/"))
    return True


#: inside an export folder, names of a file still in transfer; a `*.done` file there is a marker (ours, or an
#: exporter's own `export_20261201.done`), never a transfer: counting it kept such a folder waiting forever
IN_TRANSFER_SUFFIXES = tuple(s for s in PARTIAL_SUFFIXES if s != ".done")


def _in_flight(snap: tuple) -> bool:
    """An export still holding a file in transfer (`x.csv.part`, `.crdownload` ...): not complete, whatever its
    age. Read from the snapshot's names, so a poll walks each export once."""
    return any(name.lower().endswith(IN_TRANSFER_SUFFIXES) for name, _, _ in snap)


def _complete(export: Path, snap: tuple) -> bool:
    """Every file there (not empty, none in flight) and every file a manifest names."""
    return bool(snap) and not _in_flight(snap) and _manifest_complete(export)


@dataclass
class Watch:
    """What the scheduler last saw of one export: its snapshot and since when it has not changed."""

    snapshot: tuple
    since: float


def ready_exports(incoming: Path, watches: dict[str, Watch], settle_s: float, clock: float) -> list[Path]:
    """Exports in `incoming` that are complete now; updates `watches` (the caller keeps it between polls)."""
    if not incoming.is_dir():
        return []
    ready, seen = [], set()
    for export in sorted(p for p in incoming.iterdir() if _is_candidate(p)):
        seen.add(export.name)
        snap = _snapshot(export)
        w = watches.get(export.name)
        if w is None or w.snapshot != snap:
            watches[export.name] = w = Watch(snap, clock)
        if not _complete(export, snap):
            continue
        if _marker(export) is not None or clock - w.since >= settle_s:
            ready.append(export)
    for gone in set(watches) - seen:
        del watches[gone]
    return ready


def exports_ready_now(
    incoming: Path, settle_s: float, clock: float | None = None, probe_s: float = PROBE_S
) -> tuple[list[Path], list[Path]]:
    """(ready, waiting) exports in `incoming` for a one-shot refresh (`ptpulse refresh`, Admin → Refresh now),
    by the scheduler's rules without its watch history: complete (`_complete`: nothing in transfer, a manifest's
    files all there) and either marked `.done`, or unchanged for `settle_s` by its newest modification time, or
    -- written more recently -- unchanged while we watch it for `probe_s` (a file still being written grows; an
    export generated or copied just before the command, as `make demo` does, is taken at once).
    processed/, failed/, hidden and partial names are never an export (`_is_candidate`): the scheduler archived
    them, or they are still arriving."""
    clock = time.time() if clock is None else clock
    ready: list[Path] = []
    waiting: list[Path] = []
    probe: dict[Path, tuple] = {}
    if not incoming.is_dir():
        return ready, waiting
    for export in sorted(p for p in incoming.iterdir() if _is_candidate(p)):
        snap = _snapshot(export)
        if not _complete(export, snap) or any(size < 0 for _, size, _ in snap):
            waiting.append(export)
        elif _marker(export) is not None or clock - max(m for _, _, m in snap) / 1e9 >= settle_s:
            ready.append(export)
        elif probe_s > 0:
            probe[export] = snap
        else:
            waiting.append(export)
    if probe:
        time.sleep(probe_s)
        for export, snap in probe.items():
            (ready if _snapshot(export) == snap else waiting).append(export)
    return sorted(ready), sorted(waiting)


def incoming_exports(settings: Settings) -> tuple[list[Path], list[Path]]:
    """(ready, waiting) exports of the incoming folder, by the scheduler's completeness rules and its
    `settle_seconds` (service.yml, `settle_seconds`).

    Why not the whole folder: `ptpulse serve` archives exports to incoming/processed/ and incoming/failed/, and a
    transfer may still be writing (`.part`, a folder changed seconds ago); ingesting the folder re-read the failed
    export on every refresh (refused again, exit code 2 forever) and half-written files."""
    return exports_ready_now(settings.incoming, settle_seconds(settings))


def _sources(settings: Settings, paths: Sequence[Path] | None) -> tuple[list[Path], list[Path]]:
    """What to ingest: the given paths as they are, except the incoming folder itself (given, or by default),
    which stands for its ready exports."""
    incoming = settings.incoming.resolve()
    sources: list[Path] = []
    waiting: list[Path] = []
    for path in list(paths) if paths else [settings.incoming]:
        if Path(path).resolve() == incoming:
            ready, later = incoming_exports(settings)
            sources += ready
            waiting += later
        else:
            sources.append(Path(path))
    return sources, waiting


def refresh(
    settings: Settings, paths: Sequence[Path] | None = None, progress: ProgressFn = None, full_refresh: bool = False
) -> RefreshResult:
    """Ingest `paths` (default: the exports in the incoming folder that are complete, `incoming_exports`), then
    build and serve. Exports still arriving are left for the next refresh (`RefreshResult.waiting`).

    Nothing to ingest on a home where nothing was ever loaded (no raw.duckdb), or no file has ever landed a row
    (`nothing_loaded`: e.g. every file given was refused): no build either (it would serve an empty warehouse),
    `RefreshResult.build` is None and the caller says what to load."""
    from ingestion.loader import ingest

    settings.ensure()
    settings.incoming.mkdir(parents=True, exist_ok=True)
    sources, waiting = _sources(settings, paths)
    if progress is not None and waiting:
        progress(f"{len(waiting)} export(s) in incoming/ not complete yet, left for the next refresh", 0, 0)
    if not sources and not settings.raw_db.exists():
        return RefreshResult(loads=[], build=None, waiting=waiting)
    loads = ingest(sources, settings, progress=progress) if sources else []
    if nothing_loaded(settings):  # only refusals so far: a build would serve an empty warehouse as if healthy
        return RefreshResult(loads=loads, build=None, waiting=waiting)
    build = run_build(settings, progress=progress, full_refresh=full_refresh)
    return RefreshResult(loads=loads, build=build, waiting=waiting)
