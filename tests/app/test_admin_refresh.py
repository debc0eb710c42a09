"""Admin's "Refresh now" runs the whole pipeline in the background while the app keeps serving."""

from __future__ import annotations

import time

from app.lib import refresh
from app.lib.db import AnalyticsDb


def _build_id(db: AnalyticsDb) -> str:
    return db.scalar("select build_id from marts.build_info")


def test_refresh_now_swaps_in_a_new_build_while_the_old_one_stays_readable(built_home, copy_home):
    settings = copy_home(built_home)
    serving = AnalyticsDb(settings.analytics_db)  # the app's handle on the file being served
    before = _build_id(serving)

    refresh.start(settings, "admin@example.org")
    deadline = time.time() + 300
    while refresh.status(settings).running and time.time() < deadline:
        # the app keeps answering from the served file while the pipeline runs
        assert serving.scalar("select count(*) from marts.practice_kpis") > 0
        time.sleep(1)
    status = refresh.status(settings)
    assert status.exit_code == 0, status.tail
    assert "built and served" in status.tail
    assert _build_id(serving) != before  # the same handle sees the swapped-in build
