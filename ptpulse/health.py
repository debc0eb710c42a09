"""`ptpulse health [--json]`: one probe a monitor (systemd timer, Nagios, uptime checker) can call.

Why a probe and not a page: the people who must hear that last night's export never came are not looking
at the app. It reads only what is safe to read while the service runs (the served analytics file
read-only, the scheduler's status file, the OS lock; never raw.duckdb) and returns one report whose
`healthy` is False, with a reason per problem, when any of these hold:

- no build is served, or the served build is older than `max_build_age_hours` (service.yml);
- the last refresh failed (load refused, build failed, crashed); a run that only found the pipeline lock busy is
  no result and never hides the failure before it;
- a refresh has been running, or an export has waited to be refreshed, longer than `max_refresh_hours`
  (service.yml, default 4 h): a hung dbt or ML step holds the lock while the scheduler stays alive;
- the scheduler wrote a status file but its process is gone, or it is alive but has not rewritten the file for
  several polls (`ptpulse.core.service_clock.stale_after_s`: a loop blocked, e.g. on a provider that never answers -- a live pid alone
  proves nothing), or its next run is more than an hour overdue;
- a source that has loaded before has not loaded within its expected cadence (`cadence_hours`);
- a build is served but no source ever loaded (its `marts.source_coverage` has no load time): an empty warehouse.

The report holds build ids, times, source names and counts: no data value, no secret.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb

from ptpulse.core.config import Settings
from ptpulse.core.lock import lock_holder, pid_alive
from ptpulse.core.service_clock import stale_after_s
from ptpulse.serve import ConfigError, ServiceConfig, load_config, nothing_loaded_line, parse_iso, read_status

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
    return {"build_id": row[0], "built_at": _utc(row[1]), "as_of": row[2]}, coverage


def _utc(value: Any) -> datetime | None:
    """build_info.built_at as an aware UTC time: it is stored in UTC without a zone (the dbt run's start), so it
    is read as UTC whatever $TZ the probe runs under. A build made before that held the server's local time: its
    age is off by the server's offset until the next build replaces it (never an error)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _real_last_run(status: dict[str, Any]) -> dict[str, Any] | None:
    """The last run with a result: a run that found the lock busy is none (a status file written before busy
    runs were kept out of `last_run` may still hold one: the history then has the real one)."""
    runs = [status.get("last_run"), *(status.get("history") or [])]
    return next((r for r in runs if isinstance(r, dict) and r.get("result") != "busy"), None)


def _stuck(status: dict[str, Any], limit_h: float, now: datetime) -> list[str]:
    """A refresh running, or a pending export waiting, longer than `limit_h` hours."""
    out = []

    def age_h(text: Any) -> float | None:
        try:
            t = parse_iso(text) if text else None
        except ValueError:
            return None
        return None if t is None else (now - t).total_seconds() / 3600

    running = status.get("running") or {}
    ran = age_h(running.get("started_at")) if isinstance(running, dict) else None
    if ran is not None and ran > limit_h:
        out.append(
            f"a refresh has been running for {ran:.1f} h (limit {limit_h:g} h, max_refresh_hours): it may be hung; "
            "read its log (logs/service-job-*.log), then stop it (systemctl restart ptpulse stops the job too)"
        )
    waits = [age_h(p.get("due")) for p in status.get("pending") or [] if isinstance(p, dict) and p.get("exports")]
    waited = max((w for w in waits if w is not None), default=None)
    if waited is not None and waited > limit_h:
        out.append(
            f"an export in incoming/ has waited {waited:.1f} h to be refreshed (limit {limit_h:g} h, "
            "max_refresh_hours): the refresh ahead of it may be hung"
        )
    return out


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
    status = read_status(settings)
    if build is None and (status or {}).get("nothing_loaded"):  # the service's own line: what to put where
        problems.append(str(status["nothing_loaded"]))
    elif build is None and not settings.raw_db.exists():
        problems.append(nothing_loaded_line(settings))
    elif build is None:
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
        if alive:
            problems.extend(_stuck(status, config.max_refresh_hours, now))
        last_run = _real_last_run(status)
        if last_run and last_run.get("result") not in ("ok", "nothing_loaded"):  # nothing loaded: said above
            problems.append(
                f"the last refresh ({last_run.get('finished_at')}) ended with {last_run.get('result')}: "
                "see its problems in `ptpulse health --json` and the alert email"
            )

    holder = lock_holder(settings)
    sources = source_freshness(coverage, config, now)
    stale = [s["source"] for s in sources if s["stale"]]
    if stale:
        problems.append(f"stale source(s), no load within the expected cadence: {', '.join(stale)}")
    if build is not None and not build.get("error") and not any(last for _, last in coverage):
        problems.append(
            "no source has ever loaded: the served build is empty. Load the practice's exports "
            "(`ptpulse ingest FOLDER` then `ptpulse build`, or put them in incoming/ for `ptpulse serve`)"
        )
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
