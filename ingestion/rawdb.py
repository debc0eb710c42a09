"""Opening raw.duckdb and naming its tables.

The file is called raw.duckdb, so DuckDB names its catalog `raw`, the same as the schema `raw` inside it,
and `raw._loads` is ambiguous. Every table name is therefore fully qualified (catalog.schema.table) from
here, so the code works whatever the file is called.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

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


def open_raw(path: Path, read_only: bool = False) -> RawDB:
    """Connect to the raw store; read-only connections never take the writer's lock."""
    con = duckdb.connect(str(path), read_only=read_only)
    catalog = con.execute("SELECT current_database()").fetchone()[0]
    return RawDB(con=con, catalog=catalog)
