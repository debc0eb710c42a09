"""Read-only access to analytics.duckdb that survives the build's atomic swap.

Why this shape:
- DuckDB caches one database instance per path inside a process, so reconnecting to the same path while
  an old connection is open returns the *old* (swapped-out) file. Each connection here is therefore an
  in-memory DuckDB that ATTACHes the served file read-only: a fresh attach opens whatever file the path
  names now, and the previous connection keeps serving in-flight queries until it is garbage collected.
- The served path is a fixed symlink into `build/served/`, itself a symlink to the served build's folder
  (ptpulse/build/). The file identity (the resolved path, i.e. the build folder, plus inode, mtime, size)
  is checked before each query; a change means a new build was served, so the next query reconnects, and
  it ATTACHes the resolved path it identified, so a connection is pinned to exactly one build. The same
  identity is part of every cache key. A connection left from the previous build keeps its snapshot even
  after that build's folder is removed (its file stays open).
- A writer holding the file (never the app; e.g. an operator opening it read-write) makes the attach
  fail with a lock error: we retry a few times with backoff, then say what happened.
- One cursor per query, so concurrent Streamlit sessions (threads) never share a cursor.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

CATALOG = "analytics"


class AnalyticsMissing(FileNotFoundError):
    """analytics.duckdb does not exist yet (no build has been served)."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"No analytics database at {path} yet. Run `ptpulse refresh` (or `make demo`) to build it; "
            "this page will show data as soon as a build has been served."
        )
        self.path = path


class AnalyticsBusy(RuntimeError):
    """The analytics file stayed locked by a writer through every retry."""


@dataclass(frozen=True)
class FileIdentity:
    inode: int
    mtime_ns: int
    size: int
    resolved: str = ""  # the real file behind the served symlinks: build/<build_id>/analytics.duckdb

    @property
    def token(self) -> str:
        build = Path(self.resolved).parent.name if self.resolved else ""
        return f"{build}-{self.inode}-{self.mtime_ns}-{self.size}"


def file_identity(path: Path) -> FileIdentity | None:
    """Identity of the file `path` names now. The resolved path is part of it: an inode number freed with an
    old build folder can be reused by the next build's file."""
    try:
        resolved = os.path.realpath(path)
        st = os.stat(resolved)
    except FileNotFoundError:
        return None
    return FileIdentity(st.st_ino, st.st_mtime_ns, st.st_size, resolved)


def _is_gone(exc: duckdb.Error) -> bool:
    """The file resolved a moment ago was removed (a build swapped in a new one and deleted the old folder):
    resolve the served link again. DuckDB says "no such file" or, from 2.0, "database does not exist"."""
    text = str(exc).lower()
    return "no such file" in text or "does not exist" in text


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "resource temporarily unavailable" in text


class AnalyticsDb:
    """A shared, read-only, swap-aware handle on one analytics file. Thread-safe."""

    def __init__(self, path: Path, retries: int = 4, backoff_s: float = 0.15, threads: int = 2) -> None:
        self.path = Path(path)
        self.retries = retries
        self.backoff_s = backoff_s
        self.threads = threads
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._identity: FileIdentity | None = None
        self._tables: frozenset[str] | None = None

    # -- connection ---------------------------------------------------------------------------------
    def identity(self) -> FileIdentity:
        ident = file_identity(self.path)
        if ident is None:
            raise AnalyticsMissing(self.path)
        return ident

    def exists(self) -> bool:
        return file_identity(self.path) is not None

    def _connect(self, ident: FileIdentity) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(":memory:", config={"threads": self.threads})
        # Escape the path as an SQL string literal: it comes from our own config, never from a user.
        literal = (ident.resolved or str(self.path)).replace("'", "''")
        con.execute(f"ATTACH '{literal}' AS {CATALOG} (READ_ONLY)")
        return con

    def connection(self) -> tuple[duckdb.DuckDBPyConnection, FileIdentity]:
        """The current connection, reconnecting when the served file changed."""
        ident = self.identity()
        with self._lock:
            if self._con is not None and ident == self._identity:
                return self._con, ident
            last: Exception | None = None
            for attempt in range(self.retries + 1):
                try:
                    con = self._connect(ident)
                except duckdb.Error as exc:
                    if not _is_lock_error(exc) and not _is_gone(exc):
                        raise
                    last = exc
                    time.sleep(self.backoff_s * (2**attempt))
                    ident = self.identity()
                    continue
                # Drop (do not close) the old connection: cursors of in-flight queries keep it alive.
                self._con, self._identity, self._tables = con, ident, None
                return con, ident
            raise AnalyticsBusy(
                f"{self.path} is locked by another process ({last}). A build swaps files atomically and "
                "never locks the served file, so something opened it read-write; close it and reload."
            )

    def cursor(self) -> duckdb.DuckDBPyConnection:
        con, _ = self.connection()
        cur = con.cursor()
        cur.execute(f"USE {CATALOG}")
        return cur

    # -- queries ------------------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] | dict | None = None) -> pd.DataFrame:
        """Run one parameterised query on its own cursor and return a DataFrame."""
        cur = self.cursor()
        try:
            return cur.execute(sql, params or []).df()
        finally:
            cur.close()

    def scalar(self, sql: str, params: Sequence[Any] | dict | None = None) -> Any:
        cur = self.cursor()
        try:
            row = cur.execute(sql, params or []).fetchone()
            return None if row is None else row[0]
        finally:
            cur.close()

    def tables(self) -> frozenset[str]:
        """'schema.table' names in the served file (cached per file identity)."""
        con, _ = self.connection()
        if self._tables is None:
            cur = con.cursor()
            try:
                rows = cur.execute(
                    "select table_schema || '.' || table_name from information_schema.tables where table_catalog = ?",
                    [CATALOG],
                ).fetchall()
            finally:
                cur.close()
            self._tables = frozenset(r[0] for r in rows)
        return self._tables

    def has_table(self, name: str) -> bool:
        return name in self.tables()

    def columns(self, table: str) -> list[str]:
        schema, _, name = table.partition(".")
        df = self.query(
            "select column_name from information_schema.columns where table_catalog = ? and table_schema = ? "
            "and table_name = ? order by ordinal_position",
            [CATALOG, schema, name],
        )
        return df["column_name"].tolist()
