"""Admin's "Refresh now" runs the whole pipeline in the background while the app keeps serving."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from app.lib import refresh
from app.lib.db import AnalyticsDb

pytestmark = pytest.mark.slow  # real builds: under xdist this file starts early (tests/conftest.py)


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


def test_admin_enables_refresh_after_a_lock_holder_was_killed_with_sigkill(tmp_path):
    """A pipeline command killed with SIGKILL leaves `.pipeline.holder` behind. The Admin page asks the OS lock,
    not that file: while the holder lives the button is disabled and names it; once killed, it is enabled."""
    from app_helpers import open_page, rendered_text, rerun

    from ptpulse.core.config import get_settings

    settings = get_settings(tmp_path / "home").ensure()
    script = textwrap.dedent(f"""
        import time
        from ptpulse.core.config import get_settings
        from ptpulse.core.lock import pipeline_lock
        with pipeline_lock(get_settings({str(settings.home)!r}), "ingest"):
            print("locked", flush=True)
            time.sleep(60)
        """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        at = open_page(settings, "admin", "admin")
        button = at.button(key="admin_refresh")
        assert button.disabled
        assert f"Another pipeline command holds the lock: pid {proc.pid}: ptpulse ingest" in rendered_text(at)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert settings.lock_file.with_suffix(".holder").exists()  # the stale label the old page trusted

    at = rerun(at, settings)
    assert not at.button(key="admin_refresh").disabled
    assert "Another pipeline command holds the lock" not in rendered_text(at)
