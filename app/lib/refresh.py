"""Run `ptpulse refresh` in the background for the Admin page and read its progress from the log.

The app never builds in-process: a separate process takes the pipeline lock, writes a new analytics file
aside and swaps it in, while the app keeps serving the old file (readers reconnect on the next query).
State lives in files under $PTPULSE_HOME/logs so every app session (and a restarted app) sees the same run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ptpulse.core.config import Settings
from ptpulse.core.lock import lock_holder, pid_alive

QUEUED_WAIT_S = 3600  # a refresh queued behind a running one waits this long for the pipeline lock
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_EXIT = re.compile(r"^\[ptpulse-app\] exit code (-?\d+)$", re.M)

# Runs the CLI and appends its exit code to the log, so any session can tell how the run ended.
_WRAPPER = (
    "import subprocess, sys\n"
    "rc = subprocess.call(sys.argv[1:])\n"
    "print(f'[ptpulse-app] exit code {rc}', flush=True)\n"
    "sys.exit(rc)\n"
)


def _state_file(settings: Settings) -> Path:
    return settings.home / "logs" / "app_refresh.json"


@dataclass
class RefreshStatus:
    running: bool
    started_at: str | None = None
    actor: str | None = None
    log_path: str | None = None
    exit_code: int | None = None
    last_line: str = ""
    tail: str = ""

    @property
    def ok(self) -> bool | None:
        return None if self.exit_code is None else self.exit_code == 0


def clean_log(text: str) -> list[str]:
    """Log text without terminal escapes, split on newlines and carriage returns (progress redraws)."""
    return [line.strip() for line in re.split(r"[\r\n]+", _ANSI.sub("", text)) if line.strip()]


def status(settings: Settings) -> RefreshStatus:
    state_path = _state_file(settings)
    if not state_path.exists():
        return RefreshStatus(running=False)
    state = json.loads(state_path.read_text())
    log_path = Path(state["log"])
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    lines = clean_log(text)
    exit_match = _EXIT.findall("\n".join(lines))
    exit_code = int(exit_match[-1]) if exit_match else None
    running = exit_code is None and pid_alive(int(state["pid"]))
    progress_lines = [line for line in lines if not line.startswith("[ptpulse-app]")]
    return RefreshStatus(
        running=running,
        started_at=state.get("started_at"),
        actor=state.get("actor"),
        log_path=str(log_path),
        exit_code=exit_code,
        last_line=progress_lines[-1] if progress_lines else "starting…",
        tail="\n".join(progress_lines[-40:]),
    )


_SHARE = re.compile(r"(\d[\d,]*)/(\d[\d,]*)$")


def progress_share(current: RefreshStatus) -> float | None:
    """How far the running step is (0..1), read from the CLI's plain progress line `refresh: <step> 12/80`."""
    match = _SHARE.search(current.last_line)
    if not match:
        return None
    done, total = (float(g.replace(",", "")) for g in match.groups())
    return max(0.0, min(1.0, done / total)) if total else None


def started_epoch(current: RefreshStatus, settings: Settings) -> float | None:
    """When the run in the state file was started (epoch seconds), or None when unknown."""
    state_path = _state_file(settings)
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        return None
    if state.get("started_ts") is not None:
        return float(state["started_ts"])
    if current.started_at:
        try:
            return time.mktime(time.strptime(current.started_at, "%Y-%m-%d %H:%M:%S"))
        except ValueError:
            return None
    return None


def start(
    settings: Settings, actor: str, extra_args: list[str] | None = None, after: float | None = None
) -> RefreshStatus:
    """Start `ptpulse refresh` detached; refuses to start a second one from the app.

    `after` (epoch seconds): data landed at that moment (an upload) must be in the build. A running refresh that
    was started before it cannot contain it (it ingested before the upload landed; the CLI releases the pipeline
    lock before its process exits, so an upload can land while the old run still shows as running): a new run is
    started then, which waits for the pipeline lock and builds after the old one."""
    current = status(settings)
    if current.running:
        began = started_epoch(current, settings)
        if after is None or (began is not None and began >= after):
            return current
        extra_args = [*(extra_args or []), "--wait", str(QUEUED_WAIT_S)]
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = _unique_log(logs, stamp)
    cmd = [
        sys.executable,
        "-c",
        _WRAPPER,
        sys.executable,
        "-m",
        "ptpulse.cli",
        "refresh",
        "--home",
        str(settings.home),
        *(extra_args or []),
    ]
    env = dict(os.environ, PTPULSE_HOME=str(settings.home), COLUMNS="120", TTY_INTERACTIVE="0", PYTHONUNBUFFERED="1")
    began_at = time.time()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd=str(settings.home),
        )
    _state_file(settings).write_text(
        json.dumps(
            {
                "pid": proc.pid,
                "log": str(log_path),
                "actor": actor,
                "started_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(began_at)),
                "started_ts": began_at,
            }
        )
    )
    return status(settings)


def _unique_log(logs: Path, stamp: str) -> Path:
    """refresh-<stamp>.log, or refresh-<stamp>-2.log when a queued run starts within the same second."""
    path, n = logs / f"refresh-{stamp}.log", 2
    while path.exists():
        path, n = logs / f"refresh-{stamp}-{n}.log", n + 1
    return path


def pipeline_holder(settings: Settings) -> str | None:
    """Who holds the pipeline lock right now, if anyone: asked of the OS lock (ptpulse.core.lock.lock_holder), so a
    `.pipeline.holder` file left by a killed command never disables "Refresh now"."""
    return lock_holder(settings)
