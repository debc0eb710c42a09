"""Landing a night by hand in a copy of raw.duckdb, for the tests of incremental builds (dbt models, twin)."""

from __future__ import annotations

import duckdb

from ptpulse.core.contracts import load_contracts

# the event sources staged incrementally, with their contract's event time (what a night's cut is by)
INCREMENTAL_SOURCES = ("scheduling_events", "documentation_events", "charges", "claims", "remittances")
FACTS = {source: load_contracts()[source].event_time for source in INCREMENTAL_SOURCES}


def new_load(con: duckdb.DuckDBPyConnection, source: str, tag: str) -> int:
    """A raw._loads row for a new load of `source` (copied from its first load: same profile, so the same system)."""
    load_id = con.execute("select max(load_id) + 1 from raw.raw._loads").fetchone()[0]
    con.execute(
        "insert into raw.raw._loads select * replace (? as load_id, ? as file, ? as sha256, "
        "now()::timestamp as started_at) from raw.raw._loads where source = ? order by load_id limit 1",
        [load_id, f"{source}_{tag}.csv", f"sha-{source}-{tag}", source],
    )
    return load_id
