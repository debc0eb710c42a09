"""The pipeline lock: at most one writer (ingest, build, train, refresh) at a time.

DuckDB allows one read-write process per file, so two pipeline runs would fail half-way. The lock is an
OS-level file lock (released by the kernel if the holder dies, so no stale locks), and the holder's
pid and command are written beside it (`.pipeline.holder`) so the second caller can say who is running.

The holder file is only a label: a holder killed with SIGKILL leaves it behind while the kernel has already
released the lock. Whether the lock is held is therefore always asked of the OS (`lock_holder`: a
non-blocking try of the same lock), never read from the file.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from ptpulse.core.config import Settings

# `lock_holder` takes the lock for a few microseconds to probe it; a writer asking for the lock waits at least
# this long, so a probe (the Admin page polls every 2 s) can never turn into a spurious "busy".
MIN_WAIT_S = 0.5

_PID = re.compile(r"^pid (\d+):")


class PipelineBusy(RuntimeError):
    """Another pipeline command holds the lock."""


def _holder_path(settings: Settings) -> Path:
    return settings.lock_file.with_suffix(".holder")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) holds nothing any more
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _describe_holder(settings: Settings) -> str:
    """The holder file's label for a lock the OS says is held (the label may lag the lock by a moment)."""
    try:
        label = _holder_path(settings).read_text().strip()
    except OSError:
        return "another process"
    match = _PID.match(label)
    if match and not pid_alive(int(match.group(1))):
        return (
            f"a process left over from `{label}` (that pid has exited; a child process it started still holds the lock)"
        )
    return label or "another process"


def lock_holder(settings: Settings) -> str | None:
    """Who holds the pipeline lock right now, or None when it is free.

    Asks the OS with a non-blocking try of the lock itself. When the try succeeds the lock was free, so a
    holder file left by a killed process is stale and is removed while the probe holds the lock (no new
    holder can be writing it at that moment). Where the lock file cannot be opened (another account's
    home), falls back to the holder file plus a liveness check of the pid it names.
    """
    if not settings.lock_file.exists():
        return None
    probe = FileLock(str(settings.lock_file))
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return _describe_holder(settings)
    except OSError:
        label = _holder_path(settings).read_text().strip() if _holder_path(settings).exists() else ""
        match = _PID.match(label)
        return label if match and pid_alive(int(match.group(1))) else None
    try:
        _holder_path(settings).unlink(missing_ok=True)
    finally:
        probe.release()
    return None


@contextmanager
def pipeline_lock(settings: Settings, command: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the pipeline lock while the block runs; wait up to `wait_s` seconds, then raise PipelineBusy."""
    settings.ensure()
    lock = FileLock(str(settings.lock_file))
    try:
        lock.acquire(timeout=max(wait_s, MIN_WAIT_S))
    except Timeout:
        raise PipelineBusy(
            f"Another pipeline command is running ({_describe_holder(settings)}). Wait for it to finish, "
            f"or pass --wait SECONDS to queue behind it."
        ) from None
    try:
        _holder_path(settings).write_text(
            f"pid {os.getpid()}: ptpulse {command}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        )
        yield
    finally:
        _holder_path(settings).unlink(missing_ok=True)
        lock.release()
