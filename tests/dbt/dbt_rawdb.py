"""Land CSVs in a raw.duckdb for dbt tests.

Uses the real loader (`ingestion.loader.ingest`) when it exists. Until then (and only as a development
fallback) it lands the files itself, typed per `ingestion/contracts/*.yml`, with `_load_id`, `_row_hash`,
`_line`, plus `raw.raw._loads` and `raw.raw._quarantine`, exactly as interfaces.md section 2 describes them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb
import yaml

from ptpulse.config import REPO_ROOT, Settings

CONTRACTS = REPO_ROOT / "ingestion" / "contracts"
SQL_TYPES = {"varchar": "VARCHAR", "integer": "INTEGER", "date": "DATE", "timestamp": "TIMESTAMP",
             "decimal": "DECIMAL(18,2)", "boolean": "BOOLEAN"}


def real_loader_available() -> bool:
    return importlib.util.find_spec("ingestion.loader") is not None


def land(folder: Path, settings: Settings, force_fallback: bool = False) -> None:
    """Land every `<source>*.csv` in `folder` into settings.raw_db."""
    settings.ensure()
    if real_loader_available() and not force_fallback:
        from ingestion.loader import ingest

        ingest([folder], settings)
        return
    _fallback_land(folder, settings.raw_db)


def _fallback_land(folder: Path, raw_db: Path) -> None:
    con = duckdb.connect(str(raw_db))
    try:
        con.execute("create schema if not exists raw.raw")
        con.execute("""create table if not exists raw.raw._loads (load_id bigint, file varchar, sha256 varchar,
            source varchar, rows_read bigint, rows_landed bigint, rows_quarantined bigint, rows_duplicate bigint,
            started_at timestamp, finished_at timestamp, status varchar, message varchar)""")
        con.execute("""create table if not exists raw.raw._quarantine (load_id bigint, source varchar, file varchar,
            line bigint, rule varchar, column_name varchar, detail varchar, record json)""")
        next_id = con.execute("select coalesce(max(load_id), 0) + 1 from raw.raw._loads").fetchone()[0]
        for contract_path in sorted(CONTRACTS.glob("*.yml")):
            contract = yaml.safe_load(contract_path.read_text())
            source = contract["source"]
            cols = contract["columns"]
            typed = ", ".join(f'"{c}" {SQL_TYPES[spec["type"]]}' for c, spec in cols.items())
            con.execute(f"create table if not exists raw.raw.{source} ({typed}, _load_id bigint, _row_hash ubigint, _line bigint)")
            for csv in sorted(folder.glob(f"{source}*.csv")):
                if not csv.stem == source and not csv.stem.startswith(source + "_"):
                    continue
                if any(csv.stem.startswith(other) and other != source and len(other) > len(source)
                       for other in _sources()):
                    continue
                col_types = {c: "VARCHAR" for c in cols}
                rel = f"read_csv('{csv}', header=true, all_varchar=true, columns={col_types!r})"
                casts = ", ".join(
                    f"cast(nullif(\"{c}\", '') as {SQL_TYPES[spec['type']]}) as \"{c}\"" for c, spec in cols.items())
                hash_expr = "hash(" + ", ".join(f'"{c}"' for c in cols) + ")"
                n = con.execute(f"select count(*) from {rel}").fetchone()[0]
                con.execute(f"""insert into raw.raw.{source}
                    select {casts}, {next_id}, {hash_expr}, row_number() over () + 1
                    from {rel}""")
                con.execute("insert into raw.raw._loads values (?, ?, '', ?, ?, ?, 0, 0, now(), now(), 'loaded', '')",
                            [next_id, str(csv), source, n, n])
                next_id += 1
    finally:
        con.close()


def _sources() -> list[str]:
    return [yaml.safe_load(p.read_text())["source"] for p in CONTRACTS.glob("*.yml")]
