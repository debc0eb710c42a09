"""`ptpulse serve`: the app plus its own scheduler, in one supervised process group.

Why: a practice drops the EMR's nightly export into `$PTPULSE_HOME/incoming/` and expects current
dashboards in the morning, without anyone typing `ptpulse refresh`. This process

- runs the Streamlit app as a child (restarted with back-off if it dies; it keeps serving during builds and
  picks up each newly served build by itself, docs/architecture.md);
- refreshes on a cron-like schedule (default nightly, 02:00 local time) and whenever a *complete* export
  lands in incoming/: a folder (or a loose file) whose files stopped changing for `settle_seconds`, or at
  once when it holds a `.done` marker; when it holds a manifest (`manifest.json` or `truth/manifest.json`
  naming files under `rows` or `files`) every named file must be there too, and no file in it may still be in
  transfer (`.part` ...); these rules live in ptpulse/refresh.py, shared with `ptpulse refresh`;
- runs each refresh as a child process (`python -m ptpulse.serve job`) under the pipeline lock, so a crash
  or a kill never takes the app down, and never two refreshes at once: a busy lock is retried with back-off;
- moves each export to incoming/processed/ (or incoming/failed/ when a file was refused), emails the admin
  on a failed load or build (ptpulse/notify.py), retries a failed build with back-off;
- sends the messages the pages queued for after quiet hours once they are due (ptpulse/core/outbound.py), in a
  thread of its own so a provider that never answers cannot hold the scheduler;
- writes its state to `$PTPULSE_HOME/logs/service.json` (shape in docs/interfaces.md) at start-up and every
  poll, for `ptpulse health` (which calls a file not rewritten for several polls stuck) and Data health.

Configuration: `$PTPULSE_HOME/service.yml` (optional; keys of `ServiceConfig`), CLI options override it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from ptpulse.core.config import APP_DIR, Settings, get_settings
from ptpulse.core.lock import PipelineBusy, pipeline_lock
from ptpulse.core.retention import SCOPED_DIR, prune_scoped
from ptpulse.core.service_clock import POLL_SECONDS
from ptpulse.core.zones import server_zone
from ptpulse.refresh import (  # when an export in incoming/ is complete: the same rules as `ptpulse refresh`
    DEFAULT_SETTLE_S,
    Watch,
    _marker,
    config_path,
    ready_exports,
)

log = logging.getLogger("ptpulse.serve")

STATUS_VERSION = 1
HISTORY = 20  # runs kept in the status file
DELIVERY_BUDGET_S = 300.0  # a delivery check running longer than this is logged and shown as stalled
JOB_FILES_KEPT = 30  # job logs/results kept under logs/
BACKOFF_CAP_S = 3600.0

# Expected time between loads of each source (hours) before `ptpulse health` calls it stale. EMR sources come
# with the nightly export; the marketing sheet monthly; reference lists only when they change (not checked).
DEFAULT_CADENCE_HOURS: dict[str, float | None] = {
    "intake_events": 48,
    "scheduling_events": 48,
    "documentation_events": 48,
    "charges": 48,
    "claims": 48,
    "remittances": 48,
    "authorizations": 48,
    "patients": 48,
    "marketing_touches": 24 * 8,
    "marketing_spend": 24 * 35,
    "clinics": None,
    "therapists": None,
    "payers": None,
    "referring_physicians": None,
}


class ConfigError(ValueError):
    """service.yml or a CLI option is wrong; the message names the file, key and fix."""


# ------------------------------------------------------------------------------------------------ configuration


@dataclass
class ServiceConfig:
    schedule: str = "0 2 * * *"  # cron (minute hour day-of-month month day-of-week), @daily, @hourly, or off
    # an export is complete when nothing in it changed for this long (or it has .done)
    settle_seconds: float = DEFAULT_SETTLE_S
    poll_seconds: float = POLL_SECONDS
    retries: int = 3  # a failed build is retried this many times, then alerted
    backoff_seconds: float = 120.0  # first retry delay; doubles each attempt, capped at one hour
    max_build_age_hours: float = 36.0  # `ptpulse health`: the served build may be this old
    # `ptpulse health`: a refresh running (or an export waiting) longer than this is stuck (a hung dbt or ML step)
    max_refresh_hours: float = 4.0
    deliver_seconds: float = 60.0  # how often messages queued for after quiet hours are checked and sent
    cadence_hours: dict[str, float | None] = field(default_factory=lambda: dict(DEFAULT_CADENCE_HOURS))

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        return min(self.backoff_seconds * 2 ** max(attempt - 1, 0), BACKOFF_CAP_S)


def _duration_hours(value: Any, where: str) -> float | None:
    """`36`, `36h`, `7d`, `90m` or null (not checked) as hours."""
    if value is None:
        return None
    text = str(value).strip().lower()
    units = {"m": 1 / 60, "h": 1.0, "d": 24.0}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ConfigError(f"{where}: expected hours like 36, 36h, 7d or null, not {text!r}") from None


def load_config(settings: Settings, **overrides: Any) -> ServiceConfig:
    """service.yml (if present) with CLI overrides on top; unknown keys and bad values are refused by name."""
    path = config_path(settings)
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            raise ConfigError(f"{path}: not valid YAML; fix its syntax.") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of settings (schedule:, settle_seconds:, ...)")
    known = {f.name for f in fields(ServiceConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
    cfg = ServiceConfig()
    cadence = dict(DEFAULT_CADENCE_HOURS)
    for source, value in (data.pop("cadence_hours", None) or {}).items():
        cadence[str(source)] = _duration_hours(value, f"{path}: cadence_hours.{source}")
    cfg.cadence_hours = cadence
    for key, value in {**data, **{k: v for k, v in overrides.items() if v is not None}}.items():
        if key == "schedule":
            cfg.schedule = str(value)
        elif key == "retries":
            cfg.retries = int(value)
        else:
            try:
                setattr(cfg, key, float(value))
            except (TypeError, ValueError):
                raise ConfigError(f"{path}: {key} must be a number of seconds/hours, not {value!r}") from None
    Cron.parse(cfg.schedule, where=f"{path}: schedule")  # refuse a bad schedule at start, not at 2 am
    return cfg


# ------------------------------------------------------------------------------------------------------- cron

_ALIASES = {"@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@nightly": "0 2 * * *", "@hourly": "0 * * * *"}
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))


@dataclass(frozen=True)
class Cron:
    """A five-field cron expression (lists, ranges, steps; Sunday is 0 or 7), matched on the local wall clock
    (the Scheduler places the match in the server's zone, `ptpulse.core.zones.server_zone`)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday (Python's weekday())
    dom_any: bool
    dow_any: bool

    @staticmethod
    def parse(text: str, where: str = "schedule") -> Cron | None:
        """None for `off`/`none`/empty (no scheduled refresh, incoming exports only)."""
        text = _ALIASES.get(text.strip().lower(), text.strip())
        if text.lower() in ("", "off", "none", "never"):
            return None
        parts = text.split()
        if len(parts) != 5:
            raise ConfigError(f"{where}: {text!r} needs 5 fields (minute hour day month weekday), e.g. '0 2 * * *'")
        sets = [_cron_field(p, name, lo, hi, where) for p, (name, lo, hi) in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset((d - 1) % 7 for d in sets[4])  # cron 0/7 = Sunday -> Python 6
        return Cron(sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] == "*", parts[4] == "*")

    def _day_ok(self, d: datetime) -> bool:
        dom, dow = d.day in self.days, d.weekday() in self.weekdays
        if self.dom_any or self.dow_any:  # cron: when both are restricted, either may match
            return dom and dow
        return dom or dow

    def next_after(self, after: datetime) -> datetime:
        """The first matching minute strictly after `after` (naive local time)."""
        t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_ok(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        raise ConfigError("schedule: this cron expression never matches a real date; fix the day/month fields")


def _cron_field(text: str, name: str, lo: int, hi: int, where: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if rng == "*":
                a, b = lo, hi
            elif "-" in rng:
                a, b = (int(x) for x in rng.split("-", 1))
            else:
                a = b = int(rng)
        except ValueError:
            raise ConfigError(f"{where}: the {name} field {text!r} is not a number, range, list or step") from None
        if not (lo <= a <= b <= hi) or step < 1:
            raise ConfigError(f"{where}: the {name} field {text!r} is outside {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


# --------------------------------------------------------------------------------------------------- status file


def status_path(settings: Settings) -> Path:
    return settings.home / "logs" / "service.json"


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_status(settings: Settings) -> dict[str, Any] | None:
    """The scheduler's last written state, or None when no service has run in this home."""
    try:
        return json.loads(status_path(settings).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        return {"version": STATUS_VERSION, "unreadable": True}


def write_status(settings: Settings, state: dict[str, Any]) -> None:
    """Atomic (write aside, rename over), so a reader never sees half a file."""
    path = status_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


# ------------------------------------------------------------------------------------------------ incoming exports


def archive_export(settings: Settings, export: Path, ok: bool, stamp: str) -> Path | None:
    """Move a processed export to incoming/processed/ (or failed/); a `.done` marker inside the folder moves
    with it, a sibling `<name>.done` is removed."""
    if not export.exists():
        return None
    marker = _marker(export)
    target_dir = settings.incoming / ("processed" if ok else "failed")
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{stamp}-{export.name}"
    n = 1
    while target.exists():
        n += 1
        target = target_dir / f"{stamp}-{n}-{export.name}"
    shutil.move(str(export), str(target))
    if marker is not None and marker.parent != export:
        marker.unlink(missing_ok=True)
    return target


# ----------------------------------------------------------------------------------------------- the refresh job


def run_job(settings: Settings, exports: list[Path], always_build: bool) -> dict[str, Any]:
    """Ingest each export, then build once, under the pipeline lock (runs in the job child process).

    An incoming-only job whose files all were refused or already loaded skips the build: nothing changed. No
    build either while no file has ever landed a row (`nothing_loaded`, as `ptpulse refresh`): an empty warehouse
    would be served as if healthy; the result is then `nothing_loaded` (no alert, no retry). Each job first deletes
    the limited uploads kept past their days (`prune_scoped`).
    Returns plain data (what the scheduler reads from the result file): per-export loads (keyed by the export's
    place in `exports`, each file by its number: no file or export name) and the build."""
    from ingestion.files import safe_text
    from ingestion.loader import ingest
    from ptpulse.notify import scrub_file_names
    from ptpulse.refresh import run_build

    empty = False
    try:  # limited uploads past their days go even when nobody uploads again (core/retention.py)
        prune_scoped(settings)
    except OSError as exc:  # never a reason to skip the refresh: said in the log, tried again next job
        log.warning("could not prune limited uploads (%s): %s", SCOPED_DIR, type(exc).__name__)
    try:
        with pipeline_lock(settings, "serve refresh", wait_s=0):
            settings.incoming.mkdir(parents=True, exist_ok=True)
            per_export: dict[str, list[dict[str, Any]]] = {}
            loaded = 0
            for place, export in enumerate(exports):
                results = ingest([export], settings) if export.exists() else []
                numbers: dict[str, int] = {}  # each file of the export by its place in the loader's (name) order
                for r in results:
                    numbers.setdefault(str(r.file), len(numbers) + 1)
                per_export[str(place)] = [  # by its place in the job: the result file holds no export's name
                    {
                        # never the file's name (it may be a patient's): its number in the export
                        "file": f"file {numbers[str(r.file)]}",
                        "source": r.source,
                        "status": r.status,
                        "rows_landed": r.rows_landed,
                        "rows_quarantined": r.rows_quarantined,
                        "message": safe_text(scrub_file_names(r.message, _file_names(Path(r.file), export)), 600),
                    }
                    for r in results
                ]
                loaded += sum(r.status == "loaded" for r in results)
            build = None
            empty = _nothing_loaded_or_unreadable(settings)  # under the lock: no ingest writes raw.duckdb meanwhile
            if not empty and (always_build or loaded or not settings.analytics_db.exists()):
                b = run_build(settings)
                build = {
                    "ok": b.ok,
                    "build_id": b.build_id if b.ok else None,
                    "seconds": round(b.seconds, 1),
                    "models": b.models,
                    "tests": b.tests,
                    "message": "" if b.ok else b.message,
                }
    except PipelineBusy as exc:
        return {"result": "busy", "holder": str(exc)}
    bad_loads = any(r["status"] in ("refused", "failed") for rows in per_export.values() for r in rows)
    result = "build_failed" if build is not None and not build["ok"] else "load_failed" if bad_loads else "ok"
    if empty and result == "ok":
        result = "nothing_loaded"
    return {"result": result, "exports": per_export, "files_loaded": loaded, "build": build, "nothing_loaded": empty}


def nothing_loaded_line(settings: Settings) -> str:
    """What the service says (log, logs/service.json, `ptpulse health`) while no file has ever landed a row."""
    return (
        f"nothing loaded yet, so nothing is built or served: put the practice's exports in {settings.incoming} "
        "(one folder per export; the service loads a complete one by itself), or run `ptpulse refresh FOLDER`"
    )


def _nothing_loaded_or_unreadable(settings: Settings) -> bool:
    """`nothing_loaded`, False when raw.duckdb cannot be read (a damaged file): the build then fails and says why,
    retried and alerted as any failed build."""
    import duckdb

    from ptpulse.refresh import nothing_loaded

    try:
        return nothing_loaded(settings)
    except duckdb.Error:
        return False


def _nothing_loaded_now(settings: Settings) -> bool | None:
    """`nothing_loaded` at the service's start, under the pipeline lock (a reader of raw.duckdb would block an
    ingest); None when another pipeline command holds the lock (the next job's result says)."""
    if not settings.raw_db.exists():
        return True
    try:
        with pipeline_lock(settings, "serve start", wait_s=0):
            return _nothing_loaded_or_unreadable(settings)
    except PipelineBusy:
        return None


def _relative(path: Path, export: Path) -> str:
    try:
        return f"{export.name}/{path.relative_to(export)}" if export.is_dir() else export.name
    except ValueError:
        return path.name


def _file_names(path: Path, export: Path) -> set[str]:
    """Every spelling of a data file's name a loader message may quote (scrubbed before it reaches an alert)."""
    from ingestion.files import display_name, safe_text

    names = {str(path), path.name, path.stem, _relative(path, export), display_name(path), safe_text(path.stem, 120)}
    if not export.is_dir():
        names |= {export.name, export.stem, str(export)}
    try:
        names.add(str(path.relative_to(export)))
    except ValueError:
        pass
    return {n for n in names if n}


def export_label(export: Path, number: int) -> str:
    """How alerts and the status file name an export: its folder's name (chosen by whoever set up the EMR's
    export, not by a patient), or `single file <number>` for a loose file dropped in incoming/ (its name may be a
    patient's, e.g. Synthea's `<Given>_<Family>_<uuid>.json`)."""
    return export.name if export.is_dir() else f"single file {number}"


def _archived_label(moved: Path, incoming: Path, was_dir: bool, stamp: str) -> str:
    """Where an export was archived, relative to incoming/: a folder's path, a loose file's stamp only."""
    rel = moved.relative_to(incoming)
    return str(rel) if was_dir else f"{rel.parent}/{stamp}-*"


def _job_main(argv: list[str]) -> int:
    """`python -m ptpulse.serve job --home H --result R [--always-build] EXPORT...` (the scheduler's child)."""
    parser = argparse.ArgumentParser(prog="ptpulse.serve job")
    parser.add_argument("--home", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--always-build", action="store_true")
    parser.add_argument("exports", nargs="*")
    args = parser.parse_args(argv)
    settings = get_settings(args.home)
    _log_without_file_names([Path(e) for e in args.exports])
    result = run_job(settings, [Path(e) for e in args.exports], args.always_build)
    tmp = Path(args.result + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    tmp.replace(args.result)
    return 3 if result["result"] == "busy" else 0


class _NoFileNames(logging.Formatter):
    """A job log line without a data file's name (exporters name files after patients): the exports' own names,
    any absolute path and any file-like name in the message; a traceback keeps its code paths, not file names."""

    def __init__(self, names: set[str]):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.names = names

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        from ptpulse.core.redact import scrub_file_names

        record.message = scrub_file_names(record.message, self.names)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        from ptpulse.core.redact import scrub_file_names

        return scrub_file_names(super().formatException(ei), self.names, paths=False)


def _log_without_file_names(exports: list[Path]) -> None:
    """The job's log (logs/service-job-*.log, its stdout): INFO and up, every line through _NoFileNames."""
    names = {n for e in exports for n in (str(e), e.name, e.stem)}
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_NoFileNames(names))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


# --------------------------------------------------------------------------------------------------- scheduler


@dataclass
class Job:
    trigger: str  # schedule | incoming | retry
    exports: list[Path]
    always_build: bool
    attempt: int = 1
    due: float = 0.0  # time.time() when it may start
    busy: int = 0  # times this attempt found the pipeline lock held by someone else (no attempt: see _busy_again)


@dataclass
class Running:
    job: Job
    proc: subprocess.Popen
    result_file: Path
    started: datetime
    log_file: Path
    started_s: float = 0.0  # the scheduler's clock at the start (max_refresh_hours is measured on it)
    timed_out: bool = False  # stopped by the scheduler after max_refresh_hours


class Scheduler:
    """Decides when to refresh and runs one job at a time as a child process; call `tick()` every poll.

    `clock` is wall time (time.time); the schedule is matched in the server's local time (`_plan_next`)."""

    def __init__(self, settings: Settings, config: ServiceConfig, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.config = config
        self.clock = clock
        self.cron = Cron.parse(config.schedule)
        self.watches: dict[str, Watch] = {}
        self.queue: list[Job] = []
        self.running: Running | None = None
        previous = read_status(settings) or {}
        self.state: dict[str, Any] = {
            "version": STATUS_VERSION,
            "pid": os.getpid(),
            "started_at": iso(now_utc()),
            "stopped_at": None,
            "schedule": config.schedule,
            "cadence_hours": config.cadence_hours,  # so a reader (the Data health page) needs no service.yml
            "max_build_age_hours": config.max_build_age_hours,
            "max_refresh_hours": config.max_refresh_hours,
            "next_run": None,
            "running": None,
            "pending": [],
            "last_run": previous.get("last_run"),
            "last_success": previous.get("last_success"),
            "history": previous.get("history", []),
            "app": None,
            "poll_seconds": config.poll_seconds,  # how often this file is rewritten (health: stale_after_s)
            # the local wall time of the last scheduled run that fired: a restart in a repeated hour skips it
            "last_slot": previous.get("last_slot"),
            # while no file has ever landed a row: what to do (no build is tried; `ptpulse health` says it)
            "nothing_loaded": None,
        }
        self.next_run: datetime | None = None
        self._plan_next()
        self._set_nothing_loaded(_nothing_loaded_now(settings))
        self._write()  # at once: a status left by an earlier run must not stand for this one until the first tick

    def _set_nothing_loaded(self, empty: bool | None) -> None:
        """Record (and log once, when it starts) that nothing was ever loaded; None leaves it as it was."""
        if empty is None:
            return
        line = nothing_loaded_line(self.settings) if empty else None
        if line and not self.state.get("nothing_loaded"):
            log.warning("%s", line)
        self.state["nothing_loaded"] = line

    # -- planning
    def _plan_next(self) -> None:
        """The next scheduled run, matched on the local wall clock and placed with the zone's rules for *that*
        day: on the night clocks go back, 02:00 is 02:00 standard time, not the summer offset of the evening
        before (which put it at 01:00); a time the spring change skips runs at the first minute after it."""
        if self.cron is None:
            self.next_run = None
        else:
            now = self.clock()
            zone = server_zone(now)
            local_now = datetime.fromtimestamp(now, zone) if zone else datetime.fromtimestamp(now)
            wall = self.cron.next_after(local_now.replace(tzinfo=None))
            done = self.state.get("last_slot")  # a restart inside the hour the clocks repeat: that slot has run
            if wall.isoformat(timespec="minutes") == done:
                wall = self.cron.next_after(wall)
            # through UTC and back: a skipped wall time becomes the real one after the change (03:00, not 02:00)
            self.next_run = wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone) if zone else wall.astimezone()
        self.state["next_run"] = iso(self.next_run)

    def _claimed(self) -> set[str]:
        jobs = self.queue + ([self.running.job] if self.running else [])
        return {str(e) for j in jobs for e in j.exports}

    def run_now(self, trigger: str = "manual") -> None:
        """Queue a full refresh (ready exports + build) at once, as the schedule would."""
        self.queue.append(Job(trigger, [], always_build=True, due=self.clock()))

    def tick(self) -> None:
        now = self.clock()
        if self.running is not None and self.running.proc.poll() is None:
            self._stop_if_overdue(now)
        if self.running is not None and self.running.proc.poll() is not None:
            self._finish()
        if self.next_run is not None and now >= self.next_run.timestamp():
            # its local wall time, kept over restarts
            self.state["last_slot"] = self.next_run.replace(tzinfo=None).isoformat(timespec="minutes")
            self._plan_next()
            if not any(j.always_build and j.trigger != "retry" for j in self.queue):
                self.queue.append(Job("schedule", [], always_build=True, due=now))
        claimed = self._claimed()
        fresh = [
            e
            for e in ready_exports(self.settings.incoming, self.watches, self.config.settle_seconds, now)
            if str(e) not in claimed
        ]
        if fresh:
            waiting = next((j for j in self.queue if j.trigger in ("schedule", "manual") and j.attempt == 1), None)
            if waiting is not None:
                waiting.exports += fresh
            else:
                self.queue.append(Job("incoming", fresh, always_build=False, due=now))
        if self.running is None:
            due = [j for j in self.queue if j.due <= now]
            if due:
                job = min(due, key=lambda j: j.due)
                self.queue.remove(job)
                if job.trigger in ("schedule", "manual"):  # a full refresh takes every export that is ready
                    job.exports += [e for e in fresh if str(e) not in {str(x) for x in job.exports}]
                self._start(job)
        self._write()

    def _write(self) -> None:
        self.state["pending"] = [
            {"trigger": j.trigger, "exports": list(_labels(j).values()), "attempt": j.attempt, "due": iso(_ts(j.due))}
            for j in self.queue
        ]
        self.state["updated_at"] = iso(now_utc())
        write_status(self.settings, self.state)

    # -- running
    def _start(self, job: Job) -> None:
        logs = self.settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stamp = now_utc().strftime("%Y%m%dT%H%M%S%f")
        result_file, log_file = logs / f"service-job-{stamp}.json", logs / f"service-job-{stamp}.log"
        cmd = [sys.executable, "-m", "ptpulse.serve", "job", "--home", str(self.settings.home)]
        cmd += ["--result", str(result_file), *(["--always-build"] if job.always_build else [])]
        cmd += [str(e) for e in job.exports]
        with open(log_file, "wb") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.running = Running(job, proc, result_file, now_utc(), log_file, started_s=self.clock())
        self.state["running"] = {
            "trigger": job.trigger,
            "exports": list(_labels(job).values()),
            "attempt": job.attempt,
            "started_at": iso(self.running.started),
            "pid": proc.pid,
        }
        log.info(
            "refresh started (%s, attempt %d, %d export(s)): log %s",
            job.trigger,
            job.attempt,
            len(job.exports),
            log_file,
        )

    def _stop_if_overdue(self, now: float, grace_s: float = 30.0) -> None:
        """Stop a refresh running longer than max_refresh_hours (SIGTERM, SIGKILL after `grace_s`): a hung job
        would hold the lock and block every later refresh. The build is crash-safe (the last good build stays
        served), and _finish reports it as `timed_out`, alerted and not retried (it would likely hang again)."""
        run = self.running
        limit_h = self.config.max_refresh_hours
        if run is None or not limit_h or now - run.started_s < limit_h * 3600:
            return
        log.warning("refresh ran longer than max_refresh_hours (%g h): stopping it", limit_h)
        run.timed_out = True
        terminate(run.proc, grace_s)

    def wait_running(self, timeout_s: float) -> None:
        """Block until the running job ends (tests, shutdown), then record it."""
        if self.running is not None:
            self.running.proc.wait(timeout_s)
            self._finish()
            self._write()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop a running job (SIGTERM, then SIGKILL); the lock dies with it and its exports stay in incoming/."""
        if self.running is not None:
            terminate(self.running.proc, timeout_s)
            self.running = None
        self.state["running"] = None
        self.state["stopped_at"] = iso(now_utc())
        self._write()

    def _finish(self) -> None:
        run, self.running = self.running, None
        assert run is not None
        self.state["running"] = None
        job, now = run.job, self.clock()
        try:
            result = json.loads(run.result_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            result = {"result": "crashed", "exit_code": run.proc.returncode}
        if run.timed_out:
            result = {"result": "timed_out", "exit_code": run.proc.returncode}
        outcome = result["result"]
        if "nothing_loaded" in result:
            self._set_nothing_loaded(bool(result["nothing_loaded"]))
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        problems: list[Any] = []
        archived: dict[str, str] = {}
        labels = _labels(job)  # before archiving: a folder is told from a loose file while it is still there
        if outcome == "busy":  # someone else holds the lock: try again later, no alert; not an attempt
            self.queue.append(_busy_again(job, now + self.config.backoff(job.busy + 1)))
        elif outcome == "crashed" and job.attempt <= self.config.retries:
            self.queue.append(_again(job, now + self.config.backoff(job.attempt)))
        else:
            from ptpulse.notify import Problem

            for place, export in enumerate(job.exports):
                label, was_dir = labels[str(export)], export.is_dir()
                rows = (result.get("exports") or {}).get(str(place), [])
                bad = [r for r in rows if r["status"] in ("refused", "failed")]
                ok = outcome not in ("crashed", "timed_out") and not bad
                moved = archive_export(self.settings, export, ok, stamp)
                if moved is not None:
                    archived[label] = _archived_label(moved, self.settings.incoming, was_dir, stamp)
                for r in bad:
                    source = f" ({r['source']})" if r.get("source") in DEFAULT_CADENCE_HOURS else ""
                    problems.append(
                        Problem(
                            f"{label}, {r['file']}{source}",
                            f"{r['status']}: {r['message']}",
                            f"fix the export and drop the corrected file into incoming/ again; the export was "
                            f"moved to incoming/{archived.get(label, 'failed/')} (file N is the N-th line of `find . "
                            "-type f -not -path './truth/*' | LC_ALL=C sort` run inside it). Other files of it landed.",
                        )
                    )
            build = result.get("build")
            if outcome in ("crashed", "timed_out"):
                back = list(dict.fromkeys(a for a in archived.values() if a.startswith("failed/")))
                put_back = (
                    " Then put the export back where the service picks it up, in the data folder ($PTPULSE_HOME): "
                    + "; ".join(f"mv {_quote(a)} incoming/" for a in back)
                    + " (the service refreshes a moved-back export like a new one; `ptpulse refresh` takes it too)."
                    if back
                    else " Then run `ptpulse refresh`."
                )
                stopped = (
                    f"the refresh ran longer than max_refresh_hours ({self.config.max_refresh_hours:g} h) and was "
                    "stopped; the previous build is still served"
                    if outcome == "timed_out"
                    else f"the refresh stopped without a result (exit code {result.get('exit_code')}) after "
                    f"{job.attempt} attempt(s)"
                )
                problems.append(
                    Problem(
                        "refresh process",
                        stopped,
                        # relative to the data folder: the status file is shown on Data health, no server path
                        f"read its log {_home_relative(run.log_file, self.settings.home)} in the data folder and fix "
                        f"the cause.{put_back}",
                    )
                )
            elif build is not None and not build["ok"]:
                if job.attempt <= self.config.retries:
                    self.queue.append(Job("retry", [], True, job.attempt + 1, now + self.config.backoff(job.attempt)))
                else:
                    problems.append(
                        Problem(
                            "dbt build",
                            f"the build failed {job.attempt} time(s); the previous build is still served. "
                            f"{build['message']}",
                            "run `ptpulse build` to see the failing model or test, fix the data or the model, "
                            "then `ptpulse build` (or wait for the next scheduled refresh).",
                        )
                    )
        run_record = {
            "trigger": job.trigger,
            "attempt": job.attempt,
            "exports": [labels[str(e)] for e in job.exports],
            "archived": archived,
            "started_at": iso(run.started),
            "finished_at": iso(now_utc()),
            "result": outcome,
            "files_loaded": result.get("files_loaded", 0),
            "build_id": (result.get("build") or {}).get("build_id"),
            "build_seconds": (result.get("build") or {}).get("seconds"),
            "problems": [asdict(p) for p in problems],
            "alert": None,
            "log": str(run.log_file),
        }
        if problems:
            run_record["alert"] = self._alert(job, outcome, problems)
        if outcome == "ok":
            self.state["last_success"] = run_record["finished_at"]
        if outcome == "busy":  # not a result: `last_run` (what health judges) keeps the last real one
            self.state["last_busy"] = run_record
        else:
            self.state["last_run"] = run_record
        self.state["history"] = ([run_record] + self.state.get("history", []))[:HISTORY]
        level = logging.INFO if outcome in ("ok", "busy", "nothing_loaded") else logging.WARNING
        log.log(level, "refresh %s (%s, attempt %d): %d problem(s)", outcome, job.trigger, job.attempt, len(problems))
        _prune_job_files(self.settings.home / "logs")

    def _alert(self, job: Job, outcome: str, problems: list) -> dict[str, Any]:
        from ptpulse.notify import Alert, send_alert

        what = {
            "load_failed": "a file was refused",
            "build_failed": "the build failed",
            "crashed": "it crashed",
            "timed_out": "it was stopped after running longer than max_refresh_hours",
        }
        alert = Alert(
            subject=f"PT Pulse: refresh needs attention ({len(problems)} problem(s))",
            summary=(
                f"The {job.trigger} refresh of {self.settings.home} finished with {what.get(outcome, outcome)}. "
                "Dashboards keep showing the last good build until this is fixed."
            ),
            problems=tuple(problems),
        )
        sent, detail = send_alert(alert)
        (log.info if sent else log.warning)("%s", detail)
        return {"sent": sent, "detail": detail, "at": iso(now_utc())}


def terminate(proc: subprocess.Popen, grace_s: float) -> None:
    """Stop a child: SIGTERM, then SIGKILL if it has not exited within `grace_s`; returns once it is gone."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _again(job: Job, due: float) -> Job:
    return Job(
        "retry" if job.trigger != "incoming" else "incoming", job.exports, job.always_build, job.attempt + 1, due
    )


def _busy_again(job: Job, due: float) -> Job:
    """The same attempt again later: a busy lock is no attempt (it neither uses a retry nor counts in an alert)."""
    return Job(job.trigger, job.exports, job.always_build, job.attempt, due, busy=job.busy + 1)


def _labels(job: Job) -> dict[str, str]:
    """Each export of `job` by its neutral label (`export_label`): loose files numbered in the job's order."""
    out, loose = {}, 0
    for e in job.exports:
        if not e.is_dir():
            loose += 1
        out[str(e)] = export_label(e, loose)
    return out


def _quote(path: str) -> str:
    """incoming/<path> for a shell, the `*` of a loose file's archived name left to the shell."""
    text = f"incoming/{path}"
    return text if all(c.isalnum() or c in "/._-*" for c in text) else "'" + text.replace("'", "'\\''") + "'"


def _home_relative(path: Path, home: Path) -> str:
    """`path` relative to the data folder when it is inside it (logs/service-job-....log), else its name."""
    try:
        return str(Path(path).resolve().relative_to(Path(home).resolve()))
    except ValueError:
        return Path(path).name


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _prune_job_files(logs: Path) -> None:
    for pattern in ("service-job-*.json", "service-job-*.log"):
        for old in sorted(logs.glob(pattern))[:-JOB_FILES_KEPT]:
            old.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------- app + serve


LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.strip().lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def demo_bind_refusal(host: str, allow_demo_on_network: bool) -> str | None:
    """Why the app may not start on `host`, or None: demo mode (no [auth] in secrets.toml) lets anyone
    with the URL in as any role, so it listens on the loopback address only unless explicitly forced."""
    from ptpulse.notify import auth_configured

    if is_loopback(host) or allow_demo_on_network or auth_configured():
        return None
    return (
        f"refusing to serve demo mode on {host}: without sign-in anyone who can reach this address could use "
        "the app as any role. Configure OIDC ([auth] in .streamlit/secrets.toml, see docs/deploy.md), serve on "
        "127.0.0.1 behind a signed-in proxy, or pass --allow-demo-on-network to accept the risk."
    )


def bind_problem(host: str, port: int) -> str | None:
    """Why the app could not listen on `host`:`port`, or None: a bind test on every address the host names (as
    the app's server binds them, with SO_REUSEADDR: a port left in TIME_WAIT is free, one another program listens
    on is not). Checked before the URL is printed, so a taken port is one line naming it and the fix, not a URL
    followed by Streamlit's own failure."""
    import errno
    import socket

    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        return f"cannot serve on --host {host}: no such address on this machine (check the name, or use 127.0.0.1)."
    except OverflowError:
        return f"cannot serve on port {port}: a port is a number from 1 to 65535 (pick one with --port)."
    for family, kind, proto, _name, address in addresses:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {port} is already in use on {host} (another PT Pulse app, or another program): stop "
                    f"that program, or pick another port, e.g. --port {port + 1 if port < 65535 else 8502}."
                )
            if exc.errno == errno.EACCES:
                return f"port {port} needs administrator rights on this machine: pick a port above 1023 with --port."
            if exc.errno == errno.EAFNOSUPPORT:  # e.g. an IPv6 address of `localhost` on a host without IPv6
                continue
            return f"cannot serve on {host}:{port} ({exc.strerror}): check --host, or pick another port with --port."
    return None


def app_command(port: int, host: str) -> list[str]:
    """`streamlit run` for the app, as `ptpulse app` and `ptpulse serve` start it."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_DIR / "streamlit_app.py"),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        # staff are viewers: no Deploy button, rerun or clear-cache in the toolbar
        "--client.toolbarMode",
        "viewer",
        # no "Download as CSV" / copy on st.dataframe and chart tables: that export is made in the browser, so it
        # would skip ui.download's audit of identified exports and its formula neutralisation (app/lib/exports.py).
        # app/.streamlit/config.toml says the same for a plain `streamlit run app/streamlit_app.py`.
        "--client.disableDataExport",
        "true",
    ]


class AppProcess:
    """The Streamlit child: started, watched each poll, restarted with back-off when it exits."""

    def __init__(self, settings: Settings, port: int, host: str):
        self.settings, self.port, self.host = settings, port, host
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.retry_at = 0.0

    def start(self) -> None:
        env = dict(os.environ, PTPULSE_HOME=str(self.settings.home))
        cmd = app_command(self.port, self.host) + ["--server.fileWatcherType", "none"]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        log.info("app started on http://%s:%d (pid %d)", self.host, self.port, self.proc.pid)

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        if self.proc is not None and self.retry_at == 0.0:
            self.restarts += 1
            self.retry_at = time.time() + min(2.0**self.restarts, 60.0)
            log.warning("app exited with code %s; restarting", self.proc.returncode)
        if time.time() >= self.retry_at:
            self.retry_at = 0.0
            self.start()

    def status(self) -> dict[str, Any]:
        return {
            "url": f"http://{self.host}:{self.port}",
            "pid": self.proc.pid if self.proc else None,
            "restarts": self.restarts,
        }

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc, timeout_s)


def serve(settings: Settings, config: ServiceConfig, port: int, host: str, with_app: bool = True) -> int:
    """Run until SIGTERM/SIGINT: the app child, and the scheduler ticking every `poll_seconds`."""
    settings.ensure()
    settings.incoming.mkdir(parents=True, exist_ok=True)
    stopping = {"flag": False}

    def on_signal(signum, _frame) -> None:
        log.info("signal %d: stopping", signum)
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    scheduler = Scheduler(settings, config)
    app = AppProcess(settings, port, host) if with_app else None
    log.info(
        "scheduler: schedule %r, next run %s, watching %s",
        config.schedule,
        scheduler.state["next_run"],
        settings.incoming,
    )
    delivery = QueuedDelivery(settings, config.deliver_seconds)
    try:
        while not stopping["flag"]:
            if app is not None:
                app.check()
                scheduler.state["app"] = app.status()
            if delivery.tick():  # never waits for a send: delivery runs in its own thread
                scheduler.state["outbound"] = delivery.status
            scheduler.tick()
            end = time.time() + config.poll_seconds
            while not stopping["flag"] and time.time() < end:
                time.sleep(min(0.2, config.poll_seconds))
    finally:
        scheduler.stop()
        delivery.stop()
        if app is not None:
            app.stop()
    return 0


class QueuedDelivery:
    """Messages the pages queued for after quiet hours (each clinic's, fixed when queued) go out when due, even
    when nobody opens a page: every `every_s` the service calls ptpulse.core.outbound.deliver_due with the
    configured channels. A failure to reach app.sqlite or a channel is logged and tried again next time; it
    never stops the scheduler.

    Each check runs in its own thread: a provider that accepts the connection and never answers (a hung SMS
    gateway) holds that thread, not the loop, so exports dropped in incoming/ are still picked up and the status
    file stays current. One check at a time; one running longer than `budget_s` is logged and shown as stalled
    in the status (`outbound.stalled_since`). An unexpected error ends that check only: it is logged by its type
    and place (never its text: it may quote a patient's value) and the next check runs as usual.

    Retries per message: `policy.retries` of app/templates/outreach.yml, as the pages use it (read each check)."""

    def __init__(self, settings: Settings, every_s: float, budget_s: float = DELIVERY_BUDGET_S):
        self.settings, self.every_s, self.budget_s = settings, every_s, budget_s
        self.next_at = 0.0
        self.status: dict[str, Any] = {}
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._fresh = False  # a finished check whose status the loop has not taken yet
        self._warned = False

    def tick(self, now: datetime | None = None) -> bool:
        """Start a check when one is due and none is running; never waits for it. True when the status changed
        (a check finished, or the running one passed its budget)."""
        changed, self._fresh = self._fresh, False
        if self._thread is not None and self._thread.is_alive():
            if not self._warned and time.time() - self._started > self.budget_s:
                self._warned = True
                log.warning(
                    "queued-message delivery has run for %.0f s: a channel is not answering; the scheduler goes on",
                    time.time() - self._started,
                )
                self.status = {**self.status, "stalled_since": iso(_ts(self._started))}
                return True
            return changed
        if self.every_s <= 0 or time.time() < self.next_at:
            return changed
        self.next_at = time.time() + self.every_s
        self._started, self._warned = time.time(), False
        self._thread = threading.Thread(target=self.run, args=(now,), name="ptpulse-delivery", daemon=True)
        self._thread.start()
        return changed

    def run(self, now: datetime | None = None) -> None:
        """One check, start to end (the thread's body; tests may call it directly)."""
        import traceback

        from ptpulse.core import outbound

        counts = {"sent": 0, "failed": 0, "skipped": 0}
        try:
            chans = outbound.channels()
            retries = outbound.policy_retries()
            results = outbound.deliver_due(self.settings.app_db, chans, now or now_utc(), retries, "service")
        except (outbound.OutboundError, sqlite3.Error, OSError) as exc:
            log.warning("queued messages not delivered this time (%s): %s", type(exc).__name__, exc)
            self.status = {"checked_at": iso(now_utc()), "error": f"{type(exc).__name__}: {exc}"}
            self._fresh = True
            return
        except Exception as exc:  # noqa: BLE001 - the delivery thread must not die; the next check runs as usual
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            place = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
            log.error("queued messages not delivered this time: unexpected %s%s", type(exc).__name__, place)
            self.status = {"checked_at": iso(now_utc()), "error": f"unexpected {type(exc).__name__}{place}"}
            self._fresh = True
            return
        for r in results:
            counts[r.status] = counts.get(r.status, 0) + 1
        if results:
            log.info("queued messages: %(sent)d sent, %(failed)d failed, %(skipped)d skipped", counts)
        self.status = {"checked_at": iso(now_utc()), "channels": sorted(chans), **counts}
        self._fresh = True

    def wait(self, timeout_s: float) -> None:
        """Block until the running check ends (tests)."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """At shutdown: give a running check a moment to finish its message (the thread is a daemon: a hung
        channel does not keep the process alive)."""
        self.wait(timeout_s)


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "job":
        sys.exit(_job_main(sys.argv[2:]))
    sys.exit("usage: python -m ptpulse.serve job ... (run `ptpulse serve` to start the service)")
