"""Opening raw.duckdb and naming its tables.

The file is called raw.duckdb, so DuckDB names its catalog `raw`, the same as the schema `raw` inside it,
and `raw._loads` is ambiguous. Every table name is therefore fully qualified (catalog.schema.table) from
here, so the code works whatever the file is called.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ptpulse.core.config import Settings
from ptpulse.core.sql import quote_ident

SCHEMA = "raw"


@dataclass
class RawDB:
    """A connection to raw.duckdb and the fully-qualified name of each raw table."""

    con: duckdb.DuckDBPyConnection
    catalog: str

    def t(self, table: str) -> str:
        """`"catalog"."raw"."table"`."""
        return f"{quote_ident(self.catalog)}.{quote_ident(SCHEMA)}.{quote_ident(table)}"

    def has_table(self, table: str) -> bool:
        return (
            self.con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
                [self.catalog, SCHEMA, table],
            ).fetchone()[0]
            > 0
        )

    def close(self) -> None:
        self.con.close()


#: How long a writer waits for short readers (a page's quarantine view, the key check) to let go of the file.
WRITER_WAIT_S = 60.0


def open_raw(
    path: Path, read_only: bool = False, settings: Settings | None = None, wait_s: float | None = None
) -> RawDB:
    """Connect to the raw store; read-only connections never take the writer's lock.

    The writer gets the memory budget and spill folder of `settings` (default: those of the home holding
    `path`): staging a chain-sized file is then bounded by $PTPULSE_MEMORY_LIMIT instead of 80% of RAM.
    Insertion order is kept: the loader reads a staged row's file line from its rowid.
    A writer that meets a reader's lock retries for up to `wait_s`: readers hold the file only for one query,
    so an upload's refresh must not fail because a page happened to read the quarantine at that moment.
    """
    config = {} if read_only else (settings or Settings(home=Path(path).parent)).duckdb_config()
    wait_s = WRITER_WAIT_S if wait_s is None else wait_s
    con = _connect_waiting(path, read_only, config, 0.0 if read_only else wait_s)
    catalog = con.execute("SELECT current_database()").fetchone()[0]
    return RawDB(con=con, catalog=catalog)


def _connect_waiting(path: Path, read_only: bool, config: dict, wait_s: float) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, retried with a growing pause while another process holds the file's lock."""
    deadline, pause = time.monotonic() + wait_s, 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
