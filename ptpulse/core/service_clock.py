"""When the service's status file says the scheduler is stuck: one rule for `ptpulse health` (ptpulse/health.py via
ptpulse/serve.py) and the Data health page (app/lib/service_status.py), which may not import the service itself."""

from __future__ import annotations

from typing import Any

POLL_SECONDS = 5.0  # service.yml poll_seconds when not set
# A live scheduler rewrites its status every poll; it is stuck when the file is older than this many polls (and at
# least STALE_MIN_S: a poll that sends an alert email may take a while).
STALE_POLLS = 6
STALE_MIN_S = 120.0


def stale_after_s(status: dict[str, Any]) -> float:
    """Seconds after its `updated_at` a live scheduler's status file counts as stuck."""
    try:
        poll = float(status.get("poll_seconds") or POLL_SECONDS)
    except (TypeError, ValueError):
        poll = POLL_SECONDS
    return max(STALE_POLLS * poll, STALE_MIN_S)
