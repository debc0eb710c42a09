"""The `ptpulse serve` scheduler as Data health shows it: read `$PTPULSE_HOME/logs/service.json` (its shape is in
docs/interfaces.md section 6) and put it in plain words, and each source's freshness against its expected cadence.

Why here and with plain json: the app may import only ptpulse.core, never ptpulse.serve / ptpulse.health, so the
status file is read as the documented file format it is. Nothing here renders a data value: the file holds names,
counts, times and the loader's / build's messages only -- but a file's *name* can be PHI (exporters such as Synthea
name per-patient files `<Given>_<Family>_<uuid>.json`), so `problems` and `pending` take `phi` and, for roles
without it, show no file or export name, the same rule as the loads table (app/lib/queries/data_health.py).
No role is shown a server path: paths under the data folder are shown relative to it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ptpulse.core.lock import pid_alive
from ptpulse.core.redact import FILE_WORD, scrub_file_names
from ptpulse.core.service_clock import stale_after_s

RESULT_WORDS = {
    "ok": "succeeded",
    "load_failed": "a file was refused",
    "build_failed": "the build failed",
    "busy": "waited: another refresh held the lock",
    "crashed": "the refresh stopped unexpectedly",
    "timed_out": "stopped: ran longer than max_refresh_hours",
}
TRIGGER_WORDS = {
    "schedule": "scheduled",
    "incoming": "export dropped in incoming/",
    "retry": "retry",
    "manual": "started by hand",
}


def status_path(home: Path) -> Path:
    return home / "logs" / "service.json"


def read_status(home: Path) -> dict[str, Any] | None:
    """The scheduler's last written state; None when no service ever ran in this home; {'unreadable': True}
    when the file cannot be parsed (it is written atomically, so this means it was edited or damaged)."""
    try:
        data = json.loads(status_path(home).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"unreadable": True}
    return data if isinstance(data, dict) else {"unreadable": True}


def _when(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _ago(hours: float) -> str:
    if hours < 1:
        return f"{max(round(hours * 60), 0):.0f} min"
    if hours < 48:
        return f"{hours:.0f} h"
    return f"{hours / 24:.0f} days"


def when_text(text: Any, now: datetime) -> str:
    """'2026-11-30 02:00 UTC (9 h ago)' / '(in 3 h)', in the server's time zone; '–' when absent."""
    t = _when(text)
    if t is None:
        return "–"
    local = t.astimezone()
    delta = (now - t).total_seconds() / 3600
    rel = f"{_ago(delta)} ago" if delta >= 0 else f"in {_ago(-delta)}"
    return f"{local:%Y-%m-%d %H:%M} {local.tzname() or ''} ({rel})".replace("  ", " ")


def scheduler_state(status: dict[str, Any] | None, now: datetime) -> tuple[str, str]:
    """(level, sentence): level is ok | warning | error | info (no service in this home)."""
    if status is None:
        return "info", (
            "No scheduler runs for this data folder: refreshes happen only when someone starts one. "
            "`ptpulse serve` runs the app with its own scheduler (see the deployment guide)."
        )
    if status.get("unreadable"):
        return "error", (
            "The scheduler's status file logs/service.json cannot be read: restart `ptpulse serve`, which rewrites it."
        )
    pid = status.get("pid")
    alive = not status.get("stopped_at") and isinstance(pid, int) and pid_alive(pid)
    if not alive:
        if status.get("stopped_at"):
            return "warning", (
                f"The scheduler is stopped (since {when_text(status['stopped_at'], now)}): no scheduled or "
                "dropped-export refresh happens until `ptpulse serve` (or its systemd unit) is started again."
            )
        return "error", (
            f"The scheduler is not running and did not stop cleanly (last seen {when_text(status.get('updated_at'), now)}):"
            " start `ptpulse serve` again (`systemctl restart ptpulse`) and read its log."
        )
    updated = _when(status.get("updated_at"))
    silent_s = None if updated is None else (now - updated).total_seconds()
    if silent_s is None or silent_s > stale_after_s(status):
        return "error", (
            f"The scheduler's process is running but has not reported since {when_text(status.get('updated_at'), now)}"
            ": it may be stuck, so dropped exports are not picked up. Read its log and restart it "
            "(`systemctl restart ptpulse`)."
        )
    running = status.get("running")
    if running:
        return "ok", (
            f"The scheduler is running; a refresh ({TRIGGER_WORDS.get(running.get('trigger'), 'refresh')}) "
            f"is in progress since {when_text(running.get('started_at'), now)}."
        )
    return "ok", "The scheduler is running."


def last_run(status: dict[str, Any] | None, now: datetime) -> dict[str, str] | None:
    """The last run as label -> plain text, or None before the first run."""
    run = (status or {}).get("last_run")
    if not run:
        return None
    alert = run.get("alert")
    if not alert:
        alert_text = "not needed" if not run.get("problems") else "not sent"
    elif alert.get("sent"):
        alert_text = f"emailed to the admin ({when_text(alert.get('at'), now)})"
    else:
        alert_text = f"not sent: {alert.get('detail') or 'email is not configured'}"
    return {
        "Trigger": TRIGGER_WORDS.get(run.get("trigger"), str(run.get("trigger") or "–")),
        "Result": RESULT_WORDS.get(run.get("result"), str(run.get("result") or "–")),
        "Finished": when_text(run.get("finished_at"), now),
        "Files loaded": str(int(run.get("files_loaded") or 0)),
        "Alert": alert_text,
    }


# problems the scheduler reports about itself, not about a file (ptpulse/serve.py Scheduler._finish)
NOT_A_FILE = frozenset({"refresh process", "dbt build"})


def _export_names(status: dict[str, Any]) -> set[str]:
    """Every export or file name the status file mentions: exports of runs (an export may be one loose file,
    named after its patient), their archived names, and the files that problems are about."""
    runs = [status.get("last_run") or {}, status.get("running") or {}, *(status.get("history") or [])]
    names: set[str] = set()
    for run in runs:
        names.update(map(str, run.get("exports") or []))
        for key, value in (run.get("archived") or {}).items():
            names.update({str(key), str(value), str(value).rsplit("/", 1)[-1]})
        for p in run.get("problems") or []:
            what = str(p.get("what") or "")
            if what and what not in NOT_A_FILE:
                names.update({what, *what.split("/")})
    for p in status.get("pending") or []:
        names.update(map(str, p.get("exports") or []))
    return {n for n in names if len(n) > 2 and n not in ("failed", "processed", "incoming")}


def _local(text: str, home: Path | None) -> str:
    """`text` with the data folder's path dropped (its files are named relative to it): no server path."""
    if home is None:
        return text
    for prefix in {str(home), str(Path(home).resolve())}:
        text = text.replace(prefix.rstrip("/") + "/", "")
    return text


def problems(status: dict[str, Any] | None, phi: bool = True, home: Path | None = None) -> pd.DataFrame:
    """The last run's problems: what, problem, fix. Without `phi` no file or export name is shown (a "What"
    that is a file reads "(file)"), as in the loads table; paths under `home` are shown relative to it."""
    rows = ((status or {}).get("last_run") or {}).get("problems") or []
    names = set() if phi else _export_names(status or {})
    out = []
    for p in rows:
        what, problem, fix = (_local(str(p.get(k) or ""), home) for k in ("what", "problem", "fix"))
        if not phi:
            what = what if what in NOT_A_FILE else FILE_WORD
            problem, fix = scrub_file_names(problem, names), scrub_file_names(fix, names)
        out.append({"What": what, "Problem": problem, "Fix": fix})
    return pd.DataFrame(out, columns=["What", "Problem", "Fix"])


def pending(status: dict[str, Any] | None, now: datetime, phi: bool = True) -> pd.DataFrame:
    """Queued runs (retries waiting out their back-off, exports waiting for a running refresh). Without `phi`
    the exports are counted, not named (a loose export is one file, possibly named after its patient)."""
    rows = (status or {}).get("pending") or []

    def exports(names: list[str]) -> str:
        if not names:
            return "none (a full refresh)"
        return ", ".join(names) if phi else f"{len(names)} export(s)"

    return pd.DataFrame(
        [
            {
                "Run": TRIGGER_WORDS.get(p.get("trigger"), str(p.get("trigger") or "")),
                "Attempt": int(p.get("attempt") or 1),
                "Due": when_text(p.get("due"), now),
                "Exports": exports([str(e) for e in p.get("exports") or []]),
            }
            for p in rows
        ],
        columns=["Run", "Attempt", "Due", "Exports"],
    )


def history(status: dict[str, Any] | None, now: datetime, limit: int = 10) -> pd.DataFrame:
    """The last runs, newest first."""
    rows = ((status or {}).get("history") or [])[:limit]
    out = []
    for r in rows:
        alert = r.get("alert") or {}
        out.append(
            {
                "Finished": when_text(r.get("finished_at"), now),
                "Trigger": TRIGGER_WORDS.get(r.get("trigger"), str(r.get("trigger") or "")),
                "Result": RESULT_WORDS.get(r.get("result"), str(r.get("result") or "")),
                "Files loaded": int(r.get("files_loaded") or 0),
                "Problems": len(r.get("problems") or []),
                "Alert": "sent" if alert.get("sent") else ("not sent" if alert else "–"),
            }
        )
    return pd.DataFrame(out, columns=["Finished", "Trigger", "Result", "Files loaded", "Problems", "Alert"])


def _hours(value: Any) -> float | None:
    """`36`, `36h`, `7d`, `90m` (service.yml's duration forms) as hours; None = not checked."""
    if value is None:
        return None
    text = str(value).strip().lower()
    units = {"m": 1 / 60, "h": 1.0, "d": 24.0}
    try:
        return float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        return None


def cadence(status: dict[str, Any] | None, home: Path) -> dict[str, float | None]:
    """Expected hours between loads per source: the running service's settings (status file), else the
    `cadence_hours` of `$PTPULSE_HOME/service.yml`; a source in neither is not checked."""
    data = (status or {}).get("cadence_hours")
    if not isinstance(data, dict):
        try:
            cfg = yaml.safe_load((home / "service.yml").read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            cfg = {}
        data = cfg.get("cadence_hours") if isinstance(cfg, dict) else None
    return {str(k): _hours(v) for k, v in (data or {}).items()}


def source_freshness(coverage: pd.DataFrame, expected: dict[str, float | None], now: datetime) -> pd.DataFrame:
    """Per source of marts.source_coverage: last load, its age, the expected cadence and Fresh / Stale / Not
    checked / Never loaded. Load times in the marts are UTC without a zone."""
    cols = ["Source", "Last loaded", "Expected every", "Status"]
    if coverage.empty:
        return pd.DataFrame(columns=cols)
    last = pd.to_datetime(coverage["last_loaded_at"], errors="coerce")
    if last.dt.tz is None:
        last = last.dt.tz_localize("UTC")
    age_h = (pd.Timestamp(now).tz_convert("UTC") - last).dt.total_seconds() / 3600
    exp = coverage["source"].map(lambda s: expected.get(str(s)))
    status = pd.Series("Fresh", index=coverage.index)
    status[exp.isna()] = "Not checked"
    status[(age_h > exp.astype(float)) & exp.notna()] = "Stale"
    status[last.isna() & exp.notna()] = "Never loaded"
    status[last.isna() & exp.isna()] = "Not loaded"
    return pd.DataFrame(
        {
            "Source": coverage["source"].astype(str),
            "Last loaded": [when_text(t.isoformat(), now) if pd.notna(t) else "never" for t in last],
            "Expected every": [("–" if pd.isna(h) else _ago(float(h))) for h in exp],
            "Status": status,
        },
        columns=cols,
    ).sort_values(["Status", "Source"], key=lambda s: s.map(_ORDER) if s.name == "Status" else s)


_ORDER = {"Stale": 0, "Never loaded": 1, "Fresh": 2, "Not checked": 3, "Not loaded": 4}
