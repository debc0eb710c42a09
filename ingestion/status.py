"""`ptpulse status`: what was loaded, what was quarantined and why, and how fresh each source is.

Returns plain data (lists of dicts, also what `--json` prints); the CLI draws the tables (ptpulse/cli.py).

Reads raw.duckdb READ-ONLY, so it never blocks or is blocked by readers; it cannot run while an ingest
holds the file for writing (DuckDB allows one writer or many readers), and says so. Output holds counts,
file names and rule names only: never row values (they may be PHI).
"""

from __future__ import annotations

from typing import Any

import duckdb

from ingestion.rawdb import RawDB, open_raw
from ptpulse.core.config import Settings
from ptpulse.core.contracts import load_contracts
from ptpulse.core.sql import quote_ident

LOAD_FIELDS = (
    "load_id",
    "file",
    "sha256",
    "source",
    "rows_read",
    "rows_landed",
    "rows_quarantined",
    "rows_duplicate",
    "status",
    "started_at",
    "finished_at",
    "message",
)


class StatusUnavailable(RuntimeError):
    """raw.duckdb exists but cannot be opened read-only (usually: an ingest is writing it right now)."""


def status_report(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """{"loads": [...], "quarantine_by_rule": [...], "freshness": [...]}; empty lists before the first ingest."""
    empty: dict[str, list[dict[str, Any]]] = {"loads": [], "quarantine_by_rule": [], "freshness": []}
    if not settings.raw_db.exists():
        return empty
    try:
        db = open_raw(settings.raw_db, read_only=True)
    except duckdb.Error as exc:
        raise StatusUnavailable(
            f"cannot read {settings.raw_db} ({str(exc).splitlines()[0][:200]}). If an ingest or refresh is "
            f"running, wait for it to finish and run `ptpulse status` again."
        ) from None
    try:
        if not db.has_table("_loads"):
            return empty
        return {"loads": _loads(db), "quarantine_by_rule": _quarantine_by_rule(db), "freshness": _freshness(db)}
    finally:
        db.close()


def _rows(db: RawDB, sql: str, params: list | None = None) -> list[dict[str, Any]]:
    cursor = db.con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _loads(db: RawDB) -> list[dict[str, Any]]:
    """Every load, oldest first (the audit is small: one row per file ever offered). `profile` names the source
    profile that mapped a vendor export; a raw.duckdb from before profiles has no such column (NULL)."""
    has_profile = db.con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'raw' "
        "AND table_name = '_loads' AND column_name = 'profile'",
        [db.catalog],
    ).fetchone()[0]
    profile = "profile" if has_profile else "CAST(NULL AS VARCHAR) AS profile"
    return _rows(db, f"SELECT {', '.join(LOAD_FIELDS)}, {profile} FROM {db.t('_loads')} ORDER BY load_id")


def _quarantine_by_rule(db: RawDB) -> list[dict[str, Any]]:
    if not db.has_table("_quarantine"):
        return []
    return _rows(
        db,
        f"""
        SELECT source, rule, column_name AS "column", count(*) AS rows
        FROM {db.t("_quarantine")} GROUP BY ALL ORDER BY rows DESC, source, rule, "column" """,
    )


def _freshness(db: RawDB) -> list[dict[str, Any]]:
    """Per contract source: last successful load, latest event time in the data, and rows landed."""
    last_loads = {
        r["source"]: r["last_load_at"]
        for r in _rows(
            db,
            f"""
        SELECT source, max(finished_at) AS last_load_at FROM {db.t("_loads")}
        WHERE status = 'loaded' GROUP BY source""",
        )
    }
    out = []
    for source, contract in sorted(load_contracts().items()):
        latest, rows = None, 0
        if db.has_table(source):
            latest, rows = db.con.execute(
                f"SELECT max({quote_ident(contract.event_time)}), count(*) FROM {db.t(source)}"
            ).fetchone()
        out.append(
            {
                "source": source,
                "last_load_at": last_loads.get(source),
                "event_time": contract.event_time,
                "latest_event_at": latest,
                "rows": rows,
            }
        )
    return out


def quarantine_by_load(settings: Settings, load_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Quarantined rows per load, by rule and column (`ingest --json`): tells the uploader why rows were set
    aside without showing a value. Read after the loads, by the same command that holds the pipeline lock."""
    if not load_ids or not settings.raw_db.exists():
        return {}
    db = open_raw(settings.raw_db, read_only=True)
    try:
        if not db.has_table("_quarantine"):
            return {}
        rows = _rows(
            db,
            f"""
            SELECT load_id, rule, column_name AS "column", count(*) AS rows
            FROM {db.t("_quarantine")} WHERE list_contains(?, load_id)
            GROUP BY ALL ORDER BY load_id, rows DESC, rule, "column" """,
            [list(load_ids)],
        )
    finally:
        db.close()
    out: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(int(row.pop("load_id")), []).append(row)
    return out
