"""Steps 0 and 6 of a build: the served layout, the one-rename swap, and removing abandoned builds.

Layout (ptpulse/core/config.py): build/<build_id>/ holds one build's analytics.duckdb + analytics_deid.duckdb;
build/served is a relative symlink to the served build's folder; $PTPULSE_HOME/analytics.duckdb and
analytics_deid.duckdb are fixed relative symlinks into build/served/. Serving a build is ONE rename (a new
symlink over build/served), so a crash at any moment leaves either the old pair or the new pair served,
never one file of each. A reader that opened the old files keeps its snapshot after the old folder is
removed (POSIX: an open file outlives its last name).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from datetime import datetime
from pathlib import Path

from ptpulse.core.config import Settings
from ptpulse.core.deid import rule_fingerprint

# Beside a build's twin once it passed verification: the rule and the raw load it was checked against. Only a twin
# with this mark (and the current rule) is the base of the next night's delta twin (core/deid.py).
TWIN_STATE = "analytics_deid.verified.json"
# Beside a build's files: raw's patient identifiers as of the raw load it was built from, which the twin's check
# extends by the loads since instead of re-reading all of raw (core/deid.py `_identifier_table`). Holds PHI, like
# the analytics file beside it; never served to a de-identified reader.
TWIN_IDENTIFIERS = "twin_identifiers.duckdb"


def new_build_id() -> str:
    return datetime.now().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


_BUILD_FOLDER = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{6}(-[a-z]+)?$")  # new_build_id(), plus -adopted / -stale


def _served_names(settings: Settings) -> tuple[Path, Path]:
    return settings.analytics_db, settings.analytics_deid_db


def _stable_target(settings: Settings, stable: Path) -> str:
    """What a stable path's symlink holds: relative, so a moved or restored home keeps working."""
    return os.path.relpath(settings.served_dir / stable.name, stable.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a power cut after a swap must not bring the old link back)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def served_build_dir(settings: Settings) -> Path | None:
    """The folder of the build served now (where build/served points), or None before the first build."""
    link = settings.served_dir
    if not link.is_symlink():
        return None
    target = settings.build_dir / os.readlink(link)
    return target if target.is_dir() else None


def _replace_with_symlink(path: Path, target: str) -> None:
    """Point `path` at `target` in one atomic step: a new symlink renamed over it (never a moment without)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def serve_build_dir(settings: Settings, folder: Path) -> None:
    """Serve the pair in `folder` (a build/<build_id>/ folder): the single atomic rename of build/served.
    The stable paths are linked first (a no-op once they exist; dangling only before the first build)."""
    link_stable_paths(settings)
    _replace_with_symlink(settings.served_dir, folder.name)


def link_stable_paths(settings: Settings) -> None:
    """The documented paths $PTPULSE_HOME/analytics.duckdb and analytics_deid.duckdb as fixed symlinks into
    build/served/ (created once; each replacement is atomic and points at content already served)."""
    for stable in _served_names(settings):
        want = _stable_target(settings, stable)
        if stable.is_symlink() and os.readlink(stable) == want:
            continue
        _replace_with_symlink(stable, want)


def adopt_served_files(settings: Settings) -> str | None:
    """Move an installation whose served files are plain files in $PTPULSE_HOME (the layout before builds were
    served through build/served, a copied home, or a file put there by hand) into the layout. Returns the
    adopted folder's name, or None when there was nothing to adopt.

    Both files are hard-linked (same inode: open readers see no change) into build/<id>-adopted/, build/served
    is pointed at that folder, then each top-level name is replaced by its symlink to the same content. Every
    step is one rename and each leaves the same, consistent pair readable, so a crash mid-way is harmless.
    """
    stables = _served_names(settings)
    foreign = [
        p
        for p in stables
        if (p.exists() or p.is_symlink()) and not (p.is_symlink() and os.readlink(p) == _stable_target(settings, p))
    ]
    served_ok = settings.served_dir.is_symlink()
    if not foreign and (served_ok or not settings.served_dir.exists()):
        if served_build_dir(settings) is not None:
            link_stable_paths(settings)
        return None
    for p in stables:
        wal = Path(str(p) + ".wal")
        if wal.exists():
            raise RuntimeError(
                f"{wal} exists: a process wrote {p.name} in place and did not close it. Close that process "
                f"(or open {p} read-write once and close it, which checkpoints the file), then build again."
            )
    settings.build_dir.mkdir(parents=True, exist_ok=True)
    folder = settings.build_dir / f"{new_build_id()}-adopted"
    folder.mkdir()
    for p in stables:
        if p.exists():
            source = p.resolve()
            try:
                os.link(source, folder / p.name)
            except OSError:  # another file system, or no hard links: a copy is the same content
                shutil.copy2(source, folder / p.name)
    if settings.served_dir.exists() and not settings.served_dir.is_symlink():
        os.rename(settings.served_dir, settings.build_dir / f"{new_build_id()}-stale")  # removed as abandoned
    _replace_with_symlink(settings.served_dir, folder.name)  # first: the links below must never dangle
    link_stable_paths(settings)
    return folder.name


def remove_abandoned_builds(settings: Settings) -> list[str]:
    """Remove build/<build_id>/ folders left by killed or failed builds: every build folder except the served
    one (and never build/dbt or build/docs). Call under the pipeline lock, so no other build is in progress;
    readers still holding a removed file keep reading it until they close it."""
    if not settings.build_dir.is_dir():
        return []
    served = served_build_dir(settings)
    removed = []
    for child in sorted(settings.build_dir.iterdir()):
        if child.name.startswith(f".{settings.served_dir.name}.") and child.is_symlink():  # swap killed mid-way
            child.unlink(missing_ok=True)
            continue
        if child.is_symlink() or not child.is_dir() or not _BUILD_FOLDER.match(child.name):
            continue
        if served is not None and child.name == served.name:
            continue
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child.name)
    for stable in _served_names(settings):
        for tmp in stable.parent.glob(f".{stable.name}.*.tmp"):
            if tmp.is_symlink():
                tmp.unlink(missing_ok=True)
    return removed


def record_verified_twin(folder: Path, raw_load_id: int | None) -> None:
    """Mark the twin in `folder` as verified against raw up to `raw_load_id` (call only after the check)."""
    if raw_load_id is None:
        return
    state = {"rule": rule_fingerprint(), "raw_load_id": int(raw_load_id)}
    (folder / TWIN_STATE).write_text(json.dumps(state) + "\n")


def verified_served_twin(settings: Settings) -> tuple[Path, int] | None:
    """(served twin, raw load id it was verified against) when the served build's twin carries the mark of
    `record_verified_twin` under the current rule; None otherwise (the night's twin is then written in full)."""
    folder = served_build_dir(settings)
    if folder is None:
        return None
    twin = folder / settings.analytics_deid_db.name
    try:
        state = json.loads((folder / TWIN_STATE).read_text())
    except (OSError, ValueError):
        return None
    if not twin.exists() or not isinstance(state, dict) or state.get("rule") != rule_fingerprint():
        return None
    load = state.get("raw_load_id")
    return (twin, load) if isinstance(load, int) else None


def carry_twin_identifiers(settings: Settings, target: Path) -> None:
    """Copy the served build's identifier cache to `target` when it is complete (no .wal beside it); without
    one the check fills a new file. The served file is only read: a crash leaves it as it was."""
    served = served_build_dir(settings)
    source = served / TWIN_IDENTIFIERS if served is not None else None
    if source is not None and source.exists() and not Path(str(source) + ".wal").exists():
        shutil.copyfile(source, target)
