"""How long PT Pulse keeps a clinic manager's limited upload, one rule for the two places that enforce it.

A limited upload (`$PTPULSE_HOME/scoped_uploads/<upload-id>/`, app/lib/uploads.py) keeps only the files whose rows
of other clinics were set aside, so an administrator can still land them; those files hold patient rows, so they
are deleted after `scoped_days()`. The Upload page prunes at each new upload and the refresh service at each of
its jobs (ptpulse/serve.py), so a home that nobody uploads to still forgets them on time.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

from ptpulse.core.config import Settings

SCOPED_DIR = "scoped_uploads"  # uploads limited to some clinics: outside incoming/, so no refresh loads them whole
DEFAULT_SCOPED_DAYS = 30  # a limited upload whose rows of other clinics an administrator may still load: kept so long
# an upload folder younger than this may still be being saved or loaded (the Upload page's ingest may wait and run
# for 31 min): never pruned, whatever the days. With 0 days the page itself deletes what its load did not need.
IN_FLIGHT_S = 2 * 3600


def scoped_days() -> float:
    """Days a limited upload is kept for an administrator: $PTPULSE_SCOPED_UPLOAD_DAYS (default 30; 0 = not kept)."""
    try:
        return max(float(os.environ.get("PTPULSE_SCOPED_UPLOAD_DAYS", DEFAULT_SCOPED_DAYS)), 0.0)
    except ValueError:
        return float(DEFAULT_SCOPED_DAYS)


def prune_scoped(settings: Settings, now: float | None = None) -> int:
    """Delete the limited uploads kept longer than `scoped_days()` (scoped_uploads/<upload-id>/, by the folder's
    time; never one younger than IN_FLIGHT_S). Returns how many were deleted. A folder that goes away meanwhile
    (the page's own clean-up) is skipped; an unreadable scoped_uploads/ raises OSError."""
    root: Path = settings.home / SCOPED_DIR
    if not root.is_dir():
        return 0
    cutoff = (now if now is not None else time.time()) - max(scoped_days() * 86400, IN_FLIGHT_S)
    gone = 0
    for folder in root.iterdir():
        try:
            info = folder.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            gone += 1
    return gone
