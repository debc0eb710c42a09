"""`ptpulse health [--json]`: one probe a monitor (systemd timer, Nagios, uptime checker) can call.

Why a probe and not a page: the people who must hear that last night's export never came are not looking
at the app. It reads only what is safe to read while the service runs (the served analytics file
read-only, the scheduler's status file, the OS lock; never raw.duckdb) and returns one report whose
`healthy` is False, with a reason per problem, when any of these hold:

- no build is served, or the served build is older than `max_build_age_hours` (service.yml);
- the last refresh failed (load refused, build failed, crashed);
- the scheduler wrote a status file but its process is gone, or it is alive but has not rewritten the file for
  several polls (`ptpulse.core.service_clock.stale_after_s`: a loop blocked, e.g. on a provider that never answers -- a live pid alone
  proves nothing), or its next run is more than an hour overdue;
- a source that has loaded before has not loaded within its expected cadence (`cadence_hours`).

The report holds build ids, times, source names and counts: no data value, no secret.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb

from ptpulse.core.config import Settings
from ptpulse.core.lock import lock_holder, pid_alive
from ptpulse.core.service_clock import stale_after_s
from ptpulse.serve import ConfigError, ServiceConfig, load_config, parse_iso, read_status

OVERDUE_S = 3600.0  # a next run this late means the scheduler is stuck


def _hours(since: datetime | None, now: datetime) -> float | None:
    return None if since is None else round((now - since).total_seconds() / 3600, 2)


def served_build(settings: Settings) -> tuple[dict[str, Any] | None, list[tuple]]:
    """build_id, built_at and as_of of the served analytics file, and its `marts.source_coverage` rows
    (source, last_loaded_at); (None, []) when no build is served.

    Freshness is read from the served file, not raw.duckdb: a reader of raw.duckdb, even read-only, makes a
    concurrent ingest fail to open it for writing, and a monitor polling every minute must never do that."""
    if not settings.analytics_db.exists():
        return None, []
    try:
        con = duckdb.connect(str(settings.analytics_db), read_only=True)
    except duckdb.Error:
        return {"build_id": None, "error": "the served analytics file could not be opened read-only"}, []
    try:
        row = con.execute("SELECT build_id, built_at, as_of FROM marts.build_info LIMIT 1").fetchone()
        coverage = con.execute("SELECT source, last_loaded_at FROM marts.source_coverage ORDER BY source").fetchall()
    except duckdb.Error:
        row, coverage = None, []
    finally:
        con.close()
    if row is None:
        return {"build_id": None, "error": "the served analytics file has no marts.build_info row"}, []
    built_at = row[1]
    if isinstance(built_at, datetime) and built_at.tzinfo is None:
        built_at = built_at.astimezone()  # build_info.built_at is local time without zone
    return {"build_id": row[0], "built_at": built_at, "as_of": row[2]}, coverage


def source_freshness(coverage: list[tuple], config: ServiceConfig, now: datetime) -> list[dict[str, Any]]:
    """Per source: last successful load (as of the served build), its age and the expected cadence."""
    out = []
    for source, last in coverage:
        last_utc = last.replace(tzinfo=UTC) if isinstance(last, datetime) else None  # load audit times are UTC
        age = _hours(last_utc, now)
        expected = config.cadence_hours.get(source)
        out.append(
            {
                "source": source,
                "last_load_at": last_utc,
                "age_hours": age,
                "expected_hours": expected,
                "stale": bool(expected is not None and age is not None and age > expected),
            }
        )
    return out


def health_report(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """The probe's whole answer; `healthy` is False when `problems` is not empty."""
    now = now or datetime.now(UTC)
    problems: list[str] = []
    try:
        config = load_config(settings)
    except ConfigError as exc:
        config = ServiceConfig()
        problems.append(str(exc))

    build, coverage = served_build(settings)
    if build is None:
        problems.append("no analytics build is served yet: run `ptpulse refresh` or start `ptpulse serve`")
    elif build.get("error"):
        problems.append(build["error"])
    else:
        build["age_hours"] = _hours(build["built_at"], now)
        if build["age_hours"] is not None and build["age_hours"] > config.max_build_age_hours:
            problems.append(
                f"the served build is {build['age_hours']:.0f} h old (limit {config.max_build_age_hours:.0f} h): "
                "check the scheduler and the last refresh"
            )

    status = read_status(settings)
    scheduler: dict[str, Any] = {"configured": status is not None}
    last_run = None
    if status is not None and status.get("unreadable"):
        problems.append("the scheduler's status file logs/service.json is unreadable")
    elif status is not None:
        stopped = status.get("stopped_at") is not None
        alive = not stopped and isinstance(status.get("pid"), int) and pid_alive(status["pid"])
        next_run = parse_iso(status.get("next_run"))
        try:
            updated = parse_iso(status.get("updated_at"))
        except ValueError:
            updated = None
        silent_s = None if updated is None else (now - updated).total_seconds()
        scheduler.update(
            running=alive,
            pid=status.get("pid"),
            stopped_at=status.get("stopped_at"),
            next_run=status.get("next_run"),
            updated_at=status.get("updated_at"),
            refresh_running=status.get("running"),
            pending=status.get("pending", []),
            last_success=status.get("last_success"),
        )
        if not alive:
            problems.append("the scheduler (`ptpulse serve`) is not running: start it (systemctl start ptpulse)")
        elif silent_s is None or silent_s > stale_after_s(status):
            silence = "never updated" if silent_s is None else f"not updated for {silent_s:.0f} s"
            problems.append(
                f"the scheduler's process is alive but has {silence} logs/service.json: it may be stuck; read its "
                "log and restart it (systemctl restart ptpulse)"
            )
        elif next_run is not None and (now - next_run).total_seconds() > OVERDUE_S:
            problems.append("the scheduled refresh is more than an hour overdue: the scheduler may be stuck")
        last_run = status.get("last_run")
        if last_run and last_run.get("result") not in ("ok", "busy"):
            problems.append(
                f"the last refresh ({last_run.get('finished_at')}) ended with {last_run.get('result')}: "
                "see its problems in `ptpulse health --json` and the alert email"
            )

    holder = lock_holder(settings)
    sources = source_freshness(coverage, config, now)
    stale = [s["source"] for s in sources if s["stale"]]
    if stale:
        problems.append(f"stale source(s), no load within the expected cadence: {', '.join(stale)}")
    return {
        "healthy": not problems,
        "problems": problems,
        "checked_at": now,
        "served_build": build,
        "last_refresh": last_run,
        "lock": {"held": holder is not None, "holder": holder},
        "scheduler": scheduler,
        "sources": sources,
    }
