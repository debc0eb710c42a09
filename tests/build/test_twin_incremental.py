"""The de-identified twin of an incremental night costs what changed (issue 15), without weakening the rule.

The small practice's last day of the five event sources is held back, the rest built in full; then the day lands
as new loads and an incremental build starts its twin from the served, verified one, replacing only the rows
that changed and scanning only their values (plus every value against identifiers loaded since). Its twin must
equal the twin of a full build of the same raw data, table by table; a patient identifier planted in a changed
table must still stop the swap; unchanged tables must not be rewritten. Real DuckDB, real dbt, no mocks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from night_helpers import FACTS, full_build_beside, new_load, unmatched_rows

from ptpulse.build.orchestrate import MART_SCOPES, build
from ptpulse.build.serving import TWIN_IDENTIFIERS
from ptpulse.core.config import Settings, get_settings
from ptpulse.core.deid import _identifier_sql, _professionals_sql, _raw_tables, verify_deidentified, write_deidentified
from ptpulse.core.sql import quote_literal

pytestmark = pytest.mark.slow  # real builds


def _home(tmp: Path, raw: Path) -> Settings:
    tmp.mkdir(parents=True)
    shutil.copy2(raw, tmp / "raw.duckdb")
    return get_settings(tmp).ensure()


def _hold_back_last_day(settings: Settings, night: Path) -> None:
    """Move the last day's rows of each event source from raw.duckdb into the file `night`."""
    con = duckdb.connect()
    try:
        con.execute(f"attach {quote_literal(settings.raw_db)} as raw")
        con.execute(f"attach {quote_literal(night)} as night")
        last = max(
            con.execute(f"select max(try_cast({col} as timestamp))::date from raw.raw.{source}").fetchone()[0]
            for source, col in FACTS.items()
        )
        for source, col in FACTS.items():
            is_night = f"try_cast({col} as timestamp)::date >= ?::date"
            con.execute(f"create table night.{source} as select * from raw.raw.{source} where {is_night}", [last])
            con.execute(f"delete from raw.raw.{source} where {is_night}", [last])
    finally:
        con.close()


def _land_night(settings: Settings, night: Path) -> None:
    """The held-back day arrives: each source's rows under a new load id, as the loader lands them."""
    con = duckdb.connect()
    try:
        con.execute(f"attach {quote_literal(settings.raw_db)} as raw")
        con.execute(f"attach {quote_literal(night)} as night (read_only)")
        for source in FACTS:
            load_id = new_load(con, source, "night")
            con.execute(f"insert into raw.raw.{source} select * replace (? as _load_id) from night.{source}", [load_id])
    finally:
        con.close()


def _twin_differences(a: Path, b: Path, tolerant: bool = False) -> dict[str, tuple[int, int]]:
    """{table: (rows only in a, rows only in b)} for tables that differ (a table in one twin only: (-1, -1))."""
    con = duckdb.connect()
    try:
        con.execute(f"attach {quote_literal(a)} as a (read_only)")
        con.execute(f"attach {quote_literal(b)} as b (read_only)")
        names = {
            db: {
                f"{s}.{t}"
                for s, t in con.execute(
                    "select schema_name, table_name from duckdb_tables() where database_name = ?", [db]
                ).fetchall()
            }
            for db in ("a", "b")
        }
        out = {t: (-1, -1) for t in names["a"] ^ names["b"]}
        for t in sorted(names["a"] & names["b"]):
            if tolerant and t in ("marts.build_info", "meta.builds"):
                continue  # this build's id and times: differ between any two builds by design
            diff = tuple(
                unmatched_rows(con, x, y, *t.split("."), tolerant=tolerant) for x, y in (("a", "b"), ("b", "a"))
            )
            if diff != (0, 0):
                out[t] = diff
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def night(tmp_path_factory, ingested_home: Settings) -> dict:
    """Build without the last day, land it, build incrementally; a full build of the same raw beside it."""
    root = tmp_path_factory.mktemp("twin_night")
    home = _home(root / "home", ingested_home.raw_db)
    held = root / "night.duckdb"
    _hold_back_last_day(home, held)
    first = build(home)
    assert first.ok, first.message
    served_twin_before = home.analytics_deid_db.resolve()
    base_copy = root / "base_twin.duckdb"
    shutil.copy2(served_twin_before, base_copy)  # the served twin the night starts from, kept for direct checks
    _land_night(home, held)
    planted_home = root / "planted"
    shutil.copytree(home.home, planted_home, symlinks=True, ignore=shutil.ignore_patterns("*.lock"))
    result = build(home)
    assert result.ok, result.message
    full_home, full = full_build_beside(home, root / "full")
    return {
        "home": home,
        "result": result,
        "full": full_home,
        "full_result": full,
        "planted_home": get_settings(planted_home),
        "base_twin": base_copy,
        "root": root,
    }


def test_the_night_twin_is_a_delta_and_equals_a_full_builds_twin(night):
    result = night["result"]
    assert not result.full_refresh, result.mode_reason
    assert result.twin["write"]["mode"] == "delta"
    assert result.twin["verify"]["mode"] == "delta"
    # the incremental marts are patched by their scope's keys, not compared row by row; the scopes are not served
    incremental_marts = ["marts.appointments", "marts.charge_lines", "marts.claims", "marts.visits"]
    assert result.twin["write"]["scoped"] == incremental_marts
    assert not (night["home"].analytics_db.resolve().parent / MART_SCOPES).exists()
    assert night["full_result"].twin["write"]["mode"] == "full"
    assert night["full_result"].twin["write"]["scoped"] == []
    twin = night["home"].analytics_deid_db
    # exactly what a full write of the same analytics file holds, every table, all rows and columns
    full_write = night["root"] / "full_write.duckdb"
    assert write_deidentified(night["home"].analytics_db.resolve(), full_write)["mode"] == "full"
    assert _twin_differences(twin, full_write) == {}
    # and the twin of a full build of the same raw data (doubles within 1e-9: dbt's sums, not the twin)
    assert _twin_differences(twin, night["full"].analytics_deid_db, tolerant=True) == {}


def test_unchanged_tables_are_not_rewritten_and_only_new_values_are_scanned(night):
    write, verify = night["result"].twin["write"], night["result"].twin["verify"]
    assert write["rewritten"] == []  # same tables, same columns: nothing is written whole
    assert "marts.dim_clinics" in write["unchanged"] and "marts.kpi_definitions" in write["unchanged"]
    assert "marts.appointments" in write["updated"]  # the new day's appointments
    con = duckdb.connect(str(night["home"].analytics_deid_db), read_only=True)
    try:
        appointments = con.execute("select count(*) from marts.appointments").fetchone()[0]
    finally:
        con.close()
    assert 0 < write["updated"]["marts.appointments"] < appointments / 5
    full_scan = night["full_result"].twin["verify"]["values_scanned"]
    assert 0 < verify["values_scanned"] < full_scan / 5


def test_a_patient_id_planted_in_a_changed_table_stops_the_night(night):
    settings = night["planted_home"]
    served_before = settings.analytics_deid_db.resolve()
    raw = duckdb.connect(str(settings.raw_db), read_only=True)
    try:
        patient = raw.execute("select max(patient_id) from raw.raw.patients").fetchone()[0]
    finally:
        raw.close()

    def plant(new: Path) -> None:  # one new-day appointment's text quotes a patient id
        con = duckdb.connect(str(new))
        try:
            con.execute(
                "update marts.appointments set appointment_id = appointment_id || ' re ' || ? "
                "where appointment_id = (select max(appointment_id) from marts.appointments)",
                [patient],
            )
        finally:
            con.close()

    result = build(settings, before_swap=plant)
    assert not result.ok
    assert "marts.appointments.appointment_id" in result.message and "patient id" in result.message
    assert patient not in result.message  # the message names the column and kind, never the value
    assert settings.analytics_deid_db.resolve() == served_before  # the last good twin is still served


@pytest.mark.parametrize("cached", [False, True], ids=["identifiers read whole", "identifier cache"])
def test_an_identifier_loaded_tonight_is_found_in_an_unchanged_row(night, tmp_path, cached):
    """The served twin was verified against yesterday's patients: a value in a row the night did not touch that
    equals a patient id first loaded tonight is still caught (the second pass of the delta scan), also when raw's
    identifiers come from the served build's cache extended by tonight's load."""
    home = night["home"]
    raw = tmp_path / "raw.duckdb"
    shutil.copy2(home.raw_db, raw)
    cache = tmp_path / TWIN_IDENTIFIERS if cached else None
    if cache:
        shutil.copy2(home.analytics_db.resolve().parent / TWIN_IDENTIFIERS, cache)
    analytics = home.analytics_db.resolve()
    con = duckdb.connect(str(analytics), read_only=True)
    try:  # a value of an unchanged table (the clinic dimension did not move tonight)
        value = con.execute("select max(clinic_id) from marts.dim_clinics where length(clinic_id) >= 3").fetchone()[0]
        since = con.execute("select raw_load_id from meta.build_state").fetchone()[0]
    finally:
        con.close()
    twin = tmp_path / "twin.duckdb"
    report = write_deidentified(analytics, twin, base=home.analytics_deid_db.resolve())
    assert "marts.dim_clinics" in report["unchanged"]
    stats = verify_deidentified(
        twin, raw, base=home.analytics_deid_db.resolve(), since_load_id=since, identifiers=cache
    )
    assert stats["mode"] == "delta"
    assert stats["identifiers"] == ("cached" if cached else "full")
    con = duckdb.connect()
    try:
        con.execute(f"attach {quote_literal(raw)} as raw")
        load_id = new_load(con, "patients", "tonight")
        con.execute(
            "insert into raw.raw.patients select * replace (? as patient_id, ? as _load_id) "
            "from raw.raw.patients limit 1",
            [value, load_id],
        )
    finally:
        con.close()
    with pytest.raises(RuntimeError, match=r"marts\.dim_clinics\.clinic_id: 1 value\(s\) contain a patient patient id"):
        verify_deidentified(twin, raw, base=home.analytics_deid_db.resolve(), since_load_id=since, identifiers=cache)


def _identifiers(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple]:
    """(kind, token, first_load) of an identifier relation, professionals' names left out as the check does."""
    pros = _professionals_sql("raw", _raw_tables(con, "raw"))
    return con.execute(
        f"select * from {relation} where not (kind in ('name', 'address') and token in ({pros})) order by all"
    ).fetchall()


def test_the_night_extends_the_served_identifier_cache_to_what_a_full_read_of_raw_gives(night):
    """The twin's check reads raw's patient identifiers only from the loads since the served build's (issue 15:
    the whole read grew with history); the cache it serves must equal a full read of raw, token and first load."""
    home = night["home"]
    assert night["result"].twin["verify"]["identifiers"] == "cached"  # tonight: the served cache, extended
    assert night["full_result"].twin["verify"]["identifiers"] == "rebuilt"  # a home without a served cache
    con = duckdb.connect()
    try:
        con.execute(f"attach {quote_literal(home.raw_db)} as raw (read_only)")
        con.execute(f"attach {quote_literal(home.analytics_db.resolve().parent / TWIN_IDENTIFIERS)} as c (read_only)")
        cached = _identifiers(con, "c.main.identifiers")
        full = _identifiers(con, f"({_identifier_sql('raw', _raw_tables(con, 'raw'))})")
        state = con.execute("select load_id from c.main.identifier_state").fetchone()[0]
        last = con.execute("select max(load_id) from raw.raw._loads").fetchone()[0]
    finally:
        con.close()
    assert len(full) > 1000 and cached == full
    assert state == last  # tonight's loads are in it: tomorrow reads only what lands after them


def test_new_columns_dropped_tables_and_duplicate_rows_follow_the_source(night, tmp_path):
    """A table whose kept columns changed is written whole, one gone from the source is dropped, and duplicate
    rows keep their count: the delta twin is still exactly a full write of the same file."""
    analytics = tmp_path / "analytics.duckdb"
    shutil.copy2(night["home"].analytics_db.resolve(), analytics)
    con = duckdb.connect(str(analytics))
    try:
        con.execute("alter table marts.dim_clinics add column opened_note_free varchar default 'x'")
        con.execute("drop table marts.payer_mix")
        con.execute("insert into marts.dim_payers select * from marts.dim_payers limit 1")  # a duplicate row
        con.execute(
            "delete from marts.dim_therapists where therapist_id = (select min(therapist_id) from marts.dim_therapists)"
        )
    finally:
        con.close()
    base = night["home"].analytics_deid_db.resolve()
    delta, full = tmp_path / "delta.duckdb", tmp_path / "full.duckdb"
    report = write_deidentified(analytics, delta, base=base)
    write_deidentified(analytics, full)
    assert report["rewritten"] == ["marts.dim_clinics"] and report["dropped"] == ["marts.payer_mix"]
    assert report["updated"]["marts.dim_payers"] == 3  # the duplicated row: its one copy deleted, two inserted
    assert report["updated"]["marts.dim_therapists"] == 1
    assert _twin_differences(delta, full) == {}


def _scope_of_claims(analytics: Path, scopes: Path, claims: int) -> list[str]:
    """A scopes file saying `claims` claims of `analytics` were rewritten tonight; returns their ids."""
    con = duckdb.connect(str(scopes))
    try:
        con.execute(f"attach {quote_literal(analytics)} as a (read_only)")
        con.execute("create schema marts")
        con.execute(
            f"create table marts.claims as select claim_id from a.marts.claims order by claim_id limit {claims}"
        )
        return [r[0] for r in con.execute("select claim_id from marts.claims").fetchall()]
    finally:
        con.close()


def test_a_mart_patched_by_key_equals_a_full_write_and_scans_only_its_scope(night, tmp_path):
    """Claims rewritten inside the scope: the twin deletes and re-inserts exactly those keys and equals a full
    write; the value scan reads only those rows, and still finds a patient id planted in one of them."""
    home = night["home"]
    analytics, scopes = tmp_path / "analytics.duckdb", tmp_path / "scopes.duckdb"
    shutil.copy2(home.analytics_db.resolve(), analytics)
    base = home.analytics_deid_db.resolve()
    keys = _scope_of_claims(analytics, scopes, 50)
    con = duckdb.connect(str(analytics))
    try:
        con.execute("update marts.claims set payer_id = payer_id || '-x' where claim_id = ?", [keys[0]])
        since = con.execute("select raw_load_id from meta.build_state").fetchone()[0]
        con.execute(f"attach {quote_literal(home.raw_db)} as r (read_only)")
        patient = con.execute("select max(patient_id) from r.raw.patients").fetchone()[0]
    finally:
        con.close()
    twin, full = tmp_path / "twin.duckdb", tmp_path / "full.duckdb"
    report = write_deidentified(analytics, twin, base=base, scopes=scopes)
    write_deidentified(analytics, full)
    assert report["scoped"] == ["marts.claims"] and report["updated"]["marts.claims"] == 100  # 50 out, 50 in
    assert _twin_differences(twin, full) == {}
    clean = verify_deidentified(
        twin, home.raw_db, base=base, since_load_id=since, scopes=scopes, scoped=["marts.claims"]
    )
    assert clean["mode"] == "delta" and 50 <= clean["values_scanned"] <= 50 * 20  # the scope's 50 rows, not all

    con = duckdb.connect(str(twin))  # a value of a row in the scope quotes a patient id
    try:
        con.execute(
            "update marts.claims set payer_id = payer_id || ' re ' || ? where claim_id = ?", [patient, keys[-1]]
        )
    finally:
        con.close()
    with pytest.raises(RuntimeError, match=r"marts\.claims\.payer_id: 1 value\(s\) contain a patient patient id"):
        verify_deidentified(twin, home.raw_db, base=base, since_load_id=since, scopes=scopes, scoped=["marts.claims"])


def test_a_row_added_outside_the_scope_falls_back_to_comparing_the_table(night, tmp_path):
    """If a mart gained a row whose key the scope does not list, patching by key would miss it: the row counts
    differ, the patch is rolled back and the table is compared whole, so the twin still equals a full write."""
    home = night["home"]
    analytics, scopes = tmp_path / "analytics.duckdb", tmp_path / "scopes.duckdb"
    shutil.copy2(home.analytics_db.resolve(), analytics)
    _scope_of_claims(analytics, scopes, 10)
    con = duckdb.connect(str(analytics))
    try:
        con.execute(
            "insert into marts.claims select * replace (claim_id || '-late' as claim_id) from marts.claims "
            "where claim_id = (select max(claim_id) from marts.claims)"
        )
    finally:
        con.close()
    twin, full = tmp_path / "twin.duckdb", tmp_path / "full.duckdb"
    report = write_deidentified(analytics, twin, base=home.analytics_deid_db.resolve(), scopes=scopes)
    write_deidentified(analytics, full)
    assert report["scoped"] == [] and report["updated"]["marts.claims"] == 1  # compared whole: the one new row
    assert _twin_differences(twin, full) == {}
