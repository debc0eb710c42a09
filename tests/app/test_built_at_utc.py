"""build_info.built_at is UTC (dbt's run start): the page's "updated ... ago" reads it as this server's wall time,
the clock `datetime.now()` and the page's other times are in, whatever zone the server runs in."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from app.lib.ui import _local_from_utc


@pytest.mark.parametrize(("zone", "hour"), [("UTC", 6), ("Asia/Tokyo", 15), ("America/Los_Angeles", 22)])
def test_built_at_is_shown_in_the_servers_zone(monkeypatch, zone, hour):
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        shown = _local_from_utc("2026-12-02 06:00:00")
    finally:
        monkeypatch.undo()
        time.tzset()
    day = 1 if hour == 22 else 2
    assert shown == datetime(2026, 12, day, hour)


def test_a_missing_or_unreadable_built_at_is_not_shown():
    assert _local_from_utc(None) is None and _local_from_utc("not a time") is None
