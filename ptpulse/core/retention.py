"""How long PT Pulse keeps a clinic manager's limited upload, one rule for the two places that enforce it.

A limited upload (`$PTPULSE_HOME/scoped_uploads/<upload-id>/`, app/lib/uploads.py) keeps only the files whose rows
of other clinics were set aside, so an administrator can still land them; those files hold patient rows, so they
are deleted after `scoped_days()`. The Upload page prunes at each new upload and the refresh service at each of
its jobs (ptpulse/serve.py), so a home that nobody uploads to still forgets them on time.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ptpulse.core.config import Settings

SCOPED_DIR = "scoped_uploads"  # uploads limited to some clinics: outside incoming/, so no refresh loads them whole
DEFAULT_SCOPED_DAYS = 30  # a limited upload whose rows of other clinics an administrator may still load: kept so long


def scoped_days() -> float:
    """Days a limited upload is kept for an administrator: $PTPULSE_SCOPED_UPLOAD_DAYS (default 30; 0 = not kept)."""
    try:
        return max(float(os.environ.get("PTPULSE_SCOPED_UPLOAD_DAYS", DEFAULT_SCOPED_DAYS)), 0.0)
    except ValueError:
        return float(DEFAULT_SCOPED_DAYS)


def prune_scoped(settings: Settings, now: float | None = None) -> int:
    """Delete the limited uploads kept longer than `scoped_days()` (scoped_uploads/<upload-id>/, by the folder's
    time). Returns how many were deleted."""
    root: Path = settings.home / SCOPED_DIR
    if not root.is_dir():
        return 0
    cutoff = (now if now is not None else time.time()) - scoped_days() * 86400
    gone = 0
    for folder in root.iterdir():
        if folder.is_dir() and not folder.is_symlink() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            gone += 1
    return gone
