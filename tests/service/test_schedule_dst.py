"""The nightly schedule across daylight-saving changes, server in Chicago: 02:00 on the night the clocks go back is
02:00 standard time (before, the evening's summer offset was attached and it ran at 01:00); 02:00 on the night
they go forward does not exist and the run happens at 03:00 summer time; an hour that occurs twice runs once."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ptpulse.core.config import get_settings
from ptpulse.serve import Scheduler, ServiceConfig

CHICAGO = ZoneInfo("America/Chicago")


def _scheduler(tmp_path, schedule: str, at: datetime) -> tuple[Scheduler, dict]:
    clock = {"now": at.timestamp()}
    settings = get_settings(tmp_path / "home")
    return Scheduler(settings, ServiceConfig(schedule=schedule), clock=lambda: clock["now"]), clock


def test_two_am_on_the_night_the_clocks_go_back(tmp_path, chicago):
    saturday_evening = datetime(2026, 10, 31, 20, 0, tzinfo=CHICAGO)  # CDT, UTC-5
    s, _ = _scheduler(tmp_path, "0 2 * * *", saturday_evening)
    assert s.next_run.astimezone(CHICAGO).replace(tzinfo=None) == datetime(2026, 11, 1, 2, 0)
    assert s.next_run.astimezone(UTC) == datetime(2026, 11, 1, 8, 0, tzinfo=UTC)  # CST, UTC-6
    assert s.state["next_run"] == "2026-11-01T08:00:00Z"


def test_two_am_on_the_night_the_clocks_go_forward(tmp_path, chicago):
    s, _ = _scheduler(tmp_path, "0 2 * * *", datetime(2026, 3, 7, 20, 0, tzinfo=CHICAGO))
    assert s.next_run.astimezone(UTC) == datetime(2026, 3, 8, 8, 0, tzinfo=UTC)  # = 03:00 CDT, the first minute after
    assert s.next_run.astimezone(CHICAGO).hour == 3


def test_an_hour_that_happens_twice_runs_once(tmp_path, chicago):
    s, clock = _scheduler(tmp_path, "30 1 * * *", datetime(2026, 10, 31, 20, 0, tzinfo=CHICAGO))
    first = s.next_run
    assert first.astimezone(UTC) == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 CDT, the first one
    started = []
    s._start = lambda job: started.append(job.trigger)  # record the decision; no refresh process is needed here
    for minutes in range(0, 4 * 60, 5):  # 01:00 CDT .. 04:00 CST, every five minutes
        clock["now"] = datetime(2026, 11, 1, 6, 0, tzinfo=UTC).timestamp() + minutes * 60
        s.tick()
        s.queue.clear()
    assert started == ["schedule"]
    assert s.next_run.astimezone(CHICAGO).replace(tzinfo=None) == datetime(2026, 11, 2, 1, 30)
