"""The server's own time zone, named, for the two clocks that must keep their wall-clock hour across a daylight-
saving change: the service's nightly schedule (ptpulse/serve.py) and quiet hours for a clinic without a zone
(app/lib/outreach.py). `datetime.now().astimezone()` carries today's fixed offset only."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def server_zone(at: float | None = None) -> ZoneInfo | None:
    """The server's time zone as a ZoneInfo (with its daylight-saving rules): $TZ, else the zone /etc/localtime
    links to, else /etc/timezone. None when none of them names a zone whose offset now is the system's (a POSIX
    TZ string such as 'CST6CDT,M3.2.0,M11.1.0'): the caller then uses the C library's local-time rules."""
    at = time.time() if at is None else at
    names = [os.environ.get("TZ", "").lstrip(":")]
    real = os.path.realpath("/etc/localtime")
    if "zoneinfo/" in real:
        names.append(real.split("zoneinfo/", 1)[1])
    try:
        names.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    system = datetime.fromtimestamp(at).astimezone().utcoffset()
    for name in filter(None, names):
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue
        if datetime.fromtimestamp(at, zone).utcoffset() == system:
            return zone
    return None
