"""`ptpulse status`: what was loaded, what was quarantined and why, and how fresh each source is.

Reads raw.duckdb READ-ONLY, so it never blocks or is blocked by readers; it cannot run while an ingest
holds the file for writing (DuckDB allows one writer or many readers), and says so. Output holds counts,
file names and rule names only: never row values (they may be PHI).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ingestion.contracts import load_contracts
from ingestion.files import safe_text
from ingestion.rawdb import RawDB, open_raw
from ingestion.validation import q
from ptpulse.config import Settings

LOAD_FIELDS = ("load_id", "file", "sha256", "source", "rows_read", "rows_landed", "rows_quarantined",
               "rows_duplicate", "status", "started_at", "finished_at", "message")


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
            f"running, wait for it to finish and run `ptpulse status` again.") from None
    try:
        if not db.has_table("_loads"):
            return empty
        return {"loads": _loads(db), "quarantine_by_rule": _quarantine_by_rule(db), "freshness": _freshness(db)}
    finally:
        db.close()


def _rows(db: RawDB, sql: str, params: list | None = None) -> list[dict[str, Any]]:
    cursor = db.con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _loads(db: RawDB) -> list[dict[str, Any]]:
    """Every load, oldest first (the audit is small: one row per file ever offered)."""
    return _rows(db, f"SELECT {', '.join(LOAD_FIELDS)} FROM {db.t('_loads')} ORDER BY load_id")


def _quarantine_by_rule(db: RawDB) -> list[dict[str, Any]]:
    if not db.has_table("_quarantine"):
        return []
    return _rows(db, f"""
        SELECT source, rule, column_name AS "column", count(*) AS rows
        FROM {db.t('_quarantine')} GROUP BY ALL ORDER BY rows DESC, source, rule, "column" """)


def _freshness(db: RawDB) -> list[dict[str, Any]]:
    """Per contract source: last successful load, latest event time in the data, and rows landed."""
    last_loads = {r["source"]: r["last_load_at"] for r in _rows(db, f"""
        SELECT source, max(finished_at) AS last_load_at FROM {db.t('_loads')}
        WHERE status = 'loaded' GROUP BY source""")}
    out = []
    for source, contract in sorted(load_contracts().items()):
        latest, rows = None, 0
        if db.has_table(source):
            latest, rows = db.con.execute(
                f"SELECT max({q(contract.event_time)}), count(*) FROM {db.t(source)}").fetchone()
        out.append({"source": source, "last_load_at": last_loads.get(source), "event_time": contract.event_time,
                    "latest_event_at": latest, "rows": rows})
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_status(report: dict[str, list[dict[str, Any]]], console: Console) -> None:
    """Three rich tables: recent loads, quarantine by rule, freshness per source."""
    if not report["loads"]:
        console.print("No loads yet. Run `ptpulse ingest <folder>` (or `ptpulse refresh`) first.")
        return
    loads = Table("id", "file", "source", "status", "read", "landed", "quarantined", "duplicate", "finished (UTC)",
                  title="Loads (latest 30)")
    for r in report["loads"][-30:]:
        style = {"refused": "red", "failed": "red", "skipped_same_hash": "dim"}.get(r["status"], "")
        loads.add_row(_fmt(r["load_id"]), Text(safe_text(r["file"].rsplit("/", 1)[-1], 120)), r["source"] or "?",
                      r["status"],
                      _fmt(r["rows_read"]), _fmt(r["rows_landed"]), _fmt(r["rows_quarantined"]),
                      _fmt(r["rows_duplicate"]), _fmt(r["finished_at"]), style=style)
    console.print(loads)
    for r in report["loads"][-30:]:
        if r["status"] in ("refused", "failed"):
            # Text, not markup: names and messages are shown as written (no `[bold]`, no `:x:` emoji) and
            # control characters escaped, whatever a file was called
            console.print(Text(safe_text(f"{r['status']} load {r['load_id']} {r['file']}: {r['message']}", 2000),
                               style="red"))
    if report["quarantine_by_rule"]:
        quarantine = Table("source", "rule", "column", "rows", title="Quarantine by rule")
        for r in report["quarantine_by_rule"]:
            quarantine.add_row(r["source"], r["rule"], Text(r["column"] or "-"), _fmt(r["rows"]))
        console.print(quarantine)
    fresh = Table("source", "last load (UTC)", "latest event", "rows", title="Freshness")
    for r in report["freshness"]:
        fresh.add_row(r["source"], _fmt(r["last_load_at"]), _fmt(r["latest_event_at"]), _fmt(r["rows"]))
    console.print(fresh)
