"""The pipeline lock: at most one writer (ingest, build, train, refresh) at a time.

DuckDB allows one read-write process per file, so two pipeline runs would fail half-way. The lock is an
OS-level file lock (released by the kernel if the holder dies, so no stale locks), and the holder's
pid and command are written beside it so the second caller can say who is running.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from ptpulse.config import Settings


class PipelineBusy(RuntimeError):
    """Another pipeline command holds the lock."""


def _holder_path(settings: Settings) -> Path:
    return settings.lock_file.with_suffix(".holder")


@contextmanager
def pipeline_lock(settings: Settings, command: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the pipeline lock while the block runs; wait up to `wait_s` seconds, then raise PipelineBusy."""
    settings.ensure()
    lock = FileLock(str(settings.lock_file))
    try:
        lock.acquire(timeout=wait_s)
    except Timeout:
        holder = _holder_path(settings)
        who = holder.read_text().strip() if holder.exists() else "another process"
        raise PipelineBusy(
            f"Another pipeline command is running ({who}). Wait for it to finish, "
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
