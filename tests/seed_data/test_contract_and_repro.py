"""The generator's output honours the contracts (clean), is reproducible, respects as_of, and its dirt is
counted exactly in the manifest."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

from ingestion.loader import ingest
from ptpulse.core.config import get_settings
from ptpulse.core.contracts import load_contracts
from seed_data.generator import generate
from seed_data.writer import SOURCES


@pytest.fixture(scope="module")
def clean_loads(clean_practice, tmp_path_factory) -> dict:
    """The clean practice through the real ingestion loader: the contracts' rules exactly as production runs them."""
    from ingestion.loader import ingest
    from ptpulse.core.config import get_settings

    settings = get_settings(tmp_path_factory.mktemp("clean_home"))
    return {r.source: r for r in ingest([clean_practice], settings)}


@pytest.mark.parametrize("source", SOURCES)
def test_clean_output_passes_its_contract(con, clean_practice, clean_loads, source):
    spec = load_contracts()[source]
    with open(clean_practice / f"{source}.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header == list(spec.column_names), "column order must follow the contract"
    load = clean_loads[source]
    assert load.status == "loaded" and load.rows_read > 0
    assert (load.rows_quarantined, load.rows_duplicate) == (0, 0), load.message
    key = ", ".join(spec.natural_key)
    dup = con.execute(
        f"select count(*) from (select {key} from {source} group by {key} having count(*) > 1)"
    ).fetchone()[0]
    assert dup == 0, "clean output has unique natural keys"


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, scale="small", seed=7)
    generate(b, scale="small", seed=7)
    da, db = _digests(a), _digests(b)
    assert len(da) == 14 + 4 and da == db  # 14 exports + truth: appointments, claims, channels, manifest
    c = tmp_path / "c"
    generate(c, scale="small", seed=8)
    assert _digests(c)["scheduling_events.csv"] != da["scheduling_events.csv"]
    gz = tmp_path / "gz"  # compressed exports (`--gzip`): the same bytes inside, the same gzip bytes every run
    generate(gz, scale="small", seed=7, compress=True)
    manifest = json.loads((gz / "truth" / "manifest.json").read_text())
    for source in SOURCES:
        packed = (gz / f"{source}.csv.gz").read_bytes()
        assert packed[4:8] == b"\0\0\0\0", "gzip header without a timestamp"
        assert gzip.decompress(packed) == (a / f"{source}.csv").read_bytes(), source
        assert f"{source}.csv.gz" in manifest["rows"]
    assert not list(gz.glob("*.csv"))
    loads = ingest([gz], get_settings(tmp_path / "home"))  # read as the sources they are
    assert {r.source for r in loads} == set(SOURCES)
    assert all(r.status == "loaded" and r.rows_read == manifest["rows"][f"{r.source}.csv.gz"] for r in loads)


def test_dirt_does_not_change_clean_rows(clean_practice, small_practice):
    """Dirty output = clean output + injected defects: every clean row not picked for replacement survives."""
    clean = (clean_practice / "claims.csv").read_text().splitlines()
    dirty = set((small_practice / "claims.csv").read_text().splitlines())
    manifest = json.loads((small_practice / "truth" / "manifest.json").read_text())
    replaced = sum(
        v
        for k, v in manifest["dirt"].get("claims", {}).items()
        if k in ("malformed_date", "missing_id", "unknown_code")
    )
    missing = sum(1 for line in clean if line not in dirty)
    assert missing == replaced


def test_manifest_counts_dirt_exactly(small_practice):
    m = json.loads((small_practice / "truth" / "manifest.json").read_text())
    assert m["seed"] == 42 and m["dirty"] == 0.005 and m["as_of"] == "2026-10-31"
    con = duckdb.connect()
    f = small_practice / "charges.csv"
    con.execute(f"create view c as select * from read_csv('{f}', all_varchar=true)")
    d = m["dirt"]["charges"]
    assert con.execute("select count(*) from c where cpt_code = '99999'").fetchone()[0] == d.get("unknown_code", 0)
    assert con.execute("select count(*) from c where units = '-1'").fetchone()[0] == d.get("negative_units", 0)
    bad_dates = con.execute("""select count(*) from c where try_strptime(service_date, '%Y-%m-%d') is null
                               or try_strptime(posted_at, '%Y-%m-%d %H:%M:%S') is null""").fetchone()[0]
    assert bad_dates == d.get("malformed_date", 0)
    exact_dups = con.execute("select count(*) - count(distinct c) from (select c::varchar as c from c)").fetchone()[0]
    assert exact_dups == d.get("duplicate", 0)
    resent = con.execute("""select count(*) from (select charge_id from c where charge_id is not null
                            group by charge_id having count(distinct c::varchar) > 1)""").fetchone()[0]
    assert resent == d.get("resent", 0)
    total_dirt = sum(sum(v.values()) for v in m["dirt"].values())
    total_rows = sum(v for k, v in m["rows"].items() if not k.startswith("truth/"))
    assert 0.003 < total_dirt / total_rows < 0.007
    for f, n in m["rows"].items():
        with open(small_practice / f) as fh:
            assert sum(1 for _ in fh) - 1 == n, f


def test_history_window_and_future_bookings(con):
    as_of = date(2026, 10, 31)
    first = con.execute("select min(event_at::timestamp) from intake_events").fetchone()[0]
    assert first.date() >= date(2024, 11, 1)
    for src, col in (
        ("intake_events", "event_at"),
        ("scheduling_events", "event_at"),
        ("documentation_events", "created_at"),
        ("charges", "posted_at"),
        ("claims", "submitted_at"),
        ("remittances", "event_at"),
        ("marketing_touches", "touched_at"),
    ):
        last = con.execute(f"select max({col}::timestamp) from {src}").fetchone()[0]
        assert last.date() <= as_of, src
    fut = con.execute("""select count(*), max(start)::date, count(*) filter (where status <> 'scheduled')
                         from appt where start > timestamp '2026-11-01'""").fetchone()
    assert fut[0] > 20 and fut[1] <= date(2026, 11, 29) and fut[2] == 0
    types = {
        r[0]
        for r in con.execute("""select distinct s.event_type from scheduling_events s join appt a
                using (appointment_id) where a.start > timestamp '2026-11-01'""").fetchall()
    }
    assert types <= {"booked", "rescheduled"}
    # open A/R: claims submitted in the last weeks are not all paid yet
    unpaid_recent = con.execute("""select avg((r.claim_id is null)::int) from claims c left join
        (select distinct claim_id from remittances where event_type in ('payer_payment','denial')) r using (claim_id)
        where c.submitted_at::timestamp > timestamp '2026-10-15'""").fetchone()[0]
    assert unpaid_recent > 0.5
